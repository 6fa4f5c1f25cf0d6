"""The training loops shared by modules 2 and 3: one epoch, evaluation, and the whole fit.

bf16 autocast on CUDA, channels_last, optional torch.compile, DDP (workshop.distributed)
with an ``is_main`` gate around printing and saving, deterministic per-epoch shuffling
(``set_epoch`` semantics), and the resumable state (workshop.resume) written every epoch,
so a run killed at any moment and resumed ends with exactly the weights of an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from models.checkpoint import save_checkpoint
from workshop.artifacts import artifacts_dir, write_json
from workshop.distributed import Dist, describe_device, pick_device, setup_distributed
from workshop.resume import resume_if_asked, save_training_state, seed_everything

# ------------------------------------------------------------------ a trainer's start


@dataclass
class Run:
    """What every trainer decides before it loads data."""

    device: torch.device
    d: Dist
    width: float  # the channel multiplier actually used
    out: Path  # the artifacts folder
    log: Callable  # print on the main process, nothing elsewhere


def start_run(cfg, model: str) -> Run:
    """Check the common options, pick the device, join DDP, seed; SystemExit with a message.

    ``cfg`` has ``synthetic_size``, ``device``, ``width`` (0: 0.25 on CPU, 1.0 on
    CUDA), ``out_dir`` and ``seed``; ``model`` names the artifacts subfolder.
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
    return Run(device, d, width, out, print if d.is_main else (lambda *a, **k: None))


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


def save_trained(out: Path, model, *, model_name, model_args, meta, metrics, headline) -> None:
    """The finished run: checkpoint.pt (its meta carrying the ``headline`` metrics that have
    a value, for the exported model's card) and metrics.json."""
    shown = {k: metrics[k] for k in headline if metrics.get(k) is not None}
    save_checkpoint(
        out / "checkpoint.pt",
        model,
        model_name=model_name,
        model_args=model_args,
        epoch=metrics["epochs"],
        metrics=metrics,
        meta={**meta, "metrics": shown},
    )
    write_json(out / "metrics.json", metrics)


# ------------------------------------------------------------- model and optimizer


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(
    model: nn.Module, device: torch.device, *, channels_last: bool, d: Dist, compile=False
):
    """Move, set memory format, wrap in DDP, compile if asked.

    Returns (model to train, unwrapped model): the unwrapped one is evaluated and saved,
    so a checkpoint never carries DDP's or torch.compile's key prefixes.
    """
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw = model
    if d.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return (torch.compile(model) if compile else model), raw


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, d: Dist, shuffle=True):
    """This rank's index batches for one epoch: a permutation fixed by (seed, epoch).

    Like DistributedSampler with set_epoch: ranks take interleaved shares of the
    same permutation, padded so every rank runs the same number of steps.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    per_rank = math.ceil(n / d.world_size)
    order = torch.cat([order, order[: per_rank * d.world_size - n]])[d.rank :: d.world_size]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def steps_per_epoch(n: int, cfg, d: Dist) -> int:
    """Optimizer steps in one epoch of n samples: all of this rank's batches, or cfg.max_steps."""
    steps = len(epoch_batches(n, cfg.batch_size, 0, cfg.seed, d))
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def build_optimizer(raw: nn.Module, cfg, steps: int, *, pct_start: float):
    """AdamW at cfg.lr with cfg.weight_decay, and a one-cycle schedule over cfg.epochs."""
    optimizer = torch.optim.AdamW(raw.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=pct_start
    )
    return optimizer, scheduler


# ------------------------------------------------------------------------ the loops


class NonFiniteLoss(FloatingPointError):
    pass


def _step_loss(model, batch, loss_fn, device, channels_last: bool):
    """Forward one batch under autocast; the loss in float32: (loss, parts, correct)."""
    x, target = batch
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device):
        output = model(x)
    return loss_fn(output.float() if torch.is_tensor(output) else output, target)


