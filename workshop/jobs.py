"""Training jobs: the trainer's own CLI in a child process, queued and run one at a time per user.

    python -m workshop.jobs runner     # the queue runner; submit() and resume() start it

A job is an MLflow run in the store workshop.tracking owns ($ARTIFACTS/mlflow.db), written
through its functions. It walks SCHEDULED (queued) -> RUNNING -> FINISHED | FAILED | KILLED.
``submit`` records it queued, with every setting of the trainer's config as params. The runner
(one per $ARTIFACTS: it holds a lock on $ARTIFACTS/jobs.lock, and is started detached, so it
outlives a reload or a restart of the app) takes the oldest queued run and starts

    python -m workshop.train_<module> --k=v ... --out_dir=$ARTIFACTS/<module>-<run_id[:8]>

in a process group of its own, with WORKSHOP_RUN_ID set: the trainer's Tracker continues that
run (metrics, and FINISHED, or KILLED on Abort's SIGTERM). Its output goes to
<out_dir>/train.log. A crash, an OOM or an Abort ends the child only, never the app. When the
child has exited and its run is still open (it was SIGKILLed, or tracking was off in it), the
runner closes the run itself: a failure gets the log's last lines. The runner stops when the
queue is empty.

A job's tags, besides the Tracker's: queued_at (ISO time; the tag that makes a run a job),
cwd (where relative paths in its settings point), out_dir, runner_pid and pid (the child),
cloned_from, and as it goes: abort_requested, cancelled, resume ("true"), exit_code, error and
log_tail (a failure's last line, its last lines), onnx (once exported).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import getpass
import importlib
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException

from models.artifacts import artifacts_root
from workshop import tracking
from workshop.cli import parse_config
from workshop.data.prepare import OFFLINE_DEFAULT, resolve

REPO = Path(__file__).resolve().parents[1]
MODULES = tracking.MODULES
RESUMABLE = ("alexnet", "detectnet")  # the engine's exact resume (workshop/resume.py)
# module -> the data set it generates itself, and the one `make data` prepares for it
GENERATED = {"mlp": "digits", "alexnet": "synthetic", "detectnet": "synthetic"}
PREPARED = {"mlp": "mnist", "alexnet": "cats-dogs", "detectnet": "coco"}
# module -> what a data set given as a path must be
DATA_PATHS = {
    "mlp": ("an ex4data1.mat file", Path.is_file),
    "alexnet": ("an image folder", Path.is_dir),
    "detectnet": ("a COCO JSON file", Path.is_file),
}
SET_BY_JOB = ("out_dir", "resume")  # a job's own folder, and resume() decides --resume
MAX_WIDTH = 1.0  # width 1 is torchvision's AlexNet; the multiplier only thins it
ABORT_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this
EXPORT_TIMEOUT_S = 900
FAILURE_LINES = 20  # log lines kept with a failed run (tag log_tail)
# what the last attempt of a resumed run said about its end: emptied (tags stay once set)
STALE_TAGS = ("abort_requested", "exit_code", "error", "log_tail", "mlflow.note.content")
OPEN = ("SCHEDULED", "RUNNING")


class JobError(ValueError):
    """Something a user asked that cannot be done; str(err) is one sentence."""


# ------------------------------------------------------------------ settings and their checks


def _above(limit, what):
    return lambda v: None if v > limit else f"{what} must be above {limit:g}, not {v:g}."


def _at_least(limit, what):
    return lambda v: None if v >= limit else f"{what} must be at least {limit:g}, not {v:g}."


def _between(low, high, what):
    return lambda v: None if low <= v <= high else f"{what} must be {low:g} to {high:g}, not {v:g}."


def _one_of(choices, what):
    return lambda v: (
        None if v in choices else f"{what} must be one of {', '.join(choices)}, not {v!r}."
    )


def _width(v):
    if v == 0 or 0 < v <= MAX_WIDTH:
        return None
    return f"The width must be 0 (auto) or above 0 and at most {MAX_WIDTH:g}, not {v:g}."


def _device(v):
    """workshop.distributed.pick_device's rule, without capping this process's GPU share."""
    if v in ("auto", "cpu"):
        return None
    import torch

    try:
        kind = torch.device(v).type
    except RuntimeError:
        return f"Unknown device {v!r}: auto, cpu, cuda or mps."
    present = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if not present.get(kind, False):
        return f"Device {v!r} is not available on this machine."
    return None


# field -> check(typed value) -> reason or None; a field of any module, checked where it exists
CHECKS = {
    "lr": _above(0, "The learning rate"),
    "learning_rate": _above(0, "The learning rate"),
    "batch_size": _at_least(1, "The batch size"),
    "epochs": _at_least(1, "The number of epochs"),
    "width": _width,
    "weight_decay": _at_least(0, "The weight decay"),
    "max_steps": _at_least(0, "max_steps"),
    "maxiter": _at_least(0, "The number of iterations"),
    "hidden_layer_size": _at_least(1, "The hidden layer size"),
    "lambda_": _at_least(0, "The regularization strength lambda"),
    "momentum": _between(0, 1, "The momentum"),
    "epsilon_init": _above(0, "epsilon_init"),
    "crop_h": _at_least(64, "The crop height"),
    "crop_w": _at_least(64, "The crop width"),
    "threshold": _between(0, 1, "The coverage threshold"),
    "cluster_iou": _between(0, 1, "The clustering overlap"),
    "eval_images": _at_least(0, "eval_images"),
    "pointing_scenes": _at_least(0, "pointing_scenes"),
    "examples": _at_least(0, "The number of example heatmaps"),
    "device": _device,  # what this machine has, not only what the trainer names
}
# Other fields with a fixed set of values are checked against their trainer's CHOICES.


def config_class(module: str):
    """The trainer's config dataclass (workshop.visualize's table; imported on first use)."""
    from workshop.visualize import config_class

    return config_class(module)


def trainer(module: str) -> str:
    """The module whose CLI trains ``module``: workshop.train_<module>."""
    return config_class(module).__module__


def _sentence(message: str) -> str:
    text = str(message).removeprefix("error: ").strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _dataset(module: str, cfg) -> str | None:
    """Why cfg.dataset cannot be trained on, the trainer's own rules: generated sets always
    can; `make data`'s sets must be prepared (resolve's message says how); a path must exist."""
    name = cfg.dataset
    if name == GENERATED[module]:
        return None
    if name in OFFLINE_DEFAULT and name != PREPARED[module]:
        return f"{name} is not a data set for {module}: {GENERATED[module]} or {PREPARED[module]}."
    if name == PREPARED[module]:
        categories = [c.strip() for c in getattr(cfg, "categories", "").split(",") if c.strip()]
        try:
            resolve(name, cfg.data_dir, categories or None)
        except SystemExit as err:
            return _sentence(err.code)
        return None
    what, exists = DATA_PATHS[module]
    if not name.strip():
        return f"Choose a data set: {GENERATED[module]}, {PREPARED[module]} or {what}."
    if exists(Path(name)):
        return None
    return (
        f"The data set {name!r} is neither {GENERATED[module]}, {PREPARED[module]} "
        f"nor {what} that exists here."
    )


def _paths(module: str, cfg) -> dict[str, str]:
    """The detector's other path settings, and pretrained weights only where they exist."""
    reasons = {}
    for field in ("images", "val_dataset", "val_images"):
        value = getattr(cfg, field, "")
        if value and not Path(value).exists():
            reasons[field] = f"{value} does not exist."
    init = getattr(cfg, "init", "auto")
    if init not in ("auto", "none") and not Path(init).is_file():
        reasons["init"] = f"The backbone checkpoint {init} does not exist (auto, none or a file)."
    if getattr(cfg, "pretrained", False) and cfg.width != 1:
        reasons["pretrained"] = "Pretrained ImageNet weights exist for width 1 only: set width 1."
    return reasons


