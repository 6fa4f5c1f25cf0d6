"""Module 1 training: accuracy on the digits split, the optimizers, the CLI and its artifacts."""

import json
import subprocess

import numpy as np
import pytest

from models.checkpoint import build_model, load_checkpoint
from workshop.cli import parse_config
from workshop.data.digits import load_dataset
from workshop.train_mlp import MLPConfig, fit


@pytest.fixture(scope="module")
def data():
    return load_dataset()


def test_default_training_reaches_the_course_accuracy(data):
    result = fit(data, MLPConfig(), progress=False)
    last = result.history[-1]
    assert last["test_accuracy"] >= 0.97 and last["train_accuracy"] >= 0.98
    assert result.iterations == 100 == len(result.history)
    assert result.history[-1]["cost"] < result.history[0]["cost"]


def test_training_is_reproducible(data):
    a = fit(data, MLPConfig(maxiter=10), progress=False)
    b = fit(data, MLPConfig(maxiter=10), progress=False)
    np.testing.assert_array_equal(a.Theta1, b.Theta1)


@pytest.mark.parametrize("optimizer", ["lbfgs", "cg"])
def test_iteration_limit_is_honoured(data, optimizer):
    result = fit(data, MLPConfig(optimizer=optimizer, maxiter=5), progress=False)
    assert result.iterations == 5 and len(result.history) == 5


def test_torch_backend_follows_the_numpy_trajectory(data):
    a = fit(data, MLPConfig(maxiter=8), progress=False)
    b = fit(data, MLPConfig(maxiter=8, backend="torch"), progress=False)
    assert "torch" in b.device
    np.testing.assert_allclose(b.Theta1, a.Theta1, rtol=1e-6, atol=1e-9)


def test_gradient_descent_runs_the_same_on_torch_and_numpy(data):
    on_torch = fit(data, MLPConfig(optimizer="gd", maxiter=250, backend="torch"), progress=False)
    on_numpy = fit(data, MLPConfig(optimizer="gd", maxiter=250, backend="numpy"), progress=False)
    np.testing.assert_allclose(on_torch.Theta1, on_numpy.Theta1, rtol=1e-4, atol=1e-6)
    costs = [h["cost"] for h in on_torch.history]
    assert costs[-1] < 0.5 * costs[0]
    assert on_torch.history[-1]["test_accuracy"] > 0.85


@pytest.mark.gpu
def test_training_on_cuda_matches_cpu(data):
    cpu = fit(data, MLPConfig(maxiter=20), progress=False)
    gpu = fit(data, MLPConfig(maxiter=20, device="cuda"), progress=False)
    assert "cuda" in gpu.device
    np.testing.assert_allclose(gpu.Theta1, cpu.Theta1, rtol=1e-5, atol=1e-8)
    gd = fit(data, MLPConfig(optimizer="gd", device="cuda"), progress=False)
    assert gd.history[-1]["test_accuracy"] >= 0.97


def test_zero_init_keeps_hidden_units_identical(data):
    result = fit(data, MLPConfig(maxiter=20), init="zero", progress=False)
    # Symmetry is never broken: every hidden unit learns the same weights.
    np.testing.assert_allclose(
        result.Theta1, np.broadcast_to(result.Theta1[0], result.Theta1.shape)
    )
    assert result.history[-1]["test_accuracy"] < 0.5


def test_cli_rejects_unknown_keys_and_bad_values():
    with pytest.raises(SystemExit, match="unknown option '--lambda=1'"):
        parse_config(MLPConfig, ["--lambda=1"])
    with pytest.raises(SystemExit, match="--maxiter expects int"):
        parse_config(MLPConfig, ["--maxiter=ten"])
    assert parse_config(MLPConfig, ["--lambda_=3", "--baselines=false"]).lambda_ == 3.0
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit(load_dataset(), MLPConfig(optimizer="adam"), progress=False)


def test_train_mlp_entry_point_writes_its_artifacts(tmp_path, python):
    out = tmp_path / "mlp"
    run = subprocess.run(
        [python, "-m", "workshop.train_mlp", f"--out_dir={out}", "--maxiter=30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "test" in run.stdout and "logistic_regression" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "train_accuracy",
        "test_accuracy",
        "lambda",
        "iterations",
        "train_seconds",
        "device",
    ):
        assert key in metrics
    assert metrics["iterations"] == 30 and metrics["baselines"]["svm_rbf"]["test_accuracy"] > 0.9
    for png in ("samples.png", "hidden_layer.png", "learning_curve.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["meta"]["kind"] == "mlp" and ckpt["meta"]["classes"] == list("0123456789")
    data = load_dataset()
    import torch

    with torch.no_grad():
        pred = build_model(ckpt)(torch.tensor(data.X_test, dtype=torch.float32)).argmax(1).numpy()
    assert np.mean(pred == data.y_test) == pytest.approx(metrics["test_accuracy"], abs=1 / 450)


def test_train_mlp_bad_dataset_is_a_message_not_a_traceback(tmp_path, python):
    bad = tmp_path / "ex4data1.mat"
    bad.write_bytes(b"broken")
    run = subprocess.run(
        [python, "-m", "workshop.train_mlp", f"--dataset={bad}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "not a readable MATLAB .mat file" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("optimizer", ["lbfgs", "cg", "gd"])
def test_every_recorded_accuracy_is_the_weights_accuracy_at_that_iteration(
    data, optimizer, monkeypatch
):
    """The history reuses the optimizer's forward pass for the training accuracy: check it
    against a fresh prediction with the weights of each iteration."""
    from models.mlp import predict
    from workshop import train_mlp

    snapshots = []
    score = train_mlp.accuracy

    def accuracy(T1, T2, X, y):  # called once per iteration on the test set: keep the weights
        if X is data.X_test:
            snapshots.append((T1.copy(), T2.copy()))
        return score(T1, T2, X, y)

    monkeypatch.setattr(train_mlp, "accuracy", accuracy)
    result = fit(data, MLPConfig(optimizer=optimizer, maxiter=8), progress=False)
    assert len(snapshots) == len(result.history) == 8
    for record, (T1, T2) in zip(result.history, snapshots, strict=True):
        train = (predict(T1, T2, data.X_train) == data.y_train).mean()
        test = (predict(T1, T2, data.X_test) == data.y_test).mean()
        assert record["train_accuracy"] == pytest.approx(train, abs=1e-12)
        assert record["test_accuracy"] == pytest.approx(test, abs=1e-12)
