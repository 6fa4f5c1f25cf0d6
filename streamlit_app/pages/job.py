"""Job (?run=<run_id>): one run, live while it trains (DIGITS' model page).

Queued: its place and Cancel. Training: progress and time left, the graphs growing, images/s,
the process's memory, the log tail and Abort, refreshed every 2 s. Stopped with a resumable
state: Resume. Finished: the final metrics, the curves, Export to ONNX, Test and Clone.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from streamlit_app import app
from streamlit_app import runs_view as view
from workshop import jobs, tracking

app.through_navigation()  # a first visit straight to this page's URL runs the app first

REFRESH_S = 2
STATUS_BOX = {"FINISHED": st.success, "FAILED": st.error, "KILLED": st.warning}


def act(action, run_id: str) -> None:
    """Run a jobs action, then redraw the whole page; a refusal is one sentence."""
    try:
        action(run_id)
    except view.ERRORS as err:
        st.error(view.sentence(err))
    else:
        st.rerun()


def charts(run: dict) -> None:
    history = tracking.metric_history(run["run_id"], view.curve_keys(run, view.chart_metrics()))
    frames = view.job_charts(history, view.step_name([run["module"]]))
    if not frames:
        st.caption("No epoch finished yet: the graphs start with the first one.")
    for column, (title, frame) in zip(st.columns(max(1, len(frames))), frames.items()):
        column.markdown(f"**{title}**")
        column.vega_lite_chart(*view.line_chart(frame, title), width="stretch")


def log(run: dict, lines: int = 40) -> None:
    text = jobs.log_tail(run["run_id"], lines)
    st.code(text or "(the log is empty)", language=None)


def hardware(run: dict) -> None:
    device = run["tags"].get("device") or run["params"].get("device", "?")
    rss = view.process_memory(run)
    speed = run["metrics"].get("images_per_s")
    a, b, c = st.columns(3)
    a.metric("device", device)
    b.metric("process memory", view.gib(rss) if rss else "–")
    c.metric("images/s", f"{speed:.0f}" if speed else "–")
    if "cuda" in device:
        used = view.gpu_memory()
        if used:
            st.caption(
                f"GPU memory in use on this machine: {view.gib(used[0])} of {view.gib(used[1])}"
            )


def queued(run: dict) -> None:
    ids = [r["run_id"] for r in jobs.queue()]
    place = ids.index(run["run_id"]) + 1 if run["run_id"] in ids else "?"
    st.info(f"Waiting in the queue: place {place} of {len(ids)}.")
    if st.button("Cancel"):
        act(jobs.cancel, run["run_id"])


def running(run: dict) -> None:
    progress = jobs.progress(run)
    left = progress.get("seconds_left")
    st.progress(
        min(1.0, progress.get("fraction") or 0.0),
        text=f"epoch {progress.get('epoch')} of {progress.get('epochs')}"
        + (f" · about {view.duration(left)} left" if left is not None else ""),
    )
    hardware(run)
    charts(run)
    if st.button("Abort", type="primary"):
        act(jobs.abort, run["run_id"])
    log(run)


@st.fragment(run_every=REFRESH_S)
def live(run_id: str, drawn: str) -> None:
    """The changing part of a queued or running job; ``drawn``: the status the page shows."""
    try:
        run = tracking.get_run(run_id)
    except view.ERRORS as err:
        st.error(view.sentence(err))
        return
    if run["status"] != drawn:
        st.rerun()  # it started or ended: the whole page (its header too) is drawn anew
    (queued if run["status"] == "SCHEDULED" else running)(run)


def finished(run: dict) -> None:
    head = [m for m in view.FINAL_METRICS if m in run["metrics"]]
    for column, name in zip(st.columns(max(1, len(head))), head):
        column.metric(name, f"{run['metrics'][name]:.4f}")
    charts(run)
    with st.expander("All metrics (latest value)"):
        st.dataframe(view.final_metrics([run]), width="stretch")
    out_dir = run["tags"].get("out_dir", "")
    onnx = run["tags"].get("onnx")
    export, test = st.columns(2)
    if export.button("Export to ONNX", disabled=bool(onnx), help=onnx or "writes model.onnx"):
        try:
            onnx = str(jobs.export(run["run_id"]))
        except view.ERRORS as err:
            st.error(view.sentence(err))
    if onnx:
        st.caption(f"ONNX: {onnx}")
        test.page_link(
            view.PAGES / "test.py", label="Test it", query_params={"model": Path(out_dir).name}
        )
    with st.expander("Log"):
        log(run)


def stopped(run: dict) -> None:
    if reason := run["tags"].get("error"):  # the trainer's own last word, or tracking's
        st.caption(f"What stopped it: {reason}")
    charts(run)
    if view.resumable(run) and st.button(
        "Resume", type="primary", help="continues from train_state.pt"
    ):
        act(jobs.resume, run["run_id"])
    log(run)


run_id = st.query_params.get("run")
if not run_id:
    st.title("Job")
    st.info("Open a job from the Runs page.")
    st.page_link(view.PAGES / "runs.py", label="Runs")
    st.stop()
try:
    run = tracking.get_run(run_id)
except view.ERRORS as err:
    st.title("Job")
    st.error(view.sentence(err))
    st.stop()

st.title(f"Job {view.label(run)}")
facts = [run["status"], view.data_set(run), run["tags"].get("user", "")]
if run["duration_s"] is not None:
    facts.append(view.duration(run["duration_s"]))
st.caption(" · ".join(f for f in facts if f))
links = st.columns(3)
links[0].page_link(view.PAGES / "new_run.py", label="Clone", query_params={"clone": run_id})
if parent := run["tags"].get("cloned_from"):
    links[1].page_link(
        view.PAGES / "job.py",
        label=f"cloned from {view.short(parent)}",
        query_params={"run": parent},
    )
links[2].page_link(view.PAGES / "runs.py", label="All runs")

if run["status"] in view.LIVE:
    live(run_id, run["status"])
else:
    STATUS_BOX.get(run["status"], st.info)(f"{run['status'].capitalize()}.")
    (finished if run["status"] == "FINISHED" else stopped)(run)
