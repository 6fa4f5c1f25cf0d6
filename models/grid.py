"""Where the cells of a fully convolutional map sit on the image: numpy only, one owner.

A ``Grid(window, stride, offset)`` says that cell (i, j) of a map stands for
the ``window`` x ``window`` square of image pixels whose top-left corner is
(offset + stride j, offset + stride i); its centre is at
(offset + stride j + window / 2, offset + stride i + window / 2). The square
may reach outside the image (a negative offset: the model pads the image).

The models own their grids (``FullyConvolutionalAlexNet.grid``,
``PaddedFCN.grid``, ``DetectNet.grid``); trainers copy them into the
checkpoint's ``meta`` with ``to_meta()``, the exporter into the ONNX
metadata, and consumers read them back with ``Grid.from_meta`` (the keys
``window``, ``stride``, ``offset``, integers in pixels of the network's input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEYS = ("window", "stride", "offset")


@dataclass(frozen=True)
class Grid:
    window: int  # side of the square a cell stands for, pixels
    stride: int  # pixels between neighbouring cells
    offset: int = 0  # top-left corner of cell (0, 0)'s square, pixels (negative: padding)

    def to_meta(self) -> dict[str, int]:
        """The grid as metadata entries: {"window": ..., "stride": ..., "offset": ...}."""
        return {k: int(getattr(self, k)) for k in KEYS}

    @classmethod
    def from_meta(cls, meta: dict) -> Grid:
        """The grid written by ``to_meta`` (in a checkpoint's meta or an ONNX file's metadata)."""
        missing = [k for k in KEYS if k not in meta]
        if missing:
            raise KeyError(f"metadata without the grid's {', '.join(missing)}")
        return cls(*(int(meta[k]) for k in KEYS))

    def padded(self, margin: int) -> Grid:
        """The same cells seen in an image padded by ``margin`` pixels on every side first."""
        return Grid(self.window, self.stride, self.offset - margin)

    def scaled(self, reduce: int) -> Grid | None:
        """The grid on the image shrunk ``reduce`` times; None where it does not divide exactly."""
        values = (self.window, self.stride, self.offset)
        if any(v % reduce for v in values):
            return None
        return Grid(*(v // reduce for v in values))

    def cell_centers(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates (x, y) of every cell's centre in an (h, w) map: two (h, w) arrays."""
        xs = self.offset + np.arange(w) * self.stride + self.window / 2
        ys = self.offset + np.arange(h) * self.stride + self.window / 2
        return np.meshgrid(xs, ys)

    def window_box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The (x0, y0, x1, y1) square of cell (i, j), in image pixels (may reach outside)."""
        x0, y0 = self.offset + j * self.stride, self.offset + i * self.stride
        return (x0, y0, x0 + self.window, y0 + self.window)

    def block_start(self) -> int:
        """Top-left pixel (x and y) of the stride x stride block about cell (0, 0)'s centre."""
        return self.offset + (self.window - self.stride) // 2

    def nearest_cell(self, x: float, y: float, h: int, w: int) -> tuple[int, int]:
        """(i, j) of the cell of an (h, w) map whose centre is nearest to (x, y)."""
        first = self.offset + self.window / 2
        i = int(np.clip(round((y - first) / self.stride), 0, h - 1))
        j = int(np.clip(round((x - first) / self.stride), 0, w - 1))
        return i, j
