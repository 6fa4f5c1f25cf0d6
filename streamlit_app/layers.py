"""DIGITS' "show visualizations and statistics" for one image: each layer's weights and its
activations for that image (shape, mean, std, histogram, a picture).

    found = checkpoint_beside("artifacts/alexnet/model.onnx")   # None: nothing to read
    net = network_stats(found, image)         # image: the served RGB array, or the MLP's
    net.layers[0].weights.mean                # digit vector (Output.extra["digit"])
    net.figures                               # {"conv1 filters": Figure, ...}

The ONNX file is what the app serves; these statistics read the checkpoint.pt the
exporter made it from (``models.checkpoint.load_checkpoint``: ``torch.load`` with
``weights_only=True``, nothing unpickled), because its layers carry their names. The
convolutional networks are traced with ``workshop.visualize.trace_layers`` (a ReLU
folded into its layer, as DIGITS showed the pair), named as in the AlexNet paper
(``layer_names``), with ``layer_table``'s FLOPs and ``conv1_filters``' picture. The
MLP is the course's: Theta1 and Theta2, and a2 and a3 for the digit (``feedforward``).
torch is imported only here, and only when a page asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BINS = 30  # histogram bins
CHANNELS = 8  # activation channels (and filters) in a layer's picture
TILE = 72  # pixels of one channel's tile in a picture
MATRIX = 320  # pixels of the longer side of a weight matrix's or a vector's picture
MAX_VALUES = 1_000_000  # a histogram reads at most this many values (evenly strided)


@dataclass
class Values:
    """Statistics of one tensor: the weights of a layer, or its output for the image."""

    shape: tuple[int, ...]
    mean: float
    std: float
    counts: np.ndarray  # (BINS,) histogram
    edges: np.ndarray  # (BINS + 1,)
    picture: np.ndarray | None = None  # RGB uint8


@dataclass
class LayerStats:
    name: str  # conv1..fc8 for AlexNet; hidden/output for the MLP
    path: str  # the module path (features.0) or the course's name (Theta1)
    type: str  # Conv2d+ReLU, ...
    parameters: int
    activations: Values
    weights: Values | None = None  # None for layers without weights (pooling)
    flops: int = 0


@dataclass
class NetworkStats:
    model: str  # the checkpoint's model_name
    layers: list[LayerStats]
    figures: dict = field(default_factory=dict)  # title -> matplotlib Figure

    def table(self) -> list[dict]:
        """One row per layer: shapes, parameters, FLOPs, the means and stds."""
        return [
            {
                "layer": s.name,
                "type": s.type,
                "output": "x".join(map(str, s.activations.shape)),
                "parameters": s.parameters,
                "FLOPs": s.flops,
                "weight mean": s.weights.mean if s.weights else None,
                "weight std": s.weights.std if s.weights else None,
                "activation mean": s.activations.mean,
                "activation std": s.activations.std,
            }
            for s in self.layers
        ]


def checkpoint_beside(model_path) -> Path | None:
    """The checkpoint.pt the exporter read, next to model.onnx (None when there is none)."""
    found = Path(model_path).with_name("checkpoint.pt")
    return found if found.is_file() else None


def values(array: np.ndarray, picture: np.ndarray | None = None) -> Values:
    flat = np.asarray(array, np.float64).ravel()
    sample = flat[:: max(1, flat.size // MAX_VALUES)]  # mean and std of all, histogram of some
    counts, edges = np.histogram(sample, bins=BINS)
    return Values(tuple(array.shape), float(flat.mean()), float(flat.std()), counts, edges, picture)


def tiles(
    maps: np.ndarray, cmap: str = "viridis", columns: int = CHANNELS, tile: int = TILE
) -> np.ndarray:
    """(n, h, w) maps -> one RGB picture, each map a ``tile``-pixel tile (nearest: cells stay
    cells), all on one colour scale (its top at the 99th percentile, so one hot cell leaves the rest
    visible); 2 pixels of white between tiles."""
    from models.heatmap import colorize

    lo = float(np.nanmin(maps))  # NaN: an empty tile (the MLP's square of 25 units has 0)
    hi = max(float(np.nanpercentile(maps, 99)), lo + 1e-6)
    scale = tile / max(maps.shape[1:])
    size = (max(1, round(maps.shape[2] * scale)), max(1, round(maps.shape[1] * scale)))
    pictures = [
        np.asarray(Image.fromarray(colorize(m, cmap, lo, hi)[..., :3]).resize(size, Image.NEAREST))
        for m in maps
    ]
    rows = -(-len(pictures) // columns)
    h, w = pictures[0].shape[:2]
    canvas = np.full((rows * (h + 2), min(columns, len(pictures)) * (w + 2), 3), 255, np.uint8)
    for k, pic in enumerate(pictures):
        r, c = divmod(k, columns)
        canvas[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = pic
    return canvas


def _weight_picture(weight: np.ndarray) -> np.ndarray | None:
    """A conv's first filters (their first input channel) or a linear layer's matrix."""
    if weight.ndim == 4:  # (out, in, kh, kw)
        return tiles(weight[:CHANNELS, 0], cmap="gray")
    if weight.ndim == 2:  # (out, in): at most 256 x 256 of it, evenly strided
        step_r, step_c = max(1, weight.shape[0] // 256), max(1, weight.shape[1] // 256)
        return tiles(weight[::step_r, ::step_c][None], cmap="coolwarm", columns=1, tile=MATRIX)
    return None


def conv_stats(ckpt: dict, image: np.ndarray) -> NetworkStats:
    """An FCN or a detector on one RGB image: every layer's weights and output."""
    import torch

    from models.checkpoint import build_model
    from workshop.fcn import image_tensor
    from workshop.visualize import conv1_filters, layer_names, layer_table, trace_layers

    model = build_model(ckpt).float()
    x = image_tensor(image, "cpu")

    def keep(out: torch.Tensor) -> Values:
        a = out[0].float().numpy()  # (C, H, W) for this image
        return values(a, tiles(a[:CHANNELS]) if a.ndim == 3 else None)

    with torch.no_grad():
        traced = trace_layers(model, lambda: model(x), keep)
    names = layer_names(model)
    flops = dict(zip(*layer_table(model, image.shape[:2])[["layer", "FLOPs"]].to_numpy().T))
    layers = []
    for layer in traced:
        weight = getattr(layer.module, "weight", None)
        w = weight.detach().float().numpy() if weight is not None else None
        layers.append(
            LayerStats(
                name=names[layer.path],
                path=layer.path,
                type=layer.type,
                parameters=sum(p.numel() for p in layer.module.parameters()),
                activations=layer.kept,
                weights=values(w, _weight_picture(w)) if w is not None else None,
                flops=int(flops.get(layer.path, 0)),
            )
        )
    return NetworkStats(ckpt["model_name"], layers, {"conv1 filters": conv1_filters(model)})