def train_one_epoch(
    model: nn.Module,
    batches: list[torch.Tensor],
    get_batch: Callable[[torch.Tensor], tuple],
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device,
    *,
    epoch: int,
    d: Dist,
    channels_last: bool = False,
    desc: str = "train",
    loss_limit: float = math.inf,
) -> dict:
    """One pass over ``batches``; ``loss_fn(output, target) -> (loss, parts, correct)``.

    ``get_batch(indices) -> (inputs, targets)`` already on the device. ``correct``
    may be None where accuracy means nothing (detection). Returns the mean loss,
    the mean of each of its parts, accuracy and throughput. Stops loudly on a
    non-finite loss, or one above ``loss_limit`` (diverged), printing its parts.
    """
    model.train()
    total_loss, total_correct, seen = 0.0, 0, 0
    part_sums: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(
        batches, desc=f"{desc} epoch {epoch}", unit="batch", disable=not d.is_main, leave=False
    )
    for indices in bar:
        loss, parts, correct = _step_loss(model, get_batch(indices), loss_fn, device, channels_last)
        value = loss.item()  # the step's one wait for the device
        if not math.isfinite(value) or value > loss_limit:
            shown = {k: float(v.detach()) if torch.is_tensor(v) else v for k, v in parts.items()}
            what = "loss" if math.isfinite(value) else "non-finite loss"
            limit = f" (above {loss_limit:.3g})" if math.isfinite(value) else ""
            raise NonFiniteLoss(f"{what} {value:.4g}{limit} at epoch {epoch}: parts {shown}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = len(indices)
        total_loss += value * n
        for k, v in parts.items():
            part_sums[k] = (
                part_sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) * n
            )
        total_correct += int(correct or 0)
        seen += n
        shown = {"loss": f"{total_loss / seen:.3f}"}
        if correct is not None:
            shown["acc"] = f"{total_correct / seen:.1%}"
        shown["img_s"] = f"{seen * d.world_size / (time.perf_counter() - start):.0f}"
        bar.set_postfix(shown)
    seconds = time.perf_counter() - start
    stats = {
        "loss": total_loss / seen,
        **{k: v / seen for k, v in part_sums.items()},
        "images_per_s": seen * d.world_size / seconds,
        "seconds": seconds,
    }
    if correct is not None:
        stats["accuracy"] = total_correct / seen
    return stats


@torch.no_grad()
def evaluate(model: nn.Module, batches, get_batch, loss_fn, device, *, channels_last=False) -> dict:
    model.eval()
    total_loss, total_correct, seen = 0.0, 0, 0
    for indices in batches:
        loss, _, correct = _step_loss(model, get_batch(indices), loss_fn, device, channels_last)
        total_loss += loss.item() * len(indices)
        total_correct += int(correct or 0)
        seen += len(indices)
    stats = {"loss": total_loss / seen}
    if correct is not None:
        stats["accuracy"] = total_correct / seen
    return stats


@dataclass
class Job:
    """What one trainer brings to the shared loop."""

    model_name: str  # the training state's model_name; also the progress bar's label
    model_args: dict  # rebuilds the model from the training state
    meta: dict  # the checkpoint's meta
    n_train: int  # training samples
    train_batch: Callable[[int], Callable]  # epoch -> get_batch(indices), that epoch's augmentation
    val_batch: Callable  # get_batch(indices) for held-out samples
    val_batches: list  # the held-out index batches, the same every epoch
    loss_fn: Callable  # (output, target) -> (loss, parts, correct or None)
    report: Callable[[dict, dict], str]  # (train stats, held-out stats) -> the epoch's log line
    plot: Callable  # (history, path): the training curves to a PNG
    loss_limit: float = math.inf  # a training loss above this has diverged: stop the run


@dataclass
class Fitted:
    history: list[dict]  # one record per epoch: train_* and val_* statistics
    train_seconds: float  # this process's time in the loop
    samples: list[int]  # the training samples this rank saw in its last epoch


def fit(run: Run, cfg, model, raw, optimizer, scheduler, job: Job) -> Fitted:
    """Train until cfg.epochs (after resuming from out/train_state.pt when cfg.resume).

    Each epoch: this rank's shuffled batches (cut to cfg.max_steps), one training pass, the
    held-out pass, a log line; the main process then saves the resumable state,
    history.json and curves.png.
    """
    state_path, start_epoch, history = resume_if_asked(
        cfg.resume, run.out, raw, optimizer, scheduler, run.log
    )
    d, steps, samples = run.d, steps_per_epoch(job.n_train, cfg, run.d), []
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        batches = epoch_batches(job.n_train, cfg.batch_size, epoch, cfg.seed, d)[:steps]
        samples = torch.cat(batches).tolist() if batches else []
        try:
            stats = train_one_epoch(
                model,
                batches,
                job.train_batch(epoch),
                job.loss_fn,
                optimizer,
                scheduler,
                run.device,
                epoch=epoch + 1,
                d=d,
                channels_last=cfg.channels_last,
                desc=job.model_name,
                loss_limit=job.loss_limit,
            )
        except NonFiniteLoss as err:  # stop loudly, before anything broken is saved
            raise SystemExit(
                f"error: training diverged: {err}. Nothing of this epoch was saved; a smaller "
                f"--lr (this run: {cfg.lr:g}) usually cures it."
            ) from None
        val_stats = evaluate(
            raw,
            job.val_batches,
            job.val_batch,
            job.loss_fn,
            run.device,
            channels_last=cfg.channels_last,
        )
        history.append(
            {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in stats.items()},
                **{f"val_{k}": v for k, v in val_stats.items()},
            }
        )
        run.log(f"epoch {epoch + 1}/{cfg.epochs}: {job.report(stats, val_stats)}")
        if d.is_main:
            save_training_state(
                state_path,
                raw,
                optimizer,
                scheduler,
                epoch=epoch + 1,
                model_name=job.model_name,
                model_args=job.model_args,
                history=history,
                meta=job.meta,
            )
            write_json(run.out / "history.json", {"history": history})
            job.plot(history, run.out / "curves.png")
    return Fitted(history, time.perf_counter() - started, samples)
