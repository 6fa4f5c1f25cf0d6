"""What the DIGITS pages (Runs, New run / Clone, Job, Compare) show, apart from their widgets.

The pages in streamlit_app/pages/ only wire widgets to this module, to workshop.tracking
(the run records) and to workshop.jobs (the training processes); everything here is plain
data in, plain data out, and tested in tests/test_runs_pages.py.

Runs come as workshop.tracking.list_runs/get_run give them: {"run_id", "module", "status",
"start_time", "end_time", "duration_s", "params", "metrics", "tags"}, params as strings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import socket
import warnings
from pathlib import Path

import pandas as pd

from streamlit_app import app
from workshop import jobs, tracking
from workshop.data import catalog

PAGES = Path(__file__).resolve().parent / "pages"
# Page file stem -> its URL path, as streamlit_app/app.py registers the pages. Table links
# are relative URLs, so they also work under a base path (/user/<name>/demo/ in the room).
PAGE_URLS = {Path(file).stem: url for file, _, _, url in app.PAGES}

# Params that name the run (or how it was started) rather than choose how it trains.
NOT_SETTINGS = frozenset({"out_dir", "resume", "dataset"})
# Set by the jobs (out_dir) or by Resume: never a field of the New run form.
NOT_IN_FORM = frozenset({"out_dir", "resume"})
# The curves the Job and Compare pages draw, in this order; each metric where runs have it.
CURVES = {
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "lr": "learning rate",
    "cost": "cost (MLP, per iteration)",
    "test_accuracy": "test accuracy (MLP, per iteration)",
    "train_accuracy": "training accuracy",
}
# The Job page's graphs: one per quantity, the metrics that can feed it.
JOB_CHARTS = {
    "loss": ("train_loss", "val_loss", "cost"),
    "accuracy": ("train_accuracy", "val_accuracy", "test_accuracy"),
    "learning rate": ("lr",),
}
# The final numbers a finished run is judged by, as the trainers name them.
FINAL_METRICS = ("val_accuracy", "pointing_accuracy", "AP", "AP50", "AP75", "test_accuracy")
# Statuses in which a job still changes: its page refreshes itself.
LIVE = frozenset({"RUNNING", "SCHEDULED"})
# What a metric's step counts: an epoch, or for the MLP an optimizer iteration.
STEP_NAMES = {"mlp": "iteration"}
# Where a chart's legend goes: a few short metric names fit under it; run labels, many and
# long, were cut off there in half-page columns (and rows of them squeezed the plot).
LEGENDS = {"bottom": {"orient": "bottom"}, "right": {"orient": "right", "labelLimit": 260}}
PREVIEW_POINTS = 600  # points of the LR preview curve (torch's value at each sampled step)
# The New run form's data set option for any folder or file the trainer reads (typed in).
OTHER_DATA = "another folder or file…"


def short(run_id: str) -> str:
    return run_id[:8]


def label(run: dict) -> str:
    """How a run is named in legends and column heads: module and short id."""
    return f"{run['module']} {short(run['run_id'])}"


def is_setting(name: str) -> bool:
    return name not in NOT_SETTINGS and not name.startswith("data.")


def differing_settings(runs: list[dict]) -> list[str]:
    """The settings whose values differ between runs of the same module, sorted by name.

    Runs of different modules have different settings: an MLP's hidden_layer_size is not
    "different" from an AlexNet run that has none. A setting missing from some runs of a
    module (an older trainer) counts as differing.
    """
    by_module: dict[str, list[dict]] = {}
    for run in runs:
        by_module.setdefault(run["module"], []).append(run)
    names = set()
    for group in by_module.values():
        keys = {k for run in group for k in run["params"] if is_setting(k)}
        names |= {k for k in keys if len({run["params"].get(k) for run in group}) > 1}
    return sorted(names)


def data_set(run: dict) -> str:
    """The data set a run trained on: the name its data module reported, else the setting."""
    params = run["params"]
    return params.get("data.name") or params.get("dataset", "")


def _numeric(column: pd.Series) -> pd.Series:
    """Numbers as numbers (so they sort as numbers), else the strings as they are."""
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def runs_table(runs: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The Runs page's table (one row per run, in the given order) and its settings columns.

    "run" and "clone" are relative links (the Job page, New run filled from the run); the
    settings that differ come last, so the result stays in view however many there are.
    """
    settings = differing_settings(runs)
    rows = []
    for run in runs:
        head = tracking.headline(run)
        rows.append(
            {
                "run": f"{PAGE_URLS['job']}?run={run['run_id']}",
                "clone": f"{PAGE_URLS['new_run']}?clone={run['run_id']}",
                "module": run["module"],
                "status": run["status"],
                "data set": data_set(run),
                "result": head[1] if head else None,
                "metric": head[0] if head else "",
                "duration_s": run["duration_s"],
                "started": pd.to_datetime(run["start_time"], unit="ms"),
                **{name: run["params"].get(name) for name in settings},
            }
        )
    columns = ["run", "clone", "module", "status", "data set", "result", "metric"]
    table = pd.DataFrame(rows, columns=[*columns, "duration_s", "started", *settings])
    for name in settings:
        table[name] = _numeric(table[name])
    return table, settings


