"""Test many: one exported model on many labelled images (DIGITS' "Classify Many").

    python -m streamlit_app.test_many data/cats-dogs/val --model artifacts/alexnet/model.onnx
    python -m streamlit_app.test_many --dataset=digits --model artifacts/mlp/model.onnx

    data = labelled_folder("data/cats-dogs/val")        # one subfolder per class
    result = evaluate(Predictor(path), data)             # onnxruntime, batches
    result.accuracy, result.confusion(), result.per_class()
    result.top_per_class(5), result.mistakes(12)         # indices into data, best first

Accuracy, the confusion matrix (rows: true class, columns: predicted), per-class
accuracy, each class's most confident right answers, the most confident mistakes,
and images per second (reading, preprocessing and inference, end to end). It runs
the ONNX file through ``Predictor`` and nothing else: no torch.

How one example is classified, per kind (one entry of ``KINDS``), so that the answer
is the trainer's own evaluation of it:

- ``fcn``: the image is read as the trainer's image cache reads it (RGB, squashed to
  the metadata's ``resize`` square, bilinear) and its centre ``crop`` square taken (the
  trainer's evaluation crop). The exported graph first pads a whole image by a
  ``margin`` (96 pixels of the mean colour) so that windows centre near the edges; on
  a crop that margin changes the answer (the border cells of conv2-conv5 then see
  activations of the margin where the classifier's own padding sees zeros: up to 1e-3
  in probability here, enough to flip a close call). So Test many runs the same graph
  with that one Pad set to zero, the grid's offset moving from -96 to 0: on a crop
  whose side is the grid's ``window`` the map has one cell, whose window is the crop,
  and net surgery gave it the classifier's weights: it is the FC classifier, exactly.
- ``mlp``: a row of a digits split (the course's layout) is fed as it is; an image file
  goes through ``Predictor.digit_vector``, as an upload on the One image tab does.

A folder's class names are matched to the model's by name (case ignored); an image
that cannot be read is skipped and counted by reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from models.imageio import BadImage, open_rgb
from streamlit_app.predictor import Predictor, PredictorError

# workshop.data.images' list (the app reads ONNX files and images without importing workshop)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
THUMB = 160  # gallery pictures' longest side, pixels


class EvaluationError(ValueError):
    """Test many cannot run on this model and data; the message is one sentence."""


@dataclass
class Labelled:
    """Labelled examples: image files or digit rows, with their class names."""

    classes: list[str]  # label -> class name, as the folder or the data set names it
    labels: np.ndarray  # (n,) int
    names: list[str]  # what each example is called in the galleries
    source: str  # where they came from, for people
    paths: list[Path] | None = None  # image files
    vectors: np.ndarray | None = None  # (n, features) rows in the model's input layout

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int) -> Labelled:
        """At most ``limit`` examples, evenly spread (so every class keeps its share)."""
        if not limit or limit >= len(self):
            return self
        keep = np.linspace(0, len(self) - 1, limit).round().astype(int)
        return Labelled(
            self.classes,
            self.labels[keep],
            [self.names[i] for i in keep],
            f"{self.source} ({limit} of {len(self)}, evenly spread)",
            [self.paths[i] for i in keep] if self.paths is not None else None,
            self.vectors[keep] if self.vectors is not None else None,
        )


def labelled_folder(path) -> Labelled:
    """root/<class>/<image>: every image file (by extension) of every class subfolder."""
    root = Path(path)
    if not root.is_dir():
        raise EvaluationError(f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise EvaluationError(
            f"{root}: no labelled images (expected one subfolder of images per class)"
        )
    names = [f"{p.parent.name}/{p.name}" for p in paths]
    return Labelled(classes, np.asarray(labels), names, str(root), paths=paths)


def labelled_vectors(X: np.ndarray, y: np.ndarray, classes: list[str], source: str) -> Labelled:
    """Rows already in the model's input layout (a digits split), labels 0..len(classes)-1."""
    names = [f"row {k}" for k in range(len(y))]
    return Labelled(list(classes), np.asarray(y), names, source, vectors=np.asarray(X))


# ------------------------------------------------------------------------ the result


