"""The DIGITS loop in a real browser: Data sets, a run's Job page, Clone with a changed learning
rate, Train, the graph growing while it trains, Compare, Export to ONNX, Test many.

One `streamlit run` (benchmarks.harness.app_server) and Debian's chromium serve the whole
loop, on a temporary $ARTIFACTS (the MLflow store) and $DATA_DIR. The first run is queued
with jobs.submit before the browser opens (its trainer generates the small synthetic set, which
the Data sets page then shows); everything after it goes through the pages. Every page is
screenshotted into test-artifacts/digits/loop-*.png; no page may show a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from benchmarks.harness import CHROMIUM, DONE, TINY_JOB, app_server, chromium
from streamlit_app import runs_view as view
from streamlit_app import test_many
from streamlit_app.predictor import Predictor
from workshop import jobs, tracking
from workshop.data import catalog

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "digits"
# 8 epochs of about a second: the Job page (redrawn every 2 s) is caught between several
# of them even on busy cores, where a page redraw can take longer than an epoch
TINY = {**TINY_JOB, "epochs": "8"}
EPOCHS = frozenset(range(1, int(TINY["epochs"]) + 1))
EXCEPTION = "[data-testid='stException']"
# the points of a Vega-Lite line chart; each one's aria-label reads "epoch: 2; loss: 1.39; ..."
POINTS = "g.mark-symbol.role-mark path"
LEGEND = "g.role-legend-label text"


@pytest.fixture
def loop(tmp_path, monkeypatch):
    """$ARTIFACTS and $DATA_DIR in tmp_path; at the end no child of ours is left."""
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    yield tmp_path
    for run in tracking.list_runs():  # trainers and runners the loop started, by pid
        for key in ("pid", "runner_pid"):
            pid = int(run["tags"].get(key) or 0)
            if pid and jobs._alive(pid, "workshop."):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def page(loop):
    """One app server and one chromium page for the whole loop; yields (url, page). Closed
    when the loop ends: Playwright's sync API runs one at a time (the bench opens its own)."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `apt-get install chromium`"
    with (
        open(loop / "streamlit.log", "w") as log,
        app_server(loop / "artifacts", log=log) as (url, _),
        chromium() as browser,
    ):
        yield url, browser.new_page(viewport={"width": 1400, "height": 2400})


def settle(page) -> None:
    """Wait until the script run the last action started has ended."""
    page.wait_for_timeout(300)  # the rerun's "running" state reaches the DOM first
    page.wait_for_selector(DONE, timeout=120_000)


def shot(page, name: str) -> None:
    """Screenshot the page once its script has run; it shows no traceback."""
    settle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"loop-{name}.png"))
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()


