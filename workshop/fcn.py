"""Module 2 beyond training: class maps for whole scenes, the pointing game, the sliding window.

probs = class_maps(fcn, image)           # (classes, h, w) softmax maps
pointing_game(fcn, coco_json, images)    # is each class's peak inside one of its objects?
sliding_window(classifier, x)            # the DIGITS-lab baseline, window by window
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.alexnet import (
    STRIDE,
    WINDOW,
    AlexNet,
    FullyConvolutionalAlexNet,
    PaddedFCN,
    output_size,
)
from models.heatmap import argmax_image, blend, overlay, place_map
from workshop.data.images import normalize, open_rgb
from workshop.engine import autocast


def image_tensor(image, device) -> torch.Tensor:
    """PIL image or (H, W, 3) uint8 array -> normalized (1, 3, H, W) float tensor."""
    arr = np.array(image, dtype=np.uint8)  # a writable copy
    x = torch.from_numpy(arr).to(device).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    return normalize(x)


@torch.no_grad()
def class_logits(fcn: FullyConvolutionalAlexNet, image, device=None):
    """The FCN's logits for a whole image: (classes, h, w) float32 numpy.

    The image goes through ``PaddedFCN`` (zero-padded by 96 pixels, the mean
    colour after normalization), so the map's geometry is ``PaddedFCN.grid``:
    window centres run from 16 pixels inside each edge.
    """
    device = device or next(fcn.parameters()).device
    fcn.eval()
    with autocast(device):
        logits = PaddedFCN(fcn)(image_tensor(image, device))
    return logits.float()[0].cpu().numpy()


def class_maps(fcn: FullyConvolutionalAlexNet, image, device=None):
    """Softmax over classes of the logits: (classes, h, w) probabilities, float32."""
    logits = class_logits(fcn, image, device)
    e = np.exp(logits - logits.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def log_odds(logits: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) per class and cell: z_c - logsumexp(z_others), float64.

    It ranks like the probability but never saturates: two cells at p = 1.0
    in floating point still have different log-odds.
    """
    z = logits.astype(np.float64)
    out = np.empty_like(z)
    for c in range(len(z)):
        others = np.delete(z, c, axis=0)
        m = others.max(0)
        out[c] = z[c] - m - np.log(np.exp(others - m).sum(0))
    return out


def pointing_game(fcn, coco_json, images_dir, classes: list[str], limit: int = 0) -> dict:
    """For each (scene, class present) pair: does the class map's peak fall inside a box of it?

    The peak is the centre of the cell with the highest log-odds of the class
    (probabilities saturate at 1.0 and would tie), maps computed with the
    96-pixel margin, so windows are centred up to 16 pixels from each edge); a
    hit needs it inside a ground-truth box of that class, with no tolerance.
    Returns the accuracy (None without a single box to point at) and per-class counts.
    """
    coco = json.loads(Path(coco_json).read_text())
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    boxes: dict[int, list] = {}
    for a in coco["annotations"]:
        boxes.setdefault(a["image_id"], []).append((name_of[a["category_id"]], a["bbox"]))
    hits, total, per_class = 0, 0, {c: [0, 0] for c in classes}
    images = coco["images"][:limit] if limit else coco["images"]
    for info in images:
        scores = log_odds(class_logits(fcn, open_rgb(Path(images_dir) / info["file_name"])))
        xs, ys = PaddedFCN.grid.cell_centers(*scores.shape[1:])
        for cls in sorted({name for name, _ in boxes.get(info["id"], [])}):
            k = classes.index(cls)
            i, j = np.unravel_index(scores[k].argmax(), scores[k].shape)
            px, py = xs[i, j], ys[i, j]
            hit = any(
                x <= px <= x + w and y <= py <= y + h
                for name, (x, y, w, h) in boxes[info["id"]]
                if name == cls
            )
            hits += hit
            total += 1
            per_class[cls][0] += hit
            per_class[cls][1] += 1
    return {
        "pointing_accuracy": hits / total if total else None,  # no boxes: no score
        "pointing_trials": total,
        "pointing_per_class": {c: (h / n if n else None) for c, (h, n) in per_class.items()},
    }


CONTEXT_BEFORE = 96  # >= the 66 pixels the 6x6 pool5 block of a window reads before it, x32
CONTEXT_AFTER = 128  # >= the 64 pixels it reads after the window's 224


