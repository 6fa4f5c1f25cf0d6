"""DIGITS' "Visualize" for modules 2 and 3: filters, activations, the layer table, the settings.

    conv1_filters(model)                     # Figure: the first convolution's filters in RGB
    activations(model, image)                # Figure: each layer's first channels for one image
    layer_table(model, (1080, 1920))         # DataFrame: output shape, parameters, FLOPs per layer
    settings_table("artifacts/alexnet")      # DataFrame: the run's training settings

They work for ``AlexNet``, ``FullyConvolutionalAlexNet`` and ``DetectNet``. Figures
are ``matplotlib.figure.Figure`` objects (no pyplot state), so nothing leaks from
one notebook cell into the next; a notebook shows a returned figure inline.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import itertools
import json
import math
import textwrap
import tokenize
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from models.checkpoint import load_checkpoint
from workshop.fcn import image_tensor

# The first module of a model path -> the prefix of its weight layers' names in the
# AlexNet paper (and Caffe's prototxt): conv1..conv5, then fc6..fc8, counted on.
NAME_PREFIX = {"features": "conv", "classifier": "fc", "conv_classifier": "fc"}

# Layers that change no shape: a ReLU is folded into the layer before it (Caffe ran it
# in place, and DIGITS showed the pair as one output); Dropout is the identity at inference.
FOLDED = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
SKIPPED = (nn.Dropout, nn.Identity)

# A checkpoint's model_name -> its trainer's config dataclass (module, class).
CONFIGS = {
    "mlp": ("workshop.train_mlp", "MLPConfig"),
    "alexnet": ("workshop.train_alexnet", "AlexNetConfig"),
    "alexnet_fcn": ("workshop.train_alexnet", "AlexNetConfig"),
    "detectnet": ("workshop.train_detectnet", "DetectNetConfig"),
}


@dataclass
class Layer:
    """One row of the trace: a leaf module's output for one image."""

    path: str  # module path, e.g. features.0
    module: nn.Module
    type: str  # e.g. Conv2d+ReLU once a ReLU is folded in
    shape: tuple[int, ...]  # output shape without the batch: (C, H, W) or (features,)
    kept: torch.Tensor | None = None  # what the caller kept of the output (activations)


# ------------------------------------------------------------------------ tracing


def layer_names(model: nn.Module) -> dict[str, str]:
    """Module path -> the paper's name (conv1..conv5, pool1/2/5, fc6..fc8); others keep the path."""
    names, k = {}, 0
    for path, m in model.named_modules():
        if not path or next(m.children(), None) is not None:
            continue
        prefix = NAME_PREFIX.get(path.split(".")[0])
        if isinstance(m, nn.Conv2d | nn.Linear):
            k += 1
            names[path] = f"{prefix}{k}" if prefix else path
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d) and prefix:
            names[path] = f"pool{k}"  # Caffe's pool1, pool2, pool5: after conv1, conv2, conv5
        else:
            names[path] = path
    return names


def trace_layers(model: nn.Module, run, keep=None) -> list[Layer]:
    """Call ``run()`` with a forward hook on every leaf module; one Layer per call, in order.

    ``keep(output)`` picks what to hold of each output (None: shapes only). ReLUs are
    folded into the layer before them and Dropout is left out (see FOLDED, SKIPPED).
    """
    layers: list[Layer] = []

    def hook(path):
        def record(module, inputs, output):
            kept = keep(output) if keep else None
            layers.append(Layer(path, module, type(module).__name__, tuple(output.shape[1:]), kept))

        return record

    handles = [
        m.register_forward_hook(hook(path))
        for path, m in model.named_modules()
        if path and next(m.children(), None) is None
    ]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    folded: list[Layer] = []
    for layer in layers:
        if isinstance(layer.module, SKIPPED):
            continue
        if isinstance(layer.module, FOLDED) and folded and folded[-1].shape == layer.shape:
            last = folded[-1]
            last.type += f"+{layer.type}"
            last.kept = layer.kept  # the activation after the nonlinearity
            continue
        folded.append(layer)
    return folded


