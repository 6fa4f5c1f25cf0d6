"""Runs: every training run, newest first (DIGITS' home table), the queue and the running job.

One tracking.list_runs call feeds the table; select rows to compare, open or clone them.
"""

from __future__ import annotations

import streamlit as st

from streamlit_app import app
from streamlit_app import runs_view as view
from workshop import jobs, tracking

app.through_navigation()  # a first visit straight to this page's URL runs the app first

st.title("Runs")

try:
    runs = tracking.list_runs()
    queued = jobs.queue()
    running = jobs.active()
except view.ERRORS as err:
    st.error(view.sentence(err))
    st.stop()

if running:
    progress = jobs.progress(running)
    left = progress.get("seconds_left")
    st.subheader("Training now")
    st.progress(
        min(1.0, progress.get("fraction") or 0.0),
        text=f"{view.label(running)}: epoch {progress.get('epoch')} of {progress.get('epochs')}"
        + (f", about {view.duration(left)} left" if left is not None else ""),
    )
    st.page_link(
        view.PAGES / "job.py", label="Open its page", query_params={"run": running["run_id"]}
    )

if queued:
    st.subheader(f"Queue ({len(queued)} waiting)")
    for run in queued:
        name, cancel = st.columns([4, 1])
        name.page_link(
            view.PAGES / "job.py",
            label=f"{view.label(run)} · {view.data_set(run)}",
            query_params={"run": run["run_id"]},
        )
        if cancel.button("Cancel", key=f"cancel-{run['run_id']}"):
            try:
                jobs.cancel(run["run_id"])
            except view.ERRORS as err:
                st.error(view.sentence(err))
            else:
                st.rerun()

if not runs:
    st.info("No runs yet: start one on the New run page, or train with `make`.")
    st.page_link(view.PAGES / "new_run.py", label="New run")
    st.stop()

modules = sorted({run["module"] for run in runs})
module = st.segmented_control("Module", ["all", *modules], default="all") or "all"
shown = runs if module == "all" else [run for run in runs if run["module"] == module]
table, settings = view.runs_table(shown)
st.caption(
    f"{len(shown)} run{'s' * (len(shown) != 1)}, newest first; click a column head to sort. "
    "Settings shown: those that differ between runs of a module"
    + (f" ({', '.join(settings)})." if settings else " (none differ).")
)
picked = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row",
    key=f"runs-{module}",
    column_config={
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "result": st.column_config.NumberColumn(
            "result", format="%.4f", help="best val accuracy, AP or test accuracy"
        ),
        "duration_s": st.column_config.NumberColumn("duration", format="%.0f s"),
        "run": st.column_config.LinkColumn("run", display_text=r"run=(\w{8})", help="its Job page"),
        "clone": st.column_config.LinkColumn("clone", display_text="clone", help="New run from it"),
    },
)
rows = picked.selection.rows
chosen = [shown[i]["run_id"] for i in rows]
compare, open_job, clone = st.columns(3)
if compare.button("Compare", disabled=len(chosen) < 2, help="select two or more rows"):
    st.switch_page(view.PAGES / "compare.py", query_params={"runs": ",".join(chosen)})
if open_job.button("Open job", disabled=len(chosen) != 1, help="select one row"):
    st.switch_page(view.PAGES / "job.py", query_params={"run": chosen[0]})
if clone.button("Clone", disabled=len(chosen) != 1, help="select one row"):
    st.switch_page(view.PAGES / "new_run.py", query_params={"clone": chosen[0]})
