"""DetectNet's grid geometry, target encoding, decoding and clustering: numpy only.

Shared by training (``models.detectnet``), evaluation and the web app, which
must not import torch. Cell (i, j) of the stride-16 grid is centred on pixel
(16 j + 15, 16 i + 15), the centre of its receptive field: ``GRID`` says so as
a ``models.grid.Grid``, each cell standing for the 16x16 block about that
centre (window 16, stride 16, offset 7).
"""

from __future__ import annotations

import numpy as np

from models.grid import Grid

STRIDE = 16
CELL_OFFSET = 15  # pixel centre of cell 0, the centre of its receptive field
GRID = Grid(window=STRIDE, stride=STRIDE, offset=CELL_OFFSET - STRIDE // 2)
COVERAGE_SCALE = 0.4  # the covered region is the box shrunk to this share, about its centre
MAX_PROPOSALS = 2000  # per class, the most covered cells
MAX_DETECTIONS = 100  # per image, as COCO's evaluation counts


def grid_size(n: int) -> int:
    """Grid cells along an input side of n pixels."""
    return (n - 15) // STRIDE


def cell_centres(h: int, w: int, grid: Grid = GRID) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pixel centres of every grid cell, two (h, w) arrays."""
    return grid.cell_centers(h, w)


def encode_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    grid_hw: tuple[int, int],
    num_classes: int,
    ignore: np.ndarray | None = None,
    grid: Grid = GRID,
) -> dict[str, np.ndarray]:
    """Ground truth (boxes x0, y0, x1, y1 in pixels; labels 0..C-1) -> DetectNet's target maps.

    Each box covers the cells whose centres fall in the box shrunk to 40 % about
    its centre (at least the cell nearest the centre). Covered cells regress that
    box's corners; where two boxes claim a cell the smaller one wins. Returns
    ``coverage`` (C, h, w), ``bboxes`` (4, h, w), ``mask`` (h, w) (1 on covered
    cells), ``size`` (h, w), the covering box's area in pixels (for the loss's
    normalization by object size), and ``weight`` (h, w), the coverage loss's
    weight: 0 on uncovered cells inside the ``ignore`` boxes (objects mostly cut
    away by a crop, neither positive nor negative), 1 elsewhere.
    """
    h, w = grid_hw
    coverage = np.zeros((num_classes, h, w), np.float32)
    bboxes = np.zeros((4, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    size = np.ones((h, w), np.float32)
    weight = np.ones((h, w), np.float32)
    xs, ys = grid.cell_centers(h, w)
    for x0, y0, x1, y1 in np.asarray(ignore if ignore is not None else [], float).reshape(-1, 4):
        weight[(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)] = 0
    owner_area = np.full((h, w), np.inf)
    for (x0, y0, x1, y1), label in zip(np.asarray(boxes, float), np.asarray(labels, int)):
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        hw_, hh_ = bw * COVERAGE_SCALE / 2, bh * COVERAGE_SCALE / 2
        inside = (np.abs(xs - cx) <= hw_) & (np.abs(ys - cy) <= hh_)
        if not inside.any():  # small objects still claim the cell nearest their centre
            inside[grid.nearest_cell(cx, cy, h, w)] = True
        area = bw * bh
        claim = inside & (area < owner_area)
        owner_area[claim] = area
        coverage[:, claim] = 0
        coverage[label, claim] = 1
        bboxes[:, claim] = np.stack([x0 - xs, y0 - ys, x1 - xs, y1 - ys])[:, claim]
        mask[claim] = 1
        size[claim] = area
    weight[mask > 0] = 1
    return {"coverage": coverage, "bboxes": bboxes, "mask": mask, "size": size, "weight": weight}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) with every box in b (m, 4), both x0, y0, x1, y1."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def cluster_proposals(
    proposals: np.ndarray, scores: np.ndarray, iou: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering of one class's proposals (n, 4) into boxes, best first.

    The most covered proposal left is a seed; its cluster is every remaining
    proposal overlapping it by more than ``iou`` (and itself). The cluster's box
    is its members' mean weighted by their scores, and its score is the seed's.
    """
    proposals, scores = np.asarray(proposals), np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    proposals, scores = proposals[order], scores[order]
    boxes, box_scores = [], []
    alive = np.arange(len(proposals))  # indices not yet in a cluster, best first
    while len(alive):
        seed = alive[0]
        members = alive[box_iou(proposals[seed : seed + 1], proposals[alive])[0] > iou]
        members = np.union1d(members, [seed])
        weights = scores[members][:, None]
        boxes.append((proposals[members] * weights).sum(0) / weights.sum())
        box_scores.append(scores[seed])
        alive = np.setdiff1d(alive, members, assume_unique=True)
    dtype = np.result_type(proposals, scores, np.float32)
    return np.asarray(boxes, dtype).reshape(-1, 4), np.asarray(box_scores, dtype)


