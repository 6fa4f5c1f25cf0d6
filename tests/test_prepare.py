"""Real data sets, prepared from fixture archives served on 127.0.0.1, then trained on."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DETECTNET
from PIL import Image

from benchmarks.harness import serve_folder
from workshop.data import background
from workshop.data.digits import from_course_layout
from workshop.data.prepare import main as prepare_main
from workshop.data.prepare import mnist_to_course

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1: (folder, base url)."""
    folder = tmp_path / "www"
    folder.mkdir()
    with serve_folder(folder) as url:
        yield folder, url


def jpeg(seed: int, size=(96, 80)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def make(*args, env=None, timeout=600):
    run = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return run


def pets_archive(folder: Path, url: str) -> str:
    """A small kagglecatsanddogs_5340.zip (8 + 8 photos and the real one's oddities) under
    ``folder``; its url."""
    members = {
        f"PetImages/{c}/{i}.jpg": jpeg(i + 10 * k)
        for k, c in enumerate(("Cat", "Dog"))
        for i in range(8)
    }
    members["PetImages/Cat/666.jpg"] = b"\xff\xd8 not really a jpeg"  # corrupt
    members["PetImages/Dog/11702.jpg"] = b""  # zero bytes, as in the real archive
    members["PetImages/Dog/Thumbs.db"] = b"windows thumbnails"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    (folder / "kagglecatsanddogs_5340.zip").write_bytes(buf.getvalue())
    return f"{url}/kagglecatsanddogs_5340.zip"


@pytest.mark.slow
def test_petimages_are_prepared_then_trained_on(served, tmp_path):
    folder, url = served
    pets = pets_archive(folder, url)
    coco = coco_archive(folder, url)  # its val2017 has two photos of a person only
    data = tmp_path / "data"
    run = make(
        "data",
        "DATASET=cats-dogs",
        f"DATA_DIR={data}",
        f"ARGS=--url={pets} --background_from={coco}",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((data / "cats-dogs" / "report.json").read_text())
    assert report["skipped"] == {"corrupt": 1, "zero bytes": 1, "not an image file": 1}
    assert report["classes"] == ["background", "cat", "dog"]
    pets = [report["counts"][c] for c in ("cat", "dog")]
    assert sum(c["train"] + c["val"] for c in pets) == 16
    # as many crops as the smaller class has photos (8), 4 from each photo without cat or dog
    assert report["background"]["photos"] == 2
    bg_files = sorted(p.name for p in (data / "cats-dogs").glob("*/background/*.jpg"))
    assert bg_files == [f"{i:012d}_{n}.jpg" for i in (20, 23) for n in range(4)]
    assert sorted(p.name for p in (data / "cats-dogs" / "train").iterdir()) == [
        "background",
        "cat",
        "dog",
    ]
    checksums = json.loads((data / "downloads" / "checksums.json").read_text())
    assert all(len(sha) == 64 for sha in checksums.values())  # recorded on first use
    art = tmp_path / "artifacts"
    run = make(
        "train-alexnet",
        "DATASET=cats-dogs",
        f"DATA_DIR={data}",
        f"ARTIFACTS={art}",
        "ARGS=--epochs=1 --max_steps=2 --width=0.125 --batch_size=4 --sliding_check=false",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((art / "alexnet" / "metrics.json").read_text())
    assert metrics["dataset"] == "cats-dogs" and metrics["epochs"] == 1
    meta = torch.load(art / "alexnet" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["classes"] == ["background", "cat", "dog"] and meta["background"] is True


def coco_split(base_url: str, ids: range, missing: int | None = None) -> tuple[dict, dict]:
    """A COCO 2017-style file (cat 17, dog 18, person 1) and the images it points to."""
    images, anns, files = [], [], {}
    for i in ids:
        name = f"{i:012d}.jpg"
        images.append(
            {
                "id": i,
                "file_name": name,
                "width": 320,
                "height": 240,
                "coco_url": f"{base_url}/images/{name}",
            }
        )
        if i != missing:
            files[name] = jpeg(i, (320, 240))
        cat = (17, 18, 1)[i % 3]
        anns.append(
            {
                "id": 1000 + i,
                "image_id": i,
                "category_id": cat,
                "iscrowd": 0,
                "bbox": [40, 30, 120, 100],
                "area": 12000,
            }
        )
    cats = [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]
    return {"images": images, "annotations": anns, "categories": cats}, files


def coco_archive(folder: Path, url: str, splits=("train2017", "val2017")) -> str:
    """annotations_trainval2017.zip with instances files of ``splits`` (and a captions file)
    under ``folder``, the images they point to under folder/images; the archive's url."""
    (folder / "images").mkdir(exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("annotations/captions_train2017.json", json.dumps({"annotations": []}))
        for split, ids, missing in (
            ("train2017", range(1, 13), 4),
            ("val2017", range(20, 26), None),
        ):
            if split not in splits:
                continue
            coco, files = coco_split(url, ids, missing)
            zf.writestr(f"annotations/instances_{split}.json", json.dumps(coco))
            for name, data in files.items():
                (folder / "images" / name).write_bytes(data)
    (folder / "annotations_trainval2017.zip").write_bytes(buf.getvalue())
    return f"{url}/annotations_trainval2017.zip"


@pytest.mark.slow
def test_a_coco_subset_is_prepared_then_trained_on(served, tmp_path, python):
    folder, url = served
    coco_archive(folder, url)
    data = tmp_path / "data"
    run = subprocess.run(
        [
            python,
            "-m",
            "workshop.data.prepare",
            "coco",
            "--categories=cat,dog",
            f"--data_dir={data}",
            f"--url={url}/annotations_trainval2017.zip",
            "--retries=0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    train = json.loads((data / "coco-cat-dog" / "train" / "annotations.json").read_text())
    assert train["categories"] == [
        {"id": 1, "name": "cat", "supercategory": ""},
        {"id": 2, "name": "dog", "supercategory": ""},
    ]
    assert {a["category_id"] for a in train["annotations"]} == {1, 2}
    report = json.loads((data / "coco-cat-dog" / "report.json").read_text())
    assert report["splits"]["train"] == {
        "images": 7,
        "failed": 1,
        "annotations": 7,
        "skipped": {"not fetched": 1},
        "converted_to_rgb": {},
        "crowd_regions": 0,
        "crowd_only_images": 0,
    }
    out = tmp_path / "det"
    run = subprocess.run(
        [
            python,
            "-m",
            "workshop.train_detectnet",
            "--dataset=coco",
            "--categories=cat,dog",
            f"--data_dir={data}",
            f"--out_dir={out}",
            *TINY_DETECTNET,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "coco-cat-dog" and set(metrics["per_class_AP"]) == {"cat", "dog"}


def prepare(*args: str) -> tuple[int, str]:
    """`python -m workshop.data.prepare ARGS` in-process: (exit status, stderr after the
    progress bars, which end by erasing themselves with a carriage return)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = prepare_main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return code, err.getvalue().rpartition("\r")[2]


def test_offline_the_message_names_the_offline_default(tmp_path):
    code, stderr = prepare(
        "cats-dogs", f"--data_dir={tmp_path}", "--url=http://127.0.0.1:9/pets.zip", "--retries=0"
    )
    assert code == 2 and stderr.startswith("error: http://127.0.0.1:9/pets.zip: failed after 1 ")
    assert "make train-alexnet" in stderr and "Offline?" in stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_coco_with_an_unknown_category_is_one_clear_line(served, tmp_path):
    folder, url = served
    data = tmp_path / "data"
    code, stderr = prepare(
        "coco",
        "--categories=cat,unicorn",
        f"--data_dir={data}",
        f"--url={coco_archive(folder, url)}",
    )
    assert (code, stderr) == (
        2,
        "error: COCO has no categories ['unicorn']; it has ['cat', 'dog', 'person']\n",
    )
    assert not list(data.glob("coco-*"))


@pytest.mark.parametrize(
    ("splits", "missing"),
    [
        ((), "instances_train2017.json, instances_val2017.json"),
        (("train2017",), "instances_val2017.json"),
    ],
)
def test_a_coco_archive_without_instances_files_is_one_clear_line(
    served, tmp_path, splits, missing
):
    folder, url = served
    data = tmp_path / "data"
    archive = coco_archive(folder, url, splits)
    code, stderr = prepare("coco", "--categories=cat", f"--data_dir={data}", f"--url={archive}")
    assert (code, stderr) == (
        2,
        f"error: annotations_trainval2017.zip has no {missing}: it is not COCO's "
        "annotations_trainval2017.zip, and was removed\n",
    )
    assert not list(data.glob("coco-*")) and not (data / "raw" / "coco-annotations").exists()
    assert not (data / "downloads" / "annotations_trainval2017.zip").exists()
    coco_archive(folder, url)  # the right archive: the next run fetches and uses it
    assert prepare("coco", "--categories=cat", f"--data_dir={data}", f"--url={archive}")[0] == 0


def test_coco_without_categories_and_an_unknown_data_set_are_usage_errors(tmp_path):
    code, stderr = prepare("coco", f"--data_dir={tmp_path}")
    assert code == 2 and stderr == (
        "error: coco needs CATEGORIES, e.g. `make data DATASET=coco CATEGORIES=cat,dog`\n"
    )
    code, stderr = prepare("imagenet")
    assert code == 2 and "invalid choice: 'imagenet'" in stderr


@pytest.mark.parametrize(
    ("module", "args", "hint"),
    [
        ("workshop.train_alexnet", ["--dataset=cats-dogs"], "make data DATASET=cats-dogs"),
        (
            "workshop.train_detectnet",
            ["--dataset=coco", "--categories=cat"],
            "make data DATASET=coco CATEGORIES=cat",
        ),
        ("workshop.train_mlp", ["--dataset=mnist"], "make data DATASET=mnist"),
    ],
)
def test_trainers_say_how_to_get_missing_real_data(tmp_path, module, args, hint):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main([*args, f"--data_dir={tmp_path}"])
    message = str(exit_.value.code)  # printed as is, without a traceback
    assert message.startswith("error: ") and hint in message and "offline default" in message
    assert not list(tmp_path.iterdir())


def test_mnist_becomes_the_course_layout():
    rng = np.random.default_rng(0)
    images = np.zeros((5, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (5, 20, 20))
    X, y = mnist_to_course(images, np.array([0, 1, 2, 3, 9]))
    assert X.shape == (5, 400) and X.min() >= 0 and X.max() <= 1
    np.testing.assert_allclose(from_course_layout(X), images[:, 4:24, 4:24] / 255.0)
    assert y.tolist() == [0, 1, 2, 3, 9]


def test_background_photos_are_those_without_a_cat_or_a_dog():
    coco, _ = coco_split("http://127.0.0.1:9", range(1, 13))  # cat 17, dog 18, person 1 by i % 3
    coco["annotations"].append(  # a crowd region of dogs on image 2 rules it out too
        {"id": 5000, "image_id": 2, "category_id": 18, "iscrowd": 1, "bbox": [0, 0, 9, 9]}
    )
    coco["images"].append({"id": 40, "file_name": "empty.jpg", "width": 9, "height": 9})
    ids = [i["id"] for i in background.images_without(coco)]
    assert ids == [5, 8, 11, 40]  # persons only (i % 3 == 2), and an image with no annotation
    assert background.photos_needed(9) == 3 and background.photos_needed(8) == 2


@pytest.mark.parametrize(
    ("crops", "photos", "each"),
    [(600, 4000, 4), (600, 150, 4), (600, 58, 11), (600, 10, 16), (600, 0, 16)],
)
def test_scarce_background_photos_give_more_crops_each(crops, photos, each):
    """Enough photos: 4 crops each; too few for a class as large as the animals': more
    crops each, up to 16."""
    assert background.crops_per_photo(crops, photos) == each


def test_background_crops_are_seeded_squares_inside_the_photo():
    y, x = np.mgrid[0:300, 0:400]
    pixels = np.stack([x % 256, y % 256, 2 * (x // 256) + y // 256], 2).astype(np.uint8)
    photo = Image.fromarray(pixels)  # every pixel differs: a crop's corner says where it was
    first = background.random_crops(photo, 5, np.random.default_rng(3), out=1000)
    again = background.random_crops(photo, 5, np.random.default_rng(3), out=1000)
    assert [np.asarray(c).tolist() for c in first] == [np.asarray(c).tolist() for c in again]
    for crop in first:
        side = crop.size[0]
        assert crop.size == (side, side) and 0.3 * 300 - 1 <= side <= 300
        r, g, b = np.asarray(crop)[0, 0].tolist()
        x0, y0 = r + 256 * (b // 2), g + 256 * (b % 2)
        np.testing.assert_array_equal(np.asarray(crop), pixels[y0 : y0 + side, x0 : x0 + side])
    small = background.random_crops(photo, 3, np.random.default_rng(3))
    assert all(c.size[0] <= 256 for c in small)  # large crops are saved at the cache's size


def test_crowd_regions_are_neither_objects_nor_background_in_training(tmp_path):
    from models.boxes import GRID
    from workshop.data import detection

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(jpeg(1, (320, 240)))
    person = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 60, 90]}
    crowd = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [160, 64, 128, 96]}
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 320, "height": 240}],
        "annotations": [person, crowd],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    data = detection.CocoDetection(tmp_path / "annotations.json", categories=["person"])
    (s,) = data.samples
    assert s.boxes.tolist() == [[10, 10, 70, 100]] and s.crowd.tolist() == [[160, 64, 288, 160]]
    still = detection.Augment(scale=(1, 1), flip=0, brightness=0, contrast=0, gain=0)
    _, t = detection.training_batch(data, [0], (240, 320), still, np.random.default_rng(0))
    weight = t["weight"][0].numpy()  # (h, w)
    xs, ys = GRID.cell_centers(*weight.shape)
    inside = (xs >= 160) & (xs <= 288) & (ys >= 64) & (ys <= 160)
    assert inside.any() and (weight[inside] == 0).all() and (weight[~inside] == 1).all()
    assert t["coverage"][0].sum() > 0  # the person is still a target


def prepared_files(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every prepared image under root."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jpg"))
    }


def test_the_two_and_three_class_labs_are_each_reproducible(served, tmp_path):
    folder, url = served
    pets, coco = pets_archive(folder, url), coco_archive(folder, url)
    common = [f"--url={pets}", f"--background_from={coco}", "--retries=0"]
    two = {}
    for run in ("a", "b"):
        data = tmp_path / run
        assert prepare("cats-dogs", f"--data_dir={data}", "--background=false", *common)[0] == 0
        report = json.loads((data / "cats-dogs" / "report.json").read_text())
        assert report["classes"] == ["cat", "dog"] and "background" not in report
        two[run] = prepared_files(data / "cats-dogs")
    assert two["a"] == two["b"] and len(two["a"]) == 16
    assert not (tmp_path / "a" / "downloads" / "annotations_trainval2017.zip").exists()
    three = {}
    for run in ("a", "b"):  # a: the two-class folder is rebuilt with the third class
        data = tmp_path / run
        assert prepare("cats-dogs", f"--data_dir={data}", *common)[0] == 0
        three[run] = prepared_files(data / "cats-dogs")
    assert three["a"] == three["b"] and len(three["a"]) == 16 + 8
    assert {k: v for k, v in three["a"].items() if "/background/" not in k} == two["a"]
