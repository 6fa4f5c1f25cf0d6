"""The onnxruntime predictor: same answers as the torch models, any image, clear errors."""

import io
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from helpers import photo_without_cats_or_dogs
from PIL import Image

from exporters.onnx_export import export
from models import boxes as box_ops
from models.boxes import box_iou
from models.checkpoint import build_model, load_checkpoint
from models.imageio import BadImage
from streamlit_app.predictor import MAX_SIDE, Output, Predictor, PredictorError


@pytest.fixture(scope="module")
def models(exported):
    return exported


def predict_cli(*args):
    cmd = [sys.executable, "-m", "streamlit_app.predict", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def scene(h=300, w=410, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_serving_path_does_not_import_torch(models):
    code = f"""
import sys
import numpy as np
from streamlit_app.predictor import Predictor
p = Predictor({str(models["alexnet"])!r})
p.infer(np.zeros((40, 50, 3), np.uint8))
print("torch" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


def test_fcn_predictor_equals_the_torch_model(models):
    from workshop.fcn import class_maps

    p = Predictor(models["alexnet"])
    assert p.kind == "fcn" and p.classes[:3] == ["star", "ring", "cross"]
    image = scene()
    out = p.infer(png_bytes(image))
    fcn = build_model(load_checkpoint(models["alexnet"].with_name("checkpoint.pt")))
    ref = class_maps(fcn, image, torch.device("cpu"))
    np.testing.assert_allclose(out.maps["probabilities"], ref, rtol=1e-3, atol=1e-5)
    placed = p.class_map(out, "ring")
    assert placed.shape == image.shape[:2] and np.isfinite(placed).any()
    assert p.heatmap(out, "ring", opacity=0.5).shape == image.shape
    top = p.top_classes(out)
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)


def test_detector_predictor_equals_the_torch_detector(models):
    from workshop.detect import detect

    p = Predictor(models["detectnet"])
    image = scene(240, 320, seed=3)
    out = p.infer(image)
    dets = p.detections(out, threshold=0.2, iou=0.4)
    det = build_model(load_checkpoint(models["detectnet"].with_name("checkpoint.pt")))
    boxes, scores, labels = detect(det, image, threshold=0.2, iou=0.4)
    assert len(dets) == len(boxes) > 0
    # Same boxes with the same labels (the order of near-equal scores may differ).
    for label in set(labels.tolist()):
        mine = np.array([d["box"] for d in dets if d["label"] == label])
        theirs = boxes[labels == label]
        assert len(mine) == len(theirs)
        assert box_iou(mine, theirs).max(1).min() > 0.999
    coco = p.coco_results(out, dets)
    assert coco[0]["category_id"] in (1, 2, 3) and len(coco[0]["bbox"]) == 4
    only = p.detections(out, threshold=0.2, classes=["ring"])
    assert all(d["class"] == "ring" for d in only)


def test_digits_are_preprocessed_like_the_training_digits(tmp_path):
    """A trained MLP, exported: digits drawn dark on white at 160x160 are still read right."""
    from workshop import train_mlp
    from workshop.data.digits import from_course_layout, load_dataset

    train_mlp.main([f"--out_dir={tmp_path}", "--baselines=false"])
    p = Predictor(export(tmp_path / "checkpoint.pt"))
    data = load_dataset("digits")
    images = from_course_layout(data.X_test[:120])
    correct = 0
    for img, label in zip(images, data.y_test[:120]):
        paper = (255 - img * 255).astype(np.uint8)  # dark ink on white paper
        big = np.asarray(Image.fromarray(paper).resize((160, 160), Image.BILINEAR))
        padded = np.pad(big, 40, constant_values=255)  # a margin around the digit
        out = p.infer(np.stack([padded] * 3, -1))
        correct += int(p.top_classes(out, 1)[0]["class"] == str(label))
    assert correct / 120 >= 0.9


@pytest.mark.parametrize("size", [(20, 10), (31, 200), (1, 1)])
def test_tiny_images_are_padded_not_refused(models, size):
    for name in ("alexnet", "detectnet"):
        p = Predictor(models[name])
        out = p.infer(scene(*size))
        assert out.image.shape[:2] == size
        first = next(iter(out.maps.values()))
        assert min(first.shape[1:]) >= 1


def test_huge_images_are_capped_and_results_mapped_back(models):
    p = Predictor(models["detectnet"])
    img = Image.fromarray(scene(1500, 4000, seed=1))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    out = p.infer(buf.getvalue())
    assert out.original_size == (4000, 1500) and out.image.shape[:2] == (720, MAX_SIDE)
    dets = p.detections(out, threshold=0.2)  # the test detector covers about half of every cell
    assert len(dets) > 10
    s = 4000 / MAX_SIDE  # 1500 / 720 too: the same scale on both axes
    for d, c in zip(dets, p.coco_results(out, dets), strict=True):
        x0, y0, x1, y1 = d["box"]
        assert c["bbox"] == pytest.approx([x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s], abs=0.006)
        assert c["score"] == pytest.approx(d["score"], abs=1e-5)


def test_a_detection_is_placed_from_the_metadata_and_mapped_to_the_upload(models):
    """A constructed output: one covered cell (i, j) = (5, 7) of class 1 claims the corners
    (-20, -10, +30, +40) about its centre, (16 * 7 + 15, 16 * 5 + 15) = (127, 95) in the
    served image, which is the upload shrunk 2.5 times."""
    from streamlit_app.predictor import Output

    p = Predictor(models["detectnet"])
    coverage = np.zeros((3, 20, 40), np.float32)
    coverage[1, 5, 7] = 0.9
    bboxes = np.zeros((4, 20, 40), np.float32)
    bboxes[:, 5, 7] = [-20, -10, 30, 40]
    image = np.zeros((600, 1600, 3), np.uint8)
    out = Output(image, (4000, 1500), {"coverage": coverage, "bboxes": bboxes}, 0.0)
    dets = p.detections(out, threshold=0.5)
    assert dets == [
        {"class": "ring", "label": 1, "score": pytest.approx(0.9), "box": [107, 85, 157, 135]}
    ]
    (coco,) = p.coco_results(out, dets, image_id=3)
    assert coco["bbox"] == [107 * 2.5, 85 * 2.5, 50 * 2.5, 50 * 2.5]
    assert (coco["image_id"], coco["category_id"], coco["category"]) == (3, 2, "ring")


def test_detector_files_exported_before_the_grid_had_one_owner_still_place_cells(models, tmp_path):
    """Old detector files wrote no window and a cell centre (15) as ``offset``."""
    old = onnx.load(str(models["detectnet"]))
    props = {p.key: p.value for p in old.metadata_props}
    props.pop("window")
    props["offset"] = "15"
    del old.metadata_props[:]
    onnx.helper.set_model_props(old, props)
    onnx.save(old, str(tmp_path / "old.onnx"))
    p, q = Predictor(models["detectnet"]), Predictor(tmp_path / "old.onnx")
    assert p.grid == q.grid == box_ops.GRID
    image = scene(240, 320, seed=3)
    assert p.detections(p.infer(image), threshold=0.2) == q.detections(
        q.infer(image), threshold=0.2
    )


def test_exif_rotation_is_applied(models):
    img = Image.fromarray(scene(100, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out = Predictor(models["alexnet"]).infer(buf.getvalue())
    assert out.image.shape[:2] == (200, 100) and out.original_size == (100, 200)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not an image file"),
        (png_bytes(scene(64, 64))[:120], "corrupt or truncated"),
    ],
)
def test_bad_images_are_clear_messages(models, payload, message):
    with pytest.raises(BadImage, match=message):
        Predictor(models["alexnet"]).infer(payload)


def test_bad_model_files_are_clear_messages(tmp_path, models):
    with pytest.raises(PredictorError, match="no such model file"):
        Predictor(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(PredictorError, match="not a usable ONNX model"):
        Predictor(tmp_path / "junk.onnx")
    plain = onnx.load(str(models["mlp"]))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(PredictorError, match="without the workshop's metadata"):
        Predictor(tmp_path / "plain.onnx")


def test_provider_is_reported_and_cpu_runs_quietly(models, tmp_path):
    p = Predictor(models["alexnet"], threads=1)
    expected = "CUDAExecutionProvider" if torch.cuda.is_available() else "CPUExecutionProvider"
    assert p.provider == expected
    Image.fromarray(scene()).save(tmp_path / "scene.png")
    run = predict_cli(tmp_path / "scene.png", "--model", models["alexnet"])
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["kind"] == "fcn" and result["provider"] == expected
    assert set(result["heatmap"]["peaks"]) == set(p.classes)


def test_cli_detector_prints_coco_results_and_errors_plainly(models, tmp_path):
    Image.fromarray(scene(480, 640, seed=3)).save(tmp_path / "scene.jpg")
    run = predict_cli(tmp_path / "scene.jpg", "--model", models["detectnet"], "--threshold=0.2")
    assert run.returncode == 0, run.stderr
    dets = json.loads(run.stdout)["detections"]
    assert all({"image_id", "category_id", "bbox", "score"} <= set(d) for d in dets)
    (tmp_path / "notes.txt").write_text("not an image")
    run = predict_cli(tmp_path / "notes.txt", "--model", models["detectnet"])
    assert (
        run.returncode == 2 and "not an image file" in run.stderr and "Traceback" not in run.stderr
    )


def test_cuda_asked_without_a_gpu_is_one_clear_line(models, tmp_path, monkeypatch, capsys):
    """--device=cuda where no GPU is (made so here on any machine): the predictor refuses with
    a PredictorError, and the CLI prints one line and exits 2, no traceback."""
    import streamlit_app.predictor as predictor_module
    from streamlit_app import predict

    monkeypatch.setattr(predictor_module, "gpu_present", lambda: False)
    with pytest.raises(PredictorError, match="device 'cuda' requested, but no GPU") as err:
        Predictor(models["alexnet"], device="cuda")
    assert "\n" not in str(err.value)
    Image.fromarray(scene(64, 64)).save(tmp_path / "scene.png")
    code = predict.main(
        [str(tmp_path / "scene.png"), "--model", str(models["alexnet"]), "--device=cuda"]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: device 'cuda' requested, but no GPU")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.gpu
def test_cuda_provider_is_used_when_a_gpu_is_present(models):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime ({ort.__version__}) has no CUDA provider (onnxruntime-gpu)")
    p = Predictor(models["alexnet"], device="cuda")
    assert p.provider == "CUDAExecutionProvider"
    out = p.infer(scene(1080, 1920))
    cpu = Predictor(models["alexnet"], device="cpu").infer(scene(1080, 1920))
    np.testing.assert_allclose(out.maps["probabilities"], cpu.maps["probabilities"], atol=1e-3)


def test_half_size_previews_match_the_full_size_pictures_shrunk(models):
    """What the page shows of a wide image: the full-size overlay and drawing, halved."""
    image = scene(1080, 1920, seed=3)
    fcn, det = Predictor(models["alexnet"]), Predictor(models["detectnet"])
    out = fcn.infer(image)
    assert (
        fcn.preview_reduction(out) == 2 and fcn.preview_reduction(fcn.infer(image[:, :1200])) == 1
    )
    half = fcn.heatmap(out, fcn.classes[0], opacity=0.8, reduce=2)
    full = np.asarray(Image.fromarray(fcn.heatmap(out, fcn.classes[0], opacity=0.8)).reduce(2))
    assert half.shape == full.shape == (540, 960, 3)
    diff = np.abs(half.astype(int) - full)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3  # cells where they belong
    out = det.infer(image)
    box = [100.0, 200.0, 700.0, 600.0]
    drawn = det.draw(
        out, [{"class": det.classes[0], "label": 0, "score": 0.9, "box": box}], reduce=2
    )
    plain = np.asarray(Image.fromarray(out.image).reduce(2))
    assert drawn.shape == plain.shape == (540, 960, 3)
    changed = np.abs(drawn.astype(int) - plain).sum(-1) > 0
    top, left = changed[98:103, 60:340].any(0), changed[110:290, 48:53].any(1)
    assert top.mean() > 0.9 and left.mean() > 0.9  # the outline at the halved coordinates
    assert not changed[400:, 400:].any()  # nothing drawn far outside it


# ------------------------------------------------------- what a model knows, and says


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """FCNs whose answer is known whatever the image (helpers.export_known_fcns)."""
    from helpers import export_known_fcns

    return export_known_fcns(tmp_path_factory.mktemp("known"))


def fcn_output(probs: np.ndarray, hw=(480, 640)) -> Output:
    """A constructed FCN output on a blank image of size hw; (C, h, w) probabilities."""
    return Output(np.zeros((*hw, 3), np.uint8), hw[::-1], {"probabilities": probs}, 0.0)


def test_background_winning_everywhere_is_none_of_my_classes(models):
    p = Predictor(models["alexnet"])  # star, ring, cross, background
    probs = np.zeros((4, 15, 20), np.float32)
    probs[:] = np.array([0.1, 0.1, 0.1, 0.7])[:, None, None]
    probs[1, 4, 4], probs[3, 4, 4] = 0.45, 0.35  # ring wins a cell, but not above 0.5
    verdict = p.verdict(fcn_output(probs))
    assert verdict["seen"] == []
    assert verdict["text"] == (
        "none of my classes: background wins, no star, ring or cross above 0.5"
    )
    assert "above 0.5" in verdict["rule"]
    # an unsure map (ring wins most cells, at 0.3): still none, but background does not win
    probs[:] = np.array([0.2, 0.3, 0.2, 0.3 - 1e-3])[:, None, None]
    verdict = p.verdict(fcn_output(probs))
    assert verdict["seen"] == []
    assert verdict["text"] == "none of my classes: no star, ring or cross above 0.5"


def test_an_object_class_winning_a_region_is_named_with_its_region(models):
    """ring wins cells (2..3, 10..11) of a 480x640 image's 15x20 map, best at (2, 10): that
    cell's window (offset -96, stride 32, window 224) has its centre at
    (-96 + 32 * 10 + 112, -96 + 32 * 2 + 112) = (336, 80), the top third, centre column;
    the four windows span x -96 + 320 = 224 to -96 + 352 + 224 = 480, y -32 to 224."""
    p = Predictor(models["alexnet"])
    probs = np.zeros((4, 15, 20), np.float32)
    probs[3] = 0.9  # background everywhere else
    probs[:, 2:4, 10:12] = np.array([0.05, 0.8, 0.05, 0.1])[:, None, None]
    probs[1, 2, 10], probs[3, 2, 10] = 0.9, 0.0
    probs[0, 12, 1], probs[3, 12, 1] = 0.6, 0.3  # a star too, bottom left
    verdict = p.verdict(fcn_output(probs))
    ring, star = verdict["seen"]
    assert ring == {
        "class": "ring",
        "score": pytest.approx(0.9),
        "x": 336.0,
        "y": 80.0,
        "where": "top",
        "cells": 4,
        "box": [224, 0, 480, 224],
    }
    assert (star["class"], star["cells"], star["where"]) == ("star", 1, "bottom left")
    assert verdict["text"] == "I see ring (0.90, top), star (0.60, bottom left)"


def test_a_photo_of_something_else_is_none_of_my_classes(known):
    """A real model, run on a real photo of neither a cat nor a dog: background wins."""
    photo = photo_without_cats_or_dogs()
    p = Predictor(known["pets"])
    result = p.summary(str(photo))
    assert p.background == "background" and p.object_classes == ["cat", "dog"]
    np.testing.assert_allclose(
        result["heatmap"]["peaks"]["background"]["score"], np.exp(3) / (2 + np.exp(3)), rtol=1e-5
    )
    assert result["verdict"]["seen"] == []
    assert result["verdict"]["text"].startswith("none of my classes: background wins")
    run = predict_cli(photo, "--model", known["pets"])  # the CLI prints the verdict too
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["verdict"] == result["verdict"]


def test_a_model_without_background_says_it_cannot_answer_neither(known):
    p = Predictor(known["two"])
    assert p.background is None
    verdict = p.verdict(p.infer(scene(240, 320)))
    (dog,) = verdict["seen"]
    assert dog["class"] == "dog" and dog["score"] == pytest.approx(np.exp(2) / (1 + np.exp(2)))
    assert dog["where"] == "all over the image" and dog["box"] == [0, 0, 320, 240]
    assert verdict["text"] == (
        "dog (0.88, all over the image) · this model knows only cat, dog: it cannot say 'neither'"
    )
    unsure = p.verdict(fcn_output(np.full((2, 15, 20), 0.5, np.float32)))
    assert unsure["seen"] == []
    assert unsure["text"].startswith("not sure: none of cat, dog above 0.5 · ")


def test_the_model_card_says_what_a_model_knows(known, models):
    assert Predictor(known["pets"]).card() == {
        "kind": "fcn",
        "classes": ["cat", "dog"],
        "background": "background",
        "trained_on": "pets-test",
        "synthetic": False,
        "metrics": {"val_accuracy": 0.9},
        "scope": "knows cat, dog; anything else is background",
    }
    assert Predictor(known["two"]).card()["scope"] == (
        "this model knows only cat, dog: it cannot say 'neither'"
    )
    mlp = Predictor(models["mlp"]).card()
    assert mlp["trained_on"] == "synthetic-test" and mlp["synthetic"] is True
    assert "digits only" in mlp["scope"]


def test_detector_and_digit_verdicts(models):
    """The detector names what it boxed above its threshold, or says none; the MLP says it
    reads digits only, and is not sure when no output is above 0.5."""
    p = Predictor(models["detectnet"])
    coverage = np.zeros((3, 20, 40), np.float32)
    bboxes = np.zeros((4, 20, 40), np.float32)
    maps = {"coverage": coverage, "bboxes": bboxes}
    out = Output(np.zeros((320, 640, 3), np.uint8), (640, 320), maps, 0.0)
    assert p.verdict(out, threshold=0.5) == {
        "seen": [],
        "text": "no detections above 0.5: none of star, ring, cross found",
        "rule": "a box is kept where a class's coverage is above 0.5, clustered",
        "threshold": 0.5,
    }
    coverage[1, 5, 7] = coverage[1, 15, 30] = 0.9
    bboxes[:, 5, 7] = bboxes[:, 15, 30] = [-20, -10, 30, 40]
    verdict = p.verdict(out, threshold=0.5)
    assert verdict["text"] == "found 2 ring above 0.5"
    assert verdict["seen"] == [{"class": "ring", "score": pytest.approx(0.9), "count": 2}]
    mlp = Predictor(models["mlp"])
    maps = {"probabilities": np.full(10, 0.1)}
    digits = Output(np.zeros((20, 20, 3), np.uint8), (20, 20), maps, 0.0)
    assert mlp.verdict(digits)["text"] == (
        "not sure: no digit above 0.5 · this model reads handwritten digits only: "
        "any other picture is read as a digit too"
    )
    digits.maps["probabilities"][3] = 0.8
    assert mlp.verdict(digits)["text"].startswith("reads 3 (0.80) · ")
