"""The real-photo sample (``shared/data/realsample`` beside the checkout), laid out like the
real downloads: for the rehearsal test (tests/test_realdata.py) and the real-data benchmark.

Where it is: $WORKSHOP_REALSAMPLE, beside this checkout, or beside the main checkout of a
git worktree. Its README says what it holds and where the photos come from.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def realsample_places() -> list[Path]:
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
    return list(dict.fromkeys(places))  # each place once


def find_realsample() -> Path | None:
    """The first of realsample_places() that holds the sample, or None."""
    return next(
        (p for p in realsample_places() if (p / "coco128" / "instances.json").is_file()), None
    )


def number(path: Path) -> int:
    return int(path.stem.split(".")[1])  # cat.123.jpg -> 123


def petimages_zip(sample: Path, out: Path, pets: int = 600) -> dict:
    """kagglecatsanddogs_5340.zip's layout from the sample's photos, with its oddities;
    returns the oddities by the kind prepare should name them."""
    cut = {}
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("CDLA-Permissive-2.0.pdf", b"%PDF-1.4 the licence")
        zf.writestr("readme[1].txt", "Microsoft PetImages")
        for folder in ("Cat", "Dog"):
            photos = sorted((sample / "petimages" / folder).glob("*.jpg"), key=number)
            for path in photos[:pets]:
                zf.write(path, f"PetImages/{folder}/{number(path)}.jpg")
            zf.writestr(f"PetImages/{folder}/Thumbs.db", b"\xd0\xcf\x11\xe0 thumbnails")
            zf.writestr(f"PetImages/{folder}/{90000 + pets}.jpg", b"")  # zero bytes
            for k, path in enumerate(photos[pets : pets + 2]):  # cut short: headers intact
                data = path.read_bytes()
                zf.writestr(
                    f"PetImages/{folder}/{90001 + pets + k}.jpg", data[: len(data) * 3 // 5]
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
