"""Jobs: queued runs trained by the trainer's CLI in a child process, one at a time.

Real children and a real MLflow store (SQLite under a temporary $ARTIFACTS). One small data
set is generated once for the module and one uninterrupted run is the reference the others
are compared with.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.harness import TINY_JOB
from models.checkpoint import load_checkpoint
from workshop import jobs, tracking

SMALL = TINY_JOB
TWO_STEPS = {**SMALL, "epochs": "2", "max_steps": "2"}  # the quickest job: a queue's filler


def wait_for(run_id, statuses, timeout=240):
    deadline = time.monotonic() + timeout
    while (run := tracking.get_run(run_id))["status"] not in statuses:
        assert time.monotonic() < deadline, (
            f"{run_id} still {run['status']}: {jobs.log_tail(run_id)}"
        )
        time.sleep(0.2)
    return run


def wait_until(condition, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """$ARTIFACTS in a temporary folder for the whole module; the data set goes beside it.
    Yields the params every job here shares; at the end no job of ours is left running."""
    root = tmp_path_factory.mktemp("jobs")
    mp = pytest.MonkeyPatch()
    mp.setenv("ARTIFACTS", str(root / "artifacts"))
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setenv("OPENBLAS_NUM_THREADS", "1")
    yield {"data_dir": str(root / "data")}
    for run in tracking.list_runs():  # children and runners this module started, by pid
        for key in ("pid", "runner_pid"):
            pid = int(run["tags"].get(key) or 0)
            if pid and jobs._alive(pid, "workshop."):
                os.kill(pid, signal.SIGKILL)
    mp.undo()


@pytest.fixture(scope="module")
def reference(store):
    """An uninterrupted job of SMALL; also measures submit -> the first epoch's metric."""
    start = time.perf_counter()
    run_id = jobs.submit("alexnet", {**SMALL, **store})
    wait_until(
        lambda: tracking.metric_history(run_id, ["train_loss"]).get("train_loss"),
        "the first epoch's metric",
    )
    first_epoch = time.perf_counter() - start
    run = wait_for(run_id, {"FINISHED", "FAILED", "KILLED"})
    print(
        f"\nsubmit -> first epoch's metric {first_epoch:.1f} s, finished in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return run


def weights(out: Path, name: str) -> dict:
    return load_checkpoint(out / name)["state_dict"]


def test_a_job_trains_in_a_child_to_finished_with_its_metrics(reference, store):
    run = reference
    assert run["status"] == "FINISHED", jobs.log_tail(run["run_id"])
    out = Path(run["tags"]["out_dir"])
    assert out == Path(os.environ["ARTIFACTS"]).resolve() / f"alexnet-{run['run_id'][:8]}"
    assert {k: run["params"][k] for k in ("lr", "epochs", "out_dir")} == {
        "lr": "0.001",
        "epochs": "4",
        "out_dir": str(out),
    }
    assert run["tags"]["module"] == "alexnet" and run["tags"]["queued_at"]
    history = json.loads((out / "history.json").read_text())["history"]  # the trainer's own
    logged = tracking.metric_history(run["run_id"], ["val_accuracy"])["val_accuracy"]
    assert logged == [(h["epoch"], pytest.approx(h["val_accuracy"])) for h in history]
    tail = jobs.log_tail(run["run_id"])
    assert "epoch 4/4" in tail and "\r" not in tail
    assert jobs.progress(run) == {"fraction": 1.0, "epoch": 4, "epochs": 4, "seconds_left": 0.0}
    assert jobs.active() is None and jobs.queue() == []

    onnx = jobs.export(run["run_id"])
    assert onnx == out / "model.onnx" and onnx.is_file()
    assert tracking.get_run(run["run_id"])["tags"]["onnx"] == str(onnx)


@pytest.mark.slow
def test_a_second_job_waits_in_the_queue_and_a_queued_one_can_be_cancelled(store):
    first, second, third = (jobs.submit("alexnet", {**TWO_STEPS, **store}) for _ in range(3))
    wait_for(first, {"RUNNING"})
    assert [r["run_id"] for r in jobs.queue()] == [second, third]  # one job at a time
    assert jobs.active()["run_id"] == first

    jobs.cancel(third)
    cancelled = tracking.get_run(third)
    assert cancelled["status"] == "KILLED" and "cancelled" in cancelled["tags"]
    with pytest.raises(jobs.JobError, match="Only a queued job can be cancelled"):
        jobs.cancel(third)
    with pytest.raises(jobs.JobError, match="no checkpoint yet"):
        jobs.export(third)

    assert wait_for(first, {"FINISHED", "FAILED"})["status"] == "FINISHED"
    done = wait_for(second, {"FINISHED", "FAILED"})
    assert done["status"] == "FINISHED"
    assert not Path(cancelled["tags"]["out_dir"]).exists()  # never started


@pytest.mark.slow
def test_abort_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(reference, store):
    start = time.perf_counter()
    run_id = jobs.submit("alexnet", {**SMALL, **store})
    behind = jobs.submit("alexnet", {**TWO_STEPS, **store})
    out = Path(tracking.get_run(run_id)["tags"]["out_dir"])
    running = wait_until(
        lambda: (p := jobs.progress(tracking.get_run(run_id)))["epoch"] >= 1 and p,
        "epoch 1's metrics",
    )
    print(f"\nsubmit -> first epoch's metric, data ready: {time.perf_counter() - start:.1f} s")
    assert 0 < running["fraction"] < 1 and running["epochs"] == 4
    assert running["seconds_left"] > 0

    jobs.abort(run_id)
    killed = wait_for(run_id, {"KILLED", "FAILED", "FINISHED"})
    assert killed["status"] == "KILLED"
    assert load_checkpoint(out / "train_state.pt")["epoch"] < 4, "the job ended before the abort"
    with pytest.raises(jobs.JobError, match="not a running job"):
        jobs.abort(run_id)
    assert wait_for(behind, {"FINISHED", "FAILED"})["status"] == "FINISHED"  # the runner went on

    jobs.resume(run_id)
    resumed = wait_for(run_id, {"FINISHED", "FAILED", "KILLED"}, timeout=300)
    assert resumed["status"] == "FINISHED", jobs.log_tail(run_id)
    assert "resumed from" in jobs.log_tail(run_id, lines=400)
    ref = Path(reference["tags"]["out_dir"])
    for name in ("train_state.pt", "checkpoint.pt"):
        a, b = weights(out, name), weights(ref, name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_child_killed_by_sigkill_fails_with_its_last_log_lines(store):
    run_id = jobs.submit("alexnet", {**SMALL, **store})
    out = Path(tracking.get_run(run_id)["tags"]["out_dir"])
    wait_until(lambda: "alexnet epoch 1" in jobs.tail(out / "train.log"), "the first epoch")
    os.kill(int(tracking.get_run(run_id)["tags"]["pid"]), signal.SIGKILL)
    assert wait_for(run_id, {"FAILED", "KILLED", "FINISHED"})["status"] == "FAILED"
    # a reader may mark it FAILED first (its pid is dead); the runner adds the log's last lines
    failed = wait_until(
        lambda: (r := tracking.get_run(run_id))["tags"].get("log_tail") and r, "the log tail"
    )
    assert failed["status"] == "FAILED"
    assert "data: synthetic-small" in failed["tags"]["log_tail"]
    assert failed["tags"]["exit_code"] == str(-signal.SIGKILL)
    assert jobs.active() is None


def test_a_running_job_whose_process_is_gone_is_found_failed(store, tmp_path):
    """After a restart (the runner and its child gone): active() closes the run FAILED."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "train.log").write_text(
        "data: somewhere\nalexnet epoch 1:  50%|#####     | 1/2\rthe last words\n"
    )
    tags = {"queued_at": jobs._now(), "out_dir": tmp_path, "pid": gone.stdout.strip()}
    run_id = tracking.create_run("alexnet", {}, tags, status="RUNNING")
    assert jobs.active() is None
    failed = tracking.get_run(run_id)
    assert failed["status"] == "FAILED"
    assert failed["tags"]["log_tail"] == "data: somewhere\nthe last words"
    assert failed["tags"]["error"] == "the trainer's process is gone: the last words"


def test_log_tail_shows_each_progress_bar_at_its_last_state(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(
        b"data: 96 crops\n"
        b"alexnet epoch 1:   0%|  | 0/24\ralexnet epoch 1:  50%|# | 12/24\r      \r"
        b"epoch 1/3: train loss 1.385\n"
        b"alexnet epoch 2:  25%|  | 6/24 [00:01<00:03, 5.0batch/s]"
    )
    assert jobs.tail(log, 2) == (
        "epoch 1/3: train loss 1.385\nalexnet epoch 2:  25%|  | 6/24 [00:01<00:03, 5.0batch/s]"
    )
    assert jobs._last_bar(log) == (2, 6, 24, 1.0, 3.0)


@pytest.mark.parametrize(
    "module, params, field, reason",
    [
        ("alexnet", {"lr": "0"}, "lr", "learning rate must be above 0"),
        ("alexnet", {"lr": "fast"}, "lr", "expects float"),
        ("alexnet", {"batch_size": 0}, "batch_size", "batch size must be at least 1"),
        ("detectnet", {"epochs": "0"}, "epochs", "epochs must be at least 1"),
        ("alexnet", {"width": "1.5"}, "width", "0 (auto) or above 0 and at most 1"),
        ("detectnet", {"width": "-0.25"}, "width", "0 (auto) or above 0 and at most 1"),
        ("alexnet", {"colour": "red"}, "colour", "alexnet has no setting 'colour'"),
        ("mlp", {"pretrained": "true"}, "pretrained", "mlp has no setting 'pretrained'"),
        ("alexnet", {"pretrained": "true", "width": "0.25"}, "pretrained", "width 1 only"),
        ("alexnet", {"dataset": "cats-dogs"}, "dataset", "make data DATASET=cats-dogs"),
        ("mlp", {"dataset": "mnist"}, "dataset", "make data DATASET=mnist"),
        ("alexnet", {"dataset": "coco"}, "dataset", "coco is not a data set for alexnet"),
        ("alexnet", {"dataset": "/no/such/folder"}, "dataset", "an image folder that exists"),
        ("alexnet", {"device": "tpu"}, "device", "Unknown device 'tpu'"),
        ("detectnet", {"crop_h": "32"}, "crop_h", "crop height must be at least 64"),
        ("mlp", {"optimizer": "adam"}, "optimizer", "one of lbfgs, cg, gd"),
        ("mlp", {"backend": "jax"}, "backend", "one of auto, numpy, torch"),
        ("alexnet", {"synthetic_size": "big"}, "synthetic_size", "one of full, small"),
        ("alexnet", {"dataset": " "}, "dataset", "Choose a data set: synthetic, cats-dogs"),
        ("no-such", {}, "module", "Unknown module 'no-such'"),
    ],
)
def test_validate_refuses_each_bad_value_with_its_reason(tmp_path, module, params, field, reason):
    reasons = jobs.validate(module, {**params, "data_dir": str(tmp_path)})
    assert list(reasons) == [field] and reason in reasons[field]
    assert reasons[field].endswith(".") and "\n" not in reasons[field]


def test_validate_accepts_the_defaults_and_submit_refuses_what_validate_refuses(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ARTIFACTS", str(tmp_path))
    assert [jobs.validate(m, {}) for m in jobs.MODULES] == [{}, {}, {}]
    assert jobs.validate("alexnet", {"width": 1, "pretrained": True, "lr": 1e-4}) == {}
    assert jobs.validate("alexnet", {"out_dir": "anything", "resume": "true"}) == {}
    with pytest.raises(jobs.JobError, match="lr: The learning rate must be above 0"):
        jobs.submit("alexnet", {"lr": "-1"})
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything was recorded
