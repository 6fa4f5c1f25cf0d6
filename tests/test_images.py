"""Reading images of every kind, image folders with corrupt files, and the batch pipeline."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from workshop.data import images


def encode(img: Image.Image, fmt: str, **kwargs) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("L", "PNG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("1", "BMP"),
        ("RGB", "WEBP"),
        ("RGB", "TIFF"),
    ],
)
def test_every_mode_becomes_rgb(mode, fmt):
    src = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8))
    img = (
        src.convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.random.default_rng(0).integers(0, 65535, (30, 40), np.uint16))
    )
    out = images.open_rgb(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_sixteen_bit_keeps_its_contrast():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    out = np.asarray(images.open_rgb(encode(Image.fromarray(ramp), "PNG")))
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(images.open_rgb(encode(rgba, "PNG")))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = images.open_rgb(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not an image"),
        (b"hello", "not an image"),
        (encode(Image.new("RGB", (64, 64)), "PNG").getvalue()[:60], "corrupt or truncated"),
    ],
)
def test_bad_files_raise_bad_image(data, reason):
    with pytest.raises(images.BadImage, match=reason):
        images.open_rgb(io.BytesIO(data))


def test_decompression_bombs_are_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(images.BadImage, match="decompression bomb"):
        images.open_rgb(encode(Image.new("RGB", (100, 100)), "PNG"))


def make_pet_images(root, n=6):
    """A small PetImages layout with the kinds of broken files the real archive has."""
    rng = np.random.default_rng(0)
    for folder in ("Cat", "Dog"):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 255, (50 + i, 60, 3), np.uint8)
            Image.fromarray(arr).save(root / folder / f"{i}.jpg")
    (root / "Cat" / "666.jpg").write_bytes(b"")  # zero bytes
    (root / "Dog" / "11702.jpg").write_bytes(b"GIF89a not really")  # corrupt
    (root / "Dog" / "Thumbs.db").write_bytes(b"\x00" * 20)  # not an image
    good = (root / "Cat" / "0.jpg").read_bytes()
    (root / "Cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])  # passes verify()


def test_pet_images_skip_and_count_broken_files(tmp_path):
    make_pet_images(tmp_path / "PetImages")
    folder = images.pet_images(tmp_path)
    assert folder.classes == ["cat", "dog"]
    assert folder.skipped == {"zero bytes": 1, "corrupt": 1, "not an image file": 1}
    cache = images.cache_images(folder, tmp_path / "cache", "pets")
    assert cache.images.shape == (12, 256, 256, 3) and cache.images.dtype == np.uint8
    assert cache.skipped["corrupt"] == 2  # the truncated JPEG fails when decoded
    assert sorted(np.bincount(cache.labels).tolist()) == [6, 6]
    again = images.cache_images(folder, tmp_path / "cache", "pets")  # reused, memory-mapped
    assert isinstance(again.images, np.memmap)
    train, val = images.split_folders(tmp_path, seed=0, val_fraction=0.3)
    assert len(train.samples) + len(val.samples) == len(folder.samples) and val.samples


def test_decoding_finds_the_truncated_jpeg_that_verify_lets_through(tmp_path):
    make_pet_images(tmp_path / "PetImages")
    folder = images.pet_images(tmp_path, decode=True)
    assert folder.skipped == {"zero bytes": 1, "corrupt": 1, "not an image file": 1, "truncated": 1}
    assert "truncated.jpg" not in {p.name for p, _ in folder.samples}
    cache = images.cache_images(folder, tmp_path / "cache", "pets")
    assert len(cache) == 12 and cache.skipped["corrupt"] == 1  # nothing new fails to decode


def test_missing_layouts_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Cat/ and Dog/"):
        images.pet_images(tmp_path)
    with pytest.raises(ValueError, match="no such image folder"):
        images.ImageFolder.scan(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable images"):
        images.ImageFolder.scan(tmp_path)


def test_batches_crop_and_normalize():
    from torchvision.transforms import functional as TF

    u8 = torch.randint(0, 256, (5, 256, 256, 3), dtype=torch.uint8)
    val = images.make_batch(u8, train=False)
    chw = u8.permute(0, 3, 1, 2)  # (n, h, w, 3) -> (n, 3, h, w)
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    expected = TF.normalize(TF.center_crop(chw, [224, 224]).float() / 255, **imagenet)
    torch.testing.assert_close(val, expected)
    a = images.make_batch(u8, train=True, generator=torch.Generator().manual_seed(1))
    b = images.make_batch(u8, train=True, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 224, 224)
    torch.testing.assert_close(a, b)
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([images.random_crop_size(256, g) for _ in range(500)], dtype=torch.float)
    area = sizes.prod(1) / 256**2
    assert sizes.max() <= 256 and area.min() > 0.3 and area.max() <= 1.0


def test_training_crops_are_flipped_left_right_about_half_the_time(monkeypatch):
    """A left-to-right ramp stays a ramp in every crop: rising, or falling when flipped."""
    monkeypatch.setattr(images, "image_border", lambda x, generator: x)  # no mean-colour bands
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).expand(64, 256, 256, 3)
    x = images.make_batch(ramp, train=True, generator=torch.Generator().manual_seed(3))
    red = x[:, 0]  # (n, h, w)
    assert torch.allclose(red, red[:, :1], atol=1e-5)  # no vertical change: never flipped upright
    step = red[:, 0, 1:] - red[:, 0, :-1]  # (n, w - 1)
    rising, falling = (step >= -1e-5).all(1), (step <= 1e-5).all(1)
    assert (rising ^ falling).all()
    assert 16 <= int(falling.sum()) <= 48  # flip probability 0.5 over 64 crops
