"""The data catalog and the Data sets page: counts against the files and the COCO JSON,
what make data's reports say was skipped, the gallery, and Prepare in a child process."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_prepare import coco_archive, pets_archive, prepare

from benchmarks.harness import DONE, app_server, chromium, free_port, serve_folder
from streamlit_app.app import PAGES
from workshop.data import catalog
from workshop.data.digits import load_dataset, save_ex4data

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app" / "app.py")
SHOTS = ROOT / "test-artifacts" / "digits"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A data folder with what every kind of preparation writes: the small synthetic set
    (crops and scenes), cats-dogs with its background class and coco-cat-dog, both made by
    make data's own code from small archives served on 127.0.0.1, and an MNIST-format file."""
    root = tmp_path_factory.mktemp("data")
    catalog.generate_synthetic(root, "synthetic-small")
    www = tmp_path_factory.mktemp("www")
    with serve_folder(www) as url:
        pets, coco = pets_archive(www, url), coco_archive(www, url)
        for args in (
            ("cats-dogs", f"--url={pets}", f"--background_from={coco}"),
            ("coco", "--categories=cat,dog", f"--url={coco}"),
        ):
            code, stderr = prepare(*args, f"--data_dir={root}", "--retries=0")
            assert code == 0, stderr
    rng = np.random.default_rng(0)
    (root / "mnist").mkdir()
    save_ex4data(root / "mnist" / "mnist20.mat", rng.random((200, 400)), np.arange(200) % 10)
    return root


def by_name(root: Path) -> dict[str, catalog.DataSet]:
    return {s.name: s for s in catalog.data_sets(root)}


def files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file())


def test_every_prepared_set_is_found_and_the_digits_always(data, tmp_path):
    assert list(by_name(data)) == [
        "synthetic-small/crops",
        "synthetic-small/scenes",
        "cats-dogs",
        "coco-cat-dog",
        "mnist",
        "digits",
    ]
    assert list(by_name(tmp_path / "nothing")) == ["digits"]


def test_class_folders_count_their_files(data):
    sets = by_name(data)
    for name, folder in (
        ("synthetic-small/crops", data / "synthetic-small" / "crops"),
        ("cats-dogs", data / "cats-dogs"),
    ):
        s = sets[name]
        expected = {
            split: {c.name: files(c) for c in sorted((folder / split).iterdir())}
            for split in ("train", "val")
        }
        assert s.counts == expected, name
        assert s.images == {split: sum(n.values()) for split, n in expected.items()}
        assert s.bytes_on_disk == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert sets["synthetic-small/crops"].classes == ["background", "cross", "ring", "star"]
    assert sets["synthetic-small/crops"].image_size.startswith("256x256")
    assert sets["cats-dogs"].classes == ["background", "cat", "dog"]


def coco_counts(path: Path) -> tuple[dict, dict, int]:
    """(images showing each class, boxes per class, images) of a COCO file, crowd left out."""
    coco = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    shown, boxes = {n: set() for n in names.values()}, Counter()
    for a in coco["annotations"]:
        if not a.get("iscrowd"):
            shown[names[a["category_id"]]].add(a["image_id"])
            boxes[names[a["category_id"]]] += 1
    return {n: len(ids) for n, ids in shown.items()}, dict(boxes), len(coco["images"])


@pytest.mark.parametrize("name", ["synthetic-small/scenes", "coco-cat-dog"])
def test_scene_sets_count_what_their_coco_json_holds(data, name):
    s = by_name(data)[name]
    for split in ("train", "val"):
        shown, boxes, images = coco_counts(s.path / split / "annotations.json")
        assert s.counts[split] == shown
        assert s.objects[split] == {c: boxes.get(c, 0) for c in s.classes}
        assert s.images[split] == images


def test_what_make_data_skipped_is_listed_with_its_reason(data):
    sets = by_name(data)
    report = json.loads((data / "cats-dogs" / "report.json").read_text())
    rows = sets["cats-dogs"].skipped
    left_out = {r["what"]: r["count"] for r in rows if r["effect"] == "left out"}
    assert left_out == report["skipped"] == {"corrupt": 1, "zero bytes": 1, "not an image file": 1}
    coco = json.loads((data / "coco-cat-dog" / "report.json").read_text())
    rows = {(r["split"], r["what"]): r["count"] for r in sets["coco-cat-dog"].skipped}
    for split, part in coco["splits"].items():
        for why, n in part["skipped"].items():
            assert rows[(split, why)] == n
    assert rows[("train", "not fetched")] == 1  # the archive's image 4 is missing on purpose
    assert sets["synthetic-small/crops"].skipped == []