def _parse(module: str, params: dict):
    """(config with the params applied, field -> reason); every value parsed as the CLI does."""
    if module not in MODULES:
        return None, {"module": f"Unknown module {module!r}: {', '.join(MODULES)}."}
    cls = config_class(module)
    names = {f.name for f in dataclasses.fields(cls)}
    reasons, values = {}, {}
    for key, value in params.items():
        if key in SET_BY_JOB:
            continue
        if key not in names:
            reasons[key] = f"{module} has no setting {key!r}."
            continue
        try:
            values[key] = getattr(parse_config(cls, [f"--{key}={value}"]), key)
        except SystemExit as err:
            reasons[key] = _sentence(err.code)
    return cls(**values), reasons


def validate(module: str, params: dict) -> dict[str, str]:
    """field -> why its value is refused (one sentence); {} when the job can start.

    ``params`` are the form's values (strings or typed); ``out_dir`` and ``resume`` are
    ignored: the job sets them.
    """
    cfg, reasons = _parse(module, params)
    if cfg is None:
        return reasons
    choices = getattr(importlib.import_module(trainer(module)), "CHOICES", {})
    for f in dataclasses.fields(cfg):
        check = CHECKS.get(f.name)
        if check is None and f.name in choices:
            check = _one_of(tuple(choices[f.name]), f.name)
        if f.name not in reasons and check is not None:
            reason = check(getattr(cfg, f.name))
            if reason:
                reasons[f.name] = reason
    if "dataset" not in reasons and "data_dir" not in reasons:
        reason = _dataset(module, cfg)
        if reason:
            reasons["dataset"] = reason
    for key, reason in _paths(module, cfg).items():
        reasons.setdefault(key, reason)
    return reasons