@dataclass
class Evaluation:
    """The model's answers on every example, and what a page shows of them."""

    model: str
    kind: str
    classes: list[str]  # the model's classes: the confusion matrix's axes
    data: Labelled  # the examples that were read
    truth: np.ndarray  # (n,) index into classes
    probs: np.ndarray  # (n, classes) the model's scores
    seconds: float  # reading, preprocessing and inference
    skipped: Counter = field(default_factory=Counter)  # reason -> images not read
    provider: str = ""

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.truth

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.truth) else float("nan")

    @property
    def images_per_s(self) -> float:
        return (len(self.truth) + sum(self.skipped.values())) / max(self.seconds, 1e-9)

    def confusion(self) -> np.ndarray:
        """(classes, classes) counts: row = true class, column = predicted class."""
        n = len(self.classes)
        return np.bincount(self.truth * n + self.predictions, minlength=n * n).reshape(n, n)

    def per_class(self) -> list[dict]:
        """Each class's images and accuracy (None for a class with no images)."""
        rows = []
        for c, name in enumerate(self.classes):
            mine = self.truth == c
            right = int((self.correct & mine).sum())
            rows.append(
                {
                    "class": name,
                    "images": int(mine.sum()),
                    "correct": right,
                    "accuracy": right / int(mine.sum()) if mine.any() else None,
                }
            )
        return rows

    def top_per_class(self, k: int = 5) -> dict[str, list[int]]:
        """Each class's most confident right answers: class -> example indices, best first."""
        found = {}
        for c, name in enumerate(self.classes):
            right = np.flatnonzero(self.correct & (self.truth == c))
            found[name] = right[np.argsort(-self.confidence[right], kind="stable")][:k].tolist()
        return found

    def mistakes(self, k: int = 12) -> list[int]:
        """The most confident wrong answers (the failure gallery), example indices."""
        wrong = np.flatnonzero(~self.correct)
        return wrong[np.argsort(-self.confidence[wrong], kind="stable")][:k].tolist()

    def caption(self, i: int) -> str:
        """'true ring, predicted star 0.97 · val/ring_00012.jpg'."""
        said = f"{self.classes[self.predictions[i]]} {self.confidence[i]:.2f}"
        if self.correct[i]:
            return f"{said} · {self.data.names[i]}"
        return f"true {self.classes[self.truth[i]]}, predicted {said} · {self.data.names[i]}"

    def picture(self, i: int, side: int = THUMB) -> np.ndarray:
        """Example i as an RGB uint8 thumbnail (digit rows drawn as their 20x20 image)."""
        if self.data.vectors is not None:
            v = self.data.vectors[i]
            n = int(round(len(v) ** 0.5))
            digit = np.clip(v.reshape(n, n, order="F"), 0, 1)  # column-major, as trained
            gray = Image.fromarray((digit * 255).astype(np.uint8))
            return np.asarray(gray.resize((4 * n, 4 * n), Image.NEAREST).convert("RGB"))
        img = open_rgb(self.data.paths[i])
        img.thumbnail((side, side))
        return np.asarray(img)

    def summary(self, k: int = 10) -> dict:
        """JSON-ready: the numbers, the matrix and the most confident mistakes (the CLI's)."""
        return {
            "model": self.model,
            "kind": self.kind,
            "provider": self.provider,
            "source": self.data.source,
            "images": len(self.truth),
            "skipped": dict(self.skipped),
            "accuracy": self.accuracy,
            "images_per_s": round(self.images_per_s, 1),
            "seconds": round(self.seconds, 3),
            "classes": self.classes,
            "per_class": self.per_class(),
            "confusion": self.confusion().tolist(),
            "mistakes": [
                {
                    "example": self.data.names[i],
                    "true": self.classes[self.truth[i]],
                    "predicted": self.classes[self.predictions[i]],
                    "confidence": round(float(self.confidence[i]), 4),
                }
                for i in self.mistakes(k)
            ],
        }


def confusion_figure(r: Evaluation):
    """The confusion matrix as a picture: counts in the cells, shaded by each row's share."""
    from matplotlib.figure import Figure

    matrix = r.confusion()
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)  # each true class's answers
    n = len(r.classes)
    fig = Figure(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n), layout="constrained")
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(n), r.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), r.classes)
    ax.set(xlabel="predicted", ylabel="true")
    return fig


