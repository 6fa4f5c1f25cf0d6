"""Heatmap rendering for fully convolutional maps (numpy + PIL, no torch).

A map's cells are placed by its ``models.grid.Grid``: cell (i, j) of the FCN
(``models.alexnet.PaddedFCN.grid``: window 224, stride 32, offset -96) is the
classifier's answer for the 224x224 window whose top-left corner is
(32 j - 96, 32 i - 96), centred 16 pixels inside each edge for the first cell.
Cells are drawn as stride x stride blocks around their window centres, exactly
where windows were evaluated, never stretched. The serving code
(streamlit_app) uses these functions too.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.grid import Grid


def place_map(values: np.ndarray, image_hw: tuple[int, int], grid: Grid) -> np.ndarray:
    """(h, w) cell values -> (H, W) image-sized array, NaN where no window is centred."""
    H, W = image_hw
    stride = grid.stride
    out = np.full((H, W), np.nan, dtype=np.float32)
    block = np.kron(values.astype(np.float32), np.ones((stride, stride), np.float32))
    start = grid.block_start()  # top-left of the first window's centre block
    src = max(0, -start)  # rows/columns of the block that fall before the image
    top = max(0, start)
    bh, bw = min(block.shape[0] - src, H - top), min(block.shape[1] - src, W - top)
    if bh > 0 and bw > 0:
        out[top : top + bh, top : top + bw] = block[src : src + bh, src : src + bw]
    return out


def colorize(values: np.ndarray, cmap: str = "inferno", vmin=0.0, vmax=1.0) -> np.ndarray:
    """Float array (NaN = transparent) -> RGBA uint8 through a matplotlib colormap."""
    from matplotlib import colormaps

    norm = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin or 1.0), 0, 1)
    rgba = (colormaps[cmap](norm) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(np.isnan(values), 0, 255)
    return rgba


def overlay(image: np.ndarray, values: np.ndarray, *, alpha=0.5, cmap="inferno") -> np.ndarray:
    """Blend a placed map (H, W, values in [0, 1], NaN outside) over an RGB uint8 image."""
    # Opacity grows with the value, so the image stays readable where the map is low.
    strength = 0.3 + 0.7 * np.clip(np.nan_to_num(values, nan=0.0), 0, 1)[..., None]
    return blend(image, colorize(values, cmap), alpha * strength)


def overlay_cells(
    image: np.ndarray, values: np.ndarray, grid: Grid, *, alpha=0.5, cmap="inferno"
) -> np.ndarray:
    """``overlay(image, place_map(values, ..., grid))`` computed per cell, then spread to pixels.

    The same picture (tested equal), several times faster on large images: the
    colour map and the opacity are evaluated once per cell, not once per pixel.
    """
    H, W = image.shape[:2]
    h, w = values.shape
    cells = place_map(np.arange(h * w, dtype=np.float32).reshape(h, w), (H, W), grid)
    inside = ~np.isnan(cells)
    idx = np.where(inside, cells, 0).astype(np.int64)
    strength = (0.3 + 0.7 * np.clip(np.nan_to_num(values, nan=0.0), 0, 1)).ravel()
    rgba = colorize(values, cmap).reshape(-1, 4)
    a = (rgba[:, 3].astype(np.float32) / 255 * alpha * strength)[idx] * inside  # (H, W)
    a = a[..., None]
    return (image.astype(np.float32) * (1 - a) + rgba[idx, :3] * a).round().astype(np.uint8)


def blend(image: np.ndarray, rgba: np.ndarray, alpha=1.0) -> np.ndarray:
    """Alpha-composite an RGBA uint8 layer over an RGB uint8 image (alpha scales its opacity)."""
    a = rgba[..., 3:].astype(np.float32) / 255 * alpha
    return (image.astype(np.float32) * (1 - a) + rgba[..., :3] * a).round().astype(np.uint8)


PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [128, 128, 128],
        [0, 0, 0],
    ],
    np.uint8,
)


def argmax_image(
    probs: np.ndarray, image_hw, grid: Grid, background: int | None = None
) -> np.ndarray:
    """(C, h, w) probabilities -> RGBA image of the winning class per cell (background clear)."""
    winner = probs.argmax(0)
    placed = place_map(winner, image_hw, grid)
    rgba = np.zeros((*image_hw, 4), np.uint8)
    valid = ~np.isnan(placed)
    idx = np.nan_to_num(placed, nan=0).astype(int)
    rgba[..., :3] = PALETTE[idx % len(PALETTE)]
    rgba[..., 3] = np.where(valid & (idx != (background if background is not None else -1)), 170, 0)
    return rgba


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path, format="PNG")
