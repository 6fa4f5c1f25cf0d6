"""What the web app needs besides the predictor: sample inputs made on the spot, PNG bytes.

Samples are drawn here, offline: a scene of the synthetic shapes (the same
generator the models were trained on, ``models.synthetic``) or a handwritten-
looking digit for the MLP.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from models import synthetic


def sample_scene(seed: int, size=(1280, 720)) -> bytes:
    """A JPEG scene of stars, rings and crosses in clutter (not one the models trained on)."""
    rng = np.random.default_rng([20_251_125, seed])  # a stream the data sets never use
    img, _ = synthetic.make_scene(*size, rng)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def sample_digit(seed: int) -> tuple[bytes, int]:
    """A PNG of one digit, dark ink on white paper, slightly rotated and blurred; (bytes, digit)."""
    rng = np.random.default_rng([20_251_126, seed])
    digit = int(rng.integers(0, 10))
    img = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=int(rng.integers(120, 160)))
    draw.text((100, 100), str(digit), fill=int(rng.integers(0, 60)), font=font, anchor="mm")
    img = img.rotate(float(rng.uniform(-12, 12)), fillcolor=255).filter(
        ImageFilter.GaussianBlur(1.2)
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), digit


def png_bytes(image: np.ndarray) -> bytes:
    """RGB uint8 -> PNG bytes, fast compression (the lossless downloads)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 -> JPEG bytes: what the page shows (10x smaller and faster than PNG)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
