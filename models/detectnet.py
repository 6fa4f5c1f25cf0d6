"""A DetectNet-style detector: coverage and box maps on a stride-16 grid, clustered into boxes.

Backbone: AlexNet's conv1-conv5 without pool5 (the same layers, and so the same
weights, as module 2's ``features[:-1]``), which leaves a stride of 16: a
640x480 image gives a 39x29 grid. DetectNet used GoogLeNet with pool4 removed
for the same stride; AlexNet is chosen here so that module 2's trained features
can start the detector, and because it trains on a CPU.

Heads (1x1 convolutions), as DetectNet:

- ``coverage``: one sigmoid channel per class, 1 where a cell lies in the
  central part of an object of that class;
- ``bboxes``: 4 channels, the object's corners (x0, y0, x1, y1) in pixels
  relative to the cell's centre.

Grid geometry: cell (i, j) is centred on pixel (16 j + 15, 16 i + 15), the
centre of its receptive field. The target encoding and the decoding below are
numpy-only, so evaluation and the web app share them without torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.alexnet import _features, _widths

STRIDE = 16
CELL_OFFSET = 15  # pixel centre of cell 0
COVERAGE_SCALE = 0.4  # the covered region is the box shrunk to this share, about its centre
BOX_SCALE = 64.0  # box offsets are regressed in units of this many pixels


def grid_size(n: int) -> int:
    """Grid cells along an input side of n pixels."""
    return (n - 15) // STRIDE


class DetectNet(nn.Module):
    """Image (n, 3, H, W) -> coverage (n, classes, h, w) in [0, 1] and boxes (n, 4, h, w) px."""

    def __init__(self, *, num_classes: int = 3, width: float = 1.0):
        super().__init__()
        self.features = _features(width)[:-1]  # conv1..conv5 + ReLU, no pool5: stride 16
        c5 = _widths(width)[4]
        self.coverage = nn.Conv2d(c5, num_classes, kernel_size=1)
        self.bboxes = nn.Conv2d(c5, 4, kernel_size=1)
        nn.init.constant_(self.coverage.bias, -4.0)  # start near "nothing here"
        nn.init.normal_(self.bboxes.weight, std=1e-3)
        nn.init.zeros_(self.bboxes.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return torch.sigmoid(self.coverage(f)), self.bboxes(f) * BOX_SCALE


def cell_centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel centres of every grid cell, two (h, w) arrays."""
    return np.meshgrid(np.arange(w) * STRIDE + CELL_OFFSET, np.arange(h) * STRIDE + CELL_OFFSET)


def encode_targets(boxes: np.ndarray, labels: np.ndarray, grid_hw: tuple[int, int],
                   num_classes: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Ground truth (boxes x0, y0, x1, y1 in pixels; labels 0..C-1) -> DetectNet's target maps.

    Each box covers the cells whose centres fall in the box shrunk to 40 % about
    its centre (at least the cell nearest the centre). Covered cells regress that
    box's corners; where two boxes claim a cell the smaller one wins. Returns
    ``coverage`` (C, h, w), ``bboxes`` (4, h, w), ``mask`` (h, w) (1 on covered
    cells) and ``size`` (h, w), the covering box's area in pixels (for the loss's
    normalization by object size).
    """
    h, w = grid_hw
    coverage = np.zeros((num_classes, h, w), np.float32)
    bboxes = np.zeros((4, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    size = np.ones((h, w), np.float32)
    xs, ys = cell_centres(h, w)
    owner_area = np.full((h, w), np.inf)
    for (x0, y0, x1, y1), label in zip(np.asarray(boxes, float), np.asarray(labels, int)):
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        hw_, hh_ = bw * COVERAGE_SCALE / 2, bh * COVERAGE_SCALE / 2
        inside = (np.abs(xs - cx) <= hw_) & (np.abs(ys - cy) <= hh_)
        if not inside.any():  # small objects still claim the cell nearest their centre
            i = int(np.clip(round((cy - CELL_OFFSET) / STRIDE), 0, h - 1))
            j = int(np.clip(round((cx - CELL_OFFSET) / STRIDE), 0, w - 1))
            inside[i, j] = True
        area = bw * bh
        claim = inside & (area < owner_area)
        owner_area[claim] = area
        coverage[:, claim] = 0
        coverage[label, claim] = 1
        bboxes[:, claim] = np.stack([x0 - xs, y0 - ys, x1 - xs, y1 - ys])[:, claim]
        mask[claim] = 1
        size[claim] = area
    return {"coverage": coverage, "bboxes": bboxes, "mask": mask, "size": size}


def detectnet_loss(coverage, bboxes, targets: dict, box_weight: float = 2.0):
    """DetectNet's loss: L2 on coverage, plus L1 on covered cells' corners.

    The box term is divided by the object's size (so large objects don't
    dominate) and by the number of covered cells. Returns (loss, parts).
    """
    cov_loss = ((coverage - targets["coverage"]) ** 2).sum(dim=(1, 2, 3)).mean()
    mask = targets["mask"][:, None]  # (n, 1, h, w)
    scale = targets["size"].sqrt()[:, None]  # corners in units of the object's size
    l1 = ((bboxes - targets["bboxes"]).abs() / scale * mask).sum()
    box_loss = l1 / mask.sum().clamp(min=1)
    return cov_loss + box_weight * box_loss, {"coverage": cov_loss, "bboxes": box_loss}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) with every box in b (m, 4), both x0, y0, x1, y1."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def decode(coverage: np.ndarray, bboxes: np.ndarray, *, threshold: float = 0.5,
           iou: float = 0.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Maps of one image -> detections (boxes x0, y0, x1, y1; scores; labels), numpy only.

    Every cell whose coverage exceeds ``threshold`` proposes the box its corners
    describe. Proposals are then clustered per class, greedily from the most
    covered: a cluster is every remaining proposal overlapping its seed by more
    than ``iou``; its box is the coverage-weighted mean of the members (in the
    spirit of DetectNet's rectangle grouping, which averaged members), and its
    score is the seed's coverage, which keeps scores comparable for average
    precision.
    """
    C, h, w = coverage.shape
    xs, ys = cell_centres(h, w)
    out_boxes, out_scores, out_labels = [], [], []
    for c in range(C):
        keep = coverage[c] > threshold
        if not keep.any():
            continue
        props = np.stack([xs[keep] + bboxes[0][keep], ys[keep] + bboxes[1][keep],
                          xs[keep] + bboxes[2][keep], ys[keep] + bboxes[3][keep]], 1)  # fmt: skip
        scores = coverage[c][keep]
        order = np.argsort(-scores, kind="stable")
        props, scores = props[order], scores[order]
        alive = np.ones(len(props), bool)
        for k in range(len(props)):
            if not alive[k]:
                continue
            members = alive & (box_iou(props[k : k + 1], props)[0] > iou)
            members[k] = True
            wts = scores[members][:, None]
            out_boxes.append((props[members] * wts).sum(0) / wts.sum())
            out_scores.append(scores[k])
            out_labels.append(c)
            alive &= ~members
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.asarray(out_boxes, np.float32), np.asarray(out_scores, np.float32),
            np.asarray(out_labels, np.int64))  # fmt: skip