@torch.no_grad()
def sliding_window(
    classifier: AlexNet, x: torch.Tensor, *, context: bool = True, cells=None
) -> torch.Tensor:
    """The lab's baseline: the classifier run window by window, 224 at stride 32.

    ``context=False`` is the DIGITS lab's way: each 224 crop alone. The padded
    convolutions (conv1-conv5) then read zeros at the crop's border where the
    FCN reads the neighbouring pixels, so interior windows differ slightly.

    ``context=True`` gives each window the surrounding pixels its features read
    (a pool5 cell sees 195 pixels, so the window's 6x6 pool5 block sees 66
    pixels before the window and 64 after it): the features are computed on the
    window plus that margin, cut to the image, and the window's 6x6 block goes
    through the same classifier head. This is exactly the FCN's computation, one
    window at a time. ``cells`` restricts the work to some (i, j) windows.
    Returns logits (classes, h, w) in the FCN map's layout (NaN where skipped).
    """
    classifier.eval()
    h, w = x.shape[-2:]
    x = F.pad(x, (0, max(0, WINDOW - w), 0, max(0, WINDOW - h)))  # small images, as the FCN
    H, W = x.shape[-2:]
    rows, cols = output_size(H), output_size(W)
    cells = cells if cells is not None else [(i, j) for i in range(rows) for j in range(cols)]
    out = torch.full((classifier.classifier[-1].out_features, rows, cols), float("nan"))
    for i, j in cells:
        y0, x0 = i * STRIDE, j * STRIDE
        if not context:
            crop = x[..., y0 : y0 + WINDOW, x0 : x0 + WINDOW]
            crop = F.pad(crop, (0, WINDOW - crop.shape[-1], 0, WINDOW - crop.shape[-2]))
            out[:, i, j] = classifier(crop)[0]
            continue
        # A margin aligned to the stride keeps the crop's cells on the image's cell grid.
        top, left = max(0, y0 - CONTEXT_BEFORE), max(0, x0 - CONTEXT_BEFORE)
        crop = x[..., top : y0 + WINDOW + CONTEXT_AFTER, left : x0 + WINDOW + CONTEXT_AFTER]
        feats = classifier.features(crop)
        r, c = (y0 - top) // STRIDE, (x0 - left) // STRIDE
        block = feats[..., r : r + 6, c : c + 6]  # the window's (256, 6, 6) pool5 cells
        out[:, i, j] = classifier.classifier(torch.flatten(block, 1))[0]
    return out


@torch.no_grad()
def compare_with_sliding_window(classifier: AlexNet, image) -> dict:
    """FCN vs both sliding windows on one image: score differences and timings."""
    fcn = classifier.to_fully_convolutional()
    x = image_tensor(image, next(classifier.parameters()).device)
    results = {}
    for name, fn in (
        ("fcn", lambda: fcn(x)[0]),
        ("sliding_window", lambda: sliding_window(classifier, x, context=True)),
        ("plain_crops", lambda: sliding_window(classifier, x, context=False)),
    ):
        start = time.perf_counter()
        probs = torch.softmax(fn().float(), 0)
        results[name] = (time.perf_counter() - start, probs)
    t_fcn, p_fcn = results["fcn"]
    report = {
        "image_size": list(x.shape[-2:]),
        "map_size": list(p_fcn.shape[-2:]),
        "fcn_seconds": t_fcn,
    }
    for name in ("sliding_window", "plain_crops"):
        t, p = results[name]
        report[name] = {
            "seconds": t,
            "speedup_of_fcn": t / t_fcn,
            "max_prob_difference": (p - p_fcn).abs().max().item(),
            "argmax_agreement": (p.argmax(0) == p_fcn.argmax(0)).float().mean().item(),
        }
    return report


def heatmap_figure(
    fcn,
    image: np.ndarray,
    classes: list[str],
    *,
    alpha: float = 0.5,
    background: str = "background",
):
    """A figure with one overlay per object class and the argmax map; also returns the overlays.

    Each map cell is drawn as the 32x32 block at the centre of its 224 window.
    """
    from matplotlib.figure import Figure

    probs = class_maps(fcn, image)
    hw = image.shape[:2]
    names = [c for c in classes if c != background]
    grid = PaddedFCN.grid
    overlays = [
        overlay(image, place_map(probs[classes.index(c)], hw, grid), alpha=alpha) for c in names
    ]
    bg = classes.index(background) if background in classes else None
    overlays.append(blend(image, argmax_image(probs, hw, grid, background=bg)))
    titles = [f"P({c})" for c in names] + ["argmax (colour = class, background clear)"]
    fig = Figure(figsize=(4.5 * len(overlays), 4.5 * hw[0] / hw[1] + 0.6), layout="constrained")
    for ax, img, title in zip(fig.subplots(1, len(overlays)), overlays, titles):
        ax.imshow(img)
        ax.set_title(title)
        ax.set_axis_off()
    return fig, overlays