def test_digit_sets_count_the_split_module_1_trains_on(data):
    sets = by_name(data)
    digits = load_dataset()
    assert sets["digits"].counts == {
        "train": {str(d): int(n) for d, n in enumerate(np.bincount(digits.y_train))},
        "test": {str(d): int(n) for d, n in enumerate(np.bincount(digits.y_test))},
    }
    mnist = load_dataset(str(data / "mnist" / "mnist20.mat"))
    assert sets["mnist"].images == {"train": len(mnist.y_train), "test": len(mnist.y_test)}
    X, y = sets["mnist"].vectors("test")
    np.testing.assert_array_equal(X, mnist.X_test)
    np.testing.assert_array_equal(y, mnist.y_test)
    assert sets["digits"].held_out == "test" and sets["digits"].module == "mlp"


def test_the_gallery_filters_and_pages(data):
    sets = by_name(data)
    crops = sets["synthetic-small/crops"]
    total, page = crops.examples("train", "ring", start=20, count=25)
    assert total == crops.counts["train"]["ring"] and len(page) == total - 20
    assert all(e.caption.startswith("ring · ") for e in page)
    picture = page[0].load()
    assert picture.dtype == np.uint8 and max(picture.shape[:2]) == catalog.THUMB
    total, page = sets["synthetic-small/scenes"].examples("val", "star", 0, 25)
    assert total == sets["synthetic-small/scenes"].counts["val"]["star"]
    assert page[0].load().shape[2] == 3
    total, page = sets["digits"].examples("test", "7", 0, 10)
    assert total == sets["digits"].counts["test"]["7"]
    assert all(e.caption.startswith("7 · ") for e in page) and page[0].load().shape == (80, 80, 3)


def test_prepare_progress_is_read_from_its_log(tmp_path):
    log = tmp_path / ".prepare" / "synthetic.log"
    log.parent.mkdir()
    bar = "crops train/star:  46%|████▌     | 11/24 [00:01<00:02, 108.77it/s]"
    log.write_text(f"crops train/star:   0%|          | 0/24\r{bar}\r")
    assert catalog.prepare_status("synthetic", tmp_path) | {"log": ""} == {
        "state": "stopped",  # no exit line and no process: it died
        "fraction": 0.46,
        "text": "crops train/star 11/24, 00:02 left",
        "log": "",
    }
    log.write_text(f"{bar}\rerror: the disk is full\nexit 2\n")
    status = catalog.prepare_status("synthetic", tmp_path)
    assert status["state"] == "failed" and status["text"] == "error: the disk is full"
    log.write_text(f"{bar}\rsynthetic: ready in /x\nexit 0\n")
    status = catalog.prepare_status("synthetic", tmp_path)
    assert (status["state"], status["fraction"]) == ("done", 1.0)
    assert catalog.prepare_status("mnist", tmp_path)["state"] == "idle"


