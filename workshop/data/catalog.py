"""Which data sets are prepared under the data folder, and what each holds (the Data sets page).

    from workshop.data import catalog
    for s in catalog.data_sets():                 # every prepared set; the bundled digits always
        print(s.name, s.classes, s.counts, s.skipped)
    s = catalog.find("cats-dogs")
    total, page = s.examples("val", "cat", start=0, count=25)   # the explore gallery
    catalog.start_prepare("mnist")                # `make data`'s code in a child process
    catalog.prepare_status("mnist")               # {"state", "fraction", "text", ...}

    python -m workshop.data.catalog               # the same summary as JSON
    python -m workshop.data.catalog --generate=synthetic-small   # what `make train-alexnet`
                                                                 # generates first (small size)

Counts come from the files themselves (class folders, COCO JSON, the .mat file), never
from a report; the ``report.json`` that `make data` writes adds what was skipped and why.
The data folder is ``$DATA_DIR`` (the Makefile's variable), default ``data``, like the
trainers' ``--data_dir``. What differs between kinds of set is one entry of ``KINDS``; where
sets are found is the list ``FINDERS``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from models import synthetic
from models.imageio import open_rgb
from workshop.data.images import IMAGE_EXTENSIONS
from workshop.data.prepare import OFFLINE_DEFAULT, SOURCES

ROOT = Path(__file__).resolve().parents[2]
SAMPLED = 30  # files whose headers give a crops set's image size and type
THUMB = 160  # longest side of a gallery picture, pixels
SYNTHETIC_SETS = {"synthetic": "full", "synthetic-small": "small"}  # folder -> trainer's size
# Where torchvision downloads MNIST from: probed before a Prepare, like the others' SOURCES.
MNIST_SOURCE = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def data_root() -> Path:
    """The data folder: $DATA_DIR, or ``data`` (relative to the working folder)."""
    return Path(os.environ.get("DATA_DIR") or "data")


@dataclass
class Example:
    """One gallery picture: a caption and how to draw it (RGB uint8, at most THUMB wide)."""

    caption: str
    load: Callable[[], np.ndarray]


@dataclass
class DataSet:
    name: str  # its folder under the data folder ("digits": bundled with scikit-learn)
    title: str
    kind: str  # a key of KINDS: crops | scenes | digits
    path: Path | None  # None: bundled
    synthetic: bool
    train_as: str  # how a trainer is pointed at it
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images (scenes: images showing it)
    image_size: str
    image_type: str
    skipped: list[dict] = field(default_factory=list)  # {"split", "what", "count", "effect"}
    objects: dict[str, dict[str, int]] | None = None  # scenes: split -> class -> boxes
    source: str = ""  # where it came from
    report: dict = field(default_factory=dict)  # report.json as make data wrote it
    # split -> images; the sum of counts unless an image holds several classes (scenes)
    images: dict[str, int] | None = None

    def __post_init__(self):
        if self.images is None:
            self.images = {s: sum(per.values()) for s, per in self.counts.items()}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s} {n}" for s, n in self.images.items())
        return f"DataSet({self.name}: {self.kind}, {len(self.classes)} classes, {sizes})"

    @property
    def module(self) -> str:
        """The trainer that takes this set: alexnet, detectnet or mlp."""
        return KINDS[self.kind].module

    @property
    def held_out(self) -> str:
        """The split a trained model is scored on: val, or test for the digits."""
        return KINDS[self.kind].held_out

    @property
    def splits(self) -> list[str]:
        return list(self.images)

    @cached_property
    def bytes_on_disk(self) -> int | None:
        """Bytes of every file under the set's folder (None: bundled with a library)."""
        if self.path is None:
            return None
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(
            (Path(top) / name).stat().st_size
            for top, _, names in os.walk(self.path)
            for name in names
        )

    def split_folder(self, split: str) -> Path:
        """A crops set's split: one subfolder per class (what Test many reads)."""
        if self.kind != "crops":
            raise ValueError(f"{self.name} has no class folders (it holds {self.kind})")
        return self.path / split

    def vectors(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A digits set's split as the course's rows: X (m, 400) column-major, labels 0..9."""
        if self.kind != "digits":
            raise ValueError(f"{self.name} holds {self.kind}, not digit vectors")
        data = _digits_split(self.path)
        return (data.X_train, data.y_train) if split == "train" else (data.X_test, data.y_test)

    def examples(
        self, split: str, cls: str | None = None, start: int = 0, count: int = 25
    ) -> tuple[int, list[Example]]:
        """One page of the explore gallery: (how many match, the examples from ``start``)."""
        return KINDS[self.kind].examples(self, split, cls, start, count)


# ------------------------------------------------------------------------ class folders


def image_files(folder: Path) -> list[Path]:
    """A folder's image files (by extension), sorted; [] when it does not exist."""
    if not folder.is_dir():
        return []
    return sorted(
        Path(e.path)
        for e in os.scandir(folder)
        if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
    )


def class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir()) if folder.is_dir() else []


