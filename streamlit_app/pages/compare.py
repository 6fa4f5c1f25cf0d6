"""Compare (?runs=id1,id2,...): the runs' curves overlaid, the settings that differ side by
side, the final metrics, and the best run on validation marked."""

from __future__ import annotations

import streamlit as st

from streamlit_app import app
from streamlit_app import runs_view as view
from workshop import tracking

app.through_navigation()  # a first visit straight to this page's URL runs the app first

st.title("Compare")

ids = view.parse_ids(st.query_params.get("runs"))
try:
    if len(ids) < 2:
        runs = tracking.list_runs()
        options = {run["run_id"]: f"{view.label(run)} · {run['status']}" for run in runs}
        picked = st.multiselect(
            "Runs to compare",
            list(options),
            default=[i for i in ids if i in options],
            format_func=options.get,
        )
        if len(picked) < 2:
            st.info("Choose two or more runs (or select them on the Runs page).")
            st.stop()
        st.query_params["runs"] = ",".join(picked)
        ids = picked
    runs = [tracking.get_run(run_id) for run_id in ids]
    histories = {
        view.label(run): tracking.metric_history(run["run_id"], view.curve_keys(run, view.CURVES))
        for run in runs
    }
except view.ERRORS as err:
    st.error(view.sentence(err))
    st.stop()

best = view.best_run(runs)
best_label = None
if best:
    winner = next(run for run in runs if run["run_id"] == best)
    best_label = view.label(winner)
    name, value = tracking.headline(winner)
    tied = [view.label(r) for r in runs if (h := tracking.headline(r)) and h[1] == value]
    if len(tied) > 1:  # naming one of equals would be arbitrary
        st.info(f"Best on validation (tied): {', '.join(tied)} ({name} {value:.4f}).")
    else:
        st.success(f"Best on validation: {view.label(winner)} ({name} {value:.4f}).")
else:
    st.caption("No best run: the runs have no common validation metric yet.")

st.subheader("Curves")
frames = view.curves(histories, view.step_name(run["module"] for run in runs))
if not frames:
    st.caption("No curves yet.")
columns = st.columns(2)
for i, (metric, frame) in enumerate(frames.items()):
    where = columns[i % 2]
    where.markdown(f"**{view.CURVES[metric]}**")
    where.vega_lite_chart(
        *view.line_chart(frame, metric, bold=best_label, legend="right"), width="stretch"
    )


def mark_best(column):
    return ["background-color: #d4edda" if column.name == best_label else "" for _ in column]


st.subheader("Settings that differ")
st.dataframe(view.settings_side_by_side(runs).style.apply(mark_best), width="stretch")
st.subheader("Final metrics")
st.dataframe(
    view.final_metrics(runs).style.apply(mark_best).format("{:.4f}", na_rep="–"),
    width="stretch",
)
for column, run in zip(st.columns(len(runs)), runs):
    column.page_link(
        view.PAGES / "job.py", label=view.label(run), query_params={"run": run["run_id"]}
    )
