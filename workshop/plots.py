"""Pictures for the notebooks and the artifacts folders.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so they
render inline in Jupyter and save from scripts without a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def tile_images(X: np.ndarray, example_width: int | None = None, pad: int = 1) -> np.ndarray:
    """Rows of X (column-major images, the course's layout) -> one grid image.

    Each image is scaled by its own largest absolute value, as the course's
    ``displayData`` does, so weight pictures and pixel pictures both show
    their pattern. Returns a 2-D array in [-1, 1] with -1 between the tiles.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    m, n = X.shape
    width = example_width or round(math.sqrt(n))
    height = n // width
    if width * height != n:
        raise ValueError(f"rows of {n} values do not form images {width} pixels wide")
    rows = math.floor(math.sqrt(m))
    cols = math.ceil(m / rows)
    grid = -np.ones((pad + rows * (height + pad), pad + cols * (width + pad)))
    for k in range(m):
        r, c = divmod(k, cols)
        scale = np.abs(X[k]).max() or 1.0
        img = X[k].reshape(width, height).T / scale  # column-major row -> (height, width)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = img
    return grid


def display_data(X: np.ndarray, example_width: int | None = None, *, title: str = "") -> Figure:
    """The course's ``displayData``: a grey grid of the images in the rows of X."""
    grid = tile_images(X, example_width)
    fig = Figure(figsize=(5, 5 * grid.shape[0] / grid.shape[1]), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def display_hidden_layer(Theta1: np.ndarray, *, title: str = "") -> Figure:
    """What each hidden unit looks for: its 400 input weights drawn as a 20x20 image."""
    Theta1 = np.asarray(Theta1)
    n = Theta1.shape[0]
    return display_data(Theta1[:, 1:], title=title or f"the {n} hidden units' input weights")


def plot_learning_curve(history: list[dict], *, title: str = "") -> Figure:
    """Cost and accuracies per optimizer iteration, from a trainer's history records."""
    it = [h["iteration"] for h in history]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_cost, ax_acc = fig.subplots(1, 2)
    ax_cost.plot(it, [h["cost"] for h in history], color="tab:blue")
    ax_cost.set(xlabel="iteration", ylabel="cost J (regularized)", yscale="log")
    for key, color in (("train_accuracy", "tab:orange"), ("test_accuracy", "tab:green")):
        if key in history[0]:
            ax_acc.plot(it, [100 * h[key] for h in history], label=key.split("_")[0], color=color)
    ax_acc.set(xlabel="iteration", ylabel="accuracy (%)", ylim=(0, 100))
    ax_acc.legend(loc="lower right")
    ax_acc.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_history(history: list[dict], path, title: str = "") -> Path:
    """Loss and accuracy curves per epoch (train and val) to a PNG."""
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


def plot_detector_history(history: list[dict], path, title: str = "") -> Path:
    """Loss per epoch (train, held out) and the training loss's two parts, to a PNG."""
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_parts = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "-o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "--o", label="held out")
    ax_parts.plot(epochs, [h["train_coverage"] for h in history], "-o", label="coverage (L2)")
    ax_parts.plot(epochs, [h["train_bboxes"] for h in history], "-o", label="boxes (L1 / size)")
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_parts.set(xlabel="epoch", ylabel="training loss part", yscale="log")
    for ax in (ax_loss, ax_parts):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
