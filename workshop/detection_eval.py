"""Scoring detections: COCO average precision through pycocotools, and DIGITS' figures.

    coco_evaluate(coco_gt, detections) -> {"AP", "AP50", "AP75", "per_class_AP"}
    digits_precision_recall(coco_gt, detections, iou=0.7) -> {"precision", "recall", ...}

``coco_gt`` is a pycocotools COCO (``workshop.data.coco.load_coco`` reads one);
``detections`` are COCO result dicts: image_id, category_id, bbox [x, y, w, h], score.
DIGITS reported precision x recall at IoU 0.7 and called it "mAP"; it is not average
precision, and it is reported here under its own name.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.boxes import box_iou


def coco_evaluate(coco_gt: COCO, detections: list[dict]) -> dict:
    """AP (IoU 0.50:0.95), AP50, AP75 and per-class AP, as COCOeval computes them."""
    if not detections:
        names = {c["id"]: c["name"] for c in coco_gt.loadCats(coco_gt.getCatIds())}
        return {
            "AP": 0.0,
            "AP50": 0.0,
            "AP75": 0.0,
            "per_class_AP": dict.fromkeys(names.values(), 0.0),
        }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # (iou, recall, class, area, max_dets)
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[coco_gt.cats[int(cat_id)]["name"]] = (
            float(p[p > -1].mean()) if (p > -1).any() else 0.0
        )
    return {
        "AP": float(ev.stats[0]),
        "AP50": float(ev.stats[1]),
        "AP75": float(ev.stats[2]),
        "per_class_AP": per_class,
    }


def _xyxy(bbox) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h], float)


def digits_precision_recall(
    coco_gt: COCO, detections: list[dict], iou: float = 0.7, min_score: float = 0.0
) -> dict:
    """Precision and recall at one IoU, greedy one-to-one matching per image and class."""
    tp = fp = 0
    n_gt = len(coco_gt.getAnnIds())
    by_image: dict[int, list[dict]] = {}
    for d in detections:
        if d["score"] >= min_score:
            by_image.setdefault(d["image_id"], []).append(d)
    for image_id, dets in by_image.items():
        gts = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id]))
        used = set()
        for d in sorted(dets, key=lambda d: -d["score"]):
            cands = [
                (k, g)
                for k, g in enumerate(gts)
                if g["category_id"] == d["category_id"] and k not in used
            ]
            if cands:
                ious = box_iou(
                    _xyxy(d["bbox"])[None], np.stack([_xyxy(g["bbox"]) for _, g in cands])
                )[0]
                best = int(ious.argmax())
                if ious[best] >= iou:
                    used.add(cands[best][0])
                    tp += 1
                    continue
            fp += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_gt if n_gt else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "precision_x_recall": precision * recall,
        "iou": iou,
    }
