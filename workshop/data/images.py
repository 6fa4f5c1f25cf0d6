"""Image folders for classification: reading any image safely, a 256x256 cache, batches.

Preprocessing is defined here once: images are squashed to 256x256 when the
cache is built (as DIGITS did when it created its data sets), training takes
random-resized 224 crops with horizontal flips, evaluation takes the centre
224 crop, and pixels are normalized with ImageNet's mean and std. The same
values travel in the checkpoint's meta (``preprocessing_meta``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from models.imageio import BadImage, open_rgb, to_rgb  # noqa: F401 -- re-exported

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, so --pretrained weights fit too
STD = (0.229, 0.224, 0.225)
CACHE_SIZE = 256
CROP = 224


@dataclass
class ImageFolder:
    """root/<class>/<image>: the samples that open, and a count of those skipped and why."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]
    skipped: Counter = field(default_factory=Counter)

    def __repr__(self) -> str:
        per = Counter(label for _, label in self.samples)
        counts = ", ".join(f"{c} {per[i]}" for i, c in enumerate(self.classes))
        skipped = f"; skipped {dict(self.skipped)}" if self.skipped else ""
        return f"ImageFolder({self.root}: {counts}{skipped})"

    @classmethod
    def scan(
        cls,
        root,
        classes: list[str] | None = None,
        folders: list[str] | None = None,
        decode: bool = False,
    ):
        """Index root/<folder>/*; check each file's header so corrupt files are skipped early.

        ``folders`` name the subfolders (default: every subfolder, sorted) and
        ``classes`` their class names (default: the folder names). ``decode`` also
        decodes each file (at 1/8 size for JPEGs), which finds truncated files.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root}: no such image folder")
        folders = folders or sorted(p.name for p in root.iterdir() if p.is_dir())
        if not folders:
            raise ValueError(f"{root}: expected one subfolder per class, found none")
        classes = classes or list(folders)
        samples, skipped = [], Counter()
        for label, folder in enumerate(folders):
            for path in sorted((root / folder).iterdir()):
                reason = _check_file(path, decode)
                if reason:
                    skipped[reason] += 1
                else:
                    samples.append((path, label))
        if not samples:
            raise ValueError(f"{root}: no readable images ({dict(skipped)} skipped)")
        return cls(root, classes, samples, skipped)


def _check_file(path: Path, decode: bool = False) -> str | None:
    """Why a file cannot be a sample (None if it looks fine).

    A JPEG cut short passes ``verify()``, which reads only the headers, and fails
    when it is decoded: only ``decode`` finds it ("truncated").
    """
    if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file"
    if path.stat().st_size == 0:
        return "zero bytes"
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception:
        return "corrupt"
    if decode:
        try:
            with Image.open(path) as img:
                img.draft("RGB", (img.width // 8 or 1, img.height // 8 or 1))  # the DCT's 1/8
                img.load()
        except Exception as err:
            return "truncated" if "truncated" in str(err) else "corrupt"
    return None


def pet_images(root, decode: bool = False) -> ImageFolder:
    """The Microsoft/Kaggle PetImages layout: root/Cat, root/Dog (or root/PetImages/...)."""
    root = Path(root)
    if (root / "PetImages").is_dir():
        root = root / "PetImages"
    if not ((root / "Cat").is_dir() and (root / "Dog").is_dir()):
        raise ValueError(f"{root}: expected the PetImages folders Cat/ and Dog/")
    return ImageFolder.scan(root, classes=["cat", "dog"], folders=["Cat", "Dog"], decode=decode)


# ------------------------------------------------------------------------ the cache


@dataclass
class CachedImages:
    """All images of a folder squashed to 256x256, uint8 (n, 256, 256, 3), and their labels."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: dict

    def __len__(self) -> int:
        return len(self.labels)


