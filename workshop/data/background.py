"""A "background" class for the cats-dogs classifier: crops of real photos with neither animal.

With only cat and dog to choose from, every window of the FCN's heatmap is one or
the other, so a car, a wall or a herd of elephants lights up as an animal. Crops
of COCO photos that have no cat or dog annotation teach it a third answer,
"neither", the class the heatmap leaves clear (``models.synthetic.BACKGROUND``).

Everything is drawn from one seeded generator: the same annotations and seed give
the same photos and the same crops.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from models.synthetic import BACKGROUND  # noqa: F401 -- the class name the meta flag looks for

ANIMALS = ("cat", "dog")
CROPS_PER_IMAGE = 4  # square crops cut from each photo
MIN_SIDE = 0.3  # the smallest crop side, as a share of the photo's shorter side
CROP_SIDE = 256  # crops are saved at most this size (the image cache's size)


def images_without(coco: dict, names=ANIMALS) -> list[dict]:
    """The image records of a COCO dict that have no annotation (crowd included) of ``names``."""
    ids = {c["id"] for c in coco["categories"] if c["name"] in names}
    shown = {a["image_id"] for a in coco["annotations"] if a["category_id"] in ids}
    return sorted((i for i in coco["images"] if i["id"] not in shown), key=lambda i: i["id"])


MAX_CROPS_PER_IMAGE = 16  # when photos are scarce, more crops each, up to this many


def crops_per_photo(crops: int, photos: int) -> int:
    """Crops to cut from each photo: CROPS_PER_IMAGE, or more (up to MAX_CROPS_PER_IMAGE)
    when there are too few photos for ``crops``, so the class stays about as large as the
    smaller animal class (a small background class is one the network learns to ignore)."""
    return min(MAX_CROPS_PER_IMAGE, max(CROPS_PER_IMAGE, math.ceil(crops / max(photos, 1))))


def photos_needed(crops: int, per_image: int = CROPS_PER_IMAGE) -> int:
    return math.ceil(crops / per_image)


def random_crops(
    img: Image.Image,
    count: int,
    rng: np.random.Generator,
    min_side: float = MIN_SIDE,
    out: int = CROP_SIDE,
) -> list[Image.Image]:
    """``count`` square crops of random size (min_side..1 of the shorter side) and place,
    each downscaled to at most out x out."""
    w, h = img.size
    short = min(w, h)
    crops = []
    for _ in range(count):
        side = max(1, round(short * rng.uniform(min_side, 1.0)))
        x = int(rng.integers(0, w - side + 1))
        y = int(rng.integers(0, h - side + 1))
        crop = img.crop((x, y, x + side, y + side))
        crops.append(crop.resize((out, out), Image.BILINEAR) if side > out else crop)
    return crops
