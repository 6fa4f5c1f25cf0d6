"""COCO-format detection data for module 3: reading, category subsets, augmented batches.

Any COCO JSON is read through pycocotools. A category subset (by name) keeps
only those annotations, and category ids are remapped to labels 0..C-1 in the
order of the COCO ids, so ``classes[label]`` is the name. Crowd regions
(``iscrowd``: many objects under one box, common in real COCO) are not targets:
training ignores their cells, neither object nor background, as pycocotools'
scoring ignores detections inside them.

Images of any size: training takes fixed-size crops (``crop_hw``, 384x512 by
default) of each image after a random rescale; where the rescaled image is
smaller than the crop, the rest is padded with the mean colour (which
normalizes to zero). Evaluation and inference run each image whole, at its own
size (the network is fully convolutional), after downscaling images whose long
side exceeds ``max_side`` (boxes are mapped back to the original pixels).

Augmentation moves the boxes with the pixels: random scale, random placement
(shift), horizontal flip and colour (brightness, contrast, per-channel gain).
Objects cut by the crop keep their clipped box when at least 60 % of them is
visible; the rest become "don't care" regions that the coverage loss ignores.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.boxes import encode_targets, grid_size
from models.imageio import MAX_SIDE
from workshop.data.coco import load_coco, subset_coco
from workshop.data.images import MEAN, STD, BadImage, normalize, open_rgb

MIN_VISIBLE = 0.6  # share of a cut object that must remain to stay a target
PRELOAD_BYTES = 1.5e9  # decode every image up front when they fit in this much memory


@dataclass
class Sample:
    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1 in pixels
    labels: np.ndarray  # (n,) 0..C-1
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (m, 4)


class CocoDetection:
    """Images and boxes of a COCO JSON, restricted to ``categories`` (names; None = all)."""

    def __init__(self, annotations, images_dir=None, categories: list[str] | None = None):
        self.annotations = Path(annotations)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"{self.annotations}: no such COCO annotation file")
        try:
            self.coco = load_coco(self.annotations)
        except Exception as err:  # pycocotools raises bare assertions and KeyErrors
            raise ValueError(f"{self.annotations}: not a COCO annotation file ({err!r})") from err
        self.images_dir = Path(images_dir) if images_dir else self.annotations.parent / "images"
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        names = [c["name"] for c in cats]
        if categories:
            unknown = sorted(set(categories) - set(names))
            if unknown:
                raise ValueError(
                    f"categories {unknown} are not in {self.annotations}; it has {names}"
                )
            cats = [c for c in cats if c["name"] in categories]
        self.classes = [c["name"] for c in cats]
        self.cat_ids = [c["id"] for c in cats]  # label -> COCO category id
        label_of = {cid: k for k, cid in enumerate(self.cat_ids)}
        self.samples: list[Sample] = []
        for info in self.coco.loadImgs(sorted(self.coco.getImgIds())):
            ours = [
                a
                for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[info["id"]]))
                if a["category_id"] in label_of
            ]
            anns = [a for a in ours if not a.get("iscrowd", 0)]
            if categories and not anns:
                continue  # a subset keeps only the images that show it
            crowd = [a["bbox"] for a in ours if a.get("iscrowd", 0)]
            self.samples.append(
                Sample(
                    info["id"],
                    self.images_dir / info["file_name"],
                    int(info["width"]),
                    int(info["height"]),
                    _corners([a["bbox"] for a in anns]),
                    np.array([label_of[a["category_id"]] for a in anns], np.int64),
                    _corners(crowd),
                )
            )
        if not self.samples:
            raise ValueError(f"{self.annotations}: no images with annotations of {self.classes}")
        self._pixels: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def split(self, fraction: float, seed: int = 0) -> tuple[CocoDetection, CocoDetection]:
        """(rest, held out): a fixed random share of the images held out."""
        held = np.random.default_rng(seed).random(len(self.samples)) < fraction
        if held.all() or not held.any():
            raise ValueError(f"{self.annotations}: too few images ({len(self)}) to hold some out")
        parts = []
        for keep in (False, True):
            part = copy.copy(self)
            part.samples = [s for s, h in zip(self.samples, held) if h == keep]
            part._pixels = {}
            parts.append(part)
        return parts[0], parts[1]

    def image(self, k: int) -> torch.Tensor:
        """Sample k's pixels as a uint8 (3, H, W) tensor (cached when preloaded)."""
        if k in self._pixels:
            return self._pixels[k]
        s = self.samples[k]
        try:
            img = open_rgb(s.path)
        except (BadImage, OSError) as err:
            raise BadImage(f"{s.path}: {err}") from err
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)

    def preload(self, budget: float = PRELOAD_BYTES) -> bool:
        """Decode every image once when they fit in ``budget`` bytes; returns whether it did."""
        need = sum(3 * s.width * s.height for s in self.samples)
        if need > budget:
            return False
        from tqdm.auto import tqdm

        for k in tqdm(range(len(self)), desc="loading images", leave=False):
            self._pixels[k] = self.image(k)
        return True

    def ground_truth(self, count: int = 0):
        """A COCO object of this set's images (the first ``count``; 0 = all) and categories.

        The file may hold more (other splits, other categories); scoring against it
        whole would count their boxes as misses.
        """
        samples = self.samples[: count or None]
        return subset_coco(self.coco, [s.image_id for s in samples], self.cat_ids)

    def meta(self) -> dict:
        """The classes and their COCO ids, in the checkpoint-meta vocabulary."""
        return {"classes": self.classes, "coco_category_ids": self.cat_ids}


