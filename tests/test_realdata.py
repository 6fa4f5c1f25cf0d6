"""Rehearsal on real photos: the shared sample served from 127.0.0.1 laid out like the real
downloads, prepared by `python -m workshop.data.prepare`, then modules 2 and 3 trained on it.

The sample (real PetImages photos, 128 real COCO images and their annotations) lives beside
the checkout in ``shared/data/realsample`` (CI has it); WORKSHOP_REALSAMPLE names another place.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
from helpers import TINY_DETECTNET

from benchmarks.harness import serve_folder
from benchmarks.realsample import coco_zip, find_realsample, petimages_zip, realsample_places
from workshop import train_alexnet, train_detectnet
from workshop.data.prepare import main as prepare_main

ROOT = Path(__file__).resolve().parents[1]
PETS = 150  # photos per class taken from the sample (it has 600)


@pytest.fixture(scope="module")
def sample() -> Path:
    places = realsample_places()
    found = find_realsample()
    if found is None:
        pytest.skip(
            f"no real-photo sample: looked in {', '.join(map(str, places))} "
            "(set WORKSHOP_REALSAMPLE to its folder)"
        )
    return found


def prepare(*args: str) -> dict:
    """`python -m workshop.data.prepare ARGS` in-process; the report it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = prepare_main(list(args))
    assert code == 0, err.getvalue()[-2000:]
    text = out.getvalue()
    return json.loads(text[text.index("{") :])


def expected_coco(split: dict, names: list[str]) -> dict:
    """What prepare should find in a split for ``names``, counted straight from the JSON."""
    ids = {c["id"] for c in split["categories"] if c["name"] in names}
    anns = [a for a in split["annotations"] if a["category_id"] in ids]
    shown = {a["image_id"] for a in anns if not a["iscrowd"]}
    return {
        "images": shown,
        "crowd_regions": sum(1 for a in anns if a["iscrowd"] and a["image_id"] in shown),
        "crowd_only_images": len({a["image_id"] for a in anns} - shown),
    }


@pytest.mark.slow
def test_real_photos_are_prepared_and_trained_on(sample, tmp_path):
    www, data = tmp_path / "www", tmp_path / "data"
    www.mkdir()
    with serve_folder(www) as url:
        oddities = petimages_zip(sample, www / "kagglecatsanddogs_5340.zip", PETS)
        splits = coco_zip(sample, www, url)
        coco = f"{url}/annotations_trainval2017.zip"
        gray = next(
            s
            for s, n in (("train", "train2017"), ("val", "val2017"))
            if any(i["id"] == 86 for i in splits[n]["images"])
        )  # the one in mode L

        pets = prepare(
            "cats-dogs",
            f"--data_dir={data}",
            f"--url={url}/kagglecatsanddogs_5340.zip",
            f"--background_from={coco}",
            "--retries=0",
        )
        assert pets["skipped"] == oddities
        assert pets["classes"] == ["background", "cat", "dog"]
        for name in ("cat", "dog"):
            assert sum(pets["counts"][name].values()) == PETS
        background = pets["background"]
        assert background["photos"] == math.ceil(PETS / 4) and background["skipped"] == {}
        assert sum(pets["counts"]["background"].values()) == 4 * background["photos"]
        crops = sorted((data / "cats-dogs").glob("*/background/*.jpg"))
        without = {i["file_name"][:-4] for i in splits["val2017"]["images"]} - {
            f"{a['image_id']:012d}"
            for a in splits["val2017"]["annotations"]
            if a["category_id"] in (17, 18)  # COCO's cat and dog
        }
        assert len(crops) == 4 * background["photos"]
        assert {p.stem.rsplit("_", 1)[0] for p in crops} <= without

        # module 3's data: persons and dogs (the sample has 4 cat boxes, too few)
        cut = min(expected_coco(splits["val2017"], ["person", "dog"])["images"])
        photo = www / "images" / f"{cut:012d}.jpg"  # a val photo of a person, served cut short
        whole = photo.read_bytes()
        photo.unlink()
        photo.write_bytes(whole[: len(whole) // 2])
        det = prepare(
            "coco", "--categories=person,dog", f"--data_dir={data}", f"--url={coco}", "--retries=0"
        )
    for split, name in (("train", "train2017"), ("val", "val2017")):
        if split == "val":  # the cut photo is left out, with its annotations
            splits[name]["annotations"] = [
                a for a in splits[name]["annotations"] if a["image_id"] != cut
            ]
        want, got = expected_coco(splits[name], ["person", "dog"]), det["splits"][split]
        assert got["images"] == len(want["images"])
        assert got["skipped"] == ({"truncated": 1} if split == "val" else {})
        assert got["crowd_regions"] == want["crowd_regions"]
        assert got["crowd_only_images"] == want["crowd_only_images"]
        assert got["converted_to_rgb"] == ({"L": 1} if split == gray else {})
    assert sum(s["crowd_regions"] for s in det["splits"].values()) >= 1

    out2 = tmp_path / "alexnet"
    with contextlib.redirect_stdout(io.StringIO()):
        m2 = train_alexnet.main(
            [
                "--dataset=cats-dogs",
                f"--data_dir={data}",
                f"--out_dir={out2}",
                "--epochs=1",
                "--max_steps=2",
                "--width=0.125",
                "--batch_size=16",
                "--sliding_check=false",
                "--device=cpu",
            ]
        )
    assert math.isfinite(m2["val_loss"]) and 0 <= m2["val_accuracy"] <= 1
    meta = torch.load(out2 / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["classes"] == ["background", "cat", "dog"] and meta["background"] is True

    out3 = tmp_path / "detectnet"
    with contextlib.redirect_stdout(io.StringIO()):
        m3 = train_detectnet.main(
            [
                "--dataset=coco",
                "--categories=person,dog",
                f"--data_dir={data}",
                f"--out_dir={out3}",
                *TINY_DETECTNET,
                "--device=cpu",
            ]
        )
    assert set(m3["per_class_AP"]) == {"person", "dog"}
    assert all(math.isfinite(v) for v in m3["per_class_AP"].values())
