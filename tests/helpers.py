"""Test helpers: the tiny models every kind of test runs on, and images made on the spot.

The session fixtures in conftest.py build the models once (``make_checkpoints`` then
``export``); a test that must write next to a model makes its own with these functions.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import synthetic
from models.alexnet import AlexNet
from models.checkpoint import save_checkpoint
from models.detectnet import DetectNet
from models.mlp import MLP
from workshop.data.images import preprocessing_meta

# A detector trained for two steps at the smallest size: enough to run every path once.
TINY_DETECTNET = [
    "--epochs=1",
    "--max_steps=2",
    "--width=0.125",
    "--init=none",
    "--batch_size=2",
    "--crop_h=160",
    "--crop_w=224",
]
MODELS = ("alexnet", "detectnet", "mlp")  # the artifacts folders make_checkpoints fills
CLASSES = ["star", "ring", "cross", "background"]


def make_checkpoints(root):
    """Small untrained models of each kind, saved as the trainers save them."""
    torch.manual_seed(0)
    pre = preprocessing_meta()
    common = {k: pre[k] for k in ("mean", "std", "input_scale")}
    trained_on = {"dataset": "synthetic-test", "synthetic": True}
    fcn = AlexNet(num_classes=4, width=0.125).eval().to_fully_convolutional()
    save_checkpoint(
        root / "alexnet" / "checkpoint.pt",
        fcn,
        model_name="alexnet_fcn",
        model_args={"num_classes": 4, "width": 0.125},
        metrics={"val_accuracy": 0.5},
        meta={
            "kind": "fcn",
            "classes": CLASSES,
            **common,
            "window": 224,
            "stride": 32,
            "offset": 0,
            "trained_on": trained_on,
            "metrics": {"val_accuracy": 0.5},
        },
    )
    det = DetectNet(num_classes=3, width=0.125)
    torch.nn.init.normal_(det.coverage.weight, std=0.05)  # coverage about 0.5: boxes to decode
    torch.nn.init.zeros_(det.coverage.bias)
    with torch.no_grad():  # 64-pixel boxes about each cell, so clustering has work to do
        det.bboxes.bias.copy_(torch.tensor([-0.5, -0.5, 0.5, 0.5]))
    save_checkpoint(
        root / "detectnet" / "checkpoint.pt",
        det,
        model_name="detectnet",
        model_args={"num_classes": 3, "width": 0.125},
        metrics={"AP": 0.1},
        meta={
            "kind": "detector",
            "classes": CLASSES[:3],
            "coco_category_ids": [1, 2, 3],
            **common,
            "stride": 16,
            "offset": 15,
            "threshold": 0.2,
            "cluster_iou": 0.4,
            "trained_on": trained_on,
            "metrics": {"AP": 0.1},
        },
    )
    mlp = MLP()
    save_checkpoint(
        root / "mlp" / "checkpoint.pt",
        mlp,
        model_name="mlp",
        model_args={"input_layer_size": 400, "hidden_layer_size": 25, "num_labels": 10},
        meta={
            "kind": "mlp",
            "classes": [str(d) for d in range(10)],
            "input_size": [20, 20],
            "layout": "column-major",
            "input_scale": 1.0,
            "mean": [0.0],
            "std": [1.0],
            "trained_on": trained_on,
            "metrics": {"test_accuracy": 0.1},
        },
    )
    return root


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def scene_1080p(seed: int = 7) -> bytes:
    img, _ = synthetic.make_scene(1920, 1080, np.random.default_rng(seed))
    return encode(img, "JPEG", quality=90)


def png_bomb(side: int = 12_000) -> bytes:
    """A 1-bit PNG of side x side pixels (144 megapixels) in a few kilobytes."""
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * side, 9)  # filter byte + packed row, all zero

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def awkward_images() -> dict[str, tuple[str, bytes, str | None]]:
    """name -> (file name, bytes, expected message or None when a result is expected)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    frames = [Image.new("P", (200, 150), i * 40) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    sixteen = Image.fromarray((rng.random((200, 300)) * 65535).astype(np.uint16))
    huge = Image.fromarray(rng.integers(0, 256, (3000, 5000, 3), dtype=np.uint8))
    full = encode(rgb, "PNG")
    return {
        "not-an-image": ("notes.png", b"this is a text file, not a picture", "not an image file"),
        "truncated": ("cut.png", full[: len(full) // 3], "corrupt or truncated"),
        "zero-byte": ("empty.jpg", b"", "empty"),
        "bomb": ("bomb.png", png_bomb(), "decompression bomb"),
        "16-bit": ("depth16.png", encode(sixteen, "PNG"), None),
        "cmyk": ("print.jpg", encode(rgb.convert("CMYK"), "JPEG"), None),
        "palette": ("palette.png", encode(rgb.convert("P"), "PNG"), None),
        "rgba": ("alpha.png", encode(rgb.convert("RGBA"), "PNG"), None),
        "exif-rotated": ("phone.jpg", encode(rgb, "JPEG", exif=exif), None),
        "animated": ("animated.gif", gif.getvalue(), None),
        "webp": ("photo.webp", encode(rgb, "WEBP"), None),
        "bmp": ("old.bmp", encode(rgb, "BMP"), None),
        "tiff": ("scan.tiff", encode(rgb, "TIFF"), None),
        "tiny": ("tiny.png", encode(rgb.resize((6, 5)), "PNG"), None),
        "huge": ("huge.jpg", encode(huge, "JPEG", quality=80), None),
    }


# A trainer asked for CUDA on a machine without it: the same mistake for every trainer.
CUDA_MISSING = pytest.param(
    ["--device=cuda"],
    "CUDA is not available here",
    marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
)


def assert_stops_with(main, argv: list[str], message: str) -> None:
    """``main(argv)`` ends with one line, ``error: ...`` naming ``message``: no traceback
    (Python prints the SystemExit's text and exits with status 1)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert isinstance(stop.value.code, str) and stop.value.code.startswith("error: ")
    assert message in stop.value.code


def make_known_fcn(path, classes: list[str], logits: list[float], dataset: str = "pets-test"):
    """A tiny FCN whose answer is known: fc8's weights zeroed and its bias ``logits``, so every
    cell's probabilities are softmax(logits) whatever the image. Saved as the trainer saves
    (real data, ``background`` flagged when a class has that name); returns the path."""
    from models.alexnet import PaddedFCN

    torch.manual_seed(0)
    fcn = AlexNet(num_classes=len(classes), width=0.125).eval().to_fully_convolutional()
    fc8 = fcn.conv_classifier[-1]
    with torch.no_grad():
        fc8.weight.zero_()
        fc8.bias.copy_(torch.tensor(logits))
    pre = preprocessing_meta()
    save_checkpoint(
        path,
        fcn,
        model_name="alexnet_fcn",
        model_args={"num_classes": len(classes), "width": 0.125},
        metrics={"val_accuracy": 0.9},
        meta={
            "kind": "fcn",
            "classes": classes,
            **{k: pre[k] for k in ("mean", "std", "input_scale")},
            **PaddedFCN.grid.to_meta(),
            "background": synthetic.BACKGROUND in classes,
            "trained_on": {"dataset": dataset, "synthetic": False},
            "metrics": {"val_accuracy": 0.9},
        },
    )
    return path


def export_known_fcns(root) -> dict:
    """``root/pets`` (cat, dog, background; background wins every cell: e^3 / (2 + e^3) =
    0.909) and ``root/two`` (cat, dog, no background; dog wins: e^2 / (1 + e^2) = 0.881),
    made with ``make_known_fcn`` and exported; name -> model.onnx."""
    from exporters.onnx_export import export

    made = {
        "pets": (["cat", "dog", "background"], [0.0, 0.0, 3.0]),
        "two": (["cat", "dog"], [0.0, 2.0]),
    }
    return {
        name: export(make_known_fcn(root / name / "checkpoint.pt", classes, logits))
        for name, (classes, logits) in made.items()
    }


def photo_without_cats_or_dogs() -> Path:
    """A real COCO photo whose annotations hold neither a cat nor a dog (elephants if any);
    the calling test is skipped where the sample folder is absent."""
    import json

    import pytest

    from benchmarks.realsample import find_realsample, realsample_places

    sample = find_realsample()
    if sample is None:
        looked = ", ".join(map(str, realsample_places()))
        pytest.skip(f"no real photo of something else to test on: no sample in {looked}")
    coco128 = sample / "coco128"
    coco = json.loads((coco128 / "instances.json").read_text())
    ids = {c["name"]: c["id"] for c in coco["categories"]}
    found: dict[int, set] = {}
    for a in coco["annotations"]:
        found.setdefault(a["image_id"], set()).add(a["category_id"])
    pets = {ids["cat"], ids["dog"]}
    others = [im for im in coco["images"] if found.get(im["id"]) and not found[im["id"]] & pets]
    elephants = [im for im in others if ids.get("elephant") in found[im["id"]]]
    return coco128 / "images" / (elephants or others)[0]["file_name"]