def _meta_copy(model: nn.Module) -> nn.Module:
    """The model with shape-only (meta) weights: a 1080p trace then costs no arithmetic."""

    def meta(t):
        m = torch.empty_like(t, device="meta")
        return nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m

    memo = {id(t): meta(t) for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def layer_flops(module: nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of a conv or linear layer for one image, a multiply-add counted as 2 (no bias, as
    torch.utils.flop_counter); 0 for other layers (pooling, ReLU: comparisons, not arithmetic)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return 2 * math.prod(shape) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return 2 * math.prod(shape) * module.in_features
    return 0


# ------------------------------------------------------------------------ the layer table


def layer_table(model: nn.Module, input_hw) -> pd.DataFrame:
    """One row per layer for one (H, W) image: output shape, parameters, FLOPs; then a total.

    Columns: ``layer`` (module path), ``name`` (conv1..fc8, pool1/2/5), ``type`` (a folded
    ReLU shows as Conv2d+ReLU; Dropout, the identity at inference, is left out), ``output``
    ((C, H, W), or (features,) after the flatten), ``parameters``, ``FLOPs`` (see layer_flops).
    Shapes come from a copy of the model on the meta device, so even a 1080p FCN at full
    width is traced without arithmetic (milliseconds, once torch has warmed up). The
    classifier (``AlexNet``) runs only where its forward does (223 to 254 pixels): other
    sizes raise a ValueError that points to ``to_fully_convolutional()``.
    """
    h, w = (input_hw, input_hw) if isinstance(input_hw, int) else input_hw
    meta = _meta_copy(model).eval()
    x = torch.empty(1, 3, h, w, device="meta")
    try:
        layers = trace_layers(meta, lambda: meta(x))
    except ValueError as err:
        raise ValueError(f"{type(model).__name__} does not run on {h}x{w}: {err}") from err
    names = layer_names(meta)
    rows = [
        {
            "layer": layer.path,
            "name": names[layer.path],
            "type": layer.type,
            "output": layer.shape,
            "parameters": sum(p.numel() for p in layer.module.parameters()),
            "FLOPs": layer_flops(layer.module, layer.shape),
        }
        for layer in layers
    ]
    total = {
        "layer": "total",
        "name": "",
        "type": "",
        "output": None,
        "parameters": sum(r["parameters"] for r in rows),
        "FLOPs": sum(r["FLOPs"] for r in rows),
    }
    return pd.DataFrame([*rows, total])


# ------------------------------------------------------------------------ pictures


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first nn.Conv2d in registration order (conv1 of all three networks)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d")
    return conv


def conv1_filters(model: nn.Module, *, columns: int = 8) -> Figure:
    """The first convolution's filters as small RGB pictures, each min-max scaled on its own.

    Each filter gets its own axes (so thin gaps separate them). Filters over other than
    3 input channels are drawn in grey, the mean over their inputs.
    """
    conv = first_conv(model)
    weight = conv.weight.detach().float().cpu()  # (out, in, kh, kw)
    if weight.shape[1] != 3:
        weight = weight.mean(1, keepdim=True)
    lo = weight.amin(dim=(1, 2, 3), keepdim=True)
    hi = weight.amax(dim=(1, 2, 3), keepdim=True)
    # A constant filter (a dead one) has hi == lo: draw it mid-grey instead of dividing by 0.
    scaled = torch.where(hi > lo, (weight - lo) / (hi - lo).clamp(min=1e-12), 0.5)
    images = scaled.permute(0, 2, 3, 1).numpy()  # (out, in, kh, kw) -> (out, kh, kw, in)

    n = len(images)
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(0.7 * columns, 0.7 * rows + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.remove()
            continue
        img = images[k]
        ax.imshow(img if img.shape[-1] == 3 else img[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
    kh, kw = conv.kernel_size
    fig.suptitle(f"conv1: {n} filters, {kh}x{kw}, each scaled to its own range", fontsize=9)
    return fig


@torch.no_grad()
def activations(model: nn.Module, image, *, device=None, channels: int = 8) -> Figure:
    """One image through the network: the first ``channels`` channels of each layer's output.

    ``image`` is an (H, W, 3) uint8 array (or a PIL image), normalized as in training
    (``workshop.fcn.image_tensor``). One row per layer that changes the shape or ends
    in a ReLU, as ``layer_table`` lists them, labelled with its name and (C, H, W), its
    channels drawn on one colour scale. The classifier shows its convolutional part
    (``features``: fc6-fc8 give vectors, not images); the FCN and the detector run whole.
    ``device`` defaults to the model's own.
    """
    device = device or next(model.parameters()).device
    x = image_tensor(image, device)
    run = model.features if hasattr(model, "classifier") else model

    def keep(out):
        return out[0, :channels].float().cpu().clone() if out.dim() == 4 else None

    was_training = model.training
    model.eval()
    try:
        layers = trace_layers(model, lambda: run(x), keep)
    finally:
        model.train(was_training)
    layers = [layer for layer in layers if layer.kept is not None]
    names = layer_names(model)

    columns = min(channels, max(len(layer.kept) for layer in layers))
    fig = Figure(figsize=(1.1 * columns + 1.2, 1.1 * len(layers) + 0.4))
    axes = fig.subplots(
        len(layers), columns, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.12}
    )
    for layer, row in zip(layers, axes):
        # One colour scale per layer, so channels compare and 1x1 maps still say something;
        # its top at the 99th percentile, so that one hot pixel leaves the rest visible.
        values = layer.kept.numpy()
        lo, hi = values.min(), max(np.percentile(values, 99), values.min() + 1e-6)
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(layer.kept):
                ax.imshow(layer.kept[c].numpy(), cmap="viridis", vmin=lo, vmax=hi)
            else:
                ax.set_frame_on(False)
        row[0].set_ylabel(f"{names[layer.path]}\n{layer.shape}", fontsize=8)
    fig.suptitle(f"{type(model).__name__}: first {columns} channels of each layer", fontsize=9)
    return fig


# ------------------------------------------------------------------------ the settings


def field_comments(cls: type) -> dict[str, str]:
    """Each dataclass field's trailing ``# comment`` in the class source ({} without source).

    Parent dataclasses are read too (a subclass's comment wins); fields without a
    comment are absent.
    """
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if is_dataclass(klass):
            comments.update(_own_field_comments(klass, {f.name for f in fields(cls)}))
    return comments


def _own_field_comments(klass: type, names: set[str]) -> dict[str, str]:
    """The trailing comments of the fields written in klass's own body."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError):
        return {}
    comments: dict[str, str] = {}
    depth, field, line_start = 0, None, True
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            field, line_start = None, True
        elif tok.type == tokenize.COMMENT:
            if field and field not in comments:
                comments[field] = tok.string.lstrip("#").strip()
        elif tok.type != tokenize.NL and line_start:
            line_start = False
            # `name: type = default` directly in the class body (depth 1), not in a method.
            is_field = tok.type == tokenize.NAME and nxt.string == ":" and depth == 1
            if is_field and tok.string in names:
                field = tok.string
    return comments


def config_class(model_name: str | None = None, keys=None) -> type | None:
    """The config dataclass of a model name (CONFIGS), or the one whose fields are ``keys``."""
    if model_name in CONFIGS:
        module, name = CONFIGS[model_name]
        return getattr(importlib.import_module(module), name)
    if keys is not None:
        for module, name in dict.fromkeys(CONFIGS.values()):
            cls = getattr(importlib.import_module(module), name)
            if {f.name for f in fields(cls)} == set(keys):
                return cls
    return None


def _run_config(run) -> tuple[dict, type | None, dict | None]:
    """(settings, their dataclass or None, the checkpoint or None) from settings_table's input."""
    if is_dataclass(run) and not isinstance(run, type):
        return asdict(run), type(run), None
    if isinstance(run, str | Path):
        path = Path(run)
        if path.is_dir():  # a run folder: its checkpoint, else its metrics
            ckpt_path = path / "checkpoint.pt"
            path = ckpt_path if ckpt_path.is_file() else path / "metrics.json"
        if path.suffix == ".json":
            return _run_config(json.loads(path.read_text()))
        ckpt = load_checkpoint(path)
        found = _checkpoint_config(ckpt)
        beside = path.parent / "metrics.json"
        if found is None and beside.is_file():
            # AlexNet checkpoints from before the config was saved with them
            config = json.loads(beside.read_text()).get("config")
            found = config if isinstance(config, dict) else None
        if found is None:
            raise ValueError(f"{path}: no training config in the checkpoint, nor in {beside}")
        return found, config_class(ckpt["model_name"], found), ckpt
    if not isinstance(run, dict):
        raise TypeError(f"expected a config dataclass, a dict or a path, got {type(run).__name__}")
    if "state_dict" in run:
        found = _checkpoint_config(run)
        if found is None:
            raise ValueError(
                "this checkpoint holds no training config (older AlexNet runs wrote it only to "
                "metrics.json beside checkpoint.pt): pass that file's path or the run folder"
            )
        return found, config_class(run.get("model_name"), found), run
    if isinstance(run.get("config"), dict):  # metrics.json
        return run["config"], config_class(keys=run["config"]), None
    return run, config_class(keys=run), None


def _checkpoint_config(ckpt: dict) -> dict | None:
    """The config a trainer stored in a checkpoint: under optimizer (MLP) or metrics."""
    for part in ("optimizer", "metrics"):
        config = (ckpt.get(part) or {}).get("config")
        if isinstance(config, dict):
            return config
    return None


def settings_table(run) -> pd.DataFrame:
    """The run's training settings, one row each: setting, value, default, comment.

    ``run`` is a config dataclass, a checkpoint dict (``models.checkpoint`` schema), a
    metrics.json dict, a plain config dict, or a path to checkpoint.pt, metrics.json or
    the run folder. ``default`` and ``comment`` (the field's trailing comment in the
    trainer's source) come from the config dataclass when it is known, whose field order
    the rows then follow; otherwise None and "". From a checkpoint, rows for the network
    as built follow (``model_name``, ``model_args.*``, ``epoch``): a config's
    ``width=0`` means "auto", and model_args says what it became.
    """
    config, cls, ckpt = _run_config(run)
    defaults, comments, order = {}, {}, list(config)
    if cls is not None:
        names = [f.name for f in fields(cls)]
        for f in fields(cls):
            if f.default is not MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not MISSING:
                defaults[f.name] = f.default_factory()
        comments = field_comments(cls)
        # Field order (metrics.json sorts its keys); keys the class no longer has go last.
        order = [k for k in names if k in config] + [k for k in config if k not in names]
    rows = [
        {
            "setting": k,
            "value": config[k],
            "default": defaults.get(k),
            "comment": comments.get(k, ""),
        }
        for k in order
    ]
    if ckpt is not None:
        built = {"model_name": ckpt.get("model_name")}
        built.update({f"model_args.{k}": v for k, v in (ckpt.get("model_args") or {}).items()})
        built["epoch"] = ckpt.get("epoch")
        rows += [
            {"setting": k, "value": v, "default": None, "comment": "the checkpoint's, as built"}
            for k, v in built.items()
        ]
    return pd.DataFrame(rows, columns=["setting", "value", "default", "comment"])