def image_format(files: list[Path]) -> tuple[str, str]:
    """(size, type) in words from the headers of up to SAMPLED files spread over ``files``."""
    picked = files[:: max(1, len(files) // SAMPLED)][:SAMPLED]
    sizes, kinds = Counter(), Counter()
    for path in picked:
        try:
            with Image.open(path) as img:
                sizes[img.size] += 1
                kinds[f"{img.format} {img.mode}"] += 1
        except OSError:
            kinds["unreadable"] += 1
    if not sizes:
        return "no readable images", ", ".join(kinds) or "none"
    if len(sizes) == 1:
        ((w, h),) = sizes
        size = f"{w}x{h}"
    else:
        small, large = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
        size = f"{small[0]}x{small[1]} to {large[0]}x{large[1]}"
    sampled = f" ({len(picked)} of {len(files)} read)" if len(picked) < len(files) else ""
    return size + sampled, ", ".join(k for k, _ in kinds.most_common())


def crops_set(name: str, title: str, path: Path, **kw) -> DataSet:
    """A set of class folders per split (path/<split>/<class>/*.jpg)."""
    splits = [s for s in ("train", "val", "test") if (path / s).is_dir()]
    classes = sorted({c for s in splits for c in class_folders(path / s)})
    files = {s: {c: image_files(path / s / c) for c in classes} for s in splits}
    counts = {s: {c: len(f) for c, f in per.items()} for s, per in files.items()}
    size, kind = image_format([p for per in files.values() for f in per.values() for p in f])
    return DataSet(
        name=name,
        title=title,
        kind="crops",
        path=path,
        classes=classes,
        counts=counts,
        image_size=size,
        image_type=kind,
        **kw,
    )


def thumbnail(image: Image.Image | np.ndarray, side: int = THUMB) -> np.ndarray:
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img = img.copy()
    img.thumbnail((side, side))
    return np.asarray(img.convert("RGB"))


def _crop_examples(s: DataSet, split: str, cls: str | None, start: int, count: int):
    wanted = [cls] if cls else s.classes
    files = [(c, p) for c in wanted for p in image_files(s.path / split / c)]
    page = files[start : start + count]
    return len(files), [
        Example(f"{c} · {p.name}", lambda p=p: thumbnail(open_rgb(p))) for c, p in page
    ]


# ------------------------------------------------------------------------ COCO JSON scenes


def scenes_set(name: str, title: str, path: Path, **kw) -> DataSet:
    """A detection set: path/<split>/annotations.json (COCO) + path/<split>/images/."""
    counts, images, objects, sizes, classes = {}, {}, {}, Counter(), []
    for split in ("train", "val"):
        coco = _coco(path / split / "annotations.json")
        if coco is None:
            continue
        names = {c["id"]: c["name"] for c in coco["categories"]}
        classes = classes or [names[k] for k in sorted(names)]
        shown: dict[str, set] = {c: set() for c in names.values()}
        boxes = Counter()
        for a in coco["annotations"]:
            if a.get("iscrowd", 0):  # crowd regions are counted under skipped (not objects)
                continue
            shown[names[a["category_id"]]].add(a["image_id"])
            boxes[names[a["category_id"]]] += 1
        counts[split] = {c: len(shown[c]) for c in classes}
        objects[split] = {c: boxes[c] for c in classes}
        images[split] = len(coco["images"])
        sizes.update((i["width"], i["height"]) for i in coco["images"])
    if not sizes:
        size = "no images"
    elif len(sizes) == 1:
        ((w, h),) = sizes
        size = f"{w}x{h}"
    else:
        size = ", ".join(f"{w}x{h}" for (w, h), _ in sorted(sizes.items(), key=lambda s: s[0][0]))
    return DataSet(
        name=name,
        title=title,
        kind="scenes",
        path=path,
        classes=classes,
        counts=counts,
        images=images,
        objects=objects,
        image_size=size,
        image_type="JPEG, RGB; boxes in COCO JSON",
        **kw,
    )


def _coco(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _scene_examples(s: DataSet, split: str, cls: str | None, start: int, count: int):
    from models.boxes import draw_detections

    coco = _coco(s.path / split / "annotations.json") or {"images": [], "annotations": []}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    boxes: dict[int, list] = {}
    for a in coco["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    infos = [
        i
        for i in coco["images"]
        if cls is None or any(names[a["category_id"]] == cls for a in boxes.get(i["id"], []))
    ]

    def draw(info: dict) -> np.ndarray:
        img = open_rgb(s.path / split / "images" / info["file_name"], max_side=4 * THUMB)
        scale = img.width / info["width"]  # boxes are in the file's own pixels
        found = boxes.get(info["id"], [])
        xyxy = [
            [scale * v for v in (x, y, x + w, y + h)] for x, y, w, h in (a["bbox"] for a in found)
        ]
        labels = [s.classes.index(names[a["category_id"]]) for a in found]
        return thumbnail(draw_detections(np.asarray(img), xyxy, labels, s.classes), 2 * THUMB)

    return len(infos), [
        Example(f"{i['file_name']} · {len(boxes.get(i['id'], []))} boxes", lambda i=i: draw(i))
        for i in infos[start : start + count]
    ]


# ------------------------------------------------------------------------ digit vectors


@functools.lru_cache(maxsize=1)  # a gallery page after another reads the rows once
def _digits_split(path: Path | None):
    """The fixed 75/25 split module 1 trains on: the bundled digits, or a course .mat file."""
    from workshop.data.digits import load_dataset

    return load_dataset("digits" if path is None else str(path))


def digits_set(name: str, title: str, path: Path | None, **kw) -> DataSet:
    from workshop.data.digits import load_digits_20x20, split

    if path is None:
        y = load_digits_20x20()[1]
    else:  # only the labels: the 70,000 MNIST rows are 112 MB
        import scipy.io

        y = scipy.io.loadmat(path, variable_names=["y"])["y"].ravel() % 10
    # split() on the row numbers: the same stratified draw it makes on the rows themselves
    parts = split(np.arange(len(y))[:, None], y, name)
    classes = [str(d) for d in range(10)]
    counts = {
        s: {c: int(n) for c, n in zip(classes, np.bincount(labels, minlength=10))}
        for s, labels in (("train", parts.y_train), ("test", parts.y_test))
    }
    return DataSet(
        name=name,
        title=title,
        kind="digits",
        path=path,
        classes=classes,
        counts=counts,
        image_size="20x20",
        image_type="grayscale in [0, 1], column-major rows of 400 (the course's layout)",
        **kw,
    )


def _digit_examples(s: DataSet, split: str, cls: str | None, start: int, count: int):
    from workshop.data.digits import from_course_layout

    X, y = s.vectors(split)
    rows = np.flatnonzero(y == int(cls)) if cls is not None else np.arange(len(y))
    page = rows[start : start + count]
    pictures = from_course_layout(X[page]) if len(page) else []  # (n, 400) -> (n, 20, 20)

    def draw(digit: np.ndarray) -> np.ndarray:
        gray = Image.fromarray((np.clip(digit, 0, 1) * 255).astype(np.uint8))
        return np.asarray(gray.resize((80, 80), Image.NEAREST).convert("RGB"))

    return len(rows), [
        Example(f"{y[k]} · row {k}", lambda d=d: draw(d)) for k, d in zip(page, pictures)
    ]


# ------------------------------------------------------------------------ skipped, from reports


def _report(path: Path) -> dict:
    report = path / "report.json"
    return json.loads(report.read_text()) if report.is_file() else {}


def _modes(found: dict, split: str, prefix: str = "") -> list[dict]:
    return [
        {
            "split": split,
            "what": f"{prefix}{mode} image (not RGB)",
            "count": n,
            "effect": "kept, converted to RGB when read",
        }
        for mode, n in found.items()
    ]


def _left_out(found: dict, split: str, prefix: str = "") -> list[dict]:
    return [
        {"split": split, "what": f"{prefix}{why}", "count": n, "effect": "left out"}
        for why, n in found.items()
    ]


def cats_dogs_skipped(report: dict) -> list[dict]:
    """What prepare_cats_dogs left out or converted (before the split: split "all")."""
    rows = _left_out(report.get("skipped", {}), "all")
    rows += _modes(report.get("converted_to_rgb", {}), "all")
    back = report.get("background") or {}
    rows += _left_out(back.get("skipped", {}), "all", "background photo: ")
    rows += _modes(back.get("converted_to_rgb", {}), "all", "background photo: ")
    return rows


def coco_skipped(report: dict) -> list[dict]:
    """What prepare_coco left out, converted or kept aside, per split."""
    rows = []
    for split, part in report.get("splits", {}).items():
        rows += _left_out(part.get("skipped", {}), split)
        rows += _modes(part.get("converted_to_rgb", {}), split)
        if part.get("crowd_regions"):
            rows.append(
                {
                    "split": split,
                    "what": "crowd region",
                    "count": part["crowd_regions"],
                    "effect": "kept in the file, ignored in training and scoring",
                }
            )
        if part.get("crowd_only_images"):
            rows.append(
                {
                    "split": split,
                    "what": "image with crowd regions only",
                    "count": part["crowd_only_images"],
                    "effect": "not fetched (nothing to train on)",
                }
            )
    return rows


# ------------------------------------------------------------------------ where sets are


def _synthetic_sets(root: Path) -> list[DataSet]:
    found = []
    for folder, size in SYNTHETIC_SETS.items():
        path = root / folder
        stamp = path / "synthetic.json"
        if not stamp.is_file():
            continue
        about = json.loads(stamp.read_text())
        common = {
            "synthetic": True,
            "source": f"generated by models.synthetic, seed {about['config']['seed']} ({size})",
            "report": about,
        }
        # a folder that is not the default one is pointed at as a folder
        option = "" if size == "full" else " --synthetic_size=small"
        if (path / "crops").is_dir():
            found.append(
                crops_set(
                    f"{folder}/crops",
                    f"Synthetic shapes, crops ({size})",
                    path / "crops",
                    train_as=f"make train-alexnet (--dataset=synthetic{option})",
                    **common,
                )
            )
        if (path / "scenes").is_dir():
            found.append(
                scenes_set(
                    f"{folder}/scenes",
                    f"Synthetic scenes, COCO boxes ({size})",
                    path / "scenes",
                    train_as=f"make train-detectnet (--dataset=synthetic{option})",
                    **common,
                )
            )
    return found


def _cats_dogs(root: Path) -> list[DataSet]:
    path = root / "cats-dogs"
    report = _report(path)
    if not report:  # prepare writes report.json last: no report, not prepared
        return []
    return [
        crops_set(
            "cats-dogs",
            "Cats and dogs (PetImages)" + (" + background" if "background" in report else ""),
            path,
            synthetic=False,
            train_as="make train-alexnet DATASET=cats-dogs",
            skipped=cats_dogs_skipped(report),
            source=report.get("source", ""),
            report=report,
        )
    ]


def _coco_sets(root: Path) -> list[DataSet]:
    found = []
    for report_path in sorted(root.glob("coco-*/report.json")):
        report = json.loads(report_path.read_text())
        categories = report.get("categories", [])
        found.append(
            scenes_set(
                report_path.parent.name,
                f"COCO 2017: {', '.join(categories)}",
                report_path.parent,
                synthetic=False,
                train_as=f"make train-detectnet DATASET=coco CATEGORIES={','.join(categories)}",
                skipped=coco_skipped(report),
                source=report.get("source", ""),
                report=report,
            )
        )
    return found


def _mnist(root: Path) -> list[DataSet]:
    path = root / "mnist" / "mnist20.mat"
    if not path.is_file():
        return []
    return [
        digits_set(
            "mnist",
            "MNIST (central 20x20)",
            path,
            synthetic=False,
            train_as="make train-mlp DATASET=mnist",
            source="torchvision's MNIST, prepared by make data",
        )
    ]


def _digits(root: Path) -> list[DataSet]:
    return [
        digits_set(
            "digits",
            "Handwritten digits (scikit-learn, bundled)",
            None,
            synthetic=False,
            train_as="make train-mlp",
            source="scikit-learn's 1,797 8x8 scans, upsampled to 20x20",
        )
    ]


FINDERS: list[Callable[[Path], list[DataSet]]] = [
    _synthetic_sets,
    _cats_dogs,
    _coco_sets,
    _mnist,
    _digits,
]


@dataclass(frozen=True)
class Kind:
    """What differs between kinds of data set."""

    module: str  # the trainer that takes it
    held_out: str  # the split a model is scored on
    examples: Callable  # (set, split, class or None, start, count) -> (total, [Example])


KINDS = {
    "crops": Kind("alexnet", "val", _crop_examples),
    "scenes": Kind("detectnet", "val", _scene_examples),
    "digits": Kind("mlp", "test", _digit_examples),
}


def data_sets(root=None) -> list[DataSet]:
    """Every prepared data set under the data folder, the bundled digits last."""
    root = Path(root) if root is not None else data_root()
    return [s for finder in FINDERS for s in finder(root)]


def find(name: str, root=None) -> DataSet:
    for s in data_sets(root):
        if s.name == name:
            return s
    raise KeyError(f"no prepared data set named {name!r}")


# ------------------------------------------------------------------------ prepare, in a child


@dataclass(frozen=True)
class Prepare:
    """How the page prepares a set: the module it runs, and what it downloads from."""

    title: str
    argv: tuple[str, ...]  # after `python -m`
    sources: tuple[tuple[str, str], ...] = ()  # (CLI option naming a mirror, default URL)

    @property
    def online(self) -> bool:
        return bool(self.sources)

    def urls(self, options: tuple[str, ...]) -> list[str]:
        """The URLs a run with these CLI options downloads from (a mirror replaces its
        default; --background=false needs no COCO annotations)."""
        given = dict(o.split("=", 1) for o in options if "=" in o)
        return [
            given.get(option) or url
            for option, url in self.sources
            if not (option == "--background_from" and given.get("--background") == "false")
        ]


PREPARE = {
    "cats-dogs": Prepare(
        "Cats and dogs (PetImages, 800 MB; the background class adds COCO's 250 MB annotations)",
        ("workshop.data.prepare", "cats-dogs"),
        (("--url", SOURCES["cats-dogs"]), ("--background_from", SOURCES["coco"])),
    ),
    "coco": Prepare(
        "COCO 2017 subset (annotations 250 MB, then the images)",
        ("workshop.data.prepare", "coco"),
        (("--url", SOURCES["coco"]),),
    ),
    "mnist": Prepare("MNIST (11 MB)", ("workshop.data.prepare", "mnist"), (("", MNIST_SOURCE),)),
    "synthetic": Prepare(
        "Synthetic shapes and scenes (full: what make train-alexnet makes)",
        ("workshop.data.catalog", "--generate=synthetic"),
    ),
    "synthetic-small": Prepare(
        "Synthetic shapes and scenes (small, for smoke runs)",
        ("workshop.data.catalog", "--generate=synthetic-small"),
    ),
}
# a tqdm line: "crops train/star:  46%|████▌     | 11/24 [00:00<00:00, 108.77it/s]"
PERCENT = re.compile(r"(?:(.*?):\s*)?(\d{1,3})%\|[^|]*\|\s*(\S+)?(?:\s*\[[^<\]]*<([^,\]]+))?")
EXIT = re.compile(r"^exit (-?\d+)$", re.M)


class PrepareError(RuntimeError):
    """A Prepare that cannot start; the message is one sentence for the page."""


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens (DNS included) within ``timeout``."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _files(name: str, root: Path) -> tuple[Path, Path]:
    folder = root / ".prepare"
    return folder / f"{name}.log", folder / f"{name}.pid"


_children: dict[str, subprocess.Popen] = {}  # started by this process: polled, so reaped


def start_prepare(name: str, root=None, options: tuple[str, ...] = ()) -> Path:
    """Start preparing ``name`` (a PREPARE key) in a child process; returns its log file.

    The child is the module's own CLI (``python -m workshop.data.prepare ...``), its output
    to ``<data>/.prepare/<name>.log`` ending in ``exit <status>``; it keeps running when the
    page is left. ``options`` are the CLI's (e.g. ``--url=`` a local mirror). Raises
    PrepareError (one sentence) when offline, read-only or running already.
    """
    spec = PREPARE[name]
    root = Path(root) if root is not None else data_root()
    if prepare_status(name, root)["state"] == "running":
        raise PrepareError(f"{name} is being prepared already")
    away = [urlparse(url).hostname for url in spec.urls(options) if not reachable(url)]
    if away:
        raise PrepareError(
            f"Offline: {' and '.join(dict.fromkeys(away))} cannot be reached from this machine, "
            f"so {name} cannot be downloaded; the offline default needs no download: "
            f"{OFFLINE_DEFAULT[name]}."
        )
    log, pid = _files(name, root)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
    except OSError:
        raise PrepareError(
            f"The data folder {root} cannot be written here (read-only): prepare data sets "
            "where you own the data folder."
        ) from None
    command = [sys.executable, "-m", *spec.argv, f"--data_dir={root.resolve()}", *options]
    with open(log, "wb") as out:
        child = subprocess.Popen(
            ["/bin/sh", "-c", '"$@"; echo "exit $?"', "sh", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a page rerun or a server restart leaves it running
        )
    _children[name] = child
    pid.write_text(str(child.pid))
    return log


def _alive(name: str, pid_file: Path) -> bool:
    if name in _children:
        return _children[name].poll() is None
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def prepare_status(name: str, root=None) -> dict:
    """{"state": idle|running|done|failed|stopped, "fraction": 0..1 or None, "text": the last
    progress line or message, "log": the log's tail} for a Prepare started by start_prepare."""
    root = Path(root) if root is not None else data_root()
    log, pid = _files(name, root)
    if not log.is_file():
        return {"state": "idle", "fraction": None, "text": "", "log": ""}
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 16_000))
        tail = f.read().decode(errors="replace")
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", tail) if ln.strip()]
    ended = EXIT.search(tail)
    if ended:
        state = "done" if ended.group(1) == "0" else "failed"
    else:
        state = "running" if _alive(name, pid) else "stopped"
    fraction, text = None, lines[-1] if lines else ""
    for line in reversed(lines):
        found = PERCENT.search(line)
        if found:
            desc, percent, count, left = found.groups()
            fraction = int(percent) / 100
            text = " ".join(filter(None, [desc, count or f"{percent}%"]))
            text += f", {left} left" if left and "?" not in left else ""
            break
    if state != "running":
        shown = [ln for ln in lines if not EXIT.match(ln) and not PERCENT.search(ln)]
        text = shown[-1] if shown else text
        fraction = 1.0 if state == "done" else fraction
    return {"state": state, "fraction": fraction, "text": text, "log": "\n".join(lines[-20:])}


def generate_synthetic(root: Path, folder: str) -> Path:
    """The synthetic set a trainer makes first (workshop.data.synthetic_set), seed 0."""
    cfg = synthetic.SyntheticConfig(seed=0)
    if SYNTHETIC_SETS[folder] == "small":
        cfg = cfg.small()
    return synthetic.generate(root / folder, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workshop.data.catalog", description="The prepared data sets, as JSON."
    )
    parser.add_argument("--data_dir", default=str(data_root()), help="the data folder")
    parser.add_argument("--generate", choices=sorted(SYNTHETIC_SETS), help="make a synthetic set")
    args = parser.parse_args(argv)
    root = Path(args.data_dir)
    if args.generate:
        print(f"{args.generate}: ready in {generate_synthetic(root, args.generate)}")
        return 0
    summary = [
        {
            "name": s.name,
            "kind": s.kind,
            "classes": s.classes,
            "images": s.images,
            "counts": s.counts,
            "image_size": s.image_size,
            "image_type": s.image_type,
            "skipped": s.skipped,
            "bytes_on_disk": s.bytes_on_disk,
            "train_as": s.train_as,
        }
        for s in data_sets(root)
    ]
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
