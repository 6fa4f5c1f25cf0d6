"""Running a trained detector on images and scoring it: module 3's inference in torch.

    maps = predict_maps(model, image)          # coverage and box maps, numpy
    boxes, scores, labels = detect(model, image, threshold=0.3)
    metrics, detections = evaluate_detector(model, dataset)   # COCO AP + DIGITS' figures

Decoding and clustering are ``models.boxes.decode``, the same function the web
app runs on the ONNX model's maps.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from models.boxes import decode, draw_detections
from workshop.data.detection import CocoDetection, inference_image
from workshop.detection_eval import coco_evaluate, digits_precision_recall

THRESHOLD = 0.2  # coverage above which a cell proposes a box (low: AP wants the whole curve)
CLUSTER_IOU = 0.4  # proposals overlapping a cluster's seed by more than this join it


@torch.no_grad()
def predict_maps(model, image, device=None) -> tuple[np.ndarray, np.ndarray, float]:
    """uint8 image (H, W, 3 array or (3, H, W) tensor) -> (coverage, bboxes, factor).

    ``factor`` maps network pixels back to image pixels (> 1 when the image was
    downscaled to the documented cap, ``MAX_SIDE``).
    """
    if not torch.is_tensor(image):
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    device = device or next(model.parameters()).device
    x, factor = inference_image(image)
    model.eval()
    coverage, bboxes = model(x.to(device))
    return coverage[0].float().cpu().numpy(), bboxes[0].float().cpu().numpy(), factor


def detect(model, image, *, threshold=THRESHOLD, iou=CLUSTER_IOU, device=None):
    """Detections on one image: (boxes x0, y0, x1, y1 in image pixels, scores, labels)."""
    coverage, bboxes, factor = predict_maps(model, image, device)
    boxes, scores, labels = decode(coverage, bboxes, threshold=threshold, iou=iou)
    return boxes * factor, scores, labels


def to_coco_results(image_id: int, boxes, scores, labels, cat_ids: list[int]) -> list[dict]:
    """Detections in COCO result format (bbox x, y, w, h; category ids of the data set)."""
    return [
        {
            "image_id": int(image_id),
            "category_id": int(cat_ids[int(label)]),
            "bbox": [round(float(v), 2) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])],
            "score": round(float(s), 5),
        }
        for b, s, label in zip(boxes, scores, labels)
    ]


def evaluate_detector(
    model, data: CocoDetection, *, threshold=THRESHOLD, iou=CLUSTER_IOU, device=None, limit: int = 0
) -> tuple[dict, list[dict]]:
    """COCOeval AP/AP50/AP75/per-class AP and DIGITS' precision and recall at IoU 0.7."""
    samples = range(len(data)) if not limit else range(min(limit, len(data)))
    detections = []
    for k in tqdm(samples, desc="evaluating", leave=False):
        boxes, scores, labels = detect(
            model, data.image(k), threshold=threshold, iou=iou, device=device
        )
        detections += to_coco_results(data.samples[k].image_id, boxes, scores, labels, data.cat_ids)
    gt = data.ground_truth(len(samples))  # only the images run, in the set's categories
    metrics = coco_evaluate(gt, detections)
    # DIGITS counted boxes above its clustering threshold; 0.5 coverage is its default.
    digits = digits_precision_recall(gt, detections, iou=0.7, min_score=0.5)
    metrics["digits"] = {**digits, "min_score": 0.5}
    metrics.update(threshold=threshold, cluster_iou=iou, images=len(samples))
    return metrics, detections


def render_detections(model, data: CocoDetection, k: int, *, threshold=0.5, iou=CLUSTER_IOU):
    """Sample k with its detections (coloured, scored) and the ground truth (white dashes)."""
    image = data.image(k)
    boxes, scores, labels = detect(model, image, threshold=threshold, iou=iou)
    rgb = image.permute(1, 2, 0).numpy()
    return draw_detections(rgb, boxes, labels, data.classes, scores, truth=data.samples[k].boxes)
