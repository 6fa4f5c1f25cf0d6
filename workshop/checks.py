"""Checks for the notebook exercises: compare with the reference and name the likely mistake.

Each check runs the participant's function on fixed inputs, compares values
(not only gradients: gradient checking alone cannot see a mistake made the same
way in the cost and in its gradient) and, when they differ, tries the classic
mistakes one by one to say which it probably is.
"""

from __future__ import annotations

import functools

import numpy as np

from models import mlp
from workshop.hub.record import record

# Every exercise check, in notebook order: name -> notebook. The hosted workshop's
# progress view uses it for its columns.
EXERCISES: dict[str, str] = {}
_depth = 0  # a check that calls another records only its own result


class ExerciseFailed(AssertionError):
    """A failed exercise check; Jupyter shows only its message, not a traceback."""

    def _render_traceback_(self):
        return [f"\x1b[31m✗ {self}\x1b[0m"]


def exercise(name: str, notebook: str):
    """Register a check and record each run's result (pass, or the mistake it named) with
    the instructor's progress view when running inside the hosted workshop."""

    def wrap(check):
        EXERCISES[name] = notebook

        @functools.wraps(check)
        def run(*args, **kwargs):
            global _depth
            outer = _depth == 0
            _depth += 1
            try:
                result = check(*args, **kwargs)
            except ExerciseFailed as err:
                if outer:
                    record(name, False, str(err))
                raise
            except Exception as err:
                if outer:
                    record(name, False, f"the function raised {type(err).__name__}: {err}")
                raise
            finally:
                _depth -= 1
            if outer:
                record(name, True)
            return result

        return run

    return wrap


def _passed(name: str) -> None:
    print(f"✓ {name}: matches the reference")


def _diagnose(got, mistakes: dict[str, object]) -> str | None:
    for explanation, value in mistakes.items():
        if np.shape(got) == np.shape(value) and np.allclose(got, value, rtol=1e-7, atol=1e-10):
            return explanation
    return None


def _fail(name: str, got, want, mistakes: dict[str, object]):
    hint = _diagnose(got, mistakes)
    if hint is None:
        diff = (
            np.max(np.abs(np.asarray(got, dtype=float) - want))
            if np.shape(got) == np.shape(want)
            else f"shape {np.shape(got)} instead of {np.shape(want)}"
        )
        hint = f"no classic mistake matches; largest difference: {diff}"
    raise ExerciseFailed(f"{name}: differs from the reference. Likely mistake: {hint}")


def _as_numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _problem(lambda_: float, seed: int = 0):
    """A small fixed network and data set: 16 inputs, 6 hidden units, 4 labels, 12 examples."""
    rng = np.random.default_rng(seed)
    sizes = (16, 6, 4)
    Theta1 = rng.normal(0, 0.5, (sizes[1], sizes[0] + 1))
    Theta2 = rng.normal(0, 0.5, (sizes[2], sizes[1] + 1))
    X = rng.uniform(-1, 1, (12, sizes[0]))
    y = np.arange(12) % sizes[2]
    return mlp.pack_params(Theta1, Theta2), sizes, X, y, lambda_, Theta1, Theta2


@exercise("sigmoid_gradient", "01_mlp_backprop")
def check_sigmoid_gradient(sigmoid_gradient) -> None:
    """Exercise: g'(z) elementwise for scalars, vectors and matrices."""
    z = np.array([[-8.0, -1.0, -0.5], [0.0, 0.5, 1.0], [2.0, 5.0, 30.0]])
    want = mlp.sigmoid_gradient(z)
    got = _as_numpy(sigmoid_gradient(z))
    g = mlp.sigmoid(z)
    mistakes = {
        "returned g(z) itself; the gradient is g(z) * (1 - g(z))": g,
        "used z where g(z) belongs: g'(z) = g(z) * (1 - g(z)), not z * (1 - z)": z * (1 - z),
        "returned 1 - g(z); multiply by g(z) as well": 1 - g,
        "the product g(z) * (1 - g(z)) was taken as a matrix product, not elementwise": g @ (1 - g),
    }
    if np.shape(got) != z.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
        _fail("sigmoid_gradient", got, want, mistakes)
    if not np.isclose(float(np.asarray(sigmoid_gradient(np.array(0.0)))), 0.25):
        raise ExerciseFailed("sigmoid_gradient(0) must be exactly 0.25")
    _passed("sigmoid_gradient")