# ------------------------------------------------------------------------ one entry per kind


def crop_window(p: Predictor) -> tuple[int, int, int]:
    """(resize, crop, k): the trainer's evaluation crop, and the cell (k, k) of the unpadded
    graph's map whose window is that crop."""
    crop = int(p.meta.get("crop", p.grid.window))
    resize = int(p.meta.get("resize", crop))
    grid = p.grid.padded(-int(p.meta.get("margin", 0)))  # the graph without its margin
    k, rest = divmod(-grid.offset, grid.stride)
    if grid.window != crop or rest or k < 0:
        raise EvaluationError(
            f"{p.path}: no cell of its grid (window {grid.window}, stride {grid.stride}, "
            f"offset {grid.offset}) is exactly a {crop} crop, so it cannot be scored per crop"
        )
    return resize, crop, k


_unpadded: dict[tuple, object] = {}  # (model file, mtime, threads, provider) -> session


def unpadded_session(p: Predictor, threads: int = 0):
    """An onnxruntime session of the FCN's graph with its whole-image margin Pad set to zero
    (the module docstring says why); the Predictor's own session when there is no margin."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from streamlit_app.predictor import providers

    margin = int(p.meta.get("margin", 0))
    if not margin:
        return p.session
    key = (str(p.path), p.path.stat().st_mtime, threads, p.provider)
    if key in _unpadded:
        return _unpadded[key]
    model = onnx.load(str(p.path))
    constants = {t.name: t for t in model.graph.initializer}
    margin_pads = [0, 0, margin, margin] * 2  # (n, c, top, left) begins, then ends
    pads = [
        constants[node.input[1]]
        for node in model.graph.node
        if node.op_type == "Pad"
        and len(node.input) > 1
        and node.input[1] in constants
        and numpy_helper.to_array(constants[node.input[1]]).tolist() == margin_pads
    ]
    if len(pads) != 1:
        raise EvaluationError(f"{p.path}: its graph has no single margin Pad of {margin} pixels")
    pads[0].CopyFrom(numpy_helper.from_array(np.zeros(8, np.int64), pads[0].name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    device = "cuda" if p.provider.startswith("CUDA") else "cpu"
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=providers(device))
    if len(_unpadded) >= 4:  # a few models at a time; older versions of a file are dropped
        _unpadded.clear()
    _unpadded[key] = session
    return session


def _crop_input(p: Predictor, data: Labelled, i: int) -> np.ndarray:
    """Image i as the trainer evaluates it: squashed to resize², centre crop² -> (3, crop, crop)."""
    resize, crop, _ = crop_window(p)
    img = open_rgb(data.paths[i]).resize((resize, resize), Image.BILINEAR)
    off = (resize - crop) // 2
    pixels = np.asarray(img)[off : off + crop, off : off + crop]
    return pixels.astype(np.float32).transpose(2, 0, 1)  # (h, w, 3) -> (3, h, w), 0-255


def _crop_scores(p: Predictor, outputs: dict) -> np.ndarray:
    _, _, k = crop_window(p)
    return outputs["probabilities"][:, :, k, k]  # (n, classes, h, w) -> (n, classes)


def _digit_input(p: Predictor, data: Labelled, i: int) -> np.ndarray:
    if data.vectors is not None:
        return data.vectors[i].astype(np.float32)
    return p.digit_vector(np.asarray(open_rgb(data.paths[i]))).astype(np.float32)


def _digit_scores(p: Predictor, outputs: dict) -> np.ndarray:
    return outputs["probabilities"]  # (n, 10) sigmoid outputs, as predict() ranks them


def _own_session(p: Predictor, threads: int = 0):
    return p.session


@dataclass(frozen=True)
class Kind:
    session: Callable  # (predictor, threads) -> the onnxruntime session to run
    read: Callable  # (predictor, data, i) -> one model input without the batch axis
    scores: Callable  # (predictor, outputs by name) -> (n, classes)
    takes_vectors: bool = False


KINDS = {
    "fcn": Kind(unpadded_session, _crop_input, _crop_scores),
    "mlp": Kind(_own_session, _digit_input, _digit_scores, takes_vectors=True),
}


def kind_of(p: Predictor) -> Kind:
    if p.kind not in KINDS:
        raise EvaluationError(
            f"Test many scores classifiers ({', '.join(KINDS)}); a {p.kind} model is scored "
            "by its trainer (AP on the held-out scenes)"
        )
    return KINDS[p.kind]


def class_map(p: Predictor, data: Labelled) -> np.ndarray:
    """data's label -> the model's class index, matched by name (case ignored)."""
    known = {c.lower(): i for i, c in enumerate(p.classes)}
    missing = [c for c in data.classes if c.lower() not in known]
    if missing:
        raise EvaluationError(
            f"the model knows {', '.join(p.classes)}; the data's "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among them"
        )
    return np.asarray([known[c.lower()] for c in data.classes])


def evaluate(
    p: Predictor,
    data: Labelled,
    *,
    limit: int = 0,
    batch: int = 32,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Run ``p`` on every example (at most ``limit``, evenly spread), ``batch`` at a time.

    ``threads`` is for a session Test many makes itself (0: onnxruntime's default);
    ``progress(done, total)`` is called after each batch.
    """
    kind = kind_of(p)
    session = kind.session(p, threads)
    if data.vectors is not None and not kind.takes_vectors:
        raise EvaluationError(f"a {p.kind} model takes images, not rows of numbers")
    to_model = class_map(p, data)
    data = data.subset(limit)
    kept, probs, skipped = [], [], Counter()
    start = time.perf_counter()
    for first in range(0, len(data), batch):
        inputs = []
        for i in range(first, min(first + batch, len(data))):
            try:
                inputs.append(kind.read(p, data, i))
            except BadImage as err:
                skipped[str(err).split(" (")[0]] += 1
                continue
            kept.append(i)
        if inputs:
            results = session.run(None, {p.input_name: np.stack(inputs)})
            probs.append(kind.scores(p, dict(zip(p.output_names, results))))
        if progress:
            progress(min(first + batch, len(data)), len(data))
    seconds = time.perf_counter() - start
    if not kept:
        raise EvaluationError(f"none of the {len(data)} images could be read ({dict(skipped)})")
    read = Labelled(
        data.classes,
        data.labels[kept],
        [data.names[i] for i in kept],
        data.source,
        [data.paths[i] for i in kept] if data.paths is not None else None,
        data.vectors[kept] if data.vectors is not None else None,
    )
    return Evaluation(
        model=str(p.path),
        kind=p.kind,
        classes=p.classes,
        data=read,
        truth=to_model[read.labels],
        probs=np.concatenate(probs).astype(np.float64),
        seconds=seconds,
        skipped=skipped,
        provider=p.provider,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamlit_app.test_many",
        description="Score an exported classifier on many labelled images.",
    )
    parser.add_argument("folder", nargs="?", help="a folder with one subfolder per class")
    parser.add_argument("--dataset", help="a prepared data set's held-out split, e.g. digits")
    parser.add_argument("--model", required=True, help="an exported .onnx file")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    parser.add_argument("--batch", type=int, default=32, help="images per onnxruntime run")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    if (args.folder is None) == (args.dataset is None):
        parser.error("give a folder or --dataset, not both")
    try:
        predictor = Predictor(args.model, threads=args.threads, device=args.device)
        if args.dataset:
            from workshop.data import catalog  # the data folder's sets: a CLI may use workshop

            data = dataset_split(catalog.find(args.dataset))
        else:
            data = labelled_folder(args.folder)
        result = evaluate(predictor, data, limit=args.limit, batch=args.batch, threads=args.threads)
    except (PredictorError, EvaluationError, KeyError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary(), indent=1))
    return 0


def dataset_split(data_set) -> Labelled:
    """A catalog data set's held-out split: its class folders, or its digit rows."""
    split = data_set.held_out
    if data_set.kind == "digits":
        X, y = data_set.vectors(split)
        return labelled_vectors(X, y, data_set.classes, f"{data_set.name} {split} split")
    if data_set.kind != "crops":
        raise EvaluationError(f"{data_set.name} holds {data_set.kind}, not labelled images")
    return labelled_folder(data_set.split_folder(split))


if __name__ == "__main__":
    sys.exit(main())
