"""Module 1: train the ex4 network (400-25-10, sigmoid) with backpropagation written by hand.

    make train-mlp                                     # bundled digits, L-BFGS, 50 iterations
    python -m workshop.train_mlp --lambda_=3 --maxiter=100
    python -m workshop.train_mlp --optimizer=cg        # the course's fmincg is a CG method
    python -m workshop.train_mlp --optimizer=gd --device=cuda   # whole loop on the GPU
    python -m workshop.train_mlp --dataset=path/to/ex4data1.mat

Writes artifacts/mlp/: checkpoint.pt, metrics.json, history.json, samples.png,
hidden_layer.png, learning_curve.png, and records the run (every setting, each iteration's
cost and accuracies) in artifacts/mlflow.db (`make runs`). The gradients come from
models.mlp.nn_cost_function (no autograd); on CUDA the same code runs on torch tensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from tqdm.auto import tqdm

from models.checkpoint import save_checkpoint
from models.mlp import (
    nn_cost_function,
    pack_params,
    predict,
    rand_initialize_weights,
    to_module,
    unpack_params,
    validate_data,
)
from workshop import plots
from workshop.artifacts import artifacts_dir, write_json
from workshop.cli import parse_config
from workshop.data.digits import DigitsSplit, load_dataset
from workshop.data.prepare import resolve
from workshop.distributed import describe_device, pick_device
from workshop.runs import record_outputs
from workshop.tracking import Tracker, data_params

OPTIMIZERS = {"lbfgs": "L-BFGS-B", "cg": "CG", "gd": "gradient descent (momentum)"}
DEFAULT_ITERATIONS = {"lbfgs": 100, "cg": 100, "gd": 1000}
# The settings with a fixed set of values (the New run page offers them as a list).
CHOICES = {
    "optimizer": list(OPTIMIZERS),
    "backend": ["auto", "numpy", "torch"],
    "device": ["auto", "cpu", "cuda"],
}


@dataclass
class MLPConfig:
    dataset: str = "digits"  # digits (bundled, offline) | mnist (make data) | an ex4data1.mat
    data_dir: str = "data"  # where `make data` put mnist
    hidden_layer_size: int = 25  # hidden sigmoid units
    lambda_: float = 1.0  # L2 regularization strength (bias weights excluded)
    optimizer: str = "lbfgs"  # lbfgs | cg (scipy, the fmincg analogue) | gd (on-device loop)
    maxiter: int = 0  # iterations; 0 = the optimizer's default (lbfgs, cg: 100; gd: 1000 steps)
    learning_rate: float = 0.5  # gd only: step size
    momentum: float = 0.95  # gd only: Nesterov momentum
    epsilon_init: float = 0.12  # random init range [-eps, eps]
    device: str = "auto"  # auto (cuda if present) | cpu | cuda
    backend: str = "auto"  # auto (numpy on cpu, torch elsewhere) | numpy | torch
    seed: int = 0  # random init seed
    baselines: bool = True  # also fit logistic regression and an SVM on the same split
    out_dir: str = ""  # default: artifacts/mlp (or $ARTIFACTS/mlp)


@dataclass
class FitResult:
    Theta1: np.ndarray
    Theta2: np.ndarray
    history: list[dict] = field(repr=False)  # one record per iteration
    iterations: int
    train_seconds: float
    device: str

    def __repr__(self) -> str:
        last = self.history[-1]
        return (
            f"FitResult({self.iterations} iterations in {self.train_seconds:.2f} s on "
            f"{self.device}: cost {last['cost']:.4f}, train {last['train_accuracy']:.2%}, "
            f"test {last['test_accuracy']:.2%})"
        )


def accuracy(Theta1, Theta2, X, y) -> float:
    return float((predict(Theta1, Theta2, X) == y).sum()) / len(y)


def minimize_cost(cost: Callable, x0: np.ndarray, *, method: str, maxiter: int, on_iteration):
    """The fmincg analogue: scipy's L-BFGS-B or CG with exact gradients and an honoured limit.

    ``cost(p) -> (J, grad)`` on float64 numpy vectors; ``on_iteration(k, p, J)``
    runs after each iteration. Returns (p, iterations done).
    """
    done = 0

    def callback(intermediate_result):
        nonlocal done
        done += 1
        on_iteration(done, intermediate_result.x, intermediate_result.fun)

    res = scipy.optimize.minimize(
        cost, x0, jac=True, method=method, callback=callback, options={"maxiter": maxiter}
    )
    return res.x, done


def gradient_descent(cost: Callable, x0, *, iterations: int, learning_rate, momentum, on_iteration):
    """Full-batch gradient descent with Nesterov momentum; runs where x0 lives (numpy or torch)."""
    x, v = x0, x0 * 0
    for k in range(1, iterations + 1):
        J, grad = cost(x + momentum * v)  # gradient at the look-ahead point
        v = momentum * v - learning_rate * grad
        x = x + v
        on_iteration(k, x, J)
    return x, iterations


def initial_params(sizes: tuple[int, int, int], cfg: MLPConfig, init: str) -> np.ndarray:
    """nn_params to start from: uniform in [-epsilon, epsilon] ("random") or all "zero"."""
    rng = np.random.default_rng(cfg.seed)
    if init == "random":
        Theta1 = rand_initialize_weights(sizes[0], sizes[1], cfg.epsilon_init, rng=rng)
        Theta2 = rand_initialize_weights(sizes[1], sizes[2], cfg.epsilon_init, rng=rng)
    elif init == "zero":
        Theta1, Theta2 = np.zeros((sizes[1], sizes[0] + 1)), np.zeros((sizes[2], sizes[1] + 1))
    else:
        raise ValueError(f"init must be 'random' or 'zero', got {init!r}")
    return pack_params(Theta1, Theta2)


class LearningCurve:
    """One record per iteration (cost, train and test accuracy), shown on a progress bar and
    logged to the run's record (``tracker``, which writes them out in batches).

    L-BFGS and CG end an iteration on the point they evaluated last, so the training
    accuracy reuses that evaluation's forward pass (``saw``) instead of a second one.
    """

    def __init__(self, sizes, train, test, *, total: int, desc: str, progress: bool, tracker):
        self.sizes, self.train, self.test, self.tracker = sizes, train, test, tracker
        self.records: list[dict] = []
        self.bar = tqdm(total=total, desc=desc, unit="it", disable=not progress)
        self._seen = None  # (the newest evaluated point, the network's output there on X_train)

    def saw(self, p, h) -> None:
        self._seen = (p.copy() if isinstance(p, np.ndarray) else p.clone(), h)

    def _train_accuracy(self, p, Theta1, Theta2) -> float:
        X, y = self.train
        if self._seen is not None and self._seen[0].shape == p.shape:
            seen, h = self._seen
            if bool((seen == p).all()):
                return float((h.argmax(1) == y).sum()) / len(y)
        return accuracy(Theta1, Theta2, X, y)

    def __call__(self, k: int, p, J) -> None:
        Theta1, Theta2 = unpack_params(p, *self.sizes)
        record = dict(
            iteration=k,
            cost=float(J),
            train_accuracy=self._train_accuracy(p, Theta1, Theta2),
            test_accuracy=accuracy(Theta1, Theta2, *self.test),
        )
        self.records.append(record)
        self.tracker.log_metrics({k: v for k, v in record.items() if k != "iteration"}, step=k)
        self.bar.update(1)
        self.bar.set_postfix(cost=f"{record['cost']:.4f}", train=f"{record['train_accuracy']:.1%}")


def fit(
    data: DigitsSplit, cfg: MLPConfig, *, init: str = "random", progress=True, tracker=None
) -> FitResult:
    """Train from random (or, to show why not, "zero") initial weights; record a history
    (and each iteration in ``tracker``, a workshop.tracking.Tracker, when given)."""
    device = pick_device(cfg.device)
    backend = (
        cfg.backend if cfg.backend != "auto" else ("numpy" if device.type == "cpu" else "torch")
    )
    if backend == "numpy" and device.type != "cpu":
        raise ValueError("the numpy backend runs on the CPU only: use --backend=torch")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {cfg.optimizer!r}")
    sizes = (data.X_train.shape[1], cfg.hidden_layer_size, 10)
    maxiter = cfg.maxiter or DEFAULT_ITERATIONS[cfg.optimizer]
    x0 = initial_params(sizes, cfg, init)

    # Move the data once; the cost then runs wherever the arrays live.
    def put(a):
        return torch.from_numpy(a).to(device) if backend == "torch" else a

    X_train, y_train, X_test, y_test = map(
        put, (data.X_train, data.y_train, data.X_test, data.y_test)
    )
    validate_data(X_train, y_train, *sizes[::2])  # once: the optimizer calls on the same data
    curve = LearningCurve(
        sizes,
        (X_train, y_train),
        (X_test, y_test),
        total=maxiter,
        desc=f"mlp {cfg.optimizer}",
        progress=progress,
        tracker=tracker or Tracker.off(),
    )

    def cost(p):
        J, grad, h = nn_cost_function(
            p, *sizes, X_train, y_train, cfg.lambda_, return_output=True, check_inputs=False
        )
        if not np.isfinite(float(J)):
            raise FloatingPointError(f"non-finite cost {float(J)} (lambda {cfg.lambda_})")
        curve.saw(p, h)
        return J, grad

    def cost_numpy(p):  # scipy talks float64 numpy; hand torch tensors over and back
        if backend == "numpy":
            return cost(p)
        J, grad = cost(put(p))
        return float(J), grad.cpu().numpy()

    def on_iteration(k, p, J):
        curve(k, put(p) if isinstance(p, np.ndarray) else p, J)

    start = time.perf_counter()
    if cfg.optimizer == "gd":
        p, done = gradient_descent(
            cost,
            put(x0),
            iterations=maxiter,
            learning_rate=cfg.learning_rate,
            momentum=cfg.momentum,
            on_iteration=on_iteration,
        )
        p = p.cpu().numpy() if backend == "torch" else p
    else:
        p, done = minimize_cost(
            cost_numpy,
            x0,
            method=OPTIMIZERS[cfg.optimizer],
            maxiter=maxiter,
            on_iteration=on_iteration,
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    curve.bar.close()
    if not curve.records:  # converged before the first callback
        on_iteration(0, p, cost_numpy(p)[0])
    Theta1, Theta2 = (t.copy() for t in unpack_params(p, *sizes))
    device_name = f"{describe_device(device)}, {backend}"
    return FitResult(Theta1, Theta2, curve.records, done, seconds, device_name)


def classic_baselines(data: DigitsSplit) -> dict:
    """The "classic" side of the course's comparison, on the same split."""
    results = {}
    for name, model in (
        ("logistic_regression", LogisticRegression(max_iter=2000)),
        ("svm_rbf", SVC()),
    ):
        start = time.perf_counter()
        model.fit(data.X_train, data.y_train)
        seconds = time.perf_counter() - start
        results[name] = dict(
            train_accuracy=float(model.score(data.X_train, data.y_train)),
            test_accuracy=float(model.score(data.X_test, data.y_test)),
            train_seconds=seconds,
        )
    return results


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(MLPConfig, argv)
    out = Path(cfg.out_dir) if cfg.out_dir else artifacts_dir("mlp")
    with Tracker.start("mlp", cfg, out=out) as tracker:  # ends FINISHED, FAILED or KILLED
        return train_and_compare(cfg, out, tracker)


