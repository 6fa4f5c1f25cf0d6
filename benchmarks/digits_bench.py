"""The DIGITS loop's waits: Clone to the first epoch's point, Runs with 200 runs, Compare of 5,
Test many on 1,000 images in the page beside the CLI.

    python -m benchmarks --only digits

All on the real pieces in a temporary $ARTIFACTS (one MLflow store) and $DATA_DIR: a tiny
AlexNet job (workshop.jobs, the trainer's CLI in a child) trained and exported once, then

- Clone -> first point: jobs.submit of that run's settings with lr changed (what the New run
  page's Train does), until the store holds the clone's first epoch's train_loss (what the
  Job page draws, on its next refresh: up to 2 s later); each clone is aborted there. The
  first epoch's own seconds (epoch_seconds) split start-up from training.
- Runs (200 runs) and Compare (5 runs): `streamlit run` driven by Debian's chromium, from the
  page's URL to the script's end with the table's cells or every chart's points drawn (a
  fresh session each time: what opening the page costs; for Runs also a click on its entry
  in the navigation bar, the page switch of an open app); beside it the page's script alone
  (streamlit's AppTest, the server's share) and a page with nothing to show (/job without a
  run: Streamlit's own cost of opening a page). The store holds exactly 200 runs, recorded as a
  trainer leaves them (every config field, 5 epochs of 4 metrics).
- Test many on 1,000 synthetic crops (250 per class, a labelled folder): the Test page's
  button to its accuracy shown, and `python -m streamlit_app.test_many` on the same folder
  and model (its own images/s, and the command's wall time with its start-up).

Medians of a few repeats; the first of each is a warm-up and reported apart. The machine's
load average is kept with the numbers: other work on the same cores slows every one of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks.harness import CHROMIUM, DONE, ROOT, TINY_JOB, app_server, chromium

GOALS = {"runs_page_s": 1.0, "compare_s": 1.0}
TINY = TINY_JOB
CHARTS_DRAWN = (
    "() => { const c = document.querySelectorAll(\"[data-testid='stVegaLiteChart']\");"
    " return c.length > 0 && Array.from(c).every("
    "e => e.querySelector('g.mark-symbol.role-mark path')); }"
)
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
CELLS_DRAWN = "() => document.querySelector(\"[data-testid^='glide-cell']\") !== null"


def _wait(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return found


def _finished(run_id: str) -> dict:
    from workshop import jobs, tracking

    run = _wait(
        lambda: (r := tracking.get_run(run_id))["status"] not in ("SCHEDULED", "RUNNING") and r,
        f"run {run_id} to end",
    )
    if run["status"] != "FINISHED":
        raise RuntimeError(f"the tiny job ended {run['status']}: {jobs.log_tail(run_id)}")
    return run


def clone_to_first_point(first: dict) -> dict:
    """Seconds from submitting a clone (lr changed) to: the runner claiming it, its trainer's
    run record started (imports done), and its first epoch's metric in the store; and that
    epoch's own seconds. The clone is aborted there."""
    from streamlit_app import runs_view as view
    from workshop import jobs, tracking

    values = {**view.initial_values("alexnet", first), "lr": 0.003}
    start = time.perf_counter()
    run_id = jobs.submit("alexnet", values, cloned_from=first["run_id"])
    marks = {}  # what -> seconds since the submit
    checks = {
        "claimed_s": lambda run: run["status"] != "SCHEDULED",
        "trainer_started_s": lambda run: "started_at" in run["tags"],
        "seconds": lambda run: tracking.metric_history(run_id, ["train_loss"])["train_loss"],
    }

    def first_point() -> bool:
        run = tracking.get_run(run_id)
        for what, check in checks.items():
            if what not in marks and check(run):
                marks[what] = time.perf_counter() - start
        return "seconds" in marks

    _wait(first_point, "the clone's first epoch")
    epoch = tracking.metric_history(run_id, ["epoch_seconds"])["epoch_seconds"]
    jobs.abort(run_id)
    return {**marks, "epoch_s": epoch[0][1] if epoch else None}


def record_runs(n: int) -> list[str]:
    """n finished AlexNet runs as a trainer leaves them (every config field as a param, data
    params, 5 epochs of train/val loss, val accuracy and lr); lr and seed vary."""
    from mlflow.entities import Metric

    from workshop import tracking

    client = tracking.client()
    ids = []
    for k in range(n):
        settings = {**TINY, "lr": 0.001 * (1 + k % 4), "seed": k % 3}
        cfg = tracking.params_to_config("alexnet", {k: str(v) for k, v in settings.items()})
        params = {**dataclasses.asdict(cfg), "data.name": "synthetic-small"}
        run_id = tracking.create_run("alexnet", params, {}, status="RUNNING")
        now = int(time.time() * 1000)
        metrics = [
            Metric(name, value * (1 - 0.1 * epoch), now, epoch)
            for epoch in range(1, 6)
            for name, value in (
                ("train_loss", 1.4),
                ("val_loss", 1.45),
                ("val_accuracy", 0.3 + 0.01 * (k % 7)),
                ("lr", cfg.lr),
            )
        ]
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    return ids


