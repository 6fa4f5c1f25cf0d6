"""COCO annotation files as pycocotools objects: reading quietly, and taking a subset."""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO


def load_coco(source) -> COCO:
    """A COCO object from a path or an in-memory dict, without pycocotools' prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(source, dict):
            coco = COCO()
            coco.dataset = source
            coco.createIndex()
            return coco
        return COCO(str(source))


def subset_coco(coco: COCO, image_ids, cat_ids) -> COCO:
    """The ground truth of only these images and categories (what a model was run on)."""
    images, cats = set(image_ids), set(cat_ids)
    d = coco.dataset
    return load_coco(
        {
            **d,
            "images": [i for i in d["images"] if i["id"] in images],
            "annotations": [
                a for a in d["annotations"] if a["image_id"] in images and a["category_id"] in cats
            ],
            "categories": [c for c in d["categories"] if c["id"] in cats],
        }
    )
