"""Heatmap geometry: every cell is drawn at its own window's centre, never stretched."""

import numpy as np

from models.alexnet import MARGIN, FullyConvolutionalAlexNet, PaddedFCN, output_size
from models.heatmap import argmax_image, overlay, place_map

BARE, PADDED = FullyConvolutionalAlexNet.grid, PaddedFCN.grid


def test_cell_centres_are_window_centres():
    xs, ys = BARE.cell_centers(2, 3)
    assert xs[0].tolist() == [112, 144, 176] and ys[:, 0].tolist() == [112, 144]
    x0, y0, x1, y1 = BARE.window_box(1, 2)
    assert (x0, y0, x1, y1) == (64, 32, 288, 256)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (xs[1, 2], ys[1, 2])
    xs, ys = PADDED.cell_centers(1, 1)
    assert (xs[0, 0], ys[0, 0]) == (16, 16) and MARGIN == 96


def test_place_map_draws_blocks_at_window_centres():
    h, w = 300, 417
    values = np.arange(output_size(h) * output_size(w), dtype=float).reshape(
        output_size(h), output_size(w)
    )
    placed = place_map(values, (h, w), BARE)
    xs, ys = BARE.cell_centers(*values.shape)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            assert placed[int(ys[i, j]), int(xs[i, j])] == values[i, j]
    assert np.isnan(placed[:96]).all() and np.isnan(placed[:, :96]).all()  # no window centred
    assert np.isnan(placed).sum() > 0


def test_with_the_margin_the_map_covers_the_image():
    h, w = 480, 640
    values = np.random.default_rng(0).random(
        (output_size(h + 2 * MARGIN), output_size(w + 2 * MARGIN))
    )
    placed = place_map(values, (h, w), PADDED)
    assert not np.isnan(placed).any()
    xs, ys = PADDED.cell_centers(*values.shape)
    assert placed[int(ys[3, 5]), int(xs[3, 5])] == np.float32(values[3, 5])


def test_overlay_and_argmax_images():
    image = np.full((300, 300, 3), 100, np.uint8)
    values = np.zeros((4, 4))
    out = overlay(image, place_map(values, (300, 300), BARE), alpha=0.5)
    assert out.shape == image.shape and (out[0, 0] == 100).all() and (out[150, 150] != 100).any()
    probs = np.stack([np.zeros((4, 4)), np.ones((4, 4))])
    rgba = argmax_image(probs, (300, 300), BARE, background=0)
    assert rgba[150, 150, 3] > 0 and rgba[0, 0, 3] == 0
    assert argmax_image(probs[::-1], (300, 300), BARE, background=0)[150, 150, 3] == 0


def test_overlay_per_cell_equals_overlay_per_pixel():
    from models.heatmap import overlay, overlay_cells, place_map

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (301, 517, 3), dtype=np.uint8)
    values = rng.random((7, 11)).astype(np.float32)
    values[2, 3] = np.nan
    for grid in (BARE, PADDED):
        slow = overlay(image, place_map(values, image.shape[:2], grid), alpha=0.7)
        fast = overlay_cells(image, values, grid, alpha=0.7)
        np.testing.assert_array_equal(fast, slow)
