"""The one checkpoint format: a plain dict that loads with ``weights_only=True``.

Keys: ``model_name``, ``model_args``, ``state_dict``, ``optimizer``, ``epoch``,
``metrics``, ``meta``. ``meta`` carries the preprocessing (classes, mean, std,
input size, ...) that the exporters copy into the ONNX metadata. A model is
rebuilt from the file alone through the ``MODELS`` registry.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from models.alexnet import AlexNet, FullyConvolutionalAlexNet
from models.detectnet import DetectNet
from models.mlp import MLP

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "alexnet": AlexNet,
    "alexnet_fcn": FullyConvolutionalAlexNet,
    "detectnet": DetectNet,
}
KEYS = ("model_name", "model_args", "state_dict", "optimizer", "epoch", "metrics", "meta")


def save_checkpoint(
    path,
    model: nn.Module,
    *,
    model_name: str,
    model_args: dict,
    optimizer: dict | None = None,
    epoch: int = 0,
    metrics: dict | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a checkpoint atomically: a temporary file in the same folder, then a rename."""
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; known: {sorted(MODELS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = dict(
        model_name=model_name,
        model_args=model_args,
        state_dict=state,
        optimizer=optimizer or {},
        epoch=epoch,
        metrics=metrics or {},
        meta=meta or {},
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint without unpickling arbitrary objects; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train the model first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err.__class__.__name__})") from err
    missing = [k for k in KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a workshop checkpoint (missing {missing})")
    return ckpt


def build_model(ckpt: dict) -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights (eval mode)."""
    cls = MODELS.get(ckpt["model_name"])
    if cls is None:
        raise ValueError(f"unknown model {ckpt['model_name']!r}; known: {sorted(MODELS)}")
    model = cls(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
