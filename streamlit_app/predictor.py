"""One onnxruntime predictor for every exported model: the web app's and the CLI's engine.

It loads an ONNX file and the metadata inside it, and nothing else: no torch,
no checkpoint, no class list or mean written here. Running a model is split in
two so that the app can cache the expensive half:

    p = Predictor("artifacts/alexnet/model.onnx")
    out = p.infer(image)            # preprocessing + onnxruntime: cache this
    p.top_classes(out)              # cheap post-processing, rerun on every slider move
    p.heatmap(out, "ring", opacity=0.6)
    p.detections(out, threshold=0.5, iou=0.4)
    p.verdict(out)                  # what the image shows, in the model's own terms
    p.card()                        # what the model knows: classes, training data, metrics

Preprocessing follows the metadata. Images: EXIF orientation applied, any mode
converted to RGB, decompression bombs refused, the long side capped at
``MAX_SIDE`` pixels (larger images are downscaled, and results are given on
the downscaled image, whose size is reported), and images smaller than the
network's minimum padded with the mean colour. Digits (the MLP): grayscale,
ink made bright, cropped to the ink, fitted in 20x20 like the training digits.

The verdict says what the model can honestly say about an image, and what it
cannot. A class named exactly ``background`` (``models.synthetic.BACKGROUND``)
is the model's "none of the others". The rule (``VERDICT_THRESHOLD`` = 0.5):

- FCN: an object class is *seen* where it wins a cell (the largest probability
  of the cell's window) with a probability above the threshold; its place is
  its best such cell, its region the windows of all such cells, and in words
  the third of the image its cells' centroid lies in ("all over the image"
  when it wins more than half of the cells). With a background class, no
  object class seen is "none of my classes" ("background wins" added when it
  wins the most cells). Without one, the model is said to know only its
  classes (it cannot answer "neither"), and no class above the threshold is
  "not sure". (With two classes and no background, one class is always at 0.5
  or more: only the caveat keeps such a model honest.)
- detector: the classes of the clustered boxes above the coverage threshold;
  none is "no detections above the threshold".
- MLP: the best digit if its output is above the threshold, else "not sure";
  the model reads digits only, so any other picture still gets a digit.

What differs between kinds (input, ranking output, grid, summary fields) is one
entry of ``KINDS`` at the end of this file; cells are placed by the grid read
from the metadata (``models.grid.Grid.from_meta``).
"""

from __future__ import annotations

import ctypes
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from models import boxes as box_ops
from models import heatmap
from models.grid import Grid
from models.imageio import MAX_SIDE, BadImage, cap_side, open_rgb, to_rgb
from models.synthetic import BACKGROUND

MIN_SIDE = 32  # smaller images are padded to this (the FCN pads 96 more inside its graph)
PREVIEW_WIDTH = 1280  # wider results are shown at half size (downloads stay full size)
VERDICT_THRESHOLD = 0.5  # a class is "seen" only above this probability (module docstring)


class PredictorError(ValueError):
    """A model file that cannot be served; the message says why."""


def gpu_present() -> bool:
    """True when the NVIDIA driver library loads (so asking for CUDA will not spam errors)."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def providers(device: str = "auto") -> list:
    """CUDA (cuDNN algorithm search: heuristic, so new sizes don't re-benchmark) then CPU."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    if device == "cpu":
        return cpu
    cuda_ok = "CUDAExecutionProvider" in ort.get_available_providers() and gpu_present()
    if device == "cuda" and not cuda_ok:
        raise PredictorError(
            "device 'cuda' requested, but no GPU or CUDA libraries are present "
            "(use device 'auto' or 'cpu')"
        )
    if cuda_ok:
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), *cpu]
    return cpu


@dataclass
class Output:
    """One image's raw model outputs plus what is needed to place them on the image."""

    image: np.ndarray  # the RGB uint8 image the results refer to (after any downscaling)
    original_size: tuple[int, int]  # (width, height) as uploaded
    maps: dict[str, np.ndarray]  # output name -> array (batch dimension removed)
    seconds: float  # preprocessing + inference
    extra: dict = field(default_factory=dict)


