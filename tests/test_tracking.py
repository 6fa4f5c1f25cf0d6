"""Run records in MLflow's real SQLite store, written by the real trainers on tiny settings.

The references are what the trainers write themselves (history.json, metrics.json, the
checkpoint), the config dataclasses and the data on disk; never the tracker's own answers.
"""

import dataclasses
import getpass
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest
from helpers import TINY_DETECTNET

from models.checkpoint import load_checkpoint
from workshop import tracking, train_alexnet, train_detectnet, train_mlp
from workshop.cli import parse_config, usage
from workshop.data.digits import load_dataset

ALEXNET = [
    "--synthetic_size=small",
    "--width=0.125",
    "--batch_size=4",
    "--sliding_check=false",
    "--pointing_scenes=1",
    "--max_steps=2",
]
TRAINERS = {  # module -> (trainer, tiny options)
    "mlp": (train_mlp, ["--maxiter=4"]),
    "alexnet": (train_alexnet, [*ALEXNET, "--epochs=2", "--examples=2"]),
    "detectnet": (train_detectnet, [*TINY_DETECTNET, "--synthetic_size=small", "--epochs=2"]),
}
CONFIGS = {
    "mlp": train_mlp.MLPConfig,
    "alexnet": train_alexnet.AlexNetConfig,
    "detectnet": train_detectnet.DetectNetConfig,
}
# The contract's metric names for a history record's keys; the step's own key is not a metric,
# nor is the training pass's seconds (epoch_seconds is the whole epoch).
RENAMED = {"train_images_per_s": "images_per_s"}
NOT_METRICS = {"epoch", "iteration", "train_seconds"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The synthetic data, generated once for the module's tests."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """$ARTIFACTS in tmp_path (the store is <it>/mlflow.db), no job's environment."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv("ARTIFACTS", str(root))
    for name in ("WORKSHOP_RUN_ID", "WORKSHOP_CLONED_FROM", "WORKSHOP_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    return root


def read_json(path):
    return json.loads(path.read_text())


def history_as_metrics(history: list[dict], step: str) -> dict[str, list[tuple[int, float]]]:
    """history.json's records as the (step, value) series the store should hold."""
    series: dict[str, list] = {}
    for record in history:
        for key, value in record.items():
            if key not in NOT_METRICS:
                series.setdefault(RENAMED.get(key, key), []).append((record[step], value))
    return series


def child(python, module: str, args: list[str], **env):
    return subprocess.Popen(
        [python, "-m", f"workshop.train_{module}", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epochs(proc, out, epochs: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        path = out / "history.json"
        if path.is_file() and len(read_json(path)["history"]) >= epochs:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no epoch in time"
        time.sleep(0.05)


@pytest.mark.parametrize("module", list(TRAINERS))
def test_every_trainer_records_its_settings_and_its_numbers(module, store, data_dir):
    trainer, options = TRAINERS[module]
    out = store / module
    argv = [*options, f"--out_dir={out}", f"--data_dir={data_dir}"]
    trainer.main(argv)

    (run,) = tracking.list_runs()
    assert run["module"] == module and run["status"] == "FINISHED"
    cfg = parse_config(CONFIGS[module], argv)  # the settings, as the CLI made them
    settings = {k: v for k, v in run["params"].items() if not k.startswith("data.")}
    assert settings == {k: str(v) for k, v in dataclasses.asdict(cfg).items()}

    step = "iteration" if module == "mlp" else "epoch"
    history = read_json(out / "history.json")["history"]
    expected = history_as_metrics(history, step)
    assert tracking.metric_history(run["run_id"], list(expected)) == expected
    if module != "mlp":
        assert {"train_loss", "val_loss", "lr", "images_per_s", "epoch_seconds"} <= set(expected)

    metrics = read_json(out / "metrics.json")
    finals = {
        "mlp": ["train_accuracy", "test_accuracy", "iterations", "train_seconds"],
        "alexnet": ["val_accuracy", "pointing_accuracy", "train_seconds"],
        "detectnet": ["AP", "AP50", "AP75", "train_seconds"],
    }[module]
    assert {k: run["metrics"][k] for k in finals} == {k: metrics[k] for k in finals}
    if module == "detectnet":
        per_class = {f"per_class_AP.{c}": v for c, v in metrics["per_class_AP"].items()}
        assert {k: run["metrics"][k] for k in per_class} == per_class
    if module == "alexnet":  # the example heatmaps asked for, and no more
        drawn = sorted(p.name for p in out.glob("*_[0-9].png"))
        assert drawn == ["heatmaps_0.png", "heatmaps_1.png", "overlay_0.png", "overlay_1.png"]
    if module == "mlp":
        svm = metrics["baselines"]["svm_rbf"]["test_accuracy"]
        assert run["metrics"]["baselines.svm_rbf.test_accuracy"] == svm
    ranked_by = {"mlp": "test_accuracy", "alexnet": "val_accuracy", "detectnet": "AP"}[module]
    assert tracking.headline(run) == (ranked_by, metrics[ranked_by])

    # The data set's counts, against the files on disk.
    params = run["params"]
    if module == "mlp":
        digits = load_dataset()
        assert params["data.train_images"] == str(len(digits.y_train))
        assert params["data.test_images"] == str(len(digits.y_test))
    elif module == "alexnet":
        crops = data_dir / "synthetic-small" / "crops"
        assert params["data.train_images"] == str(len(list(crops.glob("train/*/*"))))
        assert params["data.val_images"] == str(len(list(crops.glob("val/*/*"))))
    else:
        scenes = data_dir / "synthetic-small" / "scenes"
        coco = read_json(scenes / "train" / "annotations.json")
        assert params["data.train_images"] == str(len(coco["images"]))
        assert params["data.train_boxes"] == str(len(coco["annotations"]))

    tags = run["tags"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert tags["kind"] == ckpt["meta"]["kind"]
    assert tags["out_dir"] == str(out.resolve()) and tags["checkpoint"] == str(
        (out / "checkpoint.pt").resolve()
    )
    assert (tags["pid"], tags["host"], tags["user"]) == (
        str(os.getpid()),
        socket.gethostname(),
        getpass.getuser(),
    )
    recorded = store / "mlruns" / module / run["run_id"] / "artifacts"
    assert (recorded / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()


def failed_run(error, data_dir, out, *extra) -> dict:
    """The run of a tiny AlexNet that stops with ``error``; the SIGTERM handler is checked."""
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(error):
        train_alexnet.main(
            [*ALEXNET, "--epochs=2", *extra, f"--out_dir={out}", f"--data_dir={data_dir}"]
        )
    assert signal.getsignal(signal.SIGTERM) is handler  # the trainer's own one is gone
    (run,) = tracking.list_runs()
    return run


def test_a_crash_is_recorded_failed_with_its_reason(store, data_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the pointing game fell over")

    monkeypatch.setattr(train_alexnet, "pointing_game", broken)  # after the last epoch
    run = failed_run(RuntimeError, data_dir, store / "a")
    assert run["status"] == "FAILED"
    assert run["tags"]["error"] == "RuntimeError: the pointing game fell over"
    history = read_json(store / "a" / "history.json")["history"]
    logged = tracking.metric_history(run["run_id"], ["val_loss"])["val_loss"]
    assert logged == [(h["epoch"], h["val_loss"]) for h in history] and len(logged) == 2


def test_a_diverged_run_is_recorded_failed_with_its_reason(store, data_dir):
    run = failed_run(SystemExit, data_dir, store / "a", "--lr=1.0")
    assert run["status"] == "FAILED"
    assert run["tags"]["error"].startswith("error: training diverged: loss")


@pytest.mark.slow
def test_sigterm_ends_killed_and_resume_continues_the_same_run(store, data_dir, python):
    out = store / "alexnet"
    args = [*ALEXNET, "--epochs=4", "--max_steps=3", f"--out_dir={out}", f"--data_dir={data_dir}"]
    proc = child(python, "alexnet", args)
    wait_for_epochs(proc, out, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err and "recorded as KILLED" in err
    assert "INFO" not in err and "alembic" not in err  # MLflow's own chatter stays out

    (killed,) = tracking.list_runs()
    done = read_json(out / "history.json")["history"]
    assert killed["status"] == "KILLED" and killed["tags"]["error"] == "stopped by SIGTERM"
    assert len(done) < 4, "the run ended before SIGTERM"
    logged = tracking.metric_history(killed["run_id"], ["val_loss"])["val_loss"]
    assert logged == [(h["epoch"], h["val_loss"]) for h in done]  # every saved epoch, no more

    resumed = child(python, "alexnet", [*args, "--resume=true"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    (run,) = tracking.list_runs()  # still one run: the same one, continued
    assert run["run_id"] == killed["run_id"] and run["status"] == "FINISHED"
    history = read_json(out / "history.json")["history"]
    expected = history_as_metrics(history, "epoch")
    assert tracking.metric_history(run["run_id"], list(expected)) == expected
    raw = tracking.client().get_metric_history(run["run_id"], "val_loss")
    assert sorted(m.step for m in raw) == [1, 2, 3, 4]  # the resumed run logged only new epochs
    assert run["params"]["resume"] == "False"  # params are written once


@pytest.mark.slow
def test_a_job_run_is_continued_by_its_trainer(store, data_dir, python):
    """The jobs' path: a SCHEDULED run, then the trainer started with WORKSHOP_RUN_ID."""
    out = store / "mlp-job"
    run_id = tracking.create_run(
        "mlp", {"maxiter": 3}, {"out_dir": str(out), "cloned_from": "abc"}, root=store
    )
    assert tracking.get_run(run_id)["status"] == "SCHEDULED"
    args = ["--maxiter=3", "--baselines=false", f"--out_dir={out}"]
    proc = child(python, "mlp", args, WORKSHOP_RUN_ID=run_id)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    (run,) = tracking.list_runs()
    assert run["run_id"] == run_id and run["status"] == "FINISHED"
    assert run["tags"]["cloned_from"] == "abc" and run["params"]["maxiter"] == "3"
    history = read_json(out / "history.json")["history"]
    assert tracking.metric_history(run_id, ["cost"])["cost"] == [
        (h["iteration"], h["cost"]) for h in history
    ]
    tracking.tag_run(run_id, {"onnx": str(out / "model.onnx")})  # what an export adds
    assert tracking.get_run(run_id)["tags"]["onnx"] == str(out / "model.onnx")

    cancelled = tracking.create_run("mlp", {}, {}, root=store)  # a queued job, cancelled
    tracking.set_status(cancelled, "KILLED", error="cancelled in the queue")
    run = tracking.get_run(cancelled)
    assert (run["status"], run["tags"]["error"]) == ("KILLED", "cancelled in the queue")


@pytest.mark.slow
def test_a_run_whose_process_died_is_marked_failed(store, data_dir, python):
    out = store / "alexnet"
    args = [*ALEXNET, "--epochs=50", f"--out_dir={out}", f"--data_dir={data_dir}"]
    proc = child(python, "alexnet", args)
    wait_for_epochs(proc, out, 1)
    (running,) = tracking.list_runs()
    assert running["status"] == "RUNNING" and running["tags"]["pid"] == str(proc.pid)
    proc.send_signal(signal.SIGKILL)  # nothing of the trainer's runs after this
    proc.communicate(timeout=60)

    (run,) = tracking.list_runs()
    assert run["status"] == "FAILED" and str(proc.pid) in run["tags"]["error"]
    stored = tracking.client().get_run(run["run_id"]).info
    assert stored.status == "FAILED" and stored.end_time  # written back, not only shown


@pytest.mark.slow
def test_under_torchrun_only_the_main_rank_records(store, data_dir, python):
    out = store / "ddp"
    args = [*ALEXNET, "--epochs=1", "--batch_size=16", "--max_steps=3", f"--out_dir={out}"]
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*torchrun, "-m", "workshop.train_alexnet", *args, f"--data_dir={data_dir}"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_json(out / "metrics.json")["world_size"] == 2
    (run,) = tracking.list_runs()  # one run, from rank 0
    assert run["status"] == "FINISHED" and "tracking off" not in done.stderr
    expected = history_as_metrics(read_json(out / "history.json")["history"], "epoch")
    assert tracking.metric_history(run["run_id"], list(expected)) == expected


def garbage(path):
    path.write_bytes(b"these are not the runs you are looking for\n" * 100)


def another_programs_database(path):
    with sqlite3.connect(path) as db:  # tables named like MLflow's, of another schema
        db.execute("CREATE TABLE experiments (name TEXT)")
        db.execute("CREATE TABLE runs (id INTEGER, note TEXT)")


def unopened_store(path):
    """A good, empty store at path that this process has not opened (MLflow keeps the stores
    it opened, checked, for the process's life)."""
    tracking.client(path.parent / "made")
    path.write_bytes((path.parent / "made" / "mlflow.db").read_bytes())


def older_mlflow(path):
    """A store whose schema is an older MLflow's (its recorded migration revision)."""
    unopened_store(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")


BROKEN = {
    "garbage": (garbage, "is not an SQLite file"),
    "another schema": (another_programs_database, "is the database of another program"),
    "older MLflow": (older_mlflow, "was written by another MLflow"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_store_is_one_sentence_and_training_goes_on(kind, store, capsys):
    make, reason = BROKEN[kind]
    path = tracking.store_path()
    path.parent.mkdir(parents=True)
    make(path)
    before = path.read_bytes()
    capsys.readouterr()

    out = store / "mlp"
    train_mlp.main(["--maxiter=3", "--baselines=false", f"--out_dir={out}"])
    said = capsys.readouterr()
    (line,) = [line for line in (said.out + said.err).splitlines() if "tracking" in line]
    assert line.startswith(f"tracking off: the run store {path} {reason}")
    assert line.endswith(f"; training goes on, results still in {out.resolve()}/")
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()
    assert path.read_bytes() == before  # the participant's file is left as it was

    for read in (tracking.list_runs, lambda: tracking.get_run("0" * 32)):
        with pytest.raises(tracking.TrackingError) as err:
            read()
        assert reason in str(err.value) and "\n" not in str(err.value)


def test_a_locked_store_is_one_sentence_and_training_goes_on(store, capsys):
    path = tracking.store_path()
    path.parent.mkdir(parents=True)
    unopened_store(path)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        out = store / "mlp"
        train_mlp.main(["--maxiter=3", "--baselines=false", f"--out_dir={out}"])
        err = capsys.readouterr().err
        assert err.count("tracking off:") == 1 and f"{path} is locked by another process" in err
        assert (out / "checkpoint.pt").is_file()
    finally:
        lock.close()
    assert tracking.list_runs() == []  # unlocked: the store is fine, and holds no run


@pytest.mark.parametrize("module", list(CONFIGS))
def test_params_come_back_as_the_config_they_were(module, store):
    """Every field changed from its default, through the store's strings and back."""
    changed = {}
    for f in dataclasses.fields(CONFIGS[module]):
        default = f.default
        changed[f.name] = {
            bool: lambda v: not v,
            int: lambda v: v + 3,
            float: lambda v: v * 0.5 + 0.125,
            str: lambda v: v + " changed",
        }[type(default)](default)
    cfg = CONFIGS[module](**changed)
    with tracking.Tracker.start(module, cfg, out=store / module) as tracker:
        pass
    run = tracking.get_run(tracker.run_id)
    assert tracking.params_to_config(module, run["params"]) == cfg

    fields = tracking.config_fields(module)
    assert [f["name"] for f in fields] == [f.name for f in dataclasses.fields(CONFIGS[module])]
    shown = usage(CONFIGS[module]).splitlines()[1:]  # what --help prints, one line per field
    for field, line in zip(fields, shown):
        assert line.startswith(f"  --{field['name']}={field['default']!s}")
        assert line.endswith(field["comment"]) and field["comment"]


def test_a_bad_param_is_one_sentence(store):
    with pytest.raises(tracking.TrackingError, match=r"^--epochs expects int, got 'many'$"):
        tracking.params_to_config("alexnet", {"epochs": "many"})


def test_tracking_off_records_nothing(store, monkeypatch):
    monkeypatch.setenv("WORKSHOP_TRACKING", "off")
    tracker = tracking.Tracker.start("mlp", train_mlp.MLPConfig(), out=store / "mlp")
    assert not tracker.on and tracker.run_id is None
    assert not tracking.store_path().exists()


@pytest.mark.slow
def test_the_tracking_bench_measures_both_ways(store, data_dir):
    from benchmarks import tracking_bench

    result = tracking_bench.run(repeats=1, epochs=1, data_dir=data_dir, options=ALEXNET)
    assert result["tracked_epoch_s"] > 0 and result["untracked_epoch_s"] > 0
    assert result["store_created_s"] > 0 and result["log_epoch_s"] > 0
    assert "tracked / untracked" in tracking_bench.table(result)
