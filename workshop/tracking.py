"""The run records: every training run of the three trainers, in MLflow's SQLite store.

    with Tracker.start("alexnet", cfg, out=out) as tracker:   # a trainer records its run
        tracker.log_epoch(record)                              # one history record per epoch
    list_runs()  get_run(run_id)  metric_history(run_id, ["val_loss"])   # the pages, the jobs

The store is ``$ARTIFACTS/mlflow.db`` (no server; ``make runs`` shows it in MLflow's own UI),
one experiment per module, its artifacts under ``$ARTIFACTS/mlruns/<module>/``. Only this
module writes run records. A store that is locked, corrupt or from another MLflow never costs
the participant their training: the trainer says so in one sentence and trains on untracked,
while the reading functions raise TrackingError with that sentence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import importlib
import importlib.metadata
import json
import math
import os
import re
import shlex
import signal
import socket
import sqlite3
import sys
import threading
import time
import warnings
from pathlib import Path

from models.artifacts import artifacts_root

# module -> (the kind its checkpoint says it is, the metric that ranks its runs)
MODULE_TABLE = {
    "mlp": ("mlp", "test_accuracy"),
    "alexnet": ("fcn", "val_accuracy"),
    "detectnet": ("detector", "AP"),
}
MODULES = tuple(MODULE_TABLE)
STATUSES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")

# A history record's key -> its metric name (None: not logged). train_seconds is the
# training pass alone; epoch_seconds, the whole epoch, is what a run's time left needs.
EPOCH_METRICS = {"epoch": None, "train_images_per_s": "images_per_s", "train_seconds": None}

# What a broken store's error says (a piece of MLflow's or SQLite's message) -> why, in words.
REASONS = (
    ("file is not a database", "{path} is not an SQLite file (move it away for a fresh store)"),
    ("database disk image is malformed", "{path} is damaged (move it away for a fresh store)"),
    ("database is locked", "{path} is locked by another process"),
    (
        "out-of-date database schema",
        "{path} was written by another MLflow than {version} "
        "(`mlflow db upgrade sqlite:///{path}` updates an older one)",
    ),
    ("no such column", "{path} is the database of another program, not an MLflow store"),
    ("unable to open database file", "{path} cannot be opened (is its folder writable?)"),
    ("readonly database", "{path} is read-only"),
)
FLUSH_S = 1.0  # buffered per-iteration metrics reach the store at least this often
_NAME = re.compile(r"[^\w.\- /:]")  # characters MLflow refuses in a metric or param name


class TrackingError(RuntimeError):
    """The store cannot be used; str(err) is one sentence that says why."""


def store_path(root=None) -> Path:
    """The store: ``<root>/mlflow.db``, root defaulting to $ARTIFACTS (artifacts/)."""
    return (Path(root) if root else artifacts_root()).resolve() / "mlflow.db"


def _mlflow():
    """MLflow's client module, imported on first use (a second and a half) and kept quiet:
    no migration chatter in a trainer's output, no usage reports sent anywhere."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging

    from mlflow import entities, tracking

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return tracking, entities


def why(err: BaseException, path: Path) -> str:
    """One sentence (no final stop) for a store error."""
    text = str(err)
    for needle, reason in REASONS:
        if needle in text:
            return reason.format(path=path, version=importlib.metadata.version("mlflow"))
    first = (text.strip().splitlines() or [type(err).__name__])[0][:200]
    return f"{path} could not be used ({type(err).__name__}: {first})"