def parse_ids(text: str | None) -> list[str]:
    """Run ids from a query parameter such as ?runs=a,b (order kept, duplicates dropped)."""
    ids = [part.strip() for part in (text or "").split(",") if part.strip()]
    return list(dict.fromkeys(ids))


# ------------------------------------------------------------------------ compare


def whole_ticks(index) -> dict:
    """Integer ticks for whole epochs or iterations (the LR preview's fractions keep theirs)."""
    steps = pd.Series(index, dtype=float)
    if len(steps) and (steps == steps.round()).all():
        return {"axis": {"tickMinStep": 1, "format": "d"}}
    return {}


def best_run(runs: list[dict]) -> str | None:
    """The run_id with the best headline (val accuracy, AP) among runs judged by the same one.

    None when no run has a headline, or when the runs are judged by different metrics
    (an AlexNet's accuracy and a detector's AP do not rank against each other).
    """
    heads = {run["run_id"]: tracking.headline(run) for run in runs}
    heads = {k: v for k, v in heads.items() if v is not None and not math.isnan(v[1])}
    if len({name for name, _ in heads.values()}) != 1:
        return None
    return max(heads, key=lambda k: heads[k][1])


def settings_side_by_side(runs: list[dict]) -> pd.DataFrame:
    """Rows: the settings that differ (and the data set); columns: one per run."""
    rows = {"data set": [data_set(run) for run in runs]}
    for name in differing_settings(runs):
        rows[name] = [run["params"].get(name, "") for run in runs]
    return pd.DataFrame(rows, index=[label(run) for run in runs]).T


def final_metrics(runs: list[dict]) -> pd.DataFrame:
    """Rows: the final metrics any of the runs has (FINAL_METRICS first); columns: runs."""
    names = [m for m in FINAL_METRICS if any(m in run["metrics"] for run in runs)]
    rest = {m for run in runs for m in run["metrics"]} - set(names)
    names += sorted(m for m in rest if not m.startswith("system/"))
    rows = {m: [run["metrics"].get(m) for run in runs] for m in names}
    return pd.DataFrame(rows, index=[label(run) for run in runs], dtype=float).T


def step_name(modules) -> str:
    """The x axis of curves from these modules: epoch, iteration, or both."""
    return " / ".join(sorted({STEP_NAMES.get(m, "epoch") for m in modules})) or "epoch"


def curves(
    histories: dict[str, dict[str, list[tuple[int, float]]]], x: str = "epoch"
) -> dict[str, pd.DataFrame]:
    """Per metric (CURVES order, only those some run has): a frame indexed by step (named
    ``x``) with one column per run label; ``histories`` maps a label to metric_history."""
    out = {}
    for metric in CURVES:
        series = {
            name: pd.Series(dict(points), name=name, dtype=float)
            for name, history in histories.items()
            if (points := history.get(metric))
        }
        if series:
            frame = pd.concat(series.values(), axis=1).sort_index()
            frame.index.name = x
            out[metric] = frame
    return out


