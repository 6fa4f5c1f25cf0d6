"""make data DATASET=cats-dogs|coco|mnist: the original labs' real data, fetched and prepared.

    python -m workshop.data.prepare cats-dogs                   # -> data/cats-dogs/{train,val}
    python -m workshop.data.prepare coco --categories=cat,dog   # -> data/coco-cat-dog/{train,val}
    python -m workshop.data.prepare mnist                       # -> data/mnist/mnist20.mat

- cats-dogs: Microsoft's PetImages archive (kagglecatsanddogs_5340.zip), unpacked,
  corrupt, truncated, empty and unreadable files left out and counted (report.json),
  a fixed 15 % of each class held out; files are hard links into the unpacked
  archive. Then a third class, ``background``: random crops of COCO photos that
  show neither a cat nor a dog (as many crops as the smaller animal class has
  photos), their photos fetched like ``coco``'s from the COCO annotations
  (``--background_from`` names another copy of that archive).
  ``--background=false`` keeps DIGITS' two-class lab (cat, dog), also seeded.
- coco: the COCO 2017 annotations, then only the images that show the chosen
  categories (not only as a crowd region), fetched one by one from their ``coco_url``
  (``--max_images`` caps each split) and decoded once: files that fail are left out
  and counted, like grayscale ones (converted to RGB when read) and crowd regions
  (kept: training and scoring ignore them). Written as filtered COCO files with
  category ids remapped to 1..K.
- mnist: through torchvision, then each digit's central 20x20 (MNIST's digits are
  fitted in a 20x20 box), scaled to [0, 1] and stored column-major in the course's
  ``ex4data1.mat`` format for module 1.

The trainers accept the names: ``--dataset=cats-dogs``, ``--dataset=coco
--categories=cat,dog``, ``--dataset=mnist``. Offline, each says so and names the
offline default. Checksums: a SHA-256 pinned here is verified; where none is
pinned yet, the first download's is recorded in data/downloads/checksums.json and
later downloads must match it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from workshop.data import background as bg
from workshop.data.download import DownloadError, download, safe_extract, sha256_of

SOURCES = {
    "cats-dogs": "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
    "coco": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
}
PINNED: dict[str, str] = {}  # url -> SHA-256, for archives whose checksum is known in advance
OFFLINE_DEFAULT = {
    "cats-dogs": "`make train-alexnet` (the synthetic shapes, generated here)",
    "coco": "`make train-detectnet` (the synthetic scenes, generated here)",
    "mnist": "`make train-mlp` (scikit-learn's bundled digits)",
}
VAL_FRACTION = 0.15


def coco_folder_name(categories: list[str]) -> str:
    return "coco-" + "-".join(c.replace(" ", "_") for c in categories)


def fetch(url: str, dest: Path, downloads: Path, retries: int = 4) -> Path:
    """download() with the checksum pinned here, or recorded on first use."""
    record = downloads / "checksums.json"
    known = json.loads(record.read_text()) if record.is_file() else {}
    expected = PINNED.get(url) or known.get(url)
    path = download(url, dest, sha256=expected, retries=retries)
    if expected is None:
        known[url] = sha256_of(path)
        record.write_text(json.dumps(known, indent=2) + "\n")
    return path


def discard(url: str, path: Path, downloads: Path) -> None:
    """Delete a download that proved to be the wrong file, and the checksum it recorded."""
    path.unlink(missing_ok=True)
    record = downloads / "checksums.json"
    known = json.loads(record.read_text()) if record.is_file() else {}
    if known.pop(url, None) is not None:
        record.write_text(json.dumps(known, indent=2) + "\n")


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_cats_dogs(
    data_dir: Path,
    url: str,
    retries: int = 4,
    background: bool = True,
    background_from: str = SOURCES["coco"],
) -> Path:
    from workshop.data.images import pet_images

    out = data_dir / "cats-dogs"
    report_path = out / "report.json"
    if report_path.is_file() and background == (  # prepared already, with these classes
        bg.BACKGROUND in json.loads(report_path.read_text())["classes"]
    ):
        return out
    archive = fetch(url, data_dir / "downloads" / Path(url).name, data_dir / "downloads", retries)
    raw = data_dir / "raw" / "cats-dogs"
    if not raw.exists():
        safe_extract(archive, raw)
    folder = pet_images(raw, decode=True)  # unreadable and truncated files skipped and counted
    rng = np.random.default_rng(0)
    tmp = out.with_name(f".{out.name}.preparing")
    shutil.rmtree(tmp, ignore_errors=True)
    counts, modes = {}, Counter()
    for label, name in enumerate(folder.classes):
        files = [p for p, lab in folder.samples if lab == label]
        held = rng.random(len(files)) < VAL_FRACTION
        for split in ("train", "val"):
            (tmp / split / name).mkdir(parents=True)
        for path, is_val in zip(files, held):
            _link(path, tmp / ("val" if is_val else "train") / name / path.name)
            with Image.open(path) as img:
                modes[img.mode] += 1
        counts[name] = {"train": int((~held).sum()), "val": int(held.sum())}
    report = {
        "source": url,
        "classes": list(folder.classes),
        "counts": counts,
        "skipped": dict(folder.skipped),
        "converted_to_rgb": _not_rgb(modes),
    }
    if background:
        crops = min(c["train"] + c["val"] for c in counts.values())
        report["background"] = gather_background(data_dir, background_from, crops, tmp, retries)
        report["classes"] = sorted([*report["classes"], bg.BACKGROUND])  # the folders' order
        counts[bg.BACKGROUND] = report["background"].pop("counts")
    report_path = tmp / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _not_rgb(modes: Counter) -> dict:
    """PIL modes other than RGB and how many files had each (read as RGB when cached)."""
    return {m: n for m, n in sorted(modes.items()) if m != "RGB"}


def gather_background(
    data_dir: Path, url: str, crops: int, out: Path, retries: int = 4, seed: int = 0
) -> dict:
    """About ``crops`` random crops of COCO photos without a cat or a dog, into
    out/{train,val}/background/ (a photo's crops stay in one split); returns its report."""
    from tqdm.auto import tqdm

    from workshop.data.images import BadImage, _check_file, open_rgb

    found = coco_annotations(data_dir, url, retries)
    coco = json.loads(found["val2017"].read_text())  # val: 25 MB of JSON, train's is 450 MB
    candidates = bg.images_without(coco, bg.ANIMALS)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(candidates))
    per_photo = bg.crops_per_photo(crops, len(candidates))
    need = bg.photos_needed(crops, per_photo)
    photos = data_dir / "raw" / "coco-background"
    for split in ("train", "val"):
        (out / split / bg.BACKGROUND).mkdir(parents=True, exist_ok=True)
    counts, skipped, modes, used = Counter(), Counter(), Counter(), 0
    bar = tqdm(total=need, desc="background photos", leave=False)
    for k in order:
        if used == need:
            break
        info = candidates[int(k)]
        path = photos / info["file_name"]
        try:
            download(info["coco_url"], path, retries=min(retries, 2), progress=False)
        except DownloadError:
            skipped["not fetched"] += 1
            continue
        reason = _check_file(path, decode=True)
        try:
            img = open_rgb(path) if reason is None else None
        except BadImage:
            reason = "corrupt"
        if reason:
            skipped[reason] += 1
            path.unlink(missing_ok=True)
            continue
        with Image.open(path) as raw:
            modes[raw.mode] += 1
        split = "val" if rng.random() < VAL_FRACTION else "train"
        for n, crop in enumerate(bg.random_crops(img, per_photo, rng)):
            crop.save(out / split / bg.BACKGROUND / f"{path.stem}_{n}.jpg", quality=90)
        counts[split] += per_photo
        used += 1
        bar.update()
    bar.close()
    if not used:
        raise DownloadError(
            f"none of the COCO photos without {' or '.join(bg.ANIMALS)} "
            f"could be fetched ({dict(skipped)})"
        )
    return {
        "source": url,
        "photos": used,
        "crops_per_photo": per_photo,
        "counts": {"train": counts["train"], "val": counts["val"]},
        "skipped": dict(skipped),
        "converted_to_rgb": _not_rgb(modes),
    }


