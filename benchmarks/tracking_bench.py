"""What recording runs in MLflow costs: a small AlexNet run's epochs tracked vs untracked.

    python -m benchmarks --only tracking

The two kinds of run alternate (tracked first, then untracked first, ...) in this process on
the same settings, each into a fresh store in a temporary $ARTIFACTS, and are compared by
their medians. An epoch's time is the run's time in the loop (metrics.json's train_seconds,
which includes every epoch's record) over its epochs. Beside them, timed directly: one
epoch's record (Tracker.log_epoch), the store's creation (a new mlflow.db: MLflow's tables)
and a run's start on an existing store. The goal: tracking costs at most 2 % of an epoch.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks.realdata import quietly
from workshop import tracking, train_alexnet

GOAL = 0.02  # tracking's share of an epoch, at most
# A small run whose epochs are short (about a second on 2 CPU cores): the per-epoch cost of
# tracking is a fixed few milliseconds, so the shorter the epoch, the larger its share.
OPTIONS = (
    "--synthetic_size=small",
    "--batch_size=32",
    "--sliding_check=false",
    "--pointing_scenes=1",
    "--examples=0",
)


def _epoch_seconds(root: Path, out: Path, data_dir: Path, options, epochs: int, on: bool) -> float:
    env = {"ARTIFACTS": str(root), "WORKSHOP_TRACKING": "on" if on else "off"}
    argv = [*options, f"--epochs={epochs}", f"--out_dir={out}", f"--data_dir={data_dir}"]
    with mock.patch.dict("os.environ", env):
        metrics = quietly(train_alexnet.main, argv)
    return metrics["train_seconds"] / metrics["epochs"]


def _record_costs(root: Path, record: dict, calls: int = 20) -> dict:
    """Seconds to create a store, to start a run on it, and (median) to log one epoch."""
    with mock.patch.dict("os.environ", {"ARTIFACTS": str(root)}):
        start = time.perf_counter()
        tracking.client()  # a new file: MLflow creates its tables
        created = time.perf_counter() - start
        cfg = train_alexnet.AlexNetConfig()
        start = time.perf_counter()
        tracker = tracking.Tracker.start("alexnet", cfg, out=root / "alexnet")
        started = time.perf_counter() - start
        times = []
        for epoch in range(1, calls + 1):
            start = time.perf_counter()
            tracker.log_epoch({**record, "epoch": epoch})
            times.append(time.perf_counter() - start)
        tracker.end()
    return {
        "store_created_s": created,
        "run_started_s": started,
        "log_epoch_s": statistics.median(times),
    }


def run(repeats: int = 3, epochs: int = 3, data_dir=None, options=OPTIONS) -> dict:
    """``repeats`` runs of each kind, ``epochs`` epochs each; the tests pass tiny options."""
    times: dict[str, list[float]] = {"tracked": [], "untracked": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = Path(data_dir or tmp / "data")
        # data generated and cached, torch warmed up: neither kind pays for it
        _epoch_seconds(tmp / "warm", tmp / "warm" / "out", data_dir, options, 1, False)
        for i in range(repeats):
            order = (True, False) if i % 2 == 0 else (False, True)
            for on in order:
                root = tmp / f"run{i}-{on}"
                seconds = _epoch_seconds(root, root / "out", data_dir, options, epochs, on)
                times["tracked" if on else "untracked"].append(seconds)
        history = (tmp / "run0-True" / "out" / "history.json").read_text()
        record = json.loads(history)["history"][-1]  # a real epoch's record, logged again
        costs = _record_costs(tmp / "costs", record)
    tracked, untracked = (statistics.median(times[k]) for k in ("tracked", "untracked"))
    return {
        "options": list(options),
        "epochs": epochs,
        "repeats": repeats,
        "tracked_epoch_s": tracked,
        "untracked_epoch_s": untracked,
        "tracked_vs_untracked": tracked / untracked,
        "log_epoch_share": costs["log_epoch_s"] / untracked,
        "goal_share": GOAL,
        "times": times,
        **costs,
    }


def table(result: dict) -> str:
    share = result["log_epoch_share"]
    return "\n".join(
        [
            f"Run tracking (MLflow, SQLite store): AlexNet {' '.join(result['options'])}, "
            f"{result['epochs']} epochs, median of {result['repeats']} runs each:",
            "",
            "| | seconds |",
            "| --- | --- |",
            f"| epoch, tracked | {result['tracked_epoch_s']:.3f} |",
            f"| epoch, untracked | {result['untracked_epoch_s']:.3f} |",
            f"| one epoch's record (log_epoch) | {result['log_epoch_s']:.4f} |",
            f"| a new store (mlflow.db created) | {result['store_created_s']:.2f} |",
            f"| a run's start on a store | {result['run_started_s']:.3f} |",
            "",
            f"tracked / untracked: {result['tracked_vs_untracked']:.3f}x; one epoch's record is "
            f"{share:.2%} of an epoch (goal: at most {result['goal_share']:.0%})",
        ]
    )