def decode(
    coverage: np.ndarray,
    bboxes: np.ndarray,
    *,
    threshold: float = 0.5,
    iou: float = 0.4,
    max_proposals: int = MAX_PROPOSALS,
    max_detections: int = MAX_DETECTIONS,
    grid: Grid = GRID,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps of one image -> detections (boxes x0, y0, x1, y1; scores; labels), numpy only.

    Every cell whose coverage exceeds ``threshold`` proposes the box its corners
    describe (at most ``max_proposals`` per class, the most covered). Proposals
    are then clustered per class, greedily from the most covered: a cluster is
    every remaining proposal overlapping its seed by more than ``iou``; its box
    is the coverage-weighted mean of the members (in the spirit of DetectNet's
    rectangle grouping, which averaged members), and its score is the seed's
    coverage, which keeps scores comparable for average precision. The best
    ``max_detections`` are returned, best first (COCO scores 100 per image). The
    caps bound the time a badly trained model or a strange image can take.
    """
    C, h, w = coverage.shape
    xs, ys = grid.cell_centers(h, w)
    out_boxes, out_scores, out_labels = [], [], []
    for c in range(C):
        keep = coverage[c] > threshold
        if not keep.any():
            continue
        props = np.stack(
            [
                xs[keep] + bboxes[0][keep],
                ys[keep] + bboxes[1][keep],
                xs[keep] + bboxes[2][keep],
                ys[keep] + bboxes[3][keep],
            ],
            1,
        )
        scores = coverage[c][keep]
        order = np.argsort(-scores, kind="stable")[:max_proposals]
        boxes, box_scores = cluster_proposals(props[order], scores[order], iou)
        out_boxes.extend(boxes)
        out_scores.extend(box_scores)
        out_labels.extend([c] * len(boxes))
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    best = np.argsort(-np.asarray(out_scores), kind="stable")[:max_detections]
    return (
        np.asarray(out_boxes, np.float32)[best],
        np.asarray(out_scores, np.float32)[best],
        np.asarray(out_labels, np.int64)[best],
    )


def draw_detections(
    image: np.ndarray, boxes, labels, classes: list[str], scores=None, *, truth=None, width: int = 0
) -> np.ndarray:
    """Boxes drawn on an RGB uint8 image, one colour per class, with label and score.

    ``truth`` (boxes x0, y0, x1, y1) are drawn first as thin white dashes, so
    misses and misplaced boxes show. Returns a new RGB uint8 array.
    """
    from PIL import Image, ImageDraw, ImageFont

    from models.heatmap import PALETTE

    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    width = width or max(2, round(max(img.size) / 400))
    font = ImageFont.load_default(size=max(11, round(max(img.size) / 90)))
    for x0, y0, x1, y1 in np.asarray(truth if truth is not None else [], float).reshape(-1, 4):
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        for (ax, ay), (bx, by) in zip(corners, corners[1:]):
            n = max(2, int(np.hypot(bx - ax, by - ay) // 6))
            t = np.linspace(0, 1, n + 1)
            for p, q in zip(t[:-1:2], t[1::2]):  # every other segment: a dashed side
                segment = [
                    ax + (bx - ax) * p,
                    ay + (by - ay) * p,
                    ax + (bx - ax) * q,
                    ay + (by - ay) * q,
                ]
                draw.line(segment, fill=(255, 255, 255), width=1)
    for k, (box, label) in enumerate(zip(np.asarray(boxes, float), np.asarray(labels, int))):
        color = tuple(int(c) for c in PALETTE[label % len(PALETTE)])
        draw.rectangle(box.tolist(), outline=color, width=width)
        text = classes[label] + (f" {scores[k]:.2f}" if scores is not None else "")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx, ty = box[0], max(0.0, box[1] - (bottom - top) - 2 * width)  # above the box
        left, top, right, bottom = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=color)
        draw.text((tx, ty), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def place_cells(values: np.ndarray, image_hw: tuple[int, int], factor: float = 1.0) -> np.ndarray:
    """(h, w) grid values -> (H, W) image-sized array: each cell a 16x16 block about its centre.

    ``factor`` > 1 when the network saw the image downscaled by it (the cap on huge images).
    """
    from models.heatmap import place_map

    if factor == 1.0:
        return place_map(values, image_hw, GRID)
    small = (round(image_hw[0] / factor), round(image_hw[1] / factor))
    placed = place_map(values, small, GRID)
    rows = np.minimum((np.arange(image_hw[0]) / factor).astype(int), small[0] - 1)
    cols = np.minimum((np.arange(image_hw[1]) / factor).astype(int), small[1] - 1)
    return placed[rows][:, cols]
