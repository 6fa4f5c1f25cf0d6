"""DetectNet pieces: grid geometry, target encoding round trip, loss, clustering, COCO scoring."""

import numpy as np
import pytest
import torch

from models import synthetic
from models.alexnet import AlexNet
from models.detectnet import DetectNet, box_iou, decode, detectnet_loss, encode_targets, grid_size
from workshop.data.coco import load_coco
from workshop.detection_eval import coco_evaluate, digits_precision_recall


@pytest.mark.parametrize("hw", [(224, 224), (480, 640), (301, 517)])
def test_grid_size_matches_the_network(hw):
    with torch.no_grad():
        cov, box = DetectNet(num_classes=3, width=0.125)(torch.zeros(1, 3, *hw))
    assert cov.shape == (1, 3, grid_size(hw[0]), grid_size(hw[1])) and box.shape[1] == 4


def test_backbone_takes_module_2_features():
    classifier = AlexNet(num_classes=4, width=0.25)
    det = DetectNet(num_classes=3, width=0.25)
    det.features.load_state_dict(classifier.features.state_dict())  # conv1..conv5, same names
    torch.testing.assert_close(det.features[10].weight, classifier.features[10].weight)


def scene_boxes(seed=0, n=6, size=(640, 480)):
    """Non-overlapping random boxes and labels, like the synthetic scenes'."""
    rng = np.random.default_rng(seed)
    boxes, taken = [], []
    while len(boxes) < n:
        w, h = rng.uniform(40, 190, 2)
        x, y = rng.uniform(0, size[0] - w), rng.uniform(0, size[1] - h)
        b = np.array([x, y, x + w, y + h])
        if not taken or box_iou(b[None], np.array(taken)).max() == 0:
            boxes.append(b)
            taken.append(b)
    return np.array(boxes), rng.integers(0, 3, n)


@pytest.mark.parametrize("seed", range(5))
def test_encoding_then_decoding_recovers_every_box(seed):
    boxes, labels = scene_boxes(seed)
    t = encode_targets(boxes, labels, (grid_size(480), grid_size(640)), num_classes=3)
    found, scores, found_labels = decode(t["coverage"], t["bboxes"], threshold=0.5)
    assert len(found) == len(boxes)
    for b, lab in zip(boxes, labels):
        same = found_labels == lab
        assert same.any() and box_iou(b[None], found[same]).max() > 0.95


def test_small_boxes_still_claim_a_cell():
    t = encode_targets(np.array([[100.0, 100.0, 110.0, 108.0]]), np.array([1]), (29, 39), 3)
    assert t["coverage"][1].sum() == 1 and t["mask"].sum() == 1


def test_loss_is_zero_at_the_targets_and_grows_away_from_them():
    boxes, labels = scene_boxes(1)
    t = {
        k: torch.from_numpy(v)[None] for k, v in encode_targets(boxes, labels, (29, 39), 3).items()
    }
    loss, parts = detectnet_loss(t["coverage"], t["bboxes"], t)
    assert loss.item() == 0.0
    cov = t["coverage"].clone().requires_grad_(True)
    loss, parts = detectnet_loss(cov * 0.5, t["bboxes"] + 3.0, t)
    assert parts["coverage"].item() > 0 and parts["bboxes"].item() > 0
    loss.backward()
    assert cov.grad.abs().sum() > 0


def test_decode_of_an_empty_map_is_empty():
    boxes, scores, labels = decode(np.zeros((3, 10, 10)), np.zeros((4, 10, 10)))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


@pytest.fixture(scope="module")
def coco_gt():
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(1, 6):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        boxes, labels = scene_boxes(int(rng.integers(1000)), n=4)
        for b, lab in zip(boxes, labels):
            x0, y0, x1, y1 = b.tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(lab) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    return load_coco({"images": images, "annotations": anns, "categories": synthetic.categories()})


def as_results(coco, shift=0.0):
    """Ground truth as detections, moved right by a share of each box's width."""
    results = []
    for a in coco.loadAnns(coco.getAnnIds()):
        x, y, w, h = a["bbox"]
        results.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "score": 0.9,
                "bbox": [x + shift * w, y, w, h],
            }
        )
    return results


def test_cocoeval_gives_ap_one_for_perfect_detections(coco_gt):
    scores = coco_evaluate(coco_gt, as_results(coco_gt))
    assert scores["AP"] == pytest.approx(1.0) and scores["AP50"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in scores["per_class_AP"].values())
    assert digits_precision_recall(coco_gt, as_results(coco_gt))["precision_x_recall"] == 1.0


def test_shifted_detections_score_less(coco_gt):
    """Each box moved right by 0.2 of its width overlaps its own with IoU 0.8 / 1.2 = 2/3.

    It matches at the IoU thresholds 0.50, 0.55, 0.60, 0.65 (precision 1 at every recall)
    and at none of 0.70..0.95, so pycocotools' AP is exactly 4/10 and AP75 exactly 0.
    """
    shifted = coco_evaluate(coco_gt, as_results(coco_gt, shift=0.2))
    assert round(shifted["AP"], 3) == 0.400
    assert round(shifted["AP50"], 3) == 1.000
    assert round(shifted["AP75"], 3) == 0.000
    assert {round(v, 3) for v in shifted["per_class_AP"].values()} == {0.400}
    pr = digits_precision_recall(coco_gt, as_results(coco_gt, shift=0.2), iou=0.7)
    assert pr["precision"] == 0.0 and pr["recall"] == 0.0
    pr = digits_precision_recall(coco_gt, as_results(coco_gt, shift=0.2), iou=0.65)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0
    assert coco_evaluate(coco_gt, [])["AP"] == 0.0


def test_decode_is_bounded_on_a_map_that_covers_everything():
    """A badly trained model can mark every cell: the caps keep the answer small."""
    from models.boxes import MAX_DETECTIONS

    h, w = grid_size(1080), grid_size(1920)
    coverage = np.full((3, h, w), 0.9, np.float32)
    coverage[1, :, :] = np.linspace(0.6, 0.8, w)  # scores that differ
    bboxes = np.broadcast_to(np.array([-8.0, -8, 8, 8])[:, None, None], (4, h, w)).copy()
    boxes, scores, labels = decode(coverage, bboxes, threshold=0.5, iou=0.4)
    assert len(boxes) == MAX_DETECTIONS
    assert np.all(np.diff(scores) <= 0)  # best first
