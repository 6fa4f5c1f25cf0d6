"""Digits data: the bundled default, the fixed split, and the course's .mat files."""

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
from sklearn.datasets import load_digits

from models.mlp import predict
from workshop.data import digits


def test_bundled_digits_are_20x20_column_major():
    X, y = digits.load_digits_20x20()
    assert X.shape == (1797, 400) and y.shape == (1797,)
    assert X.min() >= 0 and X.max() <= 1 and set(y.tolist()) == set(range(10))
    images = digits.from_course_layout(X)
    np.testing.assert_array_equal(digits.to_course_layout(images), X)
    # Column-major rows: element 1 is the second pixel of the first *column*.
    np.testing.assert_array_equal(X[:, 1], images[:, 1, 0])
    # Against scikit-learn's own 8x8 scans: read column-major (numpy's order="F") and shrunk
    # back to 8x8, each row is its scan; read row-major, it is the scan transposed.
    scans = load_digits()
    np.testing.assert_array_equal(y, scans.target)
    column_major = np.stack([row.reshape(20, 20, order="F") for row in X])
    shrink = (1, 8 / 20, 8 / 20)
    assert (
        np.abs(scipy.ndimage.zoom(column_major, shrink, order=1) - scans.images / 16).mean() < 0.05
    )
    assert (
        np.abs(
            scipy.ndimage.zoom(X.reshape(-1, 20, 20), shrink, order=1) - scans.images / 16
        ).mean()
        > 0.3
    )


def test_split_is_fixed_and_stratified():
    a, b = digits.load_dataset(), digits.load_dataset()
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert len(a.y_test) == 450 and len(a.y_train) == 1347
    train_share = np.bincount(a.y_train) / len(a.y_train)
    test_share = np.bincount(a.y_test) / len(a.y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    assert a.meta["trained_on"] == {"dataset": "sklearn-digits-20x20", "synthetic": False}


def test_ex4data_round_trip_maps_10_to_zero(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(60, 400)), np.arange(60) % 10
    path = tmp_path / "ex4data1.mat"
    digits.save_ex4data(path, X, y)
    raw = scipy.io.loadmat(path)
    assert raw["y"].shape == (60, 1) and raw["y"].min() == 1 and raw["y"][0, 0] == 10
    X2, y2 = digits.load_ex4data(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    split = digits.load_dataset(str(path))
    assert split.name == "ex4data1.mat" and len(split.y_test) + len(split.y_train) == 60


def test_ex4weights_rows_are_reordered_for_zero_based_labels(tmp_path):
    rng = np.random.default_rng(1)
    Theta1 = rng.normal(size=(25, 401))
    course_Theta2 = rng.normal(size=(10, 26))  # row k (0-based) predicts course label k + 1
    path = tmp_path / "ex4weights.mat"
    scipy.io.savemat(path, {"Theta1": Theta1, "Theta2": course_Theta2})
    T1, T2 = digits.load_ex4weights(path)
    X = rng.uniform(size=(200, 400))
    course_labels = predict(Theta1, course_Theta2, X) + 1  # 1..10, 10 = zero
    np.testing.assert_array_equal(predict(T1, T2, X), course_labels % 10)


def test_bad_mat_files_get_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x00not a mat file" * 10)
    with pytest.raises(ValueError, match="not a readable MATLAB"):
        digits.load_ex4data(garbage)
    with pytest.raises(ValueError, match="no such file"):
        digits.load_ex4weights(tmp_path / "missing.mat")
    wrong = tmp_path / "wrong.mat"
    scipy.io.savemat(wrong, {"Theta1": np.zeros((25, 400)), "Theta2": np.zeros((10, 26))})
    with pytest.raises(ValueError, match=r"Theta1 has shape \(25, 400\), expected 25x401"):
        digits.load_ex4weights(wrong)
    with pytest.raises(ValueError, match="no variable 'X'"):
        digits.load_ex4data(wrong)
    labels = tmp_path / "labels.mat"
    scipy.io.savemat(labels, {"X": np.zeros((3, 400)), "y": np.array([[0], [1], [2]])})
    with pytest.raises(ValueError, match="labels 1..10"):
        digits.load_ex4data(labels)
    with pytest.raises(ValueError, match="unknown digits data set"):
        digits.load_dataset("mnist.csv")
