"""The notebook's exercise checks accept the reference and name each classic mistake."""

import re

import numpy as np
import pytest

from models import mlp
from workshop import checks


def test_reference_implementations_pass():
    checks.check_sigmoid_gradient(mlp.sigmoid_gradient)
    checks.check_cost(mlp.nn_cost_function)
    checks.check_backprop(mlp.nn_cost_function)  # raises ExerciseFailed on a mismatch


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (mlp.sigmoid, "returned g(z) itself"),
        (lambda z: z * (1 - z), "used z where g(z) belongs"),
        (lambda z: np.asarray(z) * 0 + 0.25, "no classic mistake matches"),
    ],
)
def test_sigmoid_gradient_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_sigmoid_gradient(wrong)


def with_mistake(cost_delta=None, grad_delta=None):
    """nn_cost_function with a classic mistake injected through a function of the Thetas."""

    def cost_function(nn_params, il, hl, nl, X, y, lambda_):
        J, grad = mlp.nn_cost_function(nn_params, il, hl, nl, X, y, lambda_)
        Theta1, Theta2 = mlp.unpack_params(nn_params, il, hl, nl)
        m = len(X)
        if cost_delta:
            J = cost_delta(J, Theta1, Theta2, m, lambda_)
        if grad_delta:
            grad = grad_delta(grad, Theta1, Theta2, m, lambda_)
        return J, grad

    return cost_function


def bias_sq(T1, T2):
    return (T1[:, 0] ** 2).sum() + (T2[:, 0] ** 2).sum()


def bias_grad(T1, T2):
    g1, g2 = np.zeros_like(T1), np.zeros_like(T2)
    g1[:, 0], g2[:, 0] = T1[:, 0], T2[:, 0]
    return mlp.pack_params(g1, g2)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (
            with_mistake(cost_delta=lambda J, T1, T2, m, lam: J + lam / (2 * m) * bias_sq(T1, T2)),
            "bias column",
        ),
        # The same bias mistake in cost and gradient passes gradient checking; values catch it.
        (
            with_mistake(
                cost_delta=lambda J, T1, T2, m, lam: J + lam / (2 * m) * bias_sq(T1, T2),
                grad_delta=lambda g, T1, T2, m, lam: g + lam / m * bias_grad(T1, T2),
            ),
            "bias column",
        ),
        (
            with_mistake(grad_delta=lambda g, T1, T2, m, lam: g + lam / m * bias_grad(T1, T2)),
            "bias columns were regularized in the gradient",
        ),
        (with_mistake(grad_delta=lambda g, T1, T2, m, lam: g * m), "not divided by m"),
    ],
)
def test_backprop_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_backprop(wrong)


def test_wrong_sigmoid_gradient_inside_backprop_is_named(monkeypatch):
    real = mlp.sigmoid_gradient

    def wrong_backprop(nn_params, il, hl, nl, X, y, lambda_):
        monkeypatch.setattr(mlp, "sigmoid_gradient", mlp.sigmoid)
        try:
            _, grad = mlp.nn_cost_function(nn_params, il, hl, nl, X, y, lambda_)
        finally:
            monkeypatch.setattr(mlp, "sigmoid_gradient", real)
        return mlp.nn_cost_function(nn_params, il, hl, nl, X, y, lambda_)[0], grad

    with pytest.raises(checks.ExerciseFailed, match="not sigmoid\\(z2\\)"):
        checks.check_backprop(wrong_backprop)


def test_exercise_failures_render_without_a_traceback():
    err = checks.ExerciseFailed("cost: differs")
    assert err._render_traceback_() == ["\x1b[31m✗ cost: differs\x1b[0m"]
