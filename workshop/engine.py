"""The training engine shared by modules 2 and 3.

One device decision (CUDA, then MPS, then CPU), bf16 autocast on CUDA,
channels_last, optional torch.compile, DDP through torchrun's environment with
an ``is_main`` gate around printing and saving, deterministic per-epoch
shuffling (``set_epoch`` semantics), and checkpoints written every epoch with a
temporary file and a rename. ``--resume`` restores model, optimizer,
scheduler, epoch and every RNG, so a run killed at any moment and resumed ends
with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from models.checkpoint import load_checkpoint, save_checkpoint


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for "auto"; a named device must exist. A CUDA device
    is capped to this process's share of its memory in the hosted workshop."""
    if requested == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available here")
    apply_gpu_share(device)
    return device


def apply_gpu_share(device: torch.device) -> float | None:
    """In the hosted workshop a participant may take only a share of a GPU's memory
    (WORKSHOP_GPU_MEMORY_FRACTION, set by the hub's spawner); cap this process to it."""
    fraction = os.environ.get("WORKSHOP_GPU_MEMORY_FRACTION")
    if device.type != "cuda" or not fraction:
        return None
    torch.cuda.set_per_process_memory_fraction(float(fraction), device)
    return float(fraction)


def describe_device(device: torch.device) -> str:
    """A readable device name for metrics files: 'cpu, 2 threads', 'cuda (NVIDIA H100 ...)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu, {n} thread{'s' if n > 1 else ''}"
    return device.type


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- libraries that draw from the global state
    torch.manual_seed(seed)


def write_json(path, data: dict) -> Path:
    """Write JSON atomically (temporary file + rename), so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def artifacts_dir(model: str) -> Path:
    """artifacts/<model>/, or $ARTIFACTS/<model>/ when ARTIFACTS is set."""
    return Path(os.environ.get("ARTIFACTS", "artifacts")) / model


def trained_artifacts(model: str) -> Path:
    """Where a trained <model> is: one's own (artifacts_dir), else the instructor's shared,
    read-only one in the hosted workshop ($WORKSHOP_SHARED_ARTIFACTS), else one's own."""
    own = artifacts_dir(model)
    shared = Path(os.environ.get("WORKSHOP_SHARED_ARTIFACTS") or own) / model
    if not (own / "checkpoint.pt").is_file() and (shared / "checkpoint.pt").is_file():
        return shared
    return own


# ----------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); else single."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def weights_digest(model: nn.Module) -> str:
    """A short hash of every parameter's bytes: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def gather_digests(model: nn.Module, d: Dist) -> list[str]:
    """Every rank's weights digest (a check that DDP kept the replicas identical)."""
    digest = weights_digest(model)
    if not d.enabled:
        return [digest]
    out = [None] * d.world_size
    dist.all_gather_object(out, digest)
    return out


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


def end_run(raw_model: nn.Module, d: Dist) -> list[str]:
    """After the last epoch: every rank's weights digest, then leave the process group.

    A rank other than the main one has nothing left to do and ends here. It leaves without
    the interpreter's teardown: gloo's worker threads can still be alive then, and their
    destruction aborts the process now and again ("terminate called without an active
    exception", SIGABRT), which made torchrun report a finished run as failed.
    """
    digests = gather_digests(raw_model, d)
    if d.enabled:
        dist.destroy_process_group()
        if not d.is_main:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return digests


def run_metrics(run: Run, cfg, *, train_seconds: float, digests: list[str], dataset: str) -> dict:
    """What every trainer's metrics.json says about how it ran."""
    from dataclasses import asdict

    return {
        "train_seconds": train_seconds,
        "device": describe_device(run.device),
        "world_size": run.d.world_size,
        "rank_weight_digests": digests,
        "width": run.width,
        "dataset": dataset,
        "config": asdict(cfg),
    }


def synthetic_data(cfg, d: Dist) -> Path:
    """The synthetic data set for cfg.seed and cfg.synthetic_size under cfg.data_dir, made
    by the main process (the others wait for it); returns its root folder."""
    from models import synthetic

    syn_cfg = synthetic.SyntheticConfig(seed=cfg.seed)
    if cfg.synthetic_size == "small":
        syn_cfg = syn_cfg.small()
    root = Path(cfg.data_dir) / ("synthetic" if cfg.synthetic_size == "full" else "synthetic-small")
    if d.is_main:
        synthetic.generate(root, syn_cfg)
    if d.enabled:
        dist.barrier()
    return root


# ------------------------------------------------------------------------ precision


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device, *, channels_last: bool, d: Dist):
    """Move, set memory format, wrap in DDP. Returns (model to train, unwrapped model)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw = model
    if d.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model, raw


# ------------------------------------------------------------------------ the loops


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
) -> dict:
    """One pass over ``batches``; ``loss_fn(output, target) -> (loss, parts, correct)``.

    ``get_batch(indices) -> (inputs, targets)`` already on the device. ``correct``
    may be None where accuracy means nothing (detection). Returns the mean loss,
    the mean of each of its parts, accuracy and throughput. Stops loudly on a
    non-finite loss, printing its parts.
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
        if not torch.isfinite(loss):
            shown = {k: float(v.detach()) if torch.is_tensor(v) else v for k, v in parts.items()}
            raise NonFiniteLoss(f"non-finite loss {loss.item()} at epoch {epoch}: parts {shown}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = len(indices)
        total_loss += loss.item() * n
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


# ----------------------------------------------------------------- checkpoint, resume


def rng_state() -> dict:
    """Every RNG the training touches, as weights_only-loadable values."""
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "python": list(random.getstate()[1]),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "gauss": [int(np_state[3]), float(np_state[4])],
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            state["numpy"]["keys"].numpy().astype(np.uint32),
            state["numpy"]["pos"],
            *state["numpy"]["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    path, raw_model, optimizer, scheduler, *, epoch, model_name, model_args, history, meta
) -> None:
    """The resumable state after ``epoch`` epochs, in the one checkpoint format."""
    save_checkpoint(
        path,
        raw_model,
        model_name=model_name,
        model_args=model_args,
        epoch=epoch,
        optimizer={
            "state": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler else None,
            "rng": rng_state(),
        },
        metrics={"history": history},
        meta=meta,
    )


def resume_training(path, raw_model, optimizer, scheduler) -> tuple[int, list]:
    """Restore everything save_training_state wrote; returns (epochs done, history)."""
    ckpt = load_checkpoint(path)
    raw_model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"]["state"])
    if scheduler is not None and ckpt["optimizer"]["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["optimizer"]["scheduler"])
    set_rng_state(ckpt["optimizer"]["rng"])
    return ckpt["epoch"], ckpt["metrics"]["history"]


def resume_if_asked(resume: bool, out: Path, raw_model, optimizer, scheduler, log):
    """(state path, epochs done, history): from out/train_state.pt when resume is set."""
    state_path = Path(out) / "train_state.pt"
    if resume and state_path.is_file():
        epoch, history = resume_training(state_path, raw_model, optimizer, scheduler)
        log(f"resumed from {state_path} after epoch {epoch}")
        return state_path, epoch, history
    return state_path, 0, []


def plot_history(history: list[dict], path, title: str = "") -> Path:
    """Loss and accuracy curves per epoch (train and val) to a PNG."""
    from matplotlib.figure import Figure

    from workshop.plots import save_figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for split, style in (("train", "-o"), ("val", "--o")):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=split)
        ax_acc.plot(epochs, [100 * h[f"{split}_accuracy"] for h in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
