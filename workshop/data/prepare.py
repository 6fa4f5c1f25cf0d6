"""make data DATASET=cats-dogs|coco|mnist: the original labs' real data, fetched and prepared.

    python -m workshop.data.prepare cats-dogs                   # -> data/cats-dogs/{train,val}
    python -m workshop.data.prepare coco --categories=cat,dog   # -> data/coco-cat-dog/{train,val}
    python -m workshop.data.prepare mnist                       # -> data/mnist/mnist20.mat

- cats-dogs: Microsoft's PetImages archive (kagglecatsanddogs_5340.zip), unpacked,
  corrupt, empty and unreadable files left out and counted (report.json), a fixed
  15 % of each class held out; files are hard links into the unpacked archive.
- coco: the COCO 2017 annotations, then only the images that show the chosen
  categories, fetched one by one from their ``coco_url`` (``--max_images`` caps
  each split), written as filtered COCO files with category ids remapped to 1..K.
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
from pathlib import Path

import numpy as np

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


def prepare_cats_dogs(data_dir: Path, url: str, retries: int = 4) -> Path:
    from workshop.data.images import pet_images

    out = data_dir / "cats-dogs"
    if (out / "report.json").is_file():
        return out
    archive = fetch(url, data_dir / "downloads" / Path(url).name, data_dir / "downloads", retries)
    raw = data_dir / "raw" / "cats-dogs"
    if not raw.exists():
        safe_extract(archive, raw)
    folder = pet_images(raw)  # unreadable files are skipped and counted here
    rng = np.random.default_rng(0)
    tmp = out.with_name(f".{out.name}.preparing")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {}
    for label, name in enumerate(folder.classes):
        files = [p for p, lab in folder.samples if lab == label]
        held = rng.random(len(files)) < VAL_FRACTION
        for split in ("train", "val"):
            (tmp / split / name).mkdir(parents=True)
        for path, is_val in zip(files, held):
            _link(path, tmp / ("val" if is_val else "train") / name / path.name)
        counts[name] = {"train": int((~held).sum()), "val": int(held.sum())}
    report = {"source": url, "classes": folder.classes, "counts": counts,
              "skipped": dict(folder.skipped)}
    (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def prepare_coco(data_dir: Path, url: str, categories: list[str], max_images: int = 0,
                 retries: int = 4) -> Path:
    if not categories:
        raise ValueError("coco needs CATEGORIES, e.g. `make data DATASET=coco CATEGORIES=cat,dog`")
    downloads = data_dir / "downloads"
    archive = fetch(url, downloads / Path(url).name, downloads, retries)
    raw = data_dir / "raw" / "coco-annotations"
    if not raw.exists():
        safe_extract(archive, raw)
    splits = (("train", "train2017"), ("val", "val2017"))
    found = {name: next(raw.rglob(f"instances_{name}.json"), None) for _, name in splits}
    missing = [f"instances_{name}.json" for name, path in found.items() if path is None]
    if missing:  # checked before anything is written; a next run must fetch another archive
        shutil.rmtree(raw)
        discard(url, archive, downloads)
        raise ValueError(f"{archive.name} has no {', '.join(missing)}: it is not COCO's "
                         f"{Path(SOURCES['coco']).name}, and was removed")
    out = data_dir / coco_folder_name(categories)
    report = {"source": url, "categories": categories, "splits": {}}
    for split, name in splits:
        coco = json.loads(found[name].read_text())
        by_name = {c["name"]: c for c in coco["categories"]}
        unknown = [c for c in categories if c not in by_name]
        if unknown:
            raise ValueError(f"COCO has no categories {unknown}; it has {sorted(by_name)}")
        wanted = sorted((by_name[c] for c in categories), key=lambda c: c["id"])
        new_id = {c["id"]: k + 1 for k, c in enumerate(wanted)}
        anns = [a for a in coco["annotations"] if a["category_id"] in new_id]
        image_ids = sorted({a["image_id"] for a in anns})[: max_images or None]
        infos = {i["id"]: i for i in coco["images"]}
        folder = out / split / "images"
        folder.mkdir(parents=True, exist_ok=True)
        kept, failed = [], 0
        from tqdm.auto import tqdm

        for image_id in tqdm(image_ids, desc=f"coco {split} images", leave=False):
            info = infos[image_id]
            try:
                download(info["coco_url"], folder / info["file_name"], retries=2, progress=False)
                kept.append(info)
            except DownloadError:
                failed += 1
        if not kept:
            raise DownloadError(f"none of the {len(image_ids)} {split} images could be fetched")
        ids = {i["id"] for i in kept}
        filtered = {
            "info": {"description": f"COCO 2017 {split}, categories {categories}",
                     "synthetic": False},
            "images": kept,
            "annotations": [{**a, "category_id": new_id[a["category_id"]]}
                            for a in anns if a["image_id"] in ids],
            "categories": [{"id": new_id[c["id"]], "name": c["name"],
                            "supercategory": c.get("supercategory", "")} for c in wanted],
        }
        (out / split / "annotations.json").write_text(json.dumps(filtered))
        report["splits"][split] = {"images": len(kept), "failed": failed,
                                   "annotations": len(filtered["annotations"])}
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
        raise SystemExit(f"error: {path} is missing: run `make data DATASET={name}{extra}` "
                         f"first (online), or use the offline default, {OFFLINE_DEFAULT[name]}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.data.prepare",
                                     description="Download and prepare a real data set.")
    parser.add_argument("dataset", choices=sorted(OFFLINE_DEFAULT))
    parser.add_argument("--data_dir", default="data", help="where data goes (default data/)")
    parser.add_argument("--categories", default="", help="coco: comma-separated names")
    parser.add_argument("--max_images", type=int, default=0, help="coco: cap per split (0: all)")
    parser.add_argument("--url", default="", help="another source of the same archive")
    parser.add_argument("--retries", type=int, default=4, help="attempts after the first")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    try:
        if args.dataset == "cats-dogs":
            out = prepare_cats_dogs(data_dir, args.url or SOURCES["cats-dogs"], args.retries)
        elif args.dataset == "coco":
            out = prepare_coco(data_dir, args.url or SOURCES["coco"], categories, args.max_images,
                               args.retries)
        else:
            out = prepare_mnist(data_dir)
    except DownloadError as err:
        print(f"error: {err}\nOffline? The offline default needs no download: "
              f"{OFFLINE_DEFAULT[args.dataset]}.", file=sys.stderr)
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
