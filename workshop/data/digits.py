"""Handwritten digits for module 1, in the course's layout.

Every loader returns ``X`` of shape ``(m, 400)``, each row a 20x20 image stored
column-major (Octave's order, as in ``ex4data1.mat``), and ``y`` of integer
labels 0..9. ``load_digits_20x20`` needs no download: it upsamples the 1,797
real 8x8 scans bundled with scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

IMAGE_SIDE = 20
SPLIT_SEED = 0  # the fixed stratified 75/25 split
TEST_FRACTION = 0.25


@dataclass
class DigitsSplit:
    """A train/test split plus where it came from (copied into checkpoints and metrics)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str  # e.g. "sklearn-digits-20x20"
    synthetic: bool  # True for generated data; the real scans are False

    def __repr__(self) -> str:
        return (
            f"DigitsSplit({self.name}: train {self.X_train.shape}, test {self.X_test.shape}, "
            f"labels {sorted(set(self.y_train.tolist()))})"
        )

    @property
    def meta(self) -> dict:
        """Preprocessing and provenance, in the checkpoint-meta vocabulary."""
        return {
            "kind": "mlp",
            "classes": [str(d) for d in range(10)],
            "input_size": [IMAGE_SIDE, IMAGE_SIDE],
            "layout": "column-major",  # row i of X is image.ravel(order='F')
            "input_scale": 1.0,  # pixel values are already in [0, 1]
            "mean": [0.0],
            "std": [1.0],
            "trained_on": {"dataset": self.name, "synthetic": self.synthetic},
        }


def to_course_layout(images: np.ndarray) -> np.ndarray:
    """(m, 20, 20) images -> (m, 400) rows, column-major like the course's data."""
    return images.transpose(0, 2, 1).reshape(len(images), -1)  # (m, w, h) -> (m, 400)


def from_course_layout(X: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """(m, side*side) column-major rows -> (m, side, side) images, row 0 at the top."""
    return X.reshape(len(X), side, side).transpose(0, 2, 1)  # (m, w, h) -> (m, h, w)


def load_digits_20x20() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans (8x8, ink 0..16) upsampled to 20x20 in [0, 1]."""
    digits = load_digits()
    images = digits.images / 16.0  # (1797, 8, 8)
    zoom = IMAGE_SIDE / images.shape[1]
    up = scipy.ndimage.zoom(images, (1, zoom, zoom), order=1)  # (1797, 20, 20), bilinear
    return to_course_layout(np.clip(up, 0.0, 1.0)), digits.target.astype(np.int64)


def split(X: np.ndarray, y: np.ndarray, name: str, synthetic: bool = False) -> DigitsSplit:
    """The fixed stratified 75/25 split every run and notebook uses."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return DigitsSplit(X_train, y_train, X_test, y_test, name=name, synthetic=synthetic)


def load_dataset(name_or_path: str = "digits") -> DigitsSplit:
    """'digits' (bundled, offline) or the path of a course-format ``ex4data1.mat``."""
    if name_or_path == "digits":
        return split(*load_digits_20x20(), name="sklearn-digits-20x20")
    path = Path(name_or_path)
    if path.suffix != ".mat":
        raise ValueError(
            f"unknown digits data set {name_or_path!r}: use 'digits' (bundled) or the path "
            "of a course file such as ex4data1.mat"
        )
    return split(*load_ex4data(path), name=path.name)


def _loadmat(path: Path, keys: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Read a .mat file and check that it holds ``keys`` with the given shapes (None = any)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({err})") from err
    for key, shape in keys.items():
        if key not in data:
            found = sorted(k for k in data if not k.startswith("__"))
            raise ValueError(f"{path}: no variable {key!r} (found {found})")
        got = data[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = "x".join("m" if s is None else str(s) for s in shape)
            raise ValueError(f"{path}: {key} has shape {got}, expected {want}")
    return data


def load_ex4data(path) -> tuple[np.ndarray, np.ndarray]:
    """The course's ``ex4data1.mat``: X (m x 400), y in 1..10 with 10 meaning zero.

    Returns X as float64 and y as labels 0..9.
    """
    path = Path(path)
    data = _loadmat(path, {"X": (None, 400), "y": (None, 1)})
    X = data["X"].astype(np.float64)
    y = data["y"].ravel()
    if len(y) != len(X):
        raise ValueError(f"{path}: X has {len(X)} rows but y has {len(y)} labels")
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: X contains NaN or infinite values")
    if not np.isin(y, np.arange(1, 11)).all():
        raise ValueError(f"{path}: y must hold labels 1..10 (10 for the digit zero)")
    return X, (y % 10).astype(np.int64)


def save_ex4data(path, X: np.ndarray, y: np.ndarray) -> None:
    """Write X and 0-based labels in the course's format (zero stored as 10)."""
    y = np.asarray(y)
    scipy.io.savemat(path, {"X": X, "y": np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)})


def load_ex4weights(path) -> tuple[np.ndarray, np.ndarray]:
    """The course's ``ex4weights.mat``: Theta1 (25 x 401), Theta2 (10 x 26).

    The course's output row 10 is the digit zero; the rows are rotated so that
    row d predicts digit d, matching 0-based labels.
    """
    path = Path(path)
    data = _loadmat(path, {"Theta1": (25, 401), "Theta2": (10, 26)})
    return data["Theta1"].astype(np.float64), np.roll(data["Theta2"].astype(np.float64), 1, axis=0)


# ex4's published costs with its ex4weights.mat on its ex4data1.mat, by lambda
COURSE_COSTS = {0.0: 0.287629, 1.0: 0.383770}


@dataclass
class ProvidedWeights:
    """Trained weights to check a cost function on, with the data they go with."""

    Theta1: np.ndarray
    Theta2: np.ndarray
    X: np.ndarray
    y: np.ndarray
    source: str  # "course" (ex4weights.mat on ex4data1.mat) or the checkpoint's path
    expected_costs: dict[float, float] | None  # the course's published costs; None otherwise

    def __repr__(self) -> str:
        return (
            f"ProvidedWeights({self.source}: Theta1 {self.Theta1.shape}, Theta2 "
            f"{self.Theta2.shape}, {len(self.X)} examples)"
        )


def provided_weights(data: DigitsSplit, data_dir="data", checkpoint=None) -> ProvidedWeights | None:
    """The course's ex4weights.mat and ex4data1.mat when both are in ``data_dir``, else the
    project's trained MLP (``checkpoint``) on ``data``'s training set, else None."""
    course = Path(data_dir) / "ex4weights.mat", Path(data_dir) / "ex4data1.mat"
    if all(p.is_file() for p in course):
        return ProvidedWeights(
            *load_ex4weights(course[0]), *load_ex4data(course[1]), "course", dict(COURSE_COSTS)
        )
    if checkpoint is not None and Path(checkpoint).is_file():
        from models.checkpoint import build_model, load_checkpoint

        Theta1, Theta2 = build_model(load_checkpoint(checkpoint)).thetas()
        return ProvidedWeights(Theta1, Theta2, data.X_train, data.y_train, str(checkpoint), None)
    return None
