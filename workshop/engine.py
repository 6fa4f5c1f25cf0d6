"""The training loops shared by modules 2 and 3: one epoch, evaluation, and the whole fit.

bf16 autocast on CUDA, channels_last, optional torch.compile, DDP (workshop.distributed),
deterministic per-epoch shuffling (``set_epoch`` semantics) and an exact resume: a run killed
at any moment and resumed ends with the weights of an uninterrupted run. What a trainer keeps
of its run (the saved state, files, the run's record) is workshop.runs'.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from workshop.distributed import Dist
from workshop.resume import resume_if_asked
from workshop.runs import Run, record_epoch

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
        acc = {} if correct is None else {"acc": f"{total_correct / seen:.1%}"}
        img_s = seen * d.world_size / (time.perf_counter() - start)
        bar.set_postfix({"loss": f"{total_loss / seen:.3f}", **acc, "img_s": f"{img_s:.0f}"})
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
    """Train ``run`` until cfg.epochs, resuming when cfg.resume.

    Each epoch: this rank's shuffled batches (cut to cfg.max_steps), one training pass, the
    held-out pass, a log line; its record (with its first step's lr and its seconds since the
    epoch before) is then kept by the main process (runs.record_epoch)."""
    state_path, start_epoch, history = resume_if_asked(
        cfg.resume, run.out, raw, optimizer, scheduler, run.log
    )
    d, steps, samples = run.d, steps_per_epoch(job.n_train, cfg, run.d), []
    cl = cfg.channels_last
    started = mark = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        batches = epoch_batches(job.n_train, cfg.batch_size, epoch, cfg.seed, d)[:steps]
        samples = torch.cat(batches).tolist() if batches else []
        lr = optimizer.param_groups[0]["lr"]
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
                channels_last=cl,
                desc=job.model_name,
                loss_limit=job.loss_limit,
            )
        except NonFiniteLoss as err:  # stop loudly, before anything broken is saved
            raise SystemExit(
                f"error: training diverged: {err}. Nothing of this epoch was saved; a smaller "
                f"--lr (this run: {cfg.lr:g}) usually cures it."
            ) from None
        val_stats = evaluate(
            raw, job.val_batches, job.val_batch, job.loss_fn, run.device, channels_last=cl
        )
        now, train = time.perf_counter(), {f"train_{k}": v for k, v in stats.items()}
        val = {f"val_{k}": v for k, v in val_stats.items()}
        history.append({"epoch": epoch + 1, **train, **val, "lr": lr, "epoch_seconds": now - mark})
        mark = now
        run.log(f"epoch {epoch + 1}/{cfg.epochs}: {job.report(stats, val_stats)}")
        if d.is_main:
            record_epoch(run, job, history, state_path, raw, optimizer, scheduler)
    return Fitted(history, time.perf_counter() - started, samples)
