"""The synthetic shapes data set: layout, COCO validity, determinism."""

import json

import numpy as np
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


def test_objects_change_the_pixels_where_their_box_is():
    rng = np.random.default_rng(0)
    img, objects = synthetic.make_scene(640, 480, rng, max_objects=3)
    assert 1 <= len(objects) <= 3 and img.size == (640, 480)
    for obj in objects:
        mask = synthetic.object_mask(obj["category"], (640, 480), (100, 100), 80, 0.3, 1.0)
        assert np.asarray(mask).any()


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