def page_seconds(page, url: str, drawn: str, repeats: int) -> dict:
    """Open ``url`` repeats + 1 times: seconds to the script's end with ``drawn`` true."""
    times = []
    for _ in range(repeats + 1):
        page.goto("about:blank")
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(drawn, timeout=120_000)
        page.wait_for_selector(DONE, timeout=120_000)
        times.append(time.perf_counter() - start)
        if page.locator("[data-testid='stException']").count():
            raise RuntimeError(f"{url}: {page.locator('[data-testid=stException]').inner_text()}")
    return {"median_s": statistics.median(times[1:]), "first_s": times[0], "runs": times[1:]}


def navigation_seconds(page, url: str, path: str, drawn: str, repeats: int) -> dict:
    """From the empty Job page, a click on the top navigation's link to ``path``: seconds to the
    script's end with ``drawn`` true (a page switch in the same session: no reload)."""
    times = []
    for _ in range(repeats + 1):
        page.goto(f"{url}/job")
        page.wait_for_selector(DONE, timeout=120_000)
        start = time.perf_counter()
        page.locator(f"[data-testid='stTopNavLink'][href$='/{path}']").click()
        page.wait_for_function(drawn, timeout=120_000)
        page.wait_for_selector(DONE, timeout=120_000)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times[1:]), "first_s": times[0], "runs": times[1:]}


def script_seconds(page_file: str, repeats: int, **query) -> dict:
    """The page's script alone (AppTest through the app's navigation), repeats runs."""
    from streamlit.testing.v1 import AppTest

    app = ROOT / "streamlit_app" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(str(app.parent / "pages" / page_file))
    at.run()  # warm-up: imports, the first store connection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    if at.exception:
        raise RuntimeError(f"{page_file}: {at.exception[0].value}")
    return {"median_s": statistics.median(times), "runs": times}


def many_in_page(page, url: str, model: str, folder: Path, images: int, repeats: int) -> dict:
    """Test many in the page on ``folder``: seconds from the button to the accuracy shown."""
    page.goto(f"{url}/?tab=many&model={model}")
    page.get_by_text("A folder with one subfolder per class").click()
    box = page.get_by_label("Folder", exact=True)
    box.fill(str(folder))
    box.press("Enter")
    page.wait_for_timeout(300)
    page.wait_for_selector(DONE, timeout=120_000)
    page.get_by_label("At most this many images").fill("0")  # 0: every image
    page.get_by_label("At most this many images").press("Enter")
    page.wait_for_timeout(300)
    page.wait_for_selector(DONE, timeout=120_000)
    times, reported = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        page.get_by_role("button", name="Test many").click()
        page.wait_for_selector(RUNNING, timeout=60_000)
        page.wait_for_selector(DONE, timeout=300_000)
        times.append(time.perf_counter() - start)
        metrics = page.locator("[data-testid='stMetric']").all_inner_texts()
        values = {m.split("\n")[0]: m.split("\n")[-1] for m in metrics}
        if values.get("Images") != f"{images:,}":
            raise RuntimeError(f"Test many scored {values.get('Images')} images, not {images}")
        reported.append(float(values["Images/s"].replace(",", "")))
    median = statistics.median(times[1:])
    return {
        "median_s": median,
        "first_s": times[0],
        "images_per_s": images / median,
        "reported_images_per_s": statistics.median(reported[1:]),
        "accuracy": values["Accuracy"],
    }


def many_in_cli(model: Path, folder: Path, repeats: int) -> dict:
    """`python -m streamlit_app.test_many FOLDER --model MODEL`: its images/s and wall time."""
    walls, speeds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "streamlit_app.test_many", str(folder), f"--model={model}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        walls.append(time.perf_counter() - start)
        speeds.append(json.loads(done.stdout)["images_per_s"])
    return {
        "images_per_s": statistics.median(speeds),
        "wall_s": statistics.median(walls),
        "runs": speeds,
    }


def _stop_children() -> None:
    """Trainers and runners the jobs here started (by pid), should any outlive the bench."""
    from workshop import jobs, tracking

    for run in tracking.list_runs():
        for key in ("pid", "runner_pid"):
            pid = int(run["tags"].get(key) or 0)
            if pid and jobs._alive(pid, "workshop."):
                os.kill(pid, signal.SIGKILL)


