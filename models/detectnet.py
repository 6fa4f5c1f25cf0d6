"""A DetectNet-style detector: coverage and box maps on a stride-16 grid, clustered into boxes.

Backbone: AlexNet's conv1-conv5 without pool5 (the same layers, and so the same
weights, as module 2's ``features[:-1]``), which leaves a stride of 16: a
640x480 image gives a 39x29 grid. DetectNet used GoogLeNet with pool4 removed
for the same stride; AlexNet is chosen here so that module 2's trained features
can start the detector, and because it trains on a CPU.

A 3x3 convolution (the "neck", twice conv5's channels) sits between the
backbone and the heads: DetectNet had GoogLeNet's inception 5 layers there, and
without any layer of its own the detector can only re-weight conv5's features,
which were trained for classification at stride 32.

Heads (1x1 convolutions), as DetectNet:

- ``coverage``: one sigmoid channel per class, 1 where a cell lies in the
  central part of an object of that class;
- ``bboxes``: 4 channels, the object's corners (x0, y0, x1, y1) in pixels
  relative to the cell's centre.

Grid geometry, target encoding, decoding and clustering live in
``models.boxes`` (numpy only, so the web app shares them without torch) and
are re-exported here.
"""

from __future__ import annotations

import torch
from torch import nn

from models.alexnet import _features, _widths
from models.boxes import (  # noqa: F401 -- re-exported: the detector's whole API in one place
    CELL_OFFSET,
    COVERAGE_SCALE,
    GRID,
    STRIDE,
    box_iou,
    cell_centres,
    decode,
    encode_targets,
    grid_size,
)

BOX_SCALE = 64.0  # box offsets are regressed in units of this many pixels


class DetectNet(nn.Module):
    """Image (n, 3, H, W) -> coverage (n, classes, h, w) in [0, 1] and boxes (n, 4, h, w) px."""

    grid = GRID  # cell (i, j) centred on (16 j + 15, 16 i + 15)

    def __init__(self, *, num_classes: int = 3, width: float = 1.0):
        super().__init__()
        self.features = _features(width)[:-1]  # conv1..conv5 + ReLU, no pool5: stride 16
        c5 = _widths(width)[4]
        self.neck = nn.Sequential(nn.Conv2d(c5, 2 * c5, 3, padding=1), nn.ReLU(inplace=True))
        self.coverage = nn.Conv2d(2 * c5, num_classes, kernel_size=1)
        self.bboxes = nn.Conv2d(2 * c5, 4, kernel_size=1)
        nn.init.constant_(self.coverage.bias, -4.0)  # start near "nothing here"
        nn.init.normal_(self.bboxes.weight, std=1e-3)
        nn.init.zeros_(self.bboxes.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.neck(self.features(x))
        return torch.sigmoid(self.coverage(f)), self.bboxes(f) * BOX_SCALE


def detectnet_loss(coverage, bboxes, targets: dict, box_weight: float = 2.0):
    """DetectNet's loss: L2 on coverage, plus L1 on covered cells' corners.

    The coverage term is summed over cells (weighted by ``targets["weight"]``
    when present) and averaged over images. The box term is divided by the
    object's size (so large objects don't dominate) and by the number of covered
    cells. Returns (loss, parts).
    """
    sq = (coverage - targets["coverage"]) ** 2
    if "weight" in targets:
        sq = sq * targets["weight"][:, None]
    cov_loss = sq.sum(dim=(1, 2, 3)).mean()
    mask = targets["mask"][:, None]  # (n, 1, h, w)
    scale = targets["size"].sqrt()[:, None]  # corners in units of the object's size
    l1 = ((bboxes - targets["bboxes"]).abs() / scale * mask).sum()
    box_loss = l1 / mask.sum().clamp(min=1)
    return cov_loss + box_weight * box_loss, {"coverage": cov_loss, "bboxes": box_loss}
