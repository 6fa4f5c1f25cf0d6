"""Module 2 on real photos: does the heatmap find the animal? Two classes vs three.

The shared real-photo sample is served from 127.0.0.1 laid out like the real downloads and
prepared twice by `make data DATASET=cats-dogs` (with and without the background class);
the AlexNet trains from scratch at the CPU default on each, and each FCN is scored on the
sample's real COCO photos with cat or dog boxes (none of them is a training photo):

- the pointing game: is the peak of P(cat) (P(dog)) inside a cat (dog) box?
- how much of the map says "animal" (P(cat) + P(dog) > 0.5) outside every animal box;
- the held-out classification accuracy (the prepared split's validation photos).

Needs the sample (benchmarks/realsample.py says where it looks); without it the section
says so and measures nothing. Not measured here (no internet): `--pretrained=true` at width 1.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import serve_folder
from benchmarks.realsample import coco_zip, find_realsample, petimages_zip, realsample_places
from models.alexnet import PaddedFCN
from models.checkpoint import build_model, load_checkpoint
from workshop import train_alexnet
from workshop.data.images import open_rgb
from workshop.data.prepare import main as prepare_main
from workshop.fcn import class_maps, pointing_game

ANIMALS = ("cat", "dog")
VARIANTS = {"two classes": ["--background=false"], "three classes": []}


def animal_scenes(sample: Path, out: Path) -> Path:
    """The sample's COCO photos with a cat or dog box, as a COCO file of just those boxes."""
    coco = json.loads((sample / "coco128" / "instances.json").read_text())
    cats = [c for c in coco["categories"] if c["name"] in ANIMALS]
    ids = {c["id"] for c in cats}
    anns = [a for a in coco["annotations"] if a["category_id"] in ids and not a["iscrowd"]]
    shown = {a["image_id"] for a in anns}
    images = [i for i in coco["images"] if i["id"] in shown]
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def outside_share(fcn, classes: list[str], scenes: Path, images: Path) -> dict:
    """Cells whose P(cat) + P(dog) exceeds 0.5, and the share of them centred outside every
    animal box, pooled over the scenes."""
    coco = json.loads(scenes.read_text())
    animal = [classes.index(c) for c in ANIMALS]
    flagged = outside = cells = 0
    for info in coco["images"]:
        probs = class_maps(fcn, open_rgb(images / info["file_name"]))
        xs, ys = PaddedFCN.grid.cell_centers(*probs.shape[1:])
        hot = probs[animal].sum(0) > 0.5
        inside = np.zeros_like(hot)
        for a in coco["annotations"]:
            if a["image_id"] == info["id"]:
                x, y, w, h = a["bbox"]
                inside |= (xs >= x) & (xs <= x + w) & (ys >= y) & (ys <= y + h)
        flagged += int(hot.sum())
        outside += int((hot & ~inside).sum())
        cells += hot.size
    return {
        "cells": cells,
        "animal_cells": flagged,
        "animal_share_of_map": flagged / cells,
        "animal_cells_outside_boxes": outside / flagged if flagged else None,
    }


def quietly(fn, *args):
    """fn(*args) with its progress bars and prints kept out of the bench's tables."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


def run(*, pets: int = 600, train_args: tuple[str, ...] = ()) -> dict:
    """``pets`` photos per animal and extra trainer options: the tests' tiny version."""
    sample = find_realsample()
    if sample is None:
        looked = ", ".join(map(str, realsample_places()))
        return {"skipped": f"no real-photo sample (looked in {looked})"}
    results = {"sample": str(sample)}
    with tempfile.TemporaryDirectory() as tmp, serve_folder(Path(tmp) / "www") as url:
        www = Path(tmp) / "www"
        www.mkdir()
        petimages_zip(sample, www / "kagglecatsanddogs_5340.zip", pets)
        coco_zip(sample, www, url)
        scenes = animal_scenes(sample, Path(tmp) / "animals.json")
        for name, flags in VARIANTS.items():
            data, out = Path(tmp) / name / "data", Path(tmp) / name / "run"
            start = time.perf_counter()
            report = quietly(
                prepare_main,
                [
                    "cats-dogs",
                    f"--data_dir={data}",
                    f"--url={url}/kagglecatsanddogs_5340.zip",
                    f"--background_from={url}/annotations_trainval2017.zip",
                    *flags,
                ],
            )
            prepared = time.perf_counter() - start
            assert report == 0, f"prepare failed for {name}"
            args = ["--dataset=cats-dogs", f"--data_dir={data}", f"--out_dir={out}"]
            metrics = quietly(train_alexnet.main, [*args, "--sliding_check=false", *train_args])
            ckpt = load_checkpoint(out / "checkpoint.pt")
            fcn, classes = build_model(ckpt).eval(), ckpt["meta"]["classes"]
            counts = json.loads((data / "cats-dogs" / "report.json").read_text())["counts"]
            results[name] = {
                "classes": classes,
                "photos": {c: sum(n.values()) for c, n in counts.items()},
                "prepare_seconds": prepared,
                "train_seconds": metrics["train_seconds"],
                "epochs": metrics["epochs"],
                "width": metrics["width"],
                "val_accuracy": metrics["val_accuracy"],
                **pointing_game(fcn, scenes, sample / "coco128" / "images", classes),
                **outside_share(fcn, classes, scenes, sample / "coco128" / "images"),
            }
    return results


def table(result: dict) -> str:
    if "skipped" in result:
        return f"Real photos: skipped, {result['skipped']}"
    lines = [
        "Module 2 on real photos (from scratch, CPU default), scored on real COCO photos "
        "with cat or dog boxes:",
        "",
        "| classes | photos | training | held-out accuracy | pointing game | animal cells "
        "outside every box |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in VARIANTS:
        r = result[name]
        photos = ", ".join(f"{c} {n}" for c, n in r["photos"].items())
        outside = r["animal_cells_outside_boxes"]
        lines.append(
            f"| {name} | {photos} | {r['train_seconds'] / 60:.1f} min, {r['epochs']} epochs, "
            f"width {r['width']} | {r['val_accuracy']:.1%} | {r['pointing_accuracy']:.0%} of "
            f"{r['pointing_trials']} | "
            + ("-" if outside is None else f"{outside:.0%} of {r['animal_cells']}")
            + " |"
        )
    return "\n".join(lines)
