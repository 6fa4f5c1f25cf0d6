"""The synthetic shapes data set: layout, COCO validity, determinism."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from models import synthetic


def test_generate_writes_crops_and_coco_scenes(tmp_path):
    cfg = synthetic.SyntheticConfig(seed=3).small()
    root = synthetic.generate(tmp_path / "syn", cfg)
    for split, n in (("train", cfg.train_per_class), ("val", cfg.val_per_class)):
        for cls in (*synthetic.CLASSES, synthetic.BACKGROUND):
            files = sorted((root / "crops" / split / cls).glob("*.jpg"))
            assert len(files) == n
        assert Image.open(files[0]).size == (256, 256)
    coco = COCO(str(root / "scenes" / "val" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(synthetic.CLASSES)
    assert len(coco.getImgIds()) == cfg.val_scenes and coco.getAnnIds()
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
        assert 20 < max(w, h) < 260
    info = json.loads((root / "synthetic.json").read_text())
    assert info["synthetic"] is True and info["counts"]["val_scenes"] == cfg.val_scenes


def test_same_seed_same_pixels_and_no_regeneration(tmp_path):
    cfg = synthetic.SyntheticConfig(seed=5).small()
    a = synthetic.generate(tmp_path / "a", cfg)
    b = synthetic.generate(tmp_path / "b", cfg)
    first = "crops/train/ring/ring_00000.jpg"
    assert (a / first).read_bytes() == (b / first).read_bytes()
    stamp = (a / first).stat().st_mtime_ns
    synthetic.generate(tmp_path / "a", cfg)  # same config: nothing rewritten
    assert (a / first).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("seed", range(3))
def test_objects_change_the_pixels_where_their_box_is(seed, monkeypatch):
    """The scene against the same scene (same random stream) with no object painted in."""
    scene, objects = synthetic.make_scene(640, 480, np.random.default_rng(seed))
    paint = synthetic.paint_object
    monkeypatch.setattr(synthetic, "paint_object", lambda img, *a: paint(img.copy(), *a))
    bare, same = synthetic.make_scene(640, 480, np.random.default_rng(seed))
    assert same == objects and 1 <= len(objects) <= 6
    changed = np.abs(np.asarray(scene, int) - np.asarray(bare, int)).max(axis=2) > 30  # (h, w)
    near_a_box = np.zeros_like(changed)
    for obj in objects:
        x, y, w, h = obj["bbox"]
        x0, y0, x1, y1 = int(x), int(y), math.ceil(x + w), math.ceil(y + h)
        assert changed[y0:y1, x0:x1].mean() > 0.2, obj  # the shape fills part of its box
        near_a_box[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = True  # blur spreads edges
    # Outside every box only an occluding distractor (drawn with an object) may differ.
    assert changed[~near_a_box].mean() < 0.01


def test_each_part_has_its_own_stream(tmp_path):
    """More training scenes must not change the held-out scenes (or the crops)."""
    cfg = synthetic.SyntheticConfig(seed=2).small()
    a = synthetic.generate(tmp_path / "a", cfg)
    more = synthetic.SyntheticConfig(
        seed=2,
        train_per_class=cfg.train_per_class,
        val_per_class=cfg.val_per_class,
        train_scenes=20,
        val_scenes=cfg.val_scenes,
    )
    b = synthetic.generate(tmp_path / "b", more)
    for rel in (
        "scenes/val/annotations.json",
        "scenes/val/images/scene_00000.jpg",
        "crops/val/star/star_00000.jpg",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    train = COCO(str(b / "scenes" / "train" / "annotations.json"))
    assert len(train.getImgIds()) == 20
    assert {(i["width"], i["height"]) for i in train.loadImgs(train.getImgIds())} == set(
        synthetic.TRAIN_SCENE_SIZES
    )