def line_chart(
    frame: pd.DataFrame, y_title: str, *, bold: str | None = None, legend: str = "bottom"
) -> tuple:
    """(long-form data, Vega-Lite spec) for st.vega_lite_chart: one line per column of
    ``frame`` over its index, points where they are few (one epoch is still seen), the
    column ``bold`` drawn thicker (Compare's best run), a legend (LEGENDS) unless there is
    one line. Built by hand: st.line_chart's Altair round trip cost 0.13 s per chart here,
    this 0.005 s."""
    x = frame.index.name or "step"
    data = frame.rename_axis(x).reset_index().melt(x, var_name="series", value_name="value")
    data = data.dropna()
    width = {"value": 2}
    if bold is not None:
        width = {
            "condition": {"test": f"datum.series === {json.dumps(bold)}", "value": 4},
            "value": 1.5,
        }
    spec = {
        "mark": {"type": "line", "point": len(frame) <= 50, "tooltip": True},
        "encoding": {
            "x": {"field": x, "type": "quantitative", "title": x, **whole_ticks(frame.index)},
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": y_title,
                "scale": {"zero": False},
            },
            "color": {
                "field": "series",
                "type": "nominal",
                "title": None,
                "legend": LEGENDS[legend] if frame.shape[1] > 1 else None,
            },
            "strokeWidth": width,
        },
        "height": 260,
    }
    return data, spec


# ------------------------------------------------------------------------ job page


def job_charts(
    history: dict[str, list[tuple[int, float]]], x: str = "epoch"
) -> dict[str, pd.DataFrame]:
    """The Job page's graphs (JOB_CHARTS): one frame per quantity (indexed by step, named
    ``x``), a column per metric."""
    out = {}
    for title, names in JOB_CHARTS.items():
        series = [pd.Series(dict(history[m]), name=m, dtype=float) for m in names if history.get(m)]
        if series:
            frame = pd.concat(series, axis=1).sort_index()
            frame.index.name = x
            out[title] = frame
    return out


def chart_metrics() -> list[str]:
    return list(dict.fromkeys(m for names in JOB_CHARTS.values() for m in names))


def process_memory(run: dict) -> int | None:
    """Resident memory (bytes) of the run's training process, when it runs on this host."""
    tags = run["tags"]
    pid, host = tags.get("pid"), tags.get("host")
    if not pid or not pid.isdigit() or (host and host != socket.gethostname()):
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def gpu_memory() -> tuple[int, int] | None:
    """(used, total) bytes of this machine's first GPU, when torch sees CUDA; else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total - free, total


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


# ------------------------------------------------------------------------ new run / clone


def form_fields(module: str) -> list[dict]:
    """The trainer's config fields the New run form shows (out_dir and resume are the jobs')."""
    return [f for f in tracking.config_fields(module) if f["name"] not in NOT_IN_FORM]


def type_name(field: dict) -> str:
    """'bool' | 'int' | 'float' | 'str' for a config field (its type as a class or a string)."""
    t = field["type"]
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def initial_values(module: str, clone: dict | None) -> dict:
    """The form's starting values: the cloned run's settings (typed), else the defaults with
    the data folder the pages list sets from ($DATA_DIR), as the Makefile's trainers get it."""
    if clone is None:
        start = {f["name"]: f["default"] for f in form_fields(module)}
        return {**start, "data_dir": str(catalog.data_root())} if "data_dir" in start else start
    cfg = tracking.params_to_config(module, clone["params"])
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_FORM}


def changes(before: dict, after: dict) -> dict[str, tuple]:
    """Fields whose value differs: name -> (before, after)."""
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}


def changes_summary(changed: dict[str, tuple]) -> str:
    return "changed: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())