def _cost_mistakes(Theta1, Theta2, X, y, lambda_):
    """Values of the regularized cost under each classic mistake."""
    m = len(X)
    J, _ = mlp.nn_cost_function(
        mlp.pack_params(Theta1, Theta2), X.shape[1], Theta1.shape[0], Theta2.shape[0], X, y, lambda_
    )
    reg = lambda_ / (2 * m) * ((Theta1[:, 1:] ** 2).sum() + (Theta2[:, 1:] ** 2).sum())
    bias = lambda_ / (2 * m) * ((Theta1[:, 0] ** 2).sum() + (Theta2[:, 0] ** 2).sum())
    h = mlp.feedforward(Theta1, Theta2, X)[-1]
    Y = np.eye(Theta2.shape[0])[y]
    return J, {
        "the bias column (column 0) of Theta1/Theta2 was regularized": J + bias,
        "the regularization term lacks its 1/2: it is lambda / (2m) * sum(Theta^2)": J + reg,
        "regularization is missing (was lambda_ used?)": J - reg,
        "the cross-entropy sum was not divided by m": (J - reg) * m + reg,
        "y was used as a number, not as one-hot rows (np.eye(num_labels)[y])": (
            -(y[:, None] * np.log(h) + (1 - y[:, None]) * np.log(1 - h)).sum() / m + reg
        ),
        "only the true label's term -log(h_y) was summed; (1 - y) log(1 - h) is missing": (
            -(Y * np.log(h)).sum() / m + reg
        ),
    }


@exercise("cost", "01_mlp_backprop")
def check_cost(cost_function) -> None:
    """Exercise: the regularized cost J; ``cost_function`` takes nn_cost_function's arguments.

    It may return J alone or (J, grad).
    """
    for lambda_ in (0.0, 3.0):
        nn_params, sizes, X, y, lambda_, Theta1, Theta2 = _problem(lambda_)
        out = cost_function(nn_params, *sizes, X, y, lambda_)
        got = float(_as_numpy(out[0] if isinstance(out, tuple) else out))
        want, mistakes = _cost_mistakes(Theta1, Theta2, X, y, lambda_)
        if not np.isclose(got, want, rtol=1e-9, atol=1e-12):
            _fail(f"cost with lambda={lambda_:g}", got, want, mistakes)
    _passed("cost")


def _gradient_mistakes(Theta1, Theta2, X, y, lambda_):
    """Gradients (unrolled) under each classic backprop mistake."""
    m = len(X)
    a1, z2, a2, _, h = mlp.feedforward(Theta1, Theta2, X)
    Y = np.eye(Theta2.shape[0])[y]
    delta3 = h - Y

    def grads(delta2, scale=1 / m, reg_bias=False, reg=True):
        T1 = delta2.T @ a1 * scale
        T2 = delta3.T @ a2 * scale
        if reg:
            start = 0 if reg_bias else 1
            T1[:, start:] += lambda_ / m * Theta1[:, start:]
            T2[:, start:] += lambda_ / m * Theta2[:, start:]
        return mlp.pack_params(T1, T2)

    back = delta3 @ Theta2[:, 1:]  # (m, hidden)
    right = back * mlp.sigmoid_gradient(z2)
    return grads(right), {
        "the bias columns were regularized in the gradient (D = Delta/m + lambda/m * Theta "
        "only for j != 0)": grads(right, reg_bias=True),
        "the gradient was not divided by m (D = Delta / m)": grads(right, scale=1.0),
        "regularization is missing from the gradient": grads(right, reg=False),
        "wrong g': delta2 must use sigmoid_gradient(z2), not sigmoid(z2)": grads(
            back * mlp.sigmoid(z2)
        ),
        "wrong g': delta2 must use sigmoid_gradient(z2), not sigmoid_gradient(a2)": grads(
            back * mlp.sigmoid_gradient(a2[:, 1:])
        ),
        "wrong g': delta2 is multiplied by g'(z2), which is missing": grads(back),
    }


@exercise("backprop", "01_mlp_backprop")
def check_backprop(nn_cost_function) -> None:
    """Exercise: backpropagation; J and grad against the reference, then a gradient check."""
    check_cost(nn_cost_function)
    for lambda_ in (0.0, 3.0):
        nn_params, sizes, X, y, lambda_, Theta1, Theta2 = _problem(lambda_)
        _, grad = nn_cost_function(nn_params, *sizes, X, y, lambda_)
        got = _as_numpy(grad)
        want, mistakes = _gradient_mistakes(Theta1, Theta2, X, y, lambda_)
        if np.shape(got) != np.shape(want) or not np.allclose(got, want, rtol=1e-7, atol=1e-10):
            _fail(f"gradient with lambda={lambda_:g}", got, want, mistakes)
        diff = mlp.check_nn_gradients(lambda_, cost_function=nn_cost_function)
        if not diff < 1e-9:
            raise ExerciseFailed(
                f"gradient check with lambda={lambda_:g}: relative difference "
                f"{diff:.3g} (should be below 1e-9)"
            )
    _passed("backpropagation (values and gradient check)")
