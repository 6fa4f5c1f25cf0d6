"""Exact resume: every RNG's state and the training state saved each epoch, restored on --resume.

A run killed at any moment and resumed from its last ``train_state.pt`` ends with exactly
the weights of an uninterrupted run: model, optimizer, scheduler, epoch and every RNG come back.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint, save_checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- libraries that draw from the global state
    torch.manual_seed(seed)


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