def _corners(xywh: list) -> np.ndarray:
    """COCO boxes (x, y, w, h) -> (n, 4) float32 x0, y0, x1, y1."""
    b = np.array(xywh, np.float32).reshape(-1, 4)  # (n, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


# ---------------------------------------------------------------------- augmentation


@dataclass
class Augment:
    scale: tuple[float, float] = (0.65, 1.5)  # random rescale of the whole image
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.25  # multiplicative, 1 +- this
    contrast: float = 0.25  # about the image mean, 1 +- this
    gain: float = 0.08  # per-channel multiplicative, 1 +- this


def _mean_u8() -> torch.Tensor:
    return torch.tensor([round(255 * m) for m in MEAN], dtype=torch.uint8)


def place(image: torch.Tensor, crop_hw, scale: float, origin, out: torch.Tensor | None = None):
    """Cut the crop_hw window at ``origin`` (x, y) from the image rescaled by ``scale``.

    Only the part of the image the window sees is resampled (in uint8, cheap on
    a CPU); the rest of the window is the mean colour. Returns (crop, affine):
    the uint8 (3, H, W) crop and the exact map from image to crop pixels,
    (sx, sy, tx, ty) with x' = x * sx + tx, which the boxes then follow.
    """
    H, W = crop_hw
    h, w = image.shape[1:]
    crop = out if out is not None else torch.empty(3, H, W, dtype=torch.uint8)
    crop[:] = _mean_u8()[:, None, None]
    # The whole image pixels inside the window, and where they land in the crop.
    x0, y0 = max(0, math.ceil(origin[0] / scale)), max(0, math.ceil(origin[1] / scale))
    x1 = min(w, math.floor((origin[0] + W) / scale))
    y1 = min(h, math.floor((origin[1] + H) / scale))
    dx0, dy0 = max(0, round(x0 * scale - origin[0])), max(0, round(y0 * scale - origin[1]))
    dx1, dy1 = min(W, round(x1 * scale - origin[0])), min(H, round(y1 * scale - origin[1]))
    if x1 <= x0 or y1 <= y0 or dx1 <= dx0 or dy1 <= dy0:
        return crop, (scale, scale, -origin[0], -origin[1])
    sx, sy = (dx1 - dx0) / (x1 - x0), (dy1 - dy0) / (y1 - y0)
    patch = image[:, y0:y1, x0:x1]
    if (dy1 - dy0, dx1 - dx0) != tuple(patch.shape[1:]):
        patch = F.interpolate(
            patch[None],
            size=(dy1 - dy0, dx1 - dx0),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
    crop[:, dy0:dy1, dx0:dx1] = patch
    return crop, (sx, sy, dx0 - x0 * sx, dy0 - y0 * sy)


def transform_boxes(boxes: np.ndarray, affine, crop_hw, flip: bool):
    """Boxes moved like the pixels; returns (kept boxes, kept index, ignored boxes)."""
    H, W = crop_hw
    sx, sy, tx, ty = affine
    b = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([tx, ty, tx, ty], np.float32)
    if flip:
        b = np.stack([W - b[:, 2], b[:, 1], W - b[:, 0], b[:, 3]], 1)
    clipped = np.stack(
        [b[:, 0].clip(0, W), b[:, 1].clip(0, H), b[:, 2].clip(0, W), b[:, 3].clip(0, H)], 1
    )
    area = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    visible = (clipped[:, 2:] - clipped[:, :2]).clip(0).prod(1) / np.maximum(area, 1e-6)
    keep = visible >= MIN_VISIBLE
    ignore = (visible > 0) & ~keep
    return clipped[keep], np.flatnonzero(keep), clipped[ignore]


def training_batch(data: CocoDetection, indices, crop_hw, aug: Augment, rng: np.random.Generator):
    """Augmented crops and their DetectNet targets: (x normalized (n, 3, H, W), targets)."""
    H, W = crop_hw
    gh, gw = grid_size(H), grid_size(W)
    n = len(indices)
    crops = torch.empty(n, H, W, 3, dtype=torch.uint8).permute(0, 3, 1, 2)  # channels_last
    targets = {k: [] for k in ("coverage", "bboxes", "mask", "size", "weight")}
    for m, k in enumerate(indices):
        s = data.samples[int(k)]
        scale = float(rng.uniform(*aug.scale))
        sw, sh = s.width * scale, s.height * scale
        # Anywhere the window fits inside the rescaled image, or anywhere the image fits
        # inside the window when the image is the smaller.
        ox = rng.uniform(min(0.0, sw - W), max(0.0, sw - W))
        oy = rng.uniform(min(0.0, sh - H), max(0.0, sh - H))
        _, affine = place(data.image(int(k)), crop_hw, scale, (round(ox), round(oy)), out=crops[m])
        flip = bool(rng.random() < aug.flip)
        if flip:
            crops[m] = crops[m].flip(-1)
        boxes, kept, ignored = transform_boxes(s.boxes, affine, crop_hw, flip)
        if len(s.crowd):  # every visible part of a crowd region is ignored
            crowd_kept, _, crowd_cut = transform_boxes(s.crowd, affine, crop_hw, flip)
            ignored = np.concatenate([ignored, crowd_kept, crowd_cut])
        t = encode_targets(boxes, s.labels[kept], (gh, gw), len(data.classes), ignore=ignored)
        for key in targets:
            targets[key].append(torch.from_numpy(t[key]))
    # Colour and normalization in one multiply-add per channel: brightness and per-channel
    # gain multiply, contrast scales about mid grey, then (x - mean) / std.
    grey = 127.5
    a = 1 + rng.uniform(-aug.gain, aug.gain, (n, 3))
    a = a * (1 + rng.uniform(-aug.brightness, aug.brightness, (n, 1)))
    c = 1 + rng.uniform(-aug.contrast, aug.contrast, (n, 1))
    mean, std = np.array(MEAN) * 255, np.array(STD) * 255
    scale_ = a * c / std
    shift = (a * grey * (1 - c) - mean) / std
    x = torch.addcmul(
        torch.from_numpy(shift).float()[..., None, None],
        crops.float(),
        torch.from_numpy(scale_).float()[..., None, None],
    )
    return x, {k: torch.stack(v) for k, v in targets.items()}


def inference_image(image: torch.Tensor, max_side: int = MAX_SIDE):
    """uint8 (3, H, W) -> (normalized (1, 3, h, w) float, factor from network pixels to image
    pixels). Images whose long side exceeds max_side are downscaled first."""
    h, w = image.shape[1:]
    factor = max(h, w) / max_side if max(h, w) > max_side else 1.0
    x = image[None].float()
    if factor != 1.0:
        size = (round(h / factor), round(w / factor))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return normalize(x), factor