def coco_annotations(data_dir: Path, url: str, retries: int = 4) -> dict[str, Path]:
    """The COCO 2017 annotations archive, fetched and unpacked once: split name -> the
    instances file (train2017, val2017). A wrong archive is removed, with a clear error."""
    downloads = data_dir / "downloads"
    archive = fetch(url, downloads / Path(url).name, downloads, retries)
    raw = data_dir / "raw" / "coco-annotations"
    if not raw.exists():
        safe_extract(archive, raw)
    found = {
        name: next(raw.rglob(f"instances_{name}.json"), None) for name in ("train2017", "val2017")
    }
    missing = [f"instances_{name}.json" for name, path in found.items() if path is None]
    if missing:  # checked before anything is written; a next run must fetch another archive
        shutil.rmtree(raw)
        discard(url, archive, downloads)
        raise ValueError(
            f"{archive.name} has no {', '.join(missing)}: it is not COCO's "
            f"{Path(SOURCES['coco']).name}, and was removed"
        )
    return found


def prepare_coco(
    data_dir: Path, url: str, categories: list[str], max_images: int = 0, retries: int = 4
) -> Path:
    from tqdm.auto import tqdm

    from workshop.data.images import _check_file

    if not categories:
        raise ValueError("coco needs CATEGORIES, e.g. `make data DATASET=coco CATEGORIES=cat,dog`")
    found = coco_annotations(data_dir, url, retries)
    out = data_dir / coco_folder_name(categories)
    report = {"source": url, "categories": categories, "splits": {}}
    for split, name in (("train", "train2017"), ("val", "val2017")):
        coco = json.loads(found[name].read_text())
        by_name = {c["name"]: c for c in coco["categories"]}
        unknown = [c for c in categories if c not in by_name]
        if unknown:
            raise ValueError(f"COCO has no categories {unknown}; it has {sorted(by_name)}")
        wanted = sorted((by_name[c] for c in categories), key=lambda c: c["id"])
        new_id = {c["id"]: k + 1 for k, c in enumerate(wanted)}
        anns = [a for a in coco["annotations"] if a["category_id"] in new_id]
        # An image whose only boxes are crowd regions has nothing to train on: not fetched.
        shown = {a["image_id"] for a in anns if not a.get("iscrowd", 0)}
        crowd_only = {a["image_id"] for a in anns} - shown
        image_ids = sorted(shown)[: max_images or None]
        infos = {i["id"]: i for i in coco["images"]}
        folder = out / split / "images"
        folder.mkdir(parents=True, exist_ok=True)
        kept, skipped, modes = [], Counter(), Counter()
        for image_id in tqdm(image_ids, desc=f"coco {split} images", leave=False):
            info = infos[image_id]
            path = folder / info["file_name"]
            try:
                download(info["coco_url"], path, retries=2, progress=False)
            except DownloadError:
                skipped["not fetched"] += 1
                continue
            reason = _check_file(path, decode=True)  # a cut file would stop training later
            if reason:
                skipped[reason] += 1
                path.unlink()
                continue
            with Image.open(path) as img:
                modes[img.mode] += 1
            kept.append(info)
        if not kept:
            raise DownloadError(
                f"none of the {len(image_ids)} {split} images could be fetched ({dict(skipped)})"
            )
        ids = {i["id"] for i in kept}
        filtered = {
            "info": {
                "description": f"COCO 2017 {split}, categories {categories}",
                "synthetic": False,
            },
            "images": kept,
            "annotations": [
                {**a, "category_id": new_id[a["category_id"]]} for a in anns if a["image_id"] in ids
            ],
            "categories": [
                {
                    "id": new_id[c["id"]],
                    "name": c["name"],
                    "supercategory": c.get("supercategory", ""),
                }
                for c in wanted
            ],
        }
        (out / split / "annotations.json").write_text(json.dumps(filtered))
        crowd = sum(1 for a in filtered["annotations"] if a.get("iscrowd", 0))
        report["splits"][split] = {
            "images": len(kept),
            "failed": sum(skipped.values()),
            "annotations": len(filtered["annotations"]),
            "skipped": dict(skipped),
            "converted_to_rgb": _not_rgb(modes),
            "crowd_regions": crowd,  # kept in the file: ignored in training and in scoring
            "crowd_only_images": len(crowd_only),  # not fetched
        }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return out