def choice_labels(field: dict, value, machine: dict[str, str]) -> dict[str, str] | None:
    """A field with a fixed set of values (its trainer's CHOICES): value -> its label in the
    form's selectbox; None for a free field. The device offers what this machine has
    (``machine``: devices()); a value outside the list (a cloned run's) is kept, marked, for
    jobs.validate to judge."""
    if field.get("choices") is None:
        return None
    if field["name"] == "device":
        out = {c: machine[c] for c in field["choices"] if c in machine}
        missing = "not on this machine"
    else:
        out = {c: c for c in field["choices"]}
        missing = "not one of the choices"
    if str(value) not in out:
        out[str(value)] = f"{value} ({missing})"
    return out


@dataclasses.dataclass
class DataChoice:
    """One entry of the New run form's data set list: a prepared set, or a generated one."""

    settings: dict[str, str]  # the config fields it sets: dataset, data_dir, synthetic_size...
    label: str  # in the list: title, images per split, classes
    summary: str  # one line under the list
    name: str | None = None  # its Data sets page entry (?set=); None: not generated yet
    train_images: int | None = None  # images in its train split, where known

    @property
    def key(self) -> str:
        """The selectbox value: the trainer options the choice stands for (sorted)."""
        return " ".join(f"--{k}={v}" for k, v in sorted(self.settings.items()))


def trainer_options(train_as: str) -> dict[str, str]:
    """The trainer settings a catalog ``train_as`` names: ``make train-x DATASET=cats-dogs
    CATEGORIES=cat,dog`` (the Makefile passes its variables on as --dataset, --categories) or
    ``make train-x (--dataset=synthetic --synthetic_size=small)``."""
    words = train_as.replace("(", " ").replace(")", " ").split()[2:]  # after make train-x
    pairs = (word.partition("=") for word in words)
    return {key.removeprefix("--").lower(): value for key, sep, value in pairs if sep}


def _counts(s: catalog.DataSet) -> str:
    return " / ".join(f"{n:,} {split}" for split, n in s.images.items())


def data_choices(module: str, root=None) -> list[DataChoice]:
    """The data sets a ``module`` run can be pointed at: each prepared set under the data
    folder that this trainer takes (catalog order), then each synthetic size the trainer
    generates on first use that is not prepared yet. Every choice names the data folder, as
    the Makefile's trainers get --data_dir=$(DATA_DIR)."""
    root = Path(root) if root is not None else catalog.data_root()
    fields = {f["name"]: f for f in tracking.config_fields(module)}
    base = {"dataset": str(fields["dataset"]["default"])}  # what train_as leaves unsaid
    found = {}
    for s in catalog.data_sets(root):
        if s.module != module:
            continue
        more = f"; {len(s.classes) - 8} more" if len(s.classes) > 8 else ""
        choice = DataChoice(
            settings={**base, **trainer_options(s.train_as), "data_dir": str(root)},
            label=f"{s.title} — {_counts(s)}, {len(s.classes)} classes",
            summary=(
                f"{s.name}: {len(s.classes)} classes ({', '.join(s.classes[:8])}{more}), "
                f"{_counts(s)} images of {s.image_size}"
            ),
            name=s.name,
            train_images=s.images.get("train"),
        )
        found.setdefault(choice.key, choice)
    sizes = (fields.get("synthetic_size") or {}).get("choices") or []
    folders = {size: folder for folder, size in catalog.SYNTHETIC_SETS.items()}
    for size in sizes:
        where = root / folders[size]
        choice = DataChoice(
            settings={
                "dataset": jobs.GENERATED[module],
                "synthetic_size": size,
                "data_dir": str(root),
            },
            label=f"{jobs.GENERATED[module]} ({size}) — generated on first use",
            summary=f"Not generated yet: the first run generates it into {where}.",
        )
        found.setdefault(choice.key, choice)
    return list(found.values())


def matching_choice(choices: list[DataChoice], values: dict) -> DataChoice | None:
    """The first choice whose settings the values have."""
    for choice in choices:
        if all(str(values.get(k)) == v for k, v in choice.settings.items()):
            return choice
    return None


