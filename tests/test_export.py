"""ONNX export: one verified, self-describing file per model; parity with torch at new sizes."""

import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import make_checkpoints

from exporters.onnx_export import ExportError, export, read_metadata, verify_parity
from models.checkpoint import build_model, load_checkpoint
from models.detectnet import DetectNet
from models.grid import Grid
from workshop.data.images import normalize


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_one_self_contained_file_per_model(exported):
    for path in exported.values():
        assert path.name == "model.onnx" and path.is_file()
        assert not list(path.parent.glob("*.data")) and not list(path.parent.glob(".*.tmp"))
        onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize(
    ("name", "kind"), [("alexnet", "fcn"), ("detectnet", "detector"), ("mlp", "mlp")]
)
def test_metadata_round_trip(exported, name, kind):
    meta = read_metadata(exported[name])
    ckpt = load_checkpoint(exported[name].with_name("checkpoint.pt"))
    assert meta["kind"] == kind and meta["classes"] == ckpt["meta"]["classes"]
    for key in (
        "mean",
        "std",
        "input_scale",
        "trained_on",
        "metrics",
        "exported_at",
        "torch_version",
        "onnx_version",
    ):
        assert key in meta, key
    assert meta["trained_on"] == {"dataset": "synthetic-test", "synthetic": True}
    assert meta["mean"] == ckpt["meta"]["mean"] and meta["metrics"] == ckpt["meta"]["metrics"]
    if kind == "fcn":  # 224 windows at stride 32, the first at -96: its centre 16 px inside
        grid = (meta["window"], meta["stride"], meta["offset"])
        assert grid == (224, 32, -96) and meta["margin"] == 96
    if kind == "detector":  # 16x16 cells centred on (16 j + 15, 16 i + 15)
        assert (meta["window"], meta["stride"], meta["offset"]) == (16, 16, 7)
    if kind != "mlp":
        xs, ys = Grid.from_meta(meta).cell_centers(2, 3)
        first = {"fcn": 16, "detector": 15}[kind]
        assert xs[0].tolist() == [first + k * meta["stride"] for k in range(3)]
        assert ys[:, 0].tolist() == [first + k * meta["stride"] for k in range(2)]
    if kind == "mlp":
        assert meta["input_size"] == [20, 20]
    # onnxruntime reads the same values (what the predictor uses).
    props = session(exported[name]).get_modelmeta().custom_metadata_map
    assert json.loads(props["classes"]) == meta["classes"]


@pytest.mark.parametrize("hw", [(224, 224), (227, 301), (480, 640), (1080, 1920)])
def test_fcn_matches_torch_at_sizes_other_than_the_example(exported, hw):
    """The reference is module 2's own path (workshop.fcn: normalize, pad 96, FCN)."""
    from workshop.fcn import class_logits

    fcn = build_model(load_checkpoint(exported["alexnet"].with_name("checkpoint.pt")))
    image = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    ref = class_logits(fcn, image, torch.device("cpu"))
    x = image.astype(np.float32).transpose(2, 0, 1)[None]
    logits, probs = session(exported["alexnet"]).run(None, {"image": x})
    assert logits[0].shape == ref.shape
    np.testing.assert_allclose(logits[0], ref, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(probs[0].sum(0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("hw", [(480, 640), (607, 811)])
def test_detector_matches_torch_on_scene_sizes(exported, hw):
    det = build_model(load_checkpoint(exported["detectnet"].with_name("checkpoint.pt")))
    image = torch.rand(1, 3, *hw) * 255
    with torch.no_grad():
        cov, box = det(normalize(image))
    got_cov, got_box = session(exported["detectnet"]).run(None, {"image": image.numpy()})
    np.testing.assert_allclose(got_cov, cov.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_box, box.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_mlp_matches_the_course_function(exported, batch):
    from models.mlp import predict

    mlp = build_model(load_checkpoint(exported["mlp"].with_name("checkpoint.pt")))
    X = np.random.default_rng(batch).random((batch, 400)).astype(np.float32)
    (probs,) = session(exported["mlp"]).run(None, {"digits": X})
    with torch.no_grad():
        ref = torch.sigmoid(mlp(torch.from_numpy(X))).numpy()
    np.testing.assert_allclose(probs, ref, rtol=1e-3, atol=1e-5)
    Theta1, Theta2 = mlp.thetas()
    assert (probs.argmax(1) == predict(Theta1, Theta2, X.astype(np.float64))).all()


def test_a_graph_that_differs_from_torch_fails_loudly(exported):
    other = DetectNet(num_classes=3, width=0.125).eval()  # different weights
    from exporters.onnx_export import Normalized

    ckpt = load_checkpoint(exported["detectnet"].with_name("checkpoint.pt"))
    wrong = Normalized(other, "detector", ckpt["meta"]).eval()
    with pytest.raises(ExportError, match="differs from torch"):
        verify_parity(wrong, exported["detectnet"], [torch.rand(1, 3, 100, 120) * 255])


def test_fp16_export_stays_close_to_the_float_model(tmp_path, exported):
    """fp16 ONNX outputs vs the float32 torch FCN (module 2's path) at a size it was not traced
    at: every logit within 1 % of the largest |logit| (fp16 keeps about 3 decimal digits; the
    untrained test model's logits are small, so a fixed absolute tolerance would say nothing),
    every probability within 1e-3."""
    from workshop.fcn import class_logits

    out = export(exported["alexnet"].with_name("checkpoint.pt"), tmp_path / "fcn16.onnx", fp16=True)
    assert read_metadata(out)["fp16"] is True
    assert out.stat().st_size < 0.6 * exported["alexnet"].stat().st_size
    fcn = build_model(load_checkpoint(exported["alexnet"].with_name("checkpoint.pt")))
    image = np.random.default_rng(5).integers(0, 256, (263, 345, 3), dtype=np.uint8)
    ref = class_logits(fcn, image, torch.device("cpu"))  # float32 torch
    x = image.astype(np.float32).transpose(2, 0, 1)[None]
    logits, probs = session(out).run(None, {"image": x})
    assert logits.dtype == np.float32 and logits[0].shape == ref.shape
    np.testing.assert_allclose(logits[0], ref, rtol=0, atol=1e-2 * np.abs(ref).max())
    e = np.exp(ref - ref.max(0))
    np.testing.assert_allclose(probs[0], e / e.sum(0), rtol=0, atol=1e-3)
    assert np.abs(logits[0] - ref).max() > 0  # really computed in fp16, not a float32 copy


@pytest.mark.slow
def test_cli_exports_every_model_and_refuses_bad_input(tmp_path, python):
    root = make_checkpoints(tmp_path / "artifacts")
    run = subprocess.run(
        [python, "-m", "exporters", "--all", f"--artifacts={root}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("verified with onnxruntime") == 3
    for name in ("alexnet", "detectnet", "mlp"):
        assert (root / name / "model.onnx").is_file()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for bad, message in (
        (tmp_path / "junk.pt", "not a readable checkpoint"),
        (tmp_path / "missing.pt", "no such checkpoint"),
    ):
        run = subprocess.run(
            [python, "-m", "exporters", str(bad)], capture_output=True, text=True, timeout=120
        )
        assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