def test_prepare_offline_or_read_only_is_one_sentence(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/kagglecatsanddogs_5340.zip"
    with pytest.raises(catalog.PrepareError) as err:
        catalog.start_prepare("cats-dogs", tmp_path, (f"--url={closed}", "--background=false"))
    assert str(err.value).startswith("Offline: 127.0.0.1 cannot be reached")
    assert "make train-alexnet" in str(err.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(catalog.PrepareError, match="cannot be written here"):
        catalog.start_prepare("synthetic-small", tmp_path / "file" / "data")
    assert not (tmp_path / ".prepare").exists()


# ------------------------------------------------------------------------ the page


def start(monkeypatch, data_dir: Path, artifacts: Path, wanted: str | None = None) -> AppTest:
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("ARTIFACTS", str(artifacts))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/datasets.py")
    if wanted:
        at.query_params["set"] = wanted
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_the_page_shows_each_set_with_its_counts_and_skips(data, monkeypatch, tmp_path):
    at = start(monkeypatch, data, tmp_path, "cats-dogs")
    no_exception(at)
    overview = at.dataframe[0].value
    assert list(overview["data set"]) == list(by_name(data))
    s = by_name(data)["cats-dogs"]
    assert at.selectbox[0].value == "cats-dogs"
    shown = {m.label: m.value for m in at.metric}
    assert shown["Classes"] == "3" and shown["Images"] == f"{sum(s.images.values()):,}"
    skipped = next(d.value for d in at.dataframe if "effect" in d.value.columns)
    assert skipped.to_dict("records") == s.skipped
    at.selectbox(key="explore-class-cats-dogs").set_value("cat").run()
    no_exception(at)
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert len(captions) == s.counts["val"]["cat"]
    assert all(c.startswith("cat · ") for c in captions)


def test_the_explore_gallery_pages_through_a_split(data, monkeypatch, tmp_path):
    at = start(monkeypatch, data, tmp_path, "synthetic-small/crops")
    name = "synthetic-small/crops"
    at.selectbox(key=f"explore-split-{name}").set_value("train").run()
    first = [i.proto.imgs[0].caption for i in at.get("image")]
    at.number_input(key=f"explore-page-{name}-train-all").set_value(2).run()
    no_exception(at)
    second = [i.proto.imgs[0].caption for i in at.get("image")]
    assert len(first) == len(second) == 25 and not set(first) & set(second)
    assert "96 examples; 26-50 shown" in [c.value for c in at.caption]


def test_a_mirror_that_cannot_be_reached_says_offline(data, monkeypatch, tmp_path):
    at = start(monkeypatch, tmp_path / "empty", tmp_path)
    at.checkbox(key="prepare-cats-dogs-background").uncheck().run()
    closed = f"http://127.0.0.1:{free_port()}/kagglecatsanddogs_5340.zip"
    at.text_input(key="prepare-cats-dogs-url").set_value(closed).run()
    at.button(key="prepare-cats-dogs").click().run()
    no_exception(at)
    assert at.warning[0].value.startswith("Offline: 127.0.0.1 cannot be reached")


def wait_until_done(name: str, root: Path, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (status := catalog.prepare_status(name, root))["state"] == "running":
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    return status


def test_prepare_from_the_page_runs_make_datas_code_in_a_child(monkeypatch, tmp_path):
    """Generate the small synthetic set and prepare cats-dogs from a local mirror, each by
    its button: a child process, its progress in the log, the set listed once it is done."""
    root = tmp_path / "data"
    at = start(monkeypatch, root, tmp_path)
    assert list(at.dataframe[0].value["data set"]) == ["digits"]
    at.button(key="prepare-synthetic-small").click().run()
    no_exception(at)
    assert wait_until_done("synthetic-small", root)["state"] == "done"
    www = tmp_path / "www"
    www.mkdir()
    with serve_folder(www) as url:
        at.checkbox(key="prepare-cats-dogs-background").uncheck().run()
        at.text_input(key="prepare-cats-dogs-url").set_value(pets_archive(www, url)).run()
        at.button(key="prepare-cats-dogs").click().run()
        no_exception(at)
        status = wait_until_done("cats-dogs", root)
    assert status["state"] == "done", status["log"]
    assert "cats-dogs: ready in" in (root / ".prepare" / "cats-dogs.log").read_text()
    at.run()
    no_exception(at)
    listed = list(at.dataframe[0].value["data set"])
    assert listed == ["synthetic-small/crops", "synthetic-small/scenes", "cats-dogs", "digits"]


@pytest.mark.slow
def test_the_pages_in_chromium(data, artifacts, monkeypatch):
    """Data sets and Test many in a real browser: no traceback, no Deploy button;
    screenshots in test-artifacts/digits/."""
    monkeypatch.setenv("DATA_DIR", str(data))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with app_server(artifacts) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        for path, name, ready in (
            ("/datasets?set=cats-dogs", "datasets", "Explore"),
            ("/?tab=many&model=alexnet", "test_many", "Test many"),
        ):
            page.goto(url + path)
            page.get_by_text(ready).first.wait_for(timeout=60_000)
            page.wait_for_selector(DONE, timeout=60_000)
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.get_by_role("button", name="Deploy").count() == 0


OTHER_PAGES = [p[3] for p in PAGES[1:] if (ROOT / "streamlit_app" / "pages" / p[0]).is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("url", OTHER_PAGES)
def test_the_shared_demo_serves_no_other_page_even_first(url, artifacts, monkeypatch, tmp_path):
    """WORKSHOP_PAGES=test: a fresh server whose first request is another page's URL (Streamlit
    then runs a pages/ file alone, in its legacy mode) still shows the Test page only."""
    monkeypatch.setenv("WORKSHOP_PAGES", "test")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    with app_server(artifacts) as (base, _), chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/{url}")
        page.get_by_text("From a classifier to a detector").wait_for(timeout=30_000)
        page.wait_for_selector(DONE, timeout=60_000)
        assert page.locator("h1").all_inner_texts() == ["From a classifier to a detector"]