def _check_file(path: Path) -> None:
    """Refuse, before MLflow touches it, a file that is no MLflow store: MLflow would add its
    tables to another program's database before it failed."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as err:
        raise TrackingError(f"the run store {why(err, path)}") from None
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        raise TrackingError(f"the run store {why(sqlite3.Error('no such column'), path)}")


def client(root=None):
    """An MlflowClient on the store (created when missing); TrackingError when it is broken."""
    path = store_path(root)
    _check_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tracking, _ = _mlflow()
        with warnings.catch_warnings():  # SQLAlchemy's deprecations inside MLflow: not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            c = tracking.MlflowClient(tracking_uri=f"sqlite:///{path}")
            c.search_experiments(max_results=1)  # a store that opens but cannot be read fails
        return c
    except Exception as err:
        raise TrackingError(f"the run store {why(err, path)}") from None


def _experiment_id(c, module: str, root=None) -> str:
    """The module's experiment, created with its artifacts under $ARTIFACTS/mlruns/<module>."""
    if module not in MODULE_TABLE:
        raise ValueError(f"unknown module {module!r}: one of {', '.join(MODULES)}")
    exp = c.get_experiment_by_name(module)
    if exp is None:
        where = store_path(root).parent / "mlruns" / module
        try:
            return c.create_experiment(module, artifact_location=str(where))
        except Exception:  # another process made it first
            exp = c.get_experiment_by_name(module)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":  # deleted in the UI: new runs bring it back
        c.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _clean(name: str) -> str:
    return _NAME.sub("_", str(name))[:250]


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted keys."""
    flat = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _param_value(v) -> str:
    return (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v))[:6000]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks since boot) of a process, ("", "") where unknown:
    the start time tells a reused pid from the process that had it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "", ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    state, now_started = _proc_stat(pid)
    return state != "Z" and not (started and now_started and now_started != started)


class Terminated(KeyboardInterrupt):
    """SIGTERM (the Job page's Abort) in the trainer's main thread."""


# ------------------------------------------------------------------------ writing


class Tracker:
    """One training run's record. It never raises: a store that fails says so once and the
    tracker does nothing from then on (``run_id`` stays, ``on`` turns False)."""

    def __init__(self, c=None, run_id: str | None = None, *, module="", out: Path | None = None):
        self._c, self.run_id, self.module, self.out = c, run_id, module, out
        self._pending: list = []  # metrics not yet written
        self._flushed = time.monotonic()
        self._logged: dict[str, tuple[int, float]] = {}  # key -> (step, value) written last
        self._params: dict[str, str] = {}
        self._ended = False
        self._shield = 0  # > 0: inside a block that SIGTERM must not split
        self._term_pending = False
        self._old_handler = None

    @property
    def on(self) -> bool:
        return self._c is not None

    def __repr__(self) -> str:
        state = f"run {self.run_id}" if self.on else "off"
        return f"Tracker({self.module or '-'}, {state})"

    @classmethod
    def off(cls) -> Tracker:
        """A tracker that records nothing (engines built by hand, ranks other than the main)."""
        return cls()

    @classmethod
    def start(cls, module: str, cfg, *, out: Path, is_main: bool = True) -> Tracker:
        """Begin (or continue) the run of ``module`` trained with ``cfg`` into ``out``.

        Continues the run named by $WORKSHOP_RUN_ID (a job's), else, for ``cfg.resume``, the
        newest unfinished run that wrote into ``out``; else creates one. Logs every field of
        cfg as a param, tags who and where, marks it RUNNING and turns SIGTERM into
        KeyboardInterrupt so an aborted run ends KILLED. Off when WORKSHOP_TRACKING=off.
        """
        out = Path(out).resolve()
        if not is_main or os.environ.get("WORKSHOP_TRACKING", "on") == "off":
            return cls(module=module, out=out)
        try:
            c = client()
            run = _open_run(c, module, out, getattr(cfg, "resume", False))
        except TrackingError as err:
            _say_off(str(err), out)
            return cls(module=module, out=out)
        except Exception as err:
            _say_off(f"the run store {why(err, store_path())}", out)
            return cls(module=module, out=out)
        tracker = cls(c, run.info.run_id, module=module, out=out)
        tracker._params = dict(run.data.params)
        pid = os.getpid()
        tags = {
            "module": module,
            "kind": MODULE_TABLE[module][0],
            "user": getpass.getuser(),
            "mlflow.user": getpass.getuser(),  # MLflow's UI shows this one
            "mlflow.source.name": f"workshop.train_{module}",
            "out_dir": str(out),
            "pid": str(pid),
            "pid_started": _proc_stat(pid)[1],
            "host": socket.gethostname(),
            "command": shlex.join(sys.argv),
        }
        if os.environ.get("WORKSHOP_CLONED_FROM"):
            tags["cloned_from"] = os.environ["WORKSHOP_CLONED_FROM"]
        if "started_at" not in run.data.tags:
            tags["started_at"] = str(time.time())
        tracker._write(lambda: c.update_run(run.info.run_id, status="RUNNING"))
        tracker.set_tags(tags)
        if dataclasses.is_dataclass(cfg):
            tracker.log_params(dataclasses.asdict(cfg))
        tracker._catch_sigterm()
        return tracker

    # -- what the trainers call

    def log_params(self, params: dict) -> None:
        """Params (nested dicts as dotted keys). A run continued keeps the values it has:
        MLflow's params are written once, so a changed one (``resume``) is left as it was."""
        flat = {_clean(k): _param_value(v) for k, v in _flat(params).items()}
        new = {k: v for k, v in flat.items() if k not in self._params}
        if not self.on or not new:
            return
        _, entities = _mlflow()
        items = [entities.Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 params per call
            self._write(lambda part=items[i : i + 100]: self._c.log_batch(self.run_id, params=part))
        self._params.update(new)

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Numbers at ``step`` (nested dicts as dotted keys; None, NaN and text skipped),
        buffered: written at least every FLUSH_S seconds, and by log_epoch and end."""
        if not self.on:
            return
        _, entities = _mlflow()
        now = _now_ms()
        for k, v in _flat(metrics).items():
            value, key = _number(v), _clean(k)
            if value is None or self._logged.get(key) == (step, value):
                continue  # a final metric already written as the last epoch's is not repeated
            self._logged[key] = (step, value)
            self._pending.append(entities.Metric(key, value, now, int(step)))
        if len(self._pending) >= 1000 or time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def log_epoch(self, record: dict) -> None:
        """One history record (epoch, train_*, val_*, lr, epoch_seconds) at step = its epoch,
        written at once (one call per epoch)."""
        names = {k: EPOCH_METRICS.get(k, k) for k in record}
        self.log_metrics({names[k]: v for k, v in record.items() if names[k]}, record["epoch"])
        self.flush()

    def log_artifact(self, path) -> None:
        """A small file (curves, metrics.json) copied into the run's artifacts."""
        if self.on and Path(path).is_file():
            self._write(lambda: self._c.log_artifact(self.run_id, str(path)))

    def set_tags(self, tags: dict) -> None:
        if not self.on or not tags:
            return
        _, entities = _mlflow()
        items = [entities.RunTag(_clean(k), str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self._write(lambda part=items[i : i + 100]: self._c.log_batch(self.run_id, tags=part))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._flushed = time.monotonic()
        for i in range(0, len(pending), 1000):  # MLflow takes 1000 metrics per call
            part = pending[i : i + 1000]
            self._write(lambda part=part: self._c.log_batch(self.run_id, metrics=part))

    def end(self, status: str = "FINISHED", error: str = "") -> None:
        """FINISHED | FAILED | KILLED (``error``: what stopped it, kept as a tag). Once."""
        if self._ended:
            return
        self._ended = True
        try:
            self.flush()
            if error:
                self.set_tags({"error": error})
            self._write(lambda: self._c.set_terminated(self.run_id, status))
        finally:
            self._restore_sigterm()
        if status == "FINISHED" and self.on:
            self._report_headline()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if kind is None or (kind is SystemExit and err.code in (0, None)):
            self.end("FINISHED")
        elif issubclass(kind, KeyboardInterrupt):
            self.end("KILLED", "stopped by SIGTERM" if kind is Terminated else "interrupted")
            if kind is Terminated:  # Abort: one line and the usual exit status, no traceback
                print(f"stopped: run {self.run_id} recorded as KILLED", file=sys.stderr)
                raise SystemExit(128 + signal.SIGTERM) from None
        else:
            self.end("FAILED", _one_line(err))
        return False

    # -- the machinery

    @contextlib.contextmanager
    def shielded(self):
        """SIGTERM waits until the block is done: an epoch's files and its record, or one
        store call, are never cut in half (the Job page's Abort then stops the run there)."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
        if not self._shield and self._term_pending and not self._ended:
            self._term_pending = False
            raise Terminated

    def _write(self, call) -> None:
        """One store call; a failure turns the tracker off with one sentence."""
        if not self.on:
            return
        with self.shielded():
            try:
                call()
            except Exception as err:
                self._c = None
                _say_off(f"the run store {why(err, store_path())}", self.out)

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only

        def on_sigterm(signum, frame):
            if self._shield:
                self._term_pending = True
            else:
                raise Terminated

        self._old_handler = signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None

    def _report_headline(self) -> None:
        """The run's headline to the room's progress view, where workshop.hub.record can."""
        try:
            record = importlib.import_module("workshop.hub.record")
            report = getattr(record, "report_run", None)
            latest = {k: v for k, (_, v) in self._logged.items()}
            head = headline({"module": self.module, "metrics": latest})
            if report is not None and head is not None:
                report(self.module, self.run_id, *head)
        except Exception:  # the room's bookkeeping never breaks a finished run
            pass


def _say_off(reason: str, out: Path | None) -> None:
    where = f"{out}/" if out else "the output folder"
    print(f"tracking off: {reason}; training goes on, results still in {where}", file=sys.stderr)


def _one_line(err: BaseException) -> str:
    text = str(err.code) if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
    return (text.strip().splitlines() or [""])[0][:500]


def _open_run(c, module: str, out: Path, resume: bool):
    """The run to record into: $WORKSHOP_RUN_ID's, the one a resume continues, or a new one."""
    exp_id = _experiment_id(c, module)
    run_id = os.environ.get("WORKSHOP_RUN_ID", "")
    if run_id:
        return _get(c, run_id, store_path())
    if resume and "'" not in str(out):
        newest = ["attributes.start_time DESC"]
        found = c.search_runs([exp_id], f"tags.out_dir = '{out}'", max_results=1, order_by=newest)
        if found and found[0].info.status != "FINISHED":
            return found[0]
    return c.create_run(exp_id, tags={"mlflow.user": getpass.getuser()})


# ------------------------------------------------------------------------ reading


def _get(c, run_id: str, path: Path):
    try:
        return c.get_run(run_id)
    except Exception as err:
        if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(f"there is no run {run_id} in {path}") from None
        raise


def _settled(c, run) -> dict:
    """The run as a plain dict; a RUNNING run whose process is gone from this host is marked
    FAILED first, so no run stays RUNNING after its trainer died (SIGKILL, OOM, power)."""
    info, tags = run.info, dict(run.data.tags)
    status, end_ms = info.status, info.end_time
    pid = tags.get("pid", "")
    if (
        status == "RUNNING"
        and tags.get("host") == socket.gethostname()
        and pid.isdigit()
        and not _alive(int(pid), tags.get("pid_started", ""))
    ):
        status, end_ms = "FAILED", _now_ms()
        tags.setdefault("error", f"the training process (pid {pid}) ended without a word")
        try:
            c.set_tag(info.run_id, "error", tags["error"])
            c.set_terminated(info.run_id, status, end_time=end_ms)
        except Exception:  # a read-only or busy store: the answer is still FAILED
            pass
    started = float(tags.get("started_at") or info.start_time / 1000)
    if status == "RUNNING":
        duration = time.time() - started
    elif status in ("FINISHED", "FAILED", "KILLED") and end_ms:
        duration = max(0.0, end_ms / 1000 - started)
    else:
        duration = None
    return {
        "run_id": info.run_id,
        "module": tags.get("module") or "",
        "status": status,
        "start_time": info.start_time,  # milliseconds since 1970, as MLflow keeps them
        "end_time": end_ms if status in ("FINISHED", "FAILED", "KILLED") else None,
        "duration_s": duration,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),  # each metric's latest value
        "tags": tags,
    }


def _read(root, what):
    """what(client) on an existing store: TrackingError (one sentence) when it fails."""
    path = store_path(root)
    c = client(root)
    try:
        return what(c)
    except TrackingError:
        raise
    except Exception as err:
        raise TrackingError(f"the run store {why(err, path)}") from None


def list_runs(root=None, *, max_results: int = 1000) -> list[dict]:
    """Every run of the three modules, newest first (nothing when there is no store yet)."""
    if not store_path(root).is_file():
        return []

    def runs(c):
        names = {}
        for module in MODULES:
            exp = c.get_experiment_by_name(module)
            if exp is not None:
                names[exp.experiment_id] = module
        if not names:
            return []
        found = c.search_runs(
            list(names), max_results=max_results, order_by=["attributes.start_time DESC"]
        )
        return [
            {**d, "module": d["module"] or names.get(r.info.experiment_id, "")}
            for r in found
            for d in [_settled(c, r)]
        ]

    return _read(root, runs)


def get_run(run_id: str, root=None) -> dict:
    path = store_path(root)
    if not path.is_file():
        raise TrackingError(f"there is no run {run_id}: no run store at {path} yet")
    return _read(root, lambda c: _settled(c, _get(c, run_id, path)))


def metric_history(run_id: str, keys, root=None) -> dict[str, list[tuple[int, float]]]:
    """Each key's (step, value) points in step order; a step logged twice (an epoch redone
    after a resume) keeps its newest value."""

    def history(c):
        _get(c, run_id, store_path(root))  # a run that is not there: say so
        out = {}
        for key in keys:
            newest = {}
            for m in sorted(c.get_metric_history(run_id, key), key=lambda m: m.timestamp):
                newest[m.step] = m.value
            out[key] = sorted(newest.items())
        return out

    return _read(root, history)


def headline(run: dict) -> tuple[str, float] | None:
    """(the module's ranking metric, its value): val_accuracy, AP or test_accuracy."""
    name = MODULE_TABLE.get(run.get("module"), (None, None))[1]
    value = run.get("metrics", {}).get(name)
    if name is None or value is None or math.isnan(value):
        return None
    return name, value


def config_fields(module: str) -> list[dict]:
    """The trainer's settings: {"name", "type" (int, float, bool, str), "default", "comment",
    "choices"} per config field, the comment being the one ``--help`` shows, the choices the
    values the trainer's CHOICES lists for it (None: any value of its type)."""
    import importlib
    import typing

    from workshop.visualize import field_comments

    cls = _config_class(module)
    comments, hints = field_comments(cls), typing.get_type_hints(cls)
    choices = getattr(importlib.import_module(cls.__module__), "CHOICES", {})
    return [
        {
            "name": f.name,
            "type": getattr(hints[f.name], "__name__", str(hints[f.name])),
            "default": f.default,
            "comment": comments.get(f.name, ""),
            "choices": list(choices[f.name]) if f.name in choices else None,
        }
        for f in dataclasses.fields(cls)
    ]


def params_to_config(module: str, params: dict):
    """A run's params (MLflow keeps strings) back as the trainer's config dataclass, converted
    as the CLI converts ``--key=value``; params that are no config field are left out."""
    from workshop.cli import parse_config

    cls = _config_class(module)
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return parse_config(cls, [f"--{k}={v}" for k, v in params.items() if k in names])
    except SystemExit as err:
        raise TrackingError(_one_line(err).removeprefix("error: ")) from None


def _config_class(module: str):
    from workshop.visualize import config_class

    if module not in MODULE_TABLE:
        raise ValueError(f"unknown module {module!r}: one of {', '.join(MODULES)}")
    return config_class(module)


def data_params(name: str, counts: dict, folder=None) -> dict:
    """A data set's params: data.name, data.<count> for ``counts`` (images per split,
    classes, what the trainer skipped), and every number of the report.json `make data`
    wrote beside the data (data.report.<key>: skipped files, conversions, crowd regions)."""
    params = {"data.name": name, **{f"data.{k}": v for k, v in _flat(counts).items()}}
    if folder is not None:
        folder = Path(folder)
        report = (folder if folder.is_dir() else folder.parent) / "report.json"
        try:
            numbers = _flat(json.loads(report.read_text()))
        except (OSError, ValueError, AttributeError):
            numbers = {}
        params.update({f"data.report.{k}": v for k, v in numbers.items() if _number(v) is not None})
    return params


# ------------------------------------------------------- runs made before a trainer starts


def create_run(module: str, params: dict, tags: dict, *, status="SCHEDULED", root=None) -> str:
    """A run for a job that has not started yet (its trainer continues it through
    $WORKSHOP_RUN_ID); returns its id. TrackingError when the store is broken."""

    def create(c):
        _, entities = _mlflow()
        named = {
            "module": module,
            "kind": MODULE_TABLE[module][0],
            "mlflow.user": getpass.getuser(),
        }
        named.update(tags)
        run = c.create_run(
            _experiment_id(c, module, root),
            tags={_clean(k): str(v)[:8000] for k, v in named.items()},
        )
        items = [entities.Param(_clean(k), _param_value(v)) for k, v in _flat(params).items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 params per call
            c.log_batch(run.info.run_id, params=items[i : i + 100])
        c.update_run(run.info.run_id, status=status)
        return run.info.run_id

    return _read(root, create)


def set_status(run_id: str, status: str, *, error: str = "", root=None) -> None:
    """Mark a run that no trainer will end (cancelled, its process lost): KILLED, FAILED, ..."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")

    def mark(c):
        if error:
            c.set_tag(run_id, "error", error[:8000])
        if status in ("FINISHED", "FAILED", "KILLED"):
            c.set_terminated(run_id, status)
        else:
            c.update_run(run_id, status=status)

    _read(root, mark)


def tag_run(run_id: str, tags: dict, root=None) -> None:
    """Tags on an existing run (e.g. ``onnx``: the exported model's path)."""
    _read(root, lambda c: [c.set_tag(run_id, _clean(k), str(v)[:8000]) for k, v in tags.items()])