def mlp_stats(ckpt: dict, digit: np.ndarray) -> NetworkStats:
    """The course's network on one digit (the 400-vector it was fed): Theta1 with a2, Theta2
    with a3 (= h); the hidden units' input weights drawn as the course draws them."""
    from models.checkpoint import build_model
    from models.mlp import feedforward
    from workshop.plots import display_hidden_layer

    Theta1, Theta2 = build_model(ckpt).thetas()
    _, _, a2, _, h = feedforward(Theta1, Theta2, np.asarray(digit, np.float64)[None])
    hidden = a2[0, 1:]  # (hidden + 1,) -> (hidden,): the bias unit is not an activation
    side = int(np.ceil(np.sqrt(len(hidden))))
    grid = np.full(side * side, np.nan)
    grid[: len(hidden)] = hidden
    layers = [
        LayerStats(
            name="hidden",
            path="Theta1",
            type="sigmoid",
            parameters=Theta1.size,
            weights=values(Theta1, _weight_picture(Theta1)),
            activations=values(hidden, tiles(grid.reshape(1, side, side), tile=160)),  # a2, square
            flops=2 * Theta1.size,
        ),
        LayerStats(
            name="output",
            path="Theta2",
            type="sigmoid",
            parameters=Theta2.size,
            weights=values(Theta2, _weight_picture(Theta2)),
            activations=values(h[0], tiles(h[0][None, None, :], tile=MATRIX)),  # a3 as a row
            flops=2 * Theta2.size,
        ),
    ]
    return NetworkStats(ckpt["model_name"], layers, {"hidden units": display_hidden_layer(Theta1)})


STATS = {"fcn": conv_stats, "detector": conv_stats, "mlp": mlp_stats}


def network_stats(checkpoint, kind: str, image: np.ndarray) -> NetworkStats:
    """Per-layer statistics of the checkpoint's network for one input (see the module doc)."""
    from models.checkpoint import load_checkpoint

    return STATS[kind](load_checkpoint(checkpoint), image)
