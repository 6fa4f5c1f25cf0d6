"""What every trainer shares: the one device decision, seeding, metrics files.

Module 2 grows this into the full training engine (AMP, DDP, resume).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for "auto"; a named device must exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available here")
    return device


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
