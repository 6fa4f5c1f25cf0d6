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
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import serve_folder

from workshop import train_alexnet, train_detectnet
from workshop.data.prepare import main as prepare_main

ROOT = Path(__file__).resolve().parents[1]
PETS = 150  # photos per class taken from the sample (it has 600)


def sample_places() -> list[Path]:
    """Where the sample may be: the override, beside this checkout, beside the main checkout
    (a git worktree's own sibling folder has no shared/)."""
    places = [ROOT.parent / "shared" / "data" / "realsample"]
    if os.environ.get("WORKSHOP_REALSAMPLE"):
        places.insert(0, Path(os.environ["WORKSHOP_REALSAMPLE"]))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        places.append(Path(common).parent.parent / "shared" / "data" / "realsample")
    return places


@pytest.fixture(scope="module")
def sample() -> Path:
    places = sample_places()
    found = next((p for p in places if (p / "coco128" / "instances.json").is_file()), None)
    if found is None:
        pytest.skip(
            f"no real-photo sample: looked in {', '.join(map(str, places))} "
            "(set WORKSHOP_REALSAMPLE to its folder)"
        )
    return found


def number(path: Path) -> int:
    return int(path.stem.split(".")[1])  # cat.123.jpg -> 123


def petimages_zip(sample: Path, out: Path) -> dict:
    """kagglecatsanddogs_5340.zip's layout from the sample's photos, with its oddities;
    returns the oddities by the kind prepare should name them."""
    cut = {}
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("CDLA-Permissive-2.0.pdf", b"%PDF-1.4 the licence")
        zf.writestr("readme[1].txt", "Microsoft PetImages")
        for folder in ("Cat", "Dog"):
            photos = sorted((sample / "petimages" / folder).glob("*.jpg"), key=number)
            for path in photos[:PETS]:
                zf.write(path, f"PetImages/{folder}/{number(path)}.jpg")
            zf.writestr(f"PetImages/{folder}/Thumbs.db", b"\xd0\xcf\x11\xe0 thumbnails")
            zf.writestr(f"PetImages/{folder}/{90000 + PETS}.jpg", b"")  # zero bytes
            for k, path in enumerate(photos[PETS : PETS + 2]):  # cut short: headers intact
                data = path.read_bytes()
                zf.writestr(
                    f"PetImages/{folder}/{90001 + PETS + k}.jpg", data[: len(data) * 3 // 5]
                )
            cut[folder] = 2
        data = photos[-1].read_bytes()
        zf.writestr("PetImages/Dog/666.jpg", data[:400])  # cut inside the headers
    return {"not an image file": 2, "zero bytes": 2, "truncated": 4, "corrupt": 1}


def coco_zip(sample: Path, www: Path, url: str) -> dict:
    """annotations_trainval2017.zip from the sample's annotations (its images alternately in
    train2017 and val2017), each coco_url pointing at www/images; returns the two splits."""
    coco = json.loads((sample / "coco128" / "instances.json").read_text())
    (www / "images").mkdir()
    for info in coco["images"]:
        (www / "images" / info["file_name"]).symlink_to(
            sample / "coco128" / "images" / info["file_name"]
        )
        info["coco_url"] = f"{url}/images/{info['file_name']}"
    images = sorted(coco["images"], key=lambda i: i["id"])
    splits = {}
    with zipfile.ZipFile(www / "annotations_trainval2017.zip", "w") as zf:
        for k, name in enumerate(("train2017", "val2017")):
            part = images[k::2]
            ids = {i["id"] for i in part}
            anns = [a for a in coco["annotations"] if a["image_id"] in ids]
            splits[name] = {**coco, "images": part, "annotations": anns}
            zf.writestr(f"annotations/instances_{name}.json", json.dumps(splits[name]))
    return splits


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
        oddities = petimages_zip(sample, www / "kagglecatsanddogs_5340.zip")
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
                "--epochs=1",
                "--max_steps=2",
                "--width=0.125",
                "--init=none",
                "--batch_size=2",
                "--crop_h=160",
                "--crop_w=224",
                "--device=cpu",
            ]
        )
    assert set(m3["per_class_AP"]) == {"person", "dog"}
    assert all(math.isfinite(v) for v in m3["per_class_AP"].values())