def train_and_compare(cfg: MLPConfig, out: Path, tracker: Tracker) -> dict:
    source = resolve(cfg.dataset, cfg.data_dir) or cfg.dataset
    try:
        data = load_dataset(str(source))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"data: {data!r}")
    counts = {"train_images": len(data.y_train), "test_images": len(data.y_test)}
    counts["classes"] = data.meta["classes"]
    tracker.log_params(data_params(data.name, counts, source if source != "digits" else None))

    try:
        result = fit(data, cfg, tracker=tracker)
    except ValueError as err:  # an unknown optimizer, backend or device
        raise SystemExit(f"error: {err}") from None
    last = result.history[-1]
    metrics = dict(
        train_accuracy=last["train_accuracy"],
        test_accuracy=last["test_accuracy"],
        final_cost=last["cost"],
        **{"lambda": cfg.lambda_},
        iterations=result.iterations,
        optimizer=OPTIMIZERS[cfg.optimizer],
        train_seconds=result.train_seconds,
        device=result.device,
        dataset=data.name,
        synthetic=data.synthetic,
        n_train=len(data.y_train),
        n_test=len(data.y_test),
    )
    if cfg.baselines:
        metrics["baselines"] = classic_baselines(data)

    model_args = dict(
        input_layer_size=data.X_train.shape[1],
        hidden_layer_size=cfg.hidden_layer_size,
        num_labels=10,
    )
    meta = {**data.meta, "metrics": {k: metrics[k] for k in ("train_accuracy", "test_accuracy")}}
    save_checkpoint(
        out / "checkpoint.pt",
        to_module(result.Theta1, result.Theta2),
        model_name="mlp",
        model_args=model_args,
        optimizer={"name": metrics["optimizer"], "config": asdict(cfg)},
        epoch=result.iterations,
        metrics=metrics,
        meta=meta,
    )
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", {"history": result.history})
    tracker.set_tags({"device": result.device})
    sample = np.random.default_rng(cfg.seed).choice(len(data.X_train), 100, replace=False)
    plots.save_figure(
        plots.display_data(data.X_train[sample], title="100 training digits"), out / "samples.png"
    )
    plots.save_figure(plots.display_hidden_layer(result.Theta1), out / "hidden_layer.png")
    plots.save_figure(
        plots.plot_learning_curve(
            result.history, title=f"{metrics['optimizer']}, lambda {cfg.lambda_}"
        ),
        out / "learning_curve.png",
    )
    final = ("train_accuracy", "test_accuracy", "iterations", "train_seconds", "baselines")
    record_outputs(tracker, out, metrics, final, step=result.iterations)

    print(
        f"MLP {model_args['input_layer_size']}-{cfg.hidden_layer_size}-10 on {data.name}: "
        f"train {metrics['train_accuracy']:.2%}, test {metrics['test_accuracy']:.2%} "
        f"({result.iterations} iterations of {metrics['optimizer']}, "
        f"{result.train_seconds:.2f} s on {result.device})"
    )
    for name, b in metrics.get("baselines", {}).items():
        print(
            f"  {name:<20} train {b['train_accuracy']:.2%}, test {b['test_accuracy']:.2%} "
            f"({b['train_seconds']:.2f} s)"
        )
    print(f"artifacts: {out}/")
    return metrics


if __name__ == "__main__":
    main()
