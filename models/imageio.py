"""Reading any image safely into 8-bit RGB (PIL and numpy only; the web app uses it too).

``open_rgb`` applies the EXIF orientation, flattens palette and alpha images on
white, scales 16-bit and float images to 8 bits, converts CMYK and grayscale,
keeps the first frame of animations, refuses decompression bombs, and, given
``max_side``, downscales huge images while decoding (JPEG's DCT scaling makes
that cheap). Every failure is a ``BadImage`` with a message a person can read.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 100_000_000  # larger images are refused as possible decompression bombs
MAX_SIDE = 1920  # inference caps the longer image side here (the app, module 3's evaluation)


class BadImage(ValueError):
    """An image that cannot be used; the message says why."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit and float scaled, palette and alpha flattened on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, RGB


def open_rgb(source, max_side: int | None = None) -> Image.Image:
    """Open a path or file object -> RGB image (see the module docstring); BadImage if unusable.

    With ``max_side``, an image whose longer side exceeds it is downscaled to it
    (aspect kept).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(
                        f"refused: {img.width}x{img.height} is more than {MAX_PIXELS:,} pixels "
                        "(possibly a decompression bomb)"
                    )
                full = img.size
                if max_side and max(img.size) > max_side and img.format == "JPEG":
                    img.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 size
                transposed = ImageOps.exif_transpose(img)  # a no-op copy without EXIF rotation
                if transposed.size != img.size:  # rotated by 90 degrees
                    full = full[::-1]
                img = transposed
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(f"refused: too many pixels, possibly a decompression bomb ({err})") from None
    except FileNotFoundError:
        raise BadImage(f"no such file: {source}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image file PIL can read") from None
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # truncated or corrupt data
        raise BadImage(f"corrupt or truncated image ({err})") from None
    if img.width == 0 or img.height == 0:
        raise BadImage("the image has no pixels")
    img = to_rgb(img)
    img = cap_side(img, max_side)
    img.info["original_size"] = full  # (width, height) before any downscaling, EXIF applied
    return img


def cap_side(img: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (aspect kept) so the longer side is at most max_side; others unchanged."""
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.BILINEAR, reducing_gap=2.0)