def cache_images(folder: ImageFolder, cache_dir, name: str, size: int = CACHE_SIZE) -> CachedImages:
    """Decode every sample once into ``cache_dir/name.npy`` (memory-mapped afterwards)."""
    cache_dir = Path(cache_dir)
    key = hashlib.sha1(
        json.dumps([[str(p), p.stat().st_mtime_ns, y] for p, y in folder.samples]).encode()
    ).hexdigest()[:16]
    array_path, info_path = cache_dir / f"{name}-{size}.npy", cache_dir / f"{name}-{size}.json"
    if info_path.is_file() and array_path.is_file():
        info = json.loads(info_path.read_text())
        if info["key"] == key:
            images = np.load(array_path, mmap_mode="r")
            return CachedImages(images, np.array(info["labels"]), info["classes"], info["skipped"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = array_path.with_suffix(".tmp.npy")
    images = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(len(folder.samples), size, size, 3)
    )
    labels, skipped, n = [], Counter(folder.skipped), 0
    for path, label in tqdm(folder.samples, desc=f"caching {name}", unit="img", leave=False):
        try:
            img = open_rgb(path)
        except BadImage:
            skipped["corrupt"] += 1
            continue
        images[n] = np.asarray(img.resize((size, size), Image.BILINEAR))
        labels.append(label)
        n += 1
    images.flush()
    del images
    if n < len(folder.samples):  # drop the rows of files that failed to decode
        full = np.load(tmp, mmap_mode="r")
        np.save(array_path, full[:n])
        del full
        tmp.unlink()
    else:
        tmp.replace(array_path)
    info = {"key": key, "labels": labels, "classes": folder.classes, "skipped": dict(skipped)}
    info_path.write_text(json.dumps(info))
    return CachedImages(
        np.load(array_path, mmap_mode="r"), np.array(labels), folder.classes, dict(skipped)
    )


# ------------------------------------------------------------------- batches on device


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8-range float (n, 3, h, w) -> normalized with MEAN, STD."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def random_crop_size(
    size: int, generator: torch.Generator, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int]:
    """RandomResizedCrop's (height, width) draw: a share of the area and an aspect ratio."""
    area = size * size * torch.empty(1).uniform_(*scale, generator=generator).item()
    aspect = math.exp(
        torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator).item()
    )
    return min(size, round(math.sqrt(area / aspect))), min(size, round(math.sqrt(area * aspect)))


def make_batch(
    images_u8: torch.Tensor, train: bool, generator: torch.Generator | None = None, out: int = CROP
) -> torch.Tensor:
    """(n, 256, 256, 3) uint8 on any device -> (n, 3, out, out) normalized float32.

    Training: random-resized crops (one size per batch, a random place and a
    random horizontal flip per image), resized to out x out in uint8, which is
    several times cheaper on a CPU than resampling each image on its own.
    Evaluation: the centre crop.
    """
    n, size = images_u8.shape[0], images_u8.shape[1]
    if not train:
        off = (size - out) // 2
        crop = images_u8[:, off : off + out, off : off + out]
        return normalize(crop.permute(0, 3, 1, 2).float())  # (n, h, w, 3) -> (n, 3, h, w)
    h, w = random_crop_size(size, generator)
    y0 = torch.randint(0, size - h + 1, (n,), generator=generator).tolist()
    x0 = torch.randint(0, size - w + 1, (n,), generator=generator).tolist()
    flip = (torch.rand(n, generator=generator) < 0.5).tolist()
    crops = torch.stack(
        [
            images_u8[i, y : y + h, x : x + w].flip(1) if f else images_u8[i, y : y + h, x : x + w]
            for i, (y, x, f) in enumerate(zip(y0, x0, flip))
        ]
    )
    x = F.interpolate(
        crops.permute(0, 3, 1, 2), size=(out, out), mode="bilinear", align_corners=False
    ).float()
    return normalize(image_border(x, generator))


def image_border(x: torch.Tensor, generator: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Cover a band along one side of some crops with the mean colour (0 once normalized).

    Whole-image maps pad the image with that colour (models.heatmap.MARGIN), so
    windows near an image's edge look like this; training on such crops keeps
    the border itself from looking like an object.
    """
    n, _, h, w = x.shape
    pick = torch.rand(n, generator=generator) < p
    side = torch.randint(0, 4, (n,), generator=generator).view(n, 1, 1)
    depth = (torch.rand(n, generator=generator) * 0.4 * h).long().view(n, 1, 1)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    band = ((side == 0) & (rows < depth)) | ((side == 1) & (rows >= h - depth))
    band = band | ((side == 2) & (cols < depth)) | ((side == 3) & (cols >= w - depth))
    band = band & pick.view(n, 1, 1)  # (n, h, w)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) * 255
    return torch.where(band[:, None].to(x.device), mean, x)


def preprocessing_meta() -> dict:
    """What the checkpoint and the ONNX file carry about the input pipeline."""
    return {
        "mean": list(MEAN),
        "std": list(STD),
        "input_scale": 1 / 255,
        "resize": CACHE_SIZE,
        "crop": CROP,
        "color": "RGB",
    }


def split_folders(path, seed: int = 0, val_fraction: float = 0.15):
    """(train, val) ImageFolders from train/ + val/, the PetImages layout, or class folders.

    Without train/ and val/, a fixed random share (val_fraction) of each class is held out.
    """
    root = Path(path)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = ImageFolder.scan(root / "train")
        folders = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        return train, ImageFolder.scan(root / "val", classes=train.classes, folders=folders)
    pets = (root / "Cat").is_dir() or (root / "PetImages").is_dir()
    full = pet_images(root) if pets else ImageFolder.scan(root)
    rng = np.random.default_rng(seed)
    val_mask = rng.random(len(full.samples)) < val_fraction
    pick = lambda keep: [s for s, v in zip(full.samples, val_mask) if v == keep]  # noqa: E731
    return (
        ImageFolder(full.root, full.classes, pick(False), full.skipped),
        ImageFolder(full.root, full.classes, pick(True)),
    )