def run(
    clones: int = 3, runs: int = 200, compared: int = 5, images: int = 1000, repeats: int = 5
) -> dict:
    if not Path(CHROMIUM).is_file():
        return {"skipped": f"{CHROMIUM} is missing (apt-get install chromium)"}
    import numpy as np

    from models import synthetic
    from workshop import jobs, tracking

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {
            "ARTIFACTS": str(tmp / "artifacts"),
            "DATA_DIR": str(tmp / "data"),
            "WORKSHOP_TRACKING": "on",  # `python -m benchmarks` turns it off; jobs need it
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
        }
        with mock.patch.dict("os.environ", env):
            try:
                first = _finished(jobs.submit("alexnet", {**TINY, "data_dir": env["DATA_DIR"]}))
                onnx = jobs.export(first["run_id"])
                clone = [clone_to_first_point(first) for _ in range(clones)]
                record_runs(runs - len(tracking.list_runs()))
                every = [r["run_id"] for r in tracking.list_runs()]
                folder = tmp / "data" / "many"
                per_class = images // (len(synthetic.CLASSES) + 1)
                synthetic.write_crops(folder, "val", per_class, np.random.default_rng(7), 90)
                folder = folder / "crops" / "val"
                load = os.getloadavg()
                compare = ",".join(every[:compared])
                with app_server(tmp / "artifacts") as (url, _), chromium() as browser:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    empty = page_seconds(page, f"{url}/job", "() => true", repeats)
                    runs_page = page_seconds(page, f"{url}/runs", CELLS_DRAWN, repeats)
                    runs_nav = navigation_seconds(page, url, "runs", CELLS_DRAWN, repeats)
                    compare_page = page_seconds(
                        page, f"{url}/compare?runs={compare}", CHARTS_DRAWN, repeats
                    )
                    many = many_in_page(
                        page, url, onnx.parent.name, folder, images, max(1, repeats // 2)
                    )
                runs_script = script_seconds("runs.py", repeats)
                compare_script = script_seconds("compare.py", repeats, runs=compare)
                cli = many_in_cli(onnx, folder, max(1, repeats // 2))
                load = [max(a, b) for a, b in zip(load, os.getloadavg())]
            finally:
                _stop_children()
    medians = {
        key: statistics.median(found)
        for key in ("claimed_s", "trainer_started_s", "epoch_s")
        if (found := [c[key] for c in clone if c.get(key) is not None])
    }
    return {
        "job": " ".join(f"--{k}={v}" for k, v in TINY.items()),
        "clone_to_first_point": {
            "median_s": statistics.median(c["seconds"] for c in clone),
            **medians,
            "runs": clone,
        },
        "empty_page": empty,
        "runs_page": {
            "runs": runs,
            "browser": runs_page,
            "navigation": runs_nav,
            "script": runs_script,
        },
        "compare": {"runs": compared, "browser": compare_page, "script": compare_script},
        "test_many": {"images": images, "page": many, "cli": cli},
        "goals": GOALS,
        "load_average": load,
    }


def table(result: dict) -> str:
    if "skipped" in result:
        return f"DIGITS loop: skipped ({result['skipped']})"
    c, r, m = result["clone_to_first_point"], result["runs_page"], result["compare"]
    t = result["test_many"]
    page, cli = t["page"], t["cli"]
    parts = ", ".join(
        f"{what} {c[key]:.1f} s"
        for key, what in (
            ("claimed_s", "the runner took it at"),
            ("trainer_started_s", "the trainer's record started at"),
            ("epoch_s", "the epoch itself"),
        )
        if key in c
    )
    return "\n".join(
        [
            f"DIGITS loop (tiny AlexNet job: {result['job']}); load average "
            f"{' '.join(f'{x:.1f}' for x in result['load_average'])} while it ran:",
            "",
            "| step | median | goal | note |",
            "| --- | --- | --- | --- |",
            f"| Clone -> first epoch's point in the store | {c['median_s']:.1f} s | - | {parts}; "
            "the Job page draws it within 2 s |",
            f"| a page with nothing to show (/job), chromium | "
            f"{result['empty_page']['median_s']:.2f} s | - | Streamlit's own cost of opening a "
            "page: a fresh session each time |",
            f"| Runs page, {r['runs']} runs, chromium | {r['browser']['median_s']:.2f} s "
            f"| {GOALS['runs_page_s']:.0f} s | script alone {r['script']['median_s']:.2f} s; "
            f"first open {r['browser']['first_s']:.2f} s |",
            f"| Runs page, {r['runs']} runs, chromium, from the navigation bar | "
            f"{r['navigation']['median_s']:.2f} s | {GOALS['runs_page_s']:.0f} s | "
            "a page switch in the open app |",
            f"| Compare, {m['runs']} runs, chromium | {m['browser']['median_s']:.2f} s "
            f"| {GOALS['compare_s']:.0f} s | script alone {m['script']['median_s']:.2f} s; "
            f"first open {m['browser']['first_s']:.2f} s |",
            f"| Test many, {t['images']:,} images, page | {page['median_s']:.2f} s "
            f"({page['images_per_s']:.0f} images/s) | - | the page's own count "
            f"{page['reported_images_per_s']:.0f} images/s; accuracy {page['accuracy']} |",
            f"| Test many, {t['images']:,} images, CLI | {t['images'] / cli['images_per_s']:.2f} s "
            f"({cli['images_per_s']:.0f} images/s) | - | the command with its start-up "
            f"{cli['wall_s']:.1f} s |",
        ]
    )