# --------------------------------------------------------------------------- the store
# Run records are written through workshop.tracking (their one writer); jobs reads a run's
# status and tags raw where a reader's mending (a dead pid marked FAILED) must not come first.


def _root(root=None) -> Path:
    return Path(root or artifacts_root()).resolve()


def _store_errors(fn):
    """A store that cannot be used is no traceback for the page: one sentence, as JobError."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except tracking.TrackingError as err:
            raise JobError(_sentence(str(err))) from None
        except MlflowException as err:  # e.g. the database stayed locked
            said = (str(err.message) or "no message").splitlines()[0]
            raise JobError(f"The run store could not be used: {_sentence(said)}") from None

    return wrapped


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")  # sorts as it reads


def _raw(run_id: str, root=None):
    """(status, tags) as the store has them."""
    try:
        run = tracking.client(_root(root)).get_run(run_id)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise JobError(f"There is no run {run_id!r} in this store.") from None
        raise
    return run.info.status, run.data.tags


def _jobs(status: str, root=None) -> list:
    """MLflow runs with this status that are jobs (queued_at set), oldest queued first."""
    c = tracking.client(_root(root))
    ids = [e.experiment_id for m in MODULES if (e := c.get_experiment_by_name(m)) is not None]
    found = c.search_runs(ids, f"attributes.status = '{status}'") if ids else []
    return sorted(
        (r for r in found if r.data.tags.get("queued_at")), key=lambda r: r.data.tags["queued_at"]
    )


def _short(run_id: str) -> str:
    return f"Run {run_id[:8]}"


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` while a queued run changes hands (claim, cancel, resume)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ----------------------------------------------------------------------------- the API


@_store_errors
def submit(module: str, params: dict, *, cloned_from: str | None = None) -> str:
    """Queue a training job; returns its run id. JobError with the reasons when refused."""
    reasons = validate(module, params)
    if reasons:
        raise JobError(" ".join(f"{k}: {v}" for k, v in reasons.items()))
    cfg, _ = _parse(module, params)
    root = _root()
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out_dir"}
    tags = {
        "user": getpass.getuser(),
        "cwd": os.getcwd(),  # relative paths (data_dir) mean what they meant in the form
        **({"cloned_from": cloned_from} if cloned_from else {}),
    }
    # the folder is named after the run id: the Tracker logs the out_dir param at the start
    run_id = tracking.create_run(module, settings, tags, status="SCHEDULED", root=root)
    out = root / f"{module}-{run_id[:8]}"
    tracking.tag_run(run_id, {"out_dir": out, "queued_at": _now()}, root=root)  # now queued
    ensure_runner(root)
    return run_id


@_store_errors
def cancel(run_id: str) -> None:
    """A queued job leaves the queue, marked KILLED with tag ``cancelled``."""
    root = _root()
    with _locked(root / "jobs.claim.lock"):  # the runner claims under the same lock
        status, _ = _raw(run_id, root)
        if status != "SCHEDULED":
            raise JobError(f"Only a queued job can be cancelled; {_short(run_id)} is {status}.")
        tracking.tag_run(run_id, {"cancelled": _now()}, root=root)
        tracking.set_status(run_id, "KILLED", root=root)


@_store_errors
def abort(run_id: str, *, grace: float = ABORT_GRACE_S) -> None:
    """Stop the running job: SIGTERM to its process group (the trainer's Tracker then ends the
    run KILLED), SIGKILL after ``grace`` seconds; a run whose child is gone is marked KILLED."""
    status, tags = _raw(run_id)
    if status == "SCHEDULED":
        raise JobError(f"{_short(run_id)} is queued, not running: cancel it instead.")
    if status != "RUNNING" or not tags.get("queued_at"):
        raise JobError(f"{_short(run_id)} is not a running job: it is {status}.")
    tracking.tag_run(run_id, {"abort_requested": _now()})
    marker = trainer(tags["module"])
    deadline, termed = time.monotonic() + grace, False
    while True:
        tags = _raw(run_id)[1]
        pid = int(tags.get("pid") or 0)  # none yet: the runner is starting the child
        alive = pid and _alive(pid, marker)
        if pid and not alive:
            break
        if alive and not termed:
            _kill_group(pid, signal.SIGTERM)
            termed = True
        if time.monotonic() > deadline:
            if alive:
                _kill_group(pid, signal.SIGKILL)
            break
        if not pid and not _alive(int(tags.get("runner_pid") or 0), "workshop.jobs"):
            break  # no runner will start it
        time.sleep(0.1)
    if _raw(run_id)[0] in OPEN:  # SIGKILLed, or gone before its Tracker could end the run
        tracking.set_status(run_id, "KILLED")


@_store_errors
def resume(run_id: str) -> None:
    """Queue a KILLED or FAILED alexnet/detectnet run again: it trains on from its last epoch
    (out_dir/train_state.pt, the engine's exact resume) into the same folder and the same run."""
    status, tags = _raw(run_id)
    module = tags.get("module", "")
    if module not in RESUMABLE:
        raise JobError(f"Only {' and '.join(RESUMABLE)} runs can be resumed, not {module}.")
    if status not in ("KILLED", "FAILED"):
        raise JobError(f"Only a killed or failed run can be resumed; {_short(run_id)} is {status}.")
    out = Path(tags.get("out_dir") or "")
    if not (out / "train_state.pt").is_file():
        raise JobError(
            f"{_short(run_id)} stopped before its first epoch ended (no train_state.pt "
            "in its folder): start it again instead."
        )
    root = _root()
    with _locked(root / "jobs.claim.lock"):
        again = {
            **{k: "" for k in STALE_TAGS if tags.get(k)},
            "resume": "true",
            "queued_at": _now(),
            "cwd": tags.get("cwd") or os.getcwd(),  # a CLI run resumed here: this folder
        }
        tracking.tag_run(run_id, again, root=root)
        tracking.set_status(run_id, "SCHEDULED", root=root)
    ensure_runner(root)


@_store_errors
def queue(root=None) -> list[dict]:
    """The queued jobs, oldest (next to run) first."""
    return [tracking.get_run(r.info.run_id, _root(root)) for r in _jobs("SCHEDULED", root)]


@_store_errors
def active(root=None) -> dict | None:
    """The running job, found again from the store; one whose process is gone (the machine
    or the runner died) is closed FAILED with its last log lines."""
    found = None
    for r in _jobs("RUNNING", root):
        tags = r.data.tags
        if tags.get("pid"):
            alive = _alive(int(tags["pid"]), trainer(tags["module"]))
        else:  # claimed by the runner, the child starting
            alive = _alive(int(tags.get("runner_pid") or 0), "workshop.jobs")
        if alive:
            found = found or r.info.run_id
        else:
            _settle(r.info.run_id, None, Path(tags["out_dir"]), root)
    return tracking.get_run(found, _root(root)) if found else None


@_store_errors
def log_tail(run_id: str, lines: int = 40) -> str:
    """The last ``lines`` of the job's train.log, each progress bar at its last state."""
    out = _raw(run_id)[1].get("out_dir")
    return tail(Path(out) / "train.log", lines) if out else ""


def tail(path: Path, lines: int = 40) -> str:
    """A log's last lines as a terminal shows them: text after a carriage return (tqdm's
    redraws) replaces the line's earlier text; blank lines dropped."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    shown = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    return "\n".join([s for s in shown if s][-lines:])


# a tqdm bar: "alexnet epoch 3:  45%|####5     | 11/24 [00:02<00:03, ...]" (no epoch: the MLP's)
BAR = re.compile(r"(?:epoch (\d+):.*?)?(\d+)/(\d+) \[([\d:]+)<([\d:]+)")


def _seconds(clock: str) -> float:
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _last_bar(path: Path):
    """(epoch or None, n, total, elapsed s, left s) of the newest progress bar in the log."""
    for line in reversed(tail(path, 5).splitlines()):
        m = BAR.search(line)
        if m:
            epoch = int(m.group(1)) if m.group(1) else None
            return epoch, int(m.group(2)), int(m.group(3)), *map(_seconds, m.group(4, 5))
    return None


def _steps(run: dict) -> tuple[int, str]:
    """(steps the run takes, the metric logged once per step): epochs, or MLP iterations."""
    p = run["params"]
    if run["module"] == "mlp":
        from workshop.train_mlp import DEFAULT_ITERATIONS

        return int(p.get("maxiter") or 0) or DEFAULT_ITERATIONS[p.get("optimizer", "lbfgs")], "cost"
    return int(p.get("epochs") or 1), "train_loss"


@_store_errors
def progress(run: dict) -> dict:
    """{"fraction", "epoch", "epochs", "seconds_left"} of a run (list_runs/get_run's dict).

    Epochs done from the logged metrics, the running epoch's share from its progress bar in
    train.log, time left from the epoch rate (epoch_seconds, else the bar's own estimate;
    None while nothing tells). For the MLP an epoch is an optimizer iteration.
    """
    total, metric = _steps(run)
    status = run["status"]
    if status == "FINISHED":
        return {"fraction": 1.0, "epoch": total, "epochs": total, "seconds_left": 0.0}
    # one read for both: an epoch logged between two reads would count without its time
    logged = tracking.metric_history(run["run_id"], [metric, "epoch_seconds"])
    history, times = logged.get(metric) or [], logged.get("epoch_seconds") or []
    done = min(total, max((step for step, _ in history), default=0))
    within, per_step = 0.0, (max(times)[1] if times else None)
    out = run["tags"].get("out_dir")
    bar = _last_bar(Path(out) / "train.log") if out and status == "RUNNING" else None
    if bar is not None:
        epoch, n, of, elapsed, left = bar
        if epoch is None and run["module"] == "mlp":  # its bar counts the iterations
            done = min(total, max(done, n))
            if n and of:
                per_step = (elapsed + left) / of
        elif epoch == done + 1 and of:
            within = n / of
            if per_step is None and n:
                per_step = elapsed + left
    left = (total - done - within) * per_step if per_step and status == "RUNNING" else None
    return {
        "fraction": min(1.0, (done + within) / total),
        "epoch": done,
        "epochs": total,
        "seconds_left": left,
    }


@_store_errors
def export(run_id: str) -> Path:
    """<out_dir>/model.onnx through the exporter's CLI in a child process; tags the run ``onnx``."""
    checkpoint = Path(_raw(run_id)[1].get("out_dir") or ".") / "checkpoint.pt"
    if not checkpoint.is_file():
        raise JobError(
            f"{_short(run_id)} has no checkpoint yet: it writes checkpoint.pt when its "
            "training finishes."
        )
    done = subprocess.run(
        [sys.executable, "-m", "exporters", str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT_S,
        env=_env({}),
        cwd=REPO,
    )
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[-1]
        raise JobError(f"The export of {run_id[:8]} failed: {_sentence(said)}")
    onnx = checkpoint.with_name("model.onnx")
    tracking.tag_run(run_id, {"onnx": onnx})
    return onnx


# -------------------------------------------------------------------- processes


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live process whose command line names ``marker`` (a dead job's
    pid reused by another program is not the job)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":  # exited, not yet reaped
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except (OSError, IndexError):
        return False


def _kill_group(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the child leads its own session, so its group id is its pid


def _env(extra: dict) -> dict:
    """A child's environment: this one, the repo importable, output unbuffered."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def ensure_runner(root=None) -> bool:
    """Start the queue runner unless one holds the lock; True when one was started."""
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "jobs.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # it runs, and looks at the queue again before it stops
    with open(root / "jobs-runner.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "workshop.jobs", "runner"],
            env=_env({"ARTIFACTS": str(root)}),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outside the app's process group: a restart does not end it
        )
    return True


def command(run: dict) -> list[str]:
    """The trainer's command line for a queued run: its params as --k=v, its folder, and
    --resume=true when resume() queued it."""
    names = [f.name for f in dataclasses.fields(config_class(run["module"]))]
    params, tags = run["params"], run["tags"]
    return [
        sys.executable,
        "-m",
        trainer(run["module"]),
        *(f"--{k}={params[k]}" for k in names if k in params and k not in SET_BY_JOB),
        f"--out_dir={tags['out_dir']}",
        *(["--resume=true"] if tags.get("resume") == "true" else []),
    ]


def _claim(root: Path) -> dict | None:
    """The oldest queued run, marked RUNNING by this runner; None when the queue is empty."""
    with _locked(root / "jobs.claim.lock"):
        queued = _jobs("SCHEDULED", root)
        if not queued:
            return None
        run_id = queued[0].info.run_id
        # the last attempt's child, if any, is gone: its pid and start time (the Tracker's
        # check against a reused pid) would make the next child look dead
        gone = {"pid": "", "pid_started": "", "runner_pid": os.getpid()}
        tracking.tag_run(run_id, gone, root=root)
        tracking.set_status(run_id, "RUNNING", root=root)
    return tracking.get_run(run_id, root)


def run_job(run: dict, root: Path) -> None:
    """Run one claimed job to its end and make sure its run is closed."""
    run_id, out = run["run_id"], Path(run["tags"]["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    argv = command(run)
    env = {"WORKSHOP_RUN_ID": run_id, "ARTIFACTS": str(root)}
    if run["tags"].get("cloned_from"):
        env["WORKSHOP_CLONED_FROM"] = run["tags"]["cloned_from"]
    with open(out / "train.log", "ab") as log:
        log.write(f"[{_now()}] {' '.join(argv[1:])}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(
                argv,
                cwd=run["tags"].get("cwd") or REPO,
                env=_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Abort signals it whole
            )
        except OSError as err:
            log.write(f"the trainer could not start: {err}\n".encode())
            child = None
    code = None
    if child is not None:
        tracking.tag_run(run_id, {"pid": child.pid}, root=root)
        if _raw(run_id, root)[1].get("abort_requested"):  # aborted while it started
            _kill_group(child.pid, signal.SIGTERM)
        print(f"[{_now()}] {run_id}: pid {child.pid}", flush=True)
        code = child.wait()
    _settle(run_id, code, out, root)
    print(f"[{_now()}] {run_id}: exit status {code}, {_raw(run_id, root)[0]}", flush=True)


def _settle(run_id: str, code: int | None, out: Path, root=None) -> None:
    """Close a run its child left open: KILLED when aborted, FINISHED on a clean exit whose
    tracking was off, else FAILED. A failed run gets the log's last lines: tag ``log_tail``
    (also MLflow's note, shown in its UI) and, unless the trainer said why, ``error``."""
    status, tags = _raw(run_id, root)
    if status in OPEN or (status == "FAILED" and tags.get("abort_requested")):
        final = "FINISHED" if code == 0 else "FAILED"
        final = "KILLED" if tags.get("abort_requested") else final
    else:
        final = status  # ended by its Tracker (or marked FAILED by a reader meanwhile)
    news = {} if code is None else {"exit_code": code}
    if final == "FAILED" and not tags.get("log_tail"):
        lines = tail(out / "train.log", FAILURE_LINES) or "(the log is empty)"
        news["log_tail"] = lines[-6000:]
        news["mlflow.note.content"] = f"```\n{lines[-6000:]}\n```"
        if status in OPEN:
            why = "the trainer's process is gone" if code is None else f"exit status {code}"
            news["error"] = f"{why}: {lines.splitlines()[-1]}"[:500]
    tracking.tag_run(run_id, news, root=root)
    if final != status:
        tracking.set_status(run_id, final, root=root)


@_store_errors
def runner(root=None) -> None:
    """Serve the queue until it is empty; at most one runner per store (jobs.lock)."""
    root = _root(root)
    print(f"[{_now()}] runner {os.getpid()} on {root}", flush=True)
    while True:
        with open(root / "jobs.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another runner serves this queue
            while (run := _claim(root)) is not None:
                run_job(run, root)
        # The lock is free again: a job queued from now on starts a runner of its own, and one
        # queued just before is found here.
        if not _jobs("SCHEDULED", root):
            print(f"[{_now()}] runner {os.getpid()}: the queue is empty", flush=True)
            return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["runner"]:
        print("usage: python -m workshop.jobs runner", file=sys.stderr)
        return 2
    try:
        runner()
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
