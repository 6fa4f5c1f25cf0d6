"""Images for the web app's tests: a 1080p scene and every kind of awkward file, made here."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from models import synthetic


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


def exported_models(root: Path) -> Path:
    """The test checkpoints (test_export.make_checkpoints) exported to ONNX under ``root``."""
    from test_export import make_checkpoints

    from exporters.onnx_export import export

    root = make_checkpoints(root)
    for name in ("alexnet", "detectnet", "mlp"):
        export(root / name / "checkpoint.pt")
    return root