def wait_for(run_id: str, statuses, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (run := tracking.get_run(run_id))["status"] not in statuses:
        assert time.monotonic() < deadline, f"still {run['status']}: {jobs.log_tail(run_id)}"
        time.sleep(0.3)
    return run


def cells(page, index: int = 0) -> list[str]:
    """The texts of a st.dataframe's cells (glide's grid is a canvas; its accessible table is
    in the DOM), row by row."""
    frame = page.locator("[data-testid='stDataFrame']").nth(index)
    frame.locator("[data-testid^='glide-cell']").first.wait_for(state="attached")
    return [c.text_content() for c in frame.locator("[data-testid^='glide-cell']").all()]


def chart_epochs(page, index: int = 0) -> dict[str, set[int]]:
    """Series -> the epochs it has a point at, in the index-th chart (its SVG's labels)."""
    labels = page.locator("[data-testid='stVegaLiteChart']").nth(index).locator(POINTS)
    found: dict[str, set[int]] = {}
    for label in labels.evaluate_all("ps => ps.map(p => p.getAttribute('aria-label'))"):
        parts = label.split(";")  # "epoch: 2", "loss: 1.39", " : train_loss"
        epoch, series = int(parts[0].split(":")[1]), parts[-1].split(":")[-1].strip()
        found.setdefault(series, set()).add(epoch)
    return found


def test_the_digits_loop_in_the_browser(loop, page):
    url, page = page
    data = loop / "data"
    first = jobs.submit("alexnet", {**TINY, "data_dir": str(data)})

    # Data sets: the small synthetic set the first run generated, with its counts
    deadline = time.monotonic() + 240
    while True:  # the page names the set in its URL: until it exists, it shows another
        page.goto(f"{url}/datasets?set=synthetic-small/crops")
        settle(page)
        if page.get_by_text("Synthetic shapes, crops (small)").count():
            break
        assert time.monotonic() < deadline, jobs.log_tail(first)
        time.sleep(2)
    page.get_by_text("Explore").first.wait_for()
    shot(page, "01-datasets")
    assert page.get_by_text("val 48").count() >= 1  # 4 classes x 12 held-out crops

    # Runs, then the first run's Job page once it has finished
    finished = wait_for(first, {"FINISHED", "FAILED", "KILLED"})
    assert finished["status"] == "FINISHED", jobs.log_tail(first)
    page.goto(f"{url}/runs")
    shot(page, "02-runs-one")
    assert any(first in cell for cell in cells(page))  # its row links to its Job page
    page.goto(f"{url}/job?run={first}")
    page.get_by_text("Finished.").wait_for()
    shot(page, "03-job-first")

    # Clone, change the learning rate, Train
    page.get_by_role("link", name="Clone", exact=True).click()
    page.wait_for_url(re.compile(r"/new_run\?clone="))
    settle(page)
    lr = page.get_by_label("lr", exact=True)
    assert float(lr.input_value()) == float(finished["params"]["lr"]) == 0.001
    lr.fill("0.003")
    lr.press("Enter")
    settle(page)
    page.get_by_text("changed — was 0.001").wait_for()
    shot(page, "04-clone")
    assert "0.003" in page.locator("[data-testid='stAlert']").first.inner_text()
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_url(re.compile(r"/job\?run="))
    clone = page.url.split("run=")[1]

    # the clone's Job page while it trains: its graph gains a point per epoch
    seen = []  # (epoch counter, epochs with a train_loss point), each new state once
    while (status := tracking.get_run(clone)["status"]) in view.LIVE:
        bar = page.locator("[data-testid='stProgress']").all_inner_texts()  # does not wait
        counter = re.search(r"epoch (\d+) of", bar[0]) if bar else None
        charted = chart_epochs(page).get("train_loss", set()) if counter else set()
        state = (int(counter.group(1)) if counter else None, frozenset(charted))
        if status == "RUNNING" and counter and state not in seen:
            seen.append(state)
            shot(page, f"05-job-live-epoch-{state[0]}")
        time.sleep(0.25)
    grown = [len(epochs) for _, epochs in seen if epochs]
    assert all(e == set(range(1, len(e) + 1)) for _, e in seen), seen  # epochs 1..k drawn
    assert grown == sorted(grown) and grown[0] < grown[-1], seen  # it grew while running
    counters = [c for c, _ in seen]
    assert counters == sorted(counters) and counters[-1] > counters[0], seen
    assert status == "FINISHED", jobs.log_tail(clone)

    # the store: the clone is the first run but for lr (and its own folder), cloned_from set
    before, after = tracking.get_run(first), tracking.get_run(clone)
    names = [f["name"] for f in tracking.config_fields("alexnet")]
    differ = {k for k in names if before["params"].get(k) != after["params"].get(k)}
    assert differ == {"lr", "out_dir"}
    assert float(after["params"]["lr"]) == 0.003
    assert after["tags"]["cloned_from"] == first

    # Compare: both curves in every chart, the lr row differs, the best on validation named
    page.goto(f"{url}/compare?runs={first},{clone}")
    page.get_by_text("Best on validation").wait_for()
    shot(page, "06-compare")
    labels = {view.label(before), view.label(after)}
    charts = page.locator("[data-testid='stVegaLiteChart']")
    assert charts.count() >= 3  # validation accuracy and loss, training loss, lr, ...
    for i in range(charts.count()):
        legend = charts.nth(i).locator(LEGEND).all_text_contents()
        assert labels <= set(legend), legend
        assert {frozenset(e) for e in chart_epochs(page, i).values()} == {EPOCHS}
    settings = cells(page, 0)
    row = settings.index("lr")
    assert settings[row : row + 3] == ["lr", "0.001", "0.003"]
    accuracy = {r["run_id"]: r["metrics"]["val_accuracy"] for r in (before, after)}
    named = page.locator("[data-testid='stAlert']").first.inner_text()
    best = next(r for r in (before, after) if view.label(r) in named)
    assert accuracy[best["run_id"]] == max(accuracy.values())
    assert f"{accuracy[best['run_id']]:.4f}" in named

    # Export the clone to ONNX from its Job page, then Test many on the synthetic val split
    page.goto(f"{url}/job?run={clone}")
    page.get_by_role("button", name="Export to ONNX").click()
    page.get_by_text("ONNX: ").wait_for(timeout=240_000)
    shot(page, "07-job-exported")
    onnx = Path(tracking.get_run(clone)["tags"]["onnx"])
    assert onnx.is_file() and onnx.parent.name == f"alexnet-{clone[:8]}"
    page.get_by_role("link", name="Test it").click()
    page.wait_for_url(re.compile(r"\?model=alexnet-"))
    settle(page)
    page.get_by_role("tab", name="Many images").click()
    page.get_by_role("button", name="Test many").wait_for()
    shot(page, "08-test-many-form")
    page.get_by_role("button", name="Test many").click()
    page.locator("[data-testid='stMetric']", has_text="Accuracy").wait_for(timeout=120_000)
    shot(page, "09-test-many-results")
    metrics = {
        m.split("\n")[0]: m.split("\n")[-1]
        for m in page.locator("[data-testid='stMetric']").all_inner_texts()
    }
    reference = test_many.evaluate(
        Predictor(onnx), test_many.dataset_split(catalog.find("synthetic-small/crops", data))
    )
    assert metrics["Images"] == "48"
    assert metrics["Accuracy"] == f"{reference.accuracy:.1%}"


def test_the_digits_bench_at_its_smallest():
    """`make bench`'s digits section, tiny: every measurement comes back and its table reads."""
    from benchmarks import digits_bench

    result = digits_bench.run(clones=1, runs=6, compared=2, images=8, repeats=1)
    clone = result["clone_to_first_point"]
    assert 0 < clone["claimed_s"] <= clone["trainer_started_s"] <= clone["median_s"]
    assert clone["epoch_s"] < clone["median_s"]
    for page in ("runs_page", "compare"):
        assert result[page]["browser"]["median_s"] > result[page]["script"]["median_s"] > 0
    assert result["runs_page"]["navigation"]["median_s"] > 0
    assert result["test_many"]["page"]["images_per_s"] > 0
    assert result["test_many"]["cli"]["images_per_s"] > 0
    assert "| Runs page, 6 runs, chromium |" in digits_bench.table(result)