class Predictor:
    def __init__(self, path, *, threads: int = 0, device: str = "auto", memory_arena=True):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PredictorError(f"{self.path}: no such model file (run `make demo` to build them)")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        # The CPU memory arena is faster (about 1.45x at 1080p here) but keeps the largest
        # buffers of concurrent runs for good; the web server turns it off.
        opts.enable_cpu_mem_arena = memory_arena
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers(device))
        except PredictorError:
            raise
        except Exception as err:  # onnxruntime raises its own exception types
            first = (
                str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            )
            raise PredictorError(f"{self.path}: not a usable ONNX model ({first})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if "kind" not in raw:
            raise PredictorError(
                f"{self.path}: an ONNX model without the workshop's metadata (kind, classes, "
                "mean, ...); export it with `python -m exporters`"
            )
        try:
            self.meta = {k: json.loads(v) for k, v in raw.items()}
        except json.JSONDecodeError as err:
            raise PredictorError(f"{self.path}: unreadable metadata ({err})") from None
        self.kind: str = self.meta["kind"]
        if self.kind not in KINDS:
            raise PredictorError(f"{self.path}: unknown model kind {self.kind!r}")
        self.spec: Kind = KINDS[self.kind]
        self.grid: Grid | None = self.spec.grid(self.meta)  # where the map's cells sit
        self.classes: list[str] = list(self.meta["classes"])
        # the class that stands for "none of the others", when the model was trained with one
        self.background: str | None = BACKGROUND if BACKGROUND in self.classes else None
        self.object_classes: list[str] = [c for c in self.classes if c != self.background]
        self.provider: str = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __repr__(self) -> str:
        return f"Predictor({self.path}, {self.kind}, {len(self.classes)} classes, {self.provider})"

    # ------------------------------------------------------------------ preprocessing

    def load_image(self, source) -> tuple[np.ndarray, tuple[int, int]]:
        """Path, bytes, file object, PIL image or array -> (RGB uint8 array, original size)."""
        if isinstance(source, np.ndarray):
            source = Image.fromarray(source)
        if isinstance(source, Image.Image):
            rgb = to_rgb(source)
            original = rgb.size
            rgb = cap_side(rgb, MAX_SIDE)
            return np.asarray(rgb), original
        if isinstance(source, bytes | bytearray):
            if not source:
                raise BadImage("the file is empty")
            source = io.BytesIO(source)
        rgb = open_rgb(source, max_side=MAX_SIDE)
        return np.asarray(rgb), rgb.info["original_size"]

    def _pixels(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> float32 (1, 3, H', W') 0-255, padded to MIN_SIDE with the mean."""
        h, w = image.shape[:2]
        x = image.astype(np.float32).transpose(2, 0, 1)[None]
        if h < MIN_SIDE or w < MIN_SIDE:
            mean = np.asarray(self.meta["mean"], np.float32).reshape(1, 3, 1, 1) * 255
            padded = np.broadcast_to(mean, (1, 3, max(h, MIN_SIDE), max(w, MIN_SIDE))).copy()
            padded[:, :, :h, :w] = x
            x = padded
        return x

    def digit_vector(self, image: np.ndarray) -> np.ndarray:
        """An RGB image of one handwritten digit -> the (400,) input the MLP was trained on.

        The training digits are bright ink on black, filling a 20x20 square, stored
        column-major. So: grayscale; inverted when the border is brighter than the
        middle (dark ink on paper); cropped to the ink; scaled, aspect kept, so
        its longer side fills 20 pixels (the training digits span all 20 rows),
        centred; scaled so the brightest ink is 1.
        """
        side_h, side_w = self.meta.get("input_size", [20, 20])
        g = np.asarray(Image.fromarray(image).convert("L"), np.float32) / 255
        border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
        if np.median(border) > 0.5:
            g = 1 - g
        ink = g > max(0.2, g.max() * 0.3)
        if not ink.any():
            raise BadImage("no digit found: the image is blank")
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        g = g[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        fit = min(side_h, side_w)  # the training digits fill the height (ink rows 1-20)
        scale = fit / max(g.shape)
        size = (max(1, round(g.shape[1] * scale)), max(1, round(g.shape[0] * scale)))
        small = np.asarray(Image.fromarray(g).resize(size, Image.BILINEAR, reducing_gap=2.0))
        canvas = np.zeros((side_h, side_w), np.float32)
        top, left = (side_h - size[1]) // 2, (side_w - size[0]) // 2
        canvas[top : top + size[1], left : left + size[0]] = small
        canvas = np.clip(canvas / max(canvas.max(), 1e-6), 0, 1)
        order = "F" if self.meta.get("layout") == "column-major" else "C"
        return canvas.ravel(order=order)

    # ---------------------------------------------------------------------- inference

    def infer(self, source) -> Output:
        """Preprocess and run the model once; the expensive part, worth caching."""
        start = time.perf_counter()
        image, original = self.load_image(source)
        feed, extra = self.spec.feed(self, image)
        results = self.session.run(None, {self.input_name: feed})
        maps = {name: r[0] for name, r in zip(self.output_names, results)}
        return Output(image, original, maps, time.perf_counter() - start, extra)

    # ----------------------------------------------------------------- post-processing

    def top_classes(self, out: Output, k: int = 5) -> list[dict]:
        """Classes ranked: the MLP's probabilities, or each class's peak over a map's cells."""
        p = out.maps[self.spec.scores].reshape(len(self.classes), -1).max(1)  # (C, cells) -> (C,)
        order = np.argsort(-p, kind="stable")[:k]
        return [{"class": self.classes[i], "score": float(p[i])} for i in order]

    def _class_probabilities(self, out: Output, cls) -> np.ndarray:
        """The FCN's (h, w) probability map of a class given by name or index."""
        c = self.classes.index(cls) if isinstance(cls, str) else int(cls)
        return out.maps["probabilities"][c]

    def class_map(self, out: Output, cls) -> np.ndarray:
        """One class's probability map placed on the image: (H, W), NaN where no window centres."""
        values = self._class_probabilities(out, cls)
        return heatmap.place_map(values, out.image.shape[:2], self.grid)

    def preview_reduction(self, out: Output) -> int:
        """2 for an image wider than PREVIEW_WIDTH (a page shows it at about that size: a
        quarter of the pixels to blend, draw and encode), else 1. Where previews draw
        the grid's cells, the grid must halve exactly; downloads stay full size."""
        if out.image.shape[1] <= PREVIEW_WIDTH:
            return 1
        return 2 if not self.spec.draws_cells or self.grid.scaled(2) else 1

    @staticmethod
    def _reduced(out: Output, reduce: int) -> np.ndarray:
        return out.image if reduce == 1 else np.asarray(Image.fromarray(out.image).reduce(reduce))

    def heatmap(self, out: Output, cls, opacity: float = 0.6, reduce: int = 1) -> np.ndarray:
        """The class heatmap blended over the image: RGB uint8, the image's size (divided by
        ``reduce``, the cells' geometry with it)."""
        grid = self.grid.scaled(reduce)
        if grid is None:
            raise ValueError(f"the FCN grid does not divide by {reduce}")
        values = self._class_probabilities(out, cls)
        return heatmap.overlay_cells(self._reduced(out, reduce), values, grid, alpha=opacity)

    def detections(
        self, out: Output, *, threshold: float | None = None, iou: float | None = None, classes=None
    ) -> list[dict]:
        """Clustered boxes (x0, y0, x1, y1 in the served image's pixels), best first.

        ``classes`` (names) keeps only those classes (None: all); they are chosen
        before clustering, so the cap on detections counts only the wanted ones.
        """
        threshold = self.meta.get("threshold", 0.5) if threshold is None else threshold
        iou = self.meta.get("cluster_iou", 0.4) if iou is None else iou
        coverage = out.maps["coverage"]
        if classes is not None:
            wanted = np.isin(np.asarray(self.classes), list(classes))
            coverage = coverage * wanted[:, None, None]
        found, scores, labels = box_ops.decode(
            coverage, out.maps["bboxes"], threshold=threshold, iou=iou, grid=self.grid
        )
        return [
            {
                "class": self.classes[int(lab)],
                "label": int(lab),
                "score": float(s),
                "box": [float(v) for v in b],
            }
            for b, s, lab in zip(found, scores, labels)
        ]

    def draw(self, out: Output, dets: list[dict], reduce: int = 1) -> np.ndarray:
        """The image (divided by ``reduce``) with the detections drawn (labels and scores)."""
        image = self._reduced(out, reduce)
        if not dets:
            return image.copy()
        return box_ops.draw_detections(
            image,
            [[v / reduce for v in d["box"]] for d in dets],
            [d["label"] for d in dets],
            self.classes,
            [d["score"] for d in dets],
        )

    def coco_results(self, out: Output, dets: list[dict], image_id: int = 1) -> list[dict]:
        """Detections in COCO result format, in the uploaded image's pixels."""
        sx = out.original_size[0] / out.image.shape[1]
        sy = out.original_size[1] / out.image.shape[0]
        ids = self.meta.get("coco_category_ids") or list(range(1, len(self.classes) + 1))
        return [
            {
                "image_id": image_id,
                "category_id": int(ids[d["label"]]),
                "category": d["class"],
                "bbox": [
                    round(d["box"][0] * sx, 2),
                    round(d["box"][1] * sy, 2),
                    round((d["box"][2] - d["box"][0]) * sx, 2),
                    round((d["box"][3] - d["box"][1]) * sy, 2),
                ],
                "score": round(d["score"], 5),
            }
            for d in dets
        ]

    def verdict(self, out: Output, **kw) -> dict:
        """What the image shows in the model's terms (the rule in the module docstring).

        ``{"seen": [...], "text": "...", "rule": "...", "threshold": t}``: ``seen`` lists
        the object classes found, best first (the FCN's with the place of its best cell
        in the served image's pixels and the region its cells' windows cover; the
        detector's with their number of boxes). Options: ``threshold`` (default
        ``VERDICT_THRESHOLD``, the detector's own threshold for the detector); the
        detector also takes ``iou``, ``classes`` or the ``detections`` already made.
        """
        return self.spec.verdict(self, out, kw)

    def card(self) -> dict:
        """What the model knows, for its model card: classes, training data, headline metrics."""
        trained = self.meta.get("trained_on") or {}
        metrics = self.meta.get("metrics") or {}
        return {
            "kind": self.kind,
            "classes": self.object_classes,
            "background": self.background,
            "trained_on": trained.get("dataset"),  # None: not recorded in the file
            "synthetic": trained.get("synthetic"),
            "metrics": {
                k: v
                for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            },
            "scope": self.spec.scope(self),
        }

    def summary(self, source, **kw) -> dict:
        """Everything about one image as JSON-ready values (the CLI's output)."""
        out = self.infer(source)
        h, w = out.image.shape[:2]
        result = {
            "model": str(self.path),
            "kind": self.kind,
            "provider": self.provider,
            "seconds": round(out.seconds, 4),
            "image_size": list(out.original_size),
            "served_size": [w, h],
            "top_classes": self.top_classes(out),
        }
        result.update(self.spec.summary(self, out, kw))
        result["verdict"] = self.verdict(out, **kw)
        return result


# ------------------------------------------------------------------ one entry per kind


def _digit_feed(p: Predictor, image: np.ndarray) -> tuple[np.ndarray, dict]:
    vector = p.digit_vector(image)
    return vector[None].astype(np.float32), {"digit": vector}  # (1, 400)


def _image_feed(p: Predictor, image: np.ndarray) -> tuple[np.ndarray, dict]:
    return p._pixels(image), {}


def _no_grid(meta: dict) -> None:
    return None


def _detector_grid(meta: dict) -> Grid:
    """The detector's grid; files exported before it had one owner wrote no window, and
    their ``offset`` was cell 0's centre (15), so each cell is the stride block about it."""
    if "window" not in meta:
        stride = int(meta["stride"])
        return Grid(window=stride, stride=stride, offset=int(meta["offset"]) - stride // 2)
    return Grid.from_meta(meta)


def _digit_summary(p: Predictor, out: Output, kw: dict) -> dict:
    return {"prediction": p.top_classes(out, 1)[0]["class"]}


def _heatmap_summary(p: Predictor, out: Output, kw: dict) -> dict:
    """The map's size and geometry, and each class's best cell (score, window centre)."""
    probs = out.maps["probabilities"]
    centres_x, centres_y = p.grid.cell_centers(*probs.shape[1:])
    peaks = {}
    for c, name in enumerate(p.classes):
        i, j = np.unravel_index(int(probs[c].argmax()), probs[c].shape)
        peaks[name] = {
            "score": float(probs[c, i, j]),
            "x": float(centres_x[i, j]),
            "y": float(centres_y[i, j]),
        }
    return {"heatmap": {"cells": list(probs.shape[1:]), **p.grid.to_meta(), "peaks": peaks}}


def _listed(names: list[str]) -> str:
    return ", ".join(names)


def _either(names: list[str]) -> str:
    """Names joined for a sentence: a; a or b; a, b or c."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _place(x: float, y: float, w: int, h: int) -> str:
    """Where (x, y) lies in a w x h image, in words: "top left", "centre", "bottom", ..."""
    row = ("top", "middle", "bottom")[min(max(int(3 * y / h), 0), 2)]
    col = ("left", "centre", "right")[min(max(int(3 * x / w), 0), 2)]
    if row == "middle":
        return col
    return row if col == "centre" else f"{row} {col}"


def _threshold(kw: dict, default: float = VERDICT_THRESHOLD) -> float:
    return default if kw.get("threshold") is None else float(kw["threshold"])


def _heatmap_scope(p: Predictor) -> str:
    if p.background:
        return f"knows {_listed(p.object_classes)}; anything else is {p.background}"
    neither = "neither" if len(p.classes) == 2 else "none of them"
    return f"this model knows only {_listed(p.classes)}: it cannot say '{neither}'"


def _heatmap_verdict(p: Predictor, out: Output, kw: dict) -> dict:
    """Each object class that wins a cell above the threshold, with where (module docstring)."""
    threshold = _threshold(kw)
    probs = out.maps["probabilities"]  # (C, h, w)
    winner = probs.argmax(0)  # (h, w): the class of each cell's window
    centres_x, centres_y = p.grid.cell_centers(*probs.shape[1:])
    h, w = out.image.shape[:2]
    seen = []
    for name in p.object_classes:
        c = p.classes.index(name)
        cells = (winner == c) & (probs[c] > threshold)
        if not cells.any():
            continue
        i, j = np.unravel_index(int(np.where(cells, probs[c], -1).argmax()), cells.shape)
        rows, cols = np.nonzero(cells)
        x0, y0, _, _ = p.grid.window_box(int(rows.min()), int(cols.min()))
        _, _, x1, y1 = p.grid.window_box(int(rows.max()), int(cols.max()))
        x, y = float(centres_x[i, j]), float(centres_y[i, j])
        # in words: all over when it wins most cells, else where its cells' centroid lies
        weight = np.where(cells, probs[c], 0)
        cx, cy = (float((v * weight).sum() / weight.sum()) for v in (centres_x, centres_y))
        where = "all over the image" if cells.mean() > 0.5 else _place(cx, cy, w, h)
        seen.append(
            {
                "class": name,
                "score": float(probs[c, i, j]),
                "x": x,
                "y": y,
                "where": where,
                "cells": int(cells.sum()),
                "box": [max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)],  # clipped to the image
            }
        )
    seen.sort(key=lambda s: -s["score"])
    found = _listed([f"{s['class']} ({s['score']:.2f}, {s['where']})" for s in seen])
    if p.background:
        shares = np.bincount(winner.ravel(), minlength=len(p.classes))  # cells each class wins
        wins = f"{p.background} wins, " if shares.argmax() == p.classes.index(p.background) else ""
        none = f"none of my classes: {wins}no {_either(p.object_classes)} above {threshold:g}"
        text = f"I see {found}" if seen else none
    else:
        answer = found if seen else f"not sure: none of {_listed(p.classes)} above {threshold:g}"
        text = f"{answer} · {_heatmap_scope(p)}"
    rule = f"a class is seen where it wins a cell with a probability above {threshold:g}" + (
        f"; no class seen: {p.background}" if p.background else ""
    )
    return {"seen": seen, "text": text, "rule": rule, "threshold": threshold}


def _detections_scope(p: Predictor) -> str:
    return f"looks for {_listed(p.classes)} only; anything else gets no box"


def _detections_verdict(p: Predictor, out: Output, kw: dict) -> dict:
    threshold = _threshold(kw, p.meta.get("threshold", 0.5))
    dets = kw.get("detections")
    if dets is None:
        dets = p.detections(out, threshold=threshold, iou=kw.get("iou"), classes=kw.get("classes"))
    seen: dict[str, dict] = {}  # class -> its number of boxes and best score, best first
    for d in dets:
        s = seen.setdefault(d["class"], {"class": d["class"], "score": d["score"], "count": 0})
        s["count"] += 1
    if seen:
        counted = [f"{s['count']} {s['class']}" for s in seen.values()]
        text = f"found {_listed(counted)} above {threshold:g}"
    else:
        text = f"no detections above {threshold:g}: none of {_listed(p.classes)} found"
    rule = f"a box is kept where a class's coverage is above {threshold:g}, clustered"
    return {"seen": list(seen.values()), "text": text, "rule": rule, "threshold": threshold}


def _digit_scope(p: Predictor) -> str:
    return "this model reads handwritten digits only: any other picture is read as a digit too"


def _digit_verdict(p: Predictor, out: Output, kw: dict) -> dict:
    threshold = _threshold(kw)
    probs = out.maps["probabilities"]
    best = int(np.argmax(probs))
    sure = probs[best] > threshold
    seen = [{"class": p.classes[best], "score": float(probs[best])}] if sure else []
    answer = (
        f"reads {seen[0]['class']} ({seen[0]['score']:.2f})"
        if seen
        else f"not sure: no digit above {threshold:g}"
    )
    rule = f"the best digit if its output is above {threshold:g}"
    text = f"{answer} · {_digit_scope(p)}"
    return {"seen": seen, "text": text, "rule": rule, "threshold": threshold}


def _detections_summary(p: Predictor, out: Output, kw: dict) -> dict:
    dets = p.detections(out, threshold=kw.get("threshold"), iou=kw.get("iou"))
    return {"detections": p.coco_results(out, dets)}


@dataclass(frozen=True)
class Kind:
    """Everything the predictor does differently for one kind of model."""

    feed: Callable  # (predictor, RGB image) -> (model input, extra values kept in Output)
    scores: str  # the output whose per-class peak ranks the classes
    grid: Callable  # metadata -> the map's Grid (None: no map)
    summary: Callable  # (predictor, output, options) -> the kind's fields of summary()
    verdict: Callable  # (predictor, output, options) -> what the image shows (Predictor.verdict)
    scope: Callable  # predictor -> what the model can answer, one sentence for people
    draws_cells: bool = False  # previews draw the grid's cells (so they must divide it)


KINDS: dict[str, Kind] = {
    "mlp": Kind(
        feed=_digit_feed,
        scores="probabilities",
        grid=_no_grid,
        summary=_digit_summary,
        verdict=_digit_verdict,
        scope=_digit_scope,
    ),
    "fcn": Kind(
        feed=_image_feed,
        scores="probabilities",
        grid=Grid.from_meta,
        summary=_heatmap_summary,
        verdict=_heatmap_verdict,
        scope=_heatmap_scope,
        draws_cells=True,
    ),
    "detector": Kind(
        feed=_image_feed,
        scores="coverage",
        grid=_detector_grid,
        summary=_detections_summary,
        verdict=_detections_verdict,
        scope=_detections_scope,
    ),
}