def mnist_to_course(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 MNIST digits -> (n, 400) column-major rows in [0, 1], labels 0..9."""
    from workshop.data.digits import to_course_layout

    crop = images[:, 4:24, 4:24].astype(np.float64) / 255.0  # the 20x20 box the digit fills
    return to_course_layout(crop), np.asarray(labels, np.int64)


def prepare_mnist(data_dir: Path) -> Path:
    from torchvision.datasets import MNIST

    from workshop.data.digits import save_ex4data

    out = data_dir / "mnist" / "mnist20.mat"
    if out.is_file():
        return out
    raw = data_dir / "raw" / "mnist"
    try:
        parts = [MNIST(str(raw), train=t, download=True) for t in (True, False)]
    except (RuntimeError, OSError) as err:
        raise DownloadError(f"MNIST could not be downloaded ({err})") from None
    images = np.concatenate([p.data.numpy() for p in parts])
    labels = np.concatenate([p.targets.numpy() for p in parts])
    X, y = mnist_to_course(images, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".mnist20.mat.tmp.mat")
    save_ex4data(tmp, X.astype(np.float32), y)
    os.replace(tmp, out)
    return out


def resolve(name: str, data_dir, categories: list[str] | None = None) -> Path | None:
    """Where a prepared data set lives, or None when name is not one of ours."""
    data_dir = Path(data_dir)
    if name == "cats-dogs":
        path = data_dir / "cats-dogs"
    elif name == "coco":
        path = data_dir / coco_folder_name(categories or [])
    elif name == "mnist":
        path = data_dir / "mnist" / "mnist20.mat"
    else:
        return None
    if not path.exists():
        extra = f" CATEGORIES={','.join(categories)}" if name == "coco" and categories else ""
        raise SystemExit(
            f"error: {path} is missing: run `make data DATASET={name}{extra}` "
            f"first (online), or use the offline default, {OFFLINE_DEFAULT[name]}"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workshop.data.prepare", description="Download and prepare a real data set."
    )
    parser.add_argument("dataset", choices=sorted(OFFLINE_DEFAULT))
    parser.add_argument("--data_dir", default="data", help="where data goes (default data/)")
    parser.add_argument("--categories", default="", help="coco: comma-separated names")
    parser.add_argument("--max_images", type=int, default=0, help="coco: cap per split (0: all)")
    parser.add_argument("--url", default="", help="another source of the same archive")
    parser.add_argument("--retries", type=int, default=4, help="attempts after the first")
    parser.add_argument(
        "--background",
        default="true",
        choices=("true", "false"),
        help="cats-dogs: add the background class (false: cat and dog only)",
    )
    parser.add_argument(
        "--background_from",
        default="",
        help="cats-dogs: another source of COCO's annotations archive",
    )
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    try:
        if args.dataset == "cats-dogs":
            out = prepare_cats_dogs(
                data_dir,
                args.url or SOURCES["cats-dogs"],
                args.retries,
                args.background == "true",
                args.background_from or SOURCES["coco"],
            )
        elif args.dataset == "coco":
            out = prepare_coco(
                data_dir, args.url or SOURCES["coco"], categories, args.max_images, args.retries
            )
        else:
            out = prepare_mnist(data_dir)
    except DownloadError as err:
        print(
            f"error: {err}\nOffline? The offline default needs no download: "
            f"{OFFLINE_DEFAULT[args.dataset]}.",
            file=sys.stderr,
        )
        return 2
    except ValueError as err:  # the data, not the network: the offline hint would mislead
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = out / "report.json"
    print(f"{args.dataset}: ready in {out}")
    if report.is_file():
        print(report.read_text().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