def unprepared_hint(module: str, choices: list[DataChoice]) -> str | None:
    """What to do when no data set for ``module`` is prepared (only generated ones offered)."""
    if any(c.name for c in choices):
        return None
    real = jobs.PREPARED[module]
    return (
        f"No {module} data set is prepared under {catalog.data_root()}: the synthetic ones are "
        f"generated on first use; prepare {real} on the Data sets page "
        f"(or `make data DATASET={real}`) to train on real images."
    )


def steps_per_epoch(cfg: dict, train_images: int) -> int:
    """Optimizer steps per epoch as engine.steps_per_epoch counts them on one process."""
    steps = max(1, math.ceil(train_images / max(1, int(cfg["batch_size"]))))
    return min(steps, cfg["max_steps"]) if cfg.get("max_steps") else steps


def pct_start(module: str) -> float:
    """The share of the steps the one-cycle schedule rises for: the trainer's PCT_START, the
    value it passes to engine.build_optimizer."""
    return importlib.import_module(jobs.trainer(module)).PCT_START


def lr_schedule(module: str, cfg: dict, steps: int) -> pd.DataFrame | None:
    """The learning rate over training, x in epochs: torch's OneCycleLR as the trainer
    builds it (engine.build_optimizer on a dummy parameter), read at up to PREVIEW_POINTS
    steps; for the MLP's gradient descent its fixed step; None when there is no
    learning rate (L-BFGS-B and CG choose each step by line search)."""
    if module == "mlp":
        if cfg.get("optimizer") != "gd":
            return None
        iterations = cfg.get("maxiter") or 1000
        return pd.DataFrame(
            {"lr": [cfg["learning_rate"]] * 2}, index=pd.Index([0, iterations], name="iteration")
        )
    import torch

    from workshop import engine

    ns = type(
        "Cfg", (), {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"], "epochs": cfg["epochs"]}
    )
    _, scheduler = engine.build_optimizer(
        torch.nn.Linear(1, 1), ns, steps, pct_start=pct_start(module)
    )
    total = scheduler.total_steps
    picks = sorted({round(i * (total - 1) / (PREVIEW_POINTS - 1)) for i in range(PREVIEW_POINTS)})
    lrs = []
    with warnings.catch_warnings():  # get_lr outside step() warns; it is the same formula
        warnings.simplefilter("ignore")
        for step in picks:
            scheduler.last_epoch = step
            lrs.append(float(scheduler.get_lr()[0]))
    return pd.DataFrame({"lr": lrs}, index=pd.Index([s / steps for s in picks], name="epoch"))


def devices() -> dict[str, str]:
    """The devices a job can ask for here: value for the form -> what it is."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out = {
        "auto": "auto (the GPU when there is one)",
        "cpu": f"cpu: {os.cpu_count()} cores, {gib(ram)} RAM",
    }
    import torch

    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        out["cuda"] = "cuda: " + "; ".join(f"{p.name}, {gib(p.total_memory)}" for p in gpus)
    if torch.backends.mps.is_available():
        out["mps"] = "mps: Apple GPU"
    return out


# ------------------------------------------------------------------------ reading runs

# What the pages catch: a broken store or an unknown run (TrackingError), a refused action
# (JobError); each says why in one sentence.
ERRORS = (tracking.TrackingError, jobs.JobError)


def sentence(err: BaseException) -> str:
    """An error's one sentence, capitalized and ended, for st.error."""
    text = str(err).strip() or type(err).__name__
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def train_images(run: dict) -> int | None:
    """How many training images the run's trainer counted (its data.train_images param)."""
    value = run["params"].get("data.train_images", "")
    return int(value) if value.isdigit() else None


def resumable(run: dict) -> bool:
    """Whether Resume applies: a stopped alexnet/detectnet run that left its train_state.pt."""
    out = run["tags"].get("out_dir")
    return (
        run["module"] in jobs.RESUMABLE
        and run["status"] in ("KILLED", "FAILED")
        and bool(out)
        and (Path(out) / "train_state.pt").is_file()
    )


def curve_keys(run: dict, names) -> list[str]:
    """The metrics among ``names`` the run has logged (only those get a history query)."""
    return [m for m in names if m in run["metrics"]]
