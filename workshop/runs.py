"""A trainer's bookkeeping around the loops: its start (device, DDP, seed, the run's record),
how it ran (metrics.json), and its end (checkpoint.pt, the final metrics, the outputs).

    with runs.start_run(cfg, "alexnet") as run:   # the run is recorded (workshop.tracking)
        ... engine.fit(run, ...) ...              # each epoch logged through run.tracker
        runs.save_trained(run, model, ...)        # checkpoint.pt, metrics.json, final metrics

Leaving the ``with`` ends the record FINISHED, FAILED (an error) or KILLED (Ctrl-C, Abort).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from models.checkpoint import save_checkpoint
from workshop.artifacts import artifacts_dir, write_json
from workshop.distributed import Dist, describe_device, pick_device, setup_distributed
from workshop.resume import save_training_state, seed_everything
from workshop.tracking import Tracker

# Files of a finished run copied into its record, when the trainer wrote them.
RECORDED_FILES = ("metrics.json", "curves.png", "learning_curve.png")


@dataclass
class Run:
    """What every trainer decides before it loads data."""

    device: torch.device
    d: Dist
    width: float  # the channel multiplier actually used
    out: Path  # the artifacts folder
    log: Callable  # print on the main process, nothing elsewhere
    tracker: Tracker = field(default_factory=Tracker.off)  # the run's record (main process)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> bool:
        return self.tracker.__exit__(*exc)


def start_run(cfg, model: str) -> Run:
    """Check the common options, pick the device, join DDP, seed, start the record;
    SystemExit with a message.

    ``cfg`` has ``synthetic_size``, ``device``, ``width`` (0: 0.25 on CPU, 1.0 on
    CUDA), ``out_dir`` and ``seed``; ``model`` names the artifacts subfolder and the
    run's experiment.
    """
    if cfg.synthetic_size not in ("full", "small"):
        raise SystemExit(
            f"error: --synthetic_size must be full or small, not {cfg.synthetic_size!r}"
        )
    try:
        device = pick_device(cfg.device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    d = setup_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    width = cfg.width or (1.0 if device.type == "cuda" else 0.25)
    out = Path(cfg.out_dir) if cfg.out_dir else artifacts_dir(model)
    seed_everything(cfg.seed)
    log = print if d.is_main else (lambda *a, **k: None)
    tracker = Tracker.start(model, cfg, out=out, is_main=d.is_main)
    tracker.set_tags({"device": describe_device(device), "width": width})
    return Run(device, d, width, out, log, tracker)


def record_epoch(run: Run, job, history: list[dict], state_path, raw, optimizer, scheduler):
    """After each epoch, on the main process: the resumable state, history.json, the curves
    (``job`` is engine.Job) and the epoch in the run's record; SIGTERM waits for all four."""
    with run.tracker.shielded():
        save_training_state(
            state_path,
            raw,
            optimizer,
            scheduler,
            epoch=history[-1]["epoch"],
            model_name=job.model_name,
            model_args=job.model_args,
            history=history,
            meta=job.meta,
        )
        write_json(run.out / "history.json", {"history": history})
        job.plot(history, run.out / "curves.png")
        run.tracker.log_epoch(history[-1])


def run_metrics(run: Run, cfg, *, train_seconds: float, ranks: dict, dataset: str) -> dict:
    """What every trainer's metrics.json says about how it ran; ``ranks`` from end_run."""
    return {
        "train_seconds": train_seconds,
        "device": describe_device(run.device),
        "world_size": run.d.world_size,
        **ranks,
        "width": run.width,
        "dataset": dataset,
        "config": asdict(cfg),
    }


def save_trained(
    run: Run, model, *, model_name, model_args, meta, metrics, headline, final=()
) -> None:
    """The finished run: checkpoint.pt (its meta carrying the ``headline`` metrics that have
    a value, for the exported model's card) and metrics.json; the record gets the headline
    and ``final`` metrics (nested ones as dotted names), the checkpoint's path and the files."""
    shown = {k: metrics[k] for k in headline if metrics.get(k) is not None}
    save_checkpoint(
        run.out / "checkpoint.pt",
        model,
        model_name=model_name,
        model_args=model_args,
        epoch=metrics["epochs"],
        metrics=metrics,
        meta={**meta, "metrics": shown},
    )
    write_json(run.out / "metrics.json", metrics)
    record_outputs(run.tracker, run.out, metrics, (*headline, *final), step=metrics["epochs"])


def record_outputs(tracker: Tracker, out: Path, metrics: dict, keys, *, step: int) -> None:
    """A finished run's ``keys`` of metrics.json at ``step``, its checkpoint's path and its
    small files (RECORDED_FILES) into its record."""
    tracker.log_metrics({k: metrics[k] for k in keys if k in metrics}, step=step)
    tracker.set_tags({"checkpoint": str((out / "checkpoint.pt").resolve())})
    for name in RECORDED_FILES:
        tracker.log_artifact(out / name)
