"""The notebook's exercise checks accept the reference and name each classic mistake."""

import re

import numpy as np
import pytest
import torch

from models import mlp
from workshop import checks


def autograd_sigmoid_gradient(z):
    """g'(z) by torch.autograd in float64: no formula shared with models.mlp."""
    z = torch.tensor(np.asarray(z, np.float64), requires_grad=True)
    torch.sigmoid(z).sum().backward()
    return z.grad.numpy()


def autograd_cost_function(nn_params, input_layer_size, hidden_layer_size, num_labels, X, y, lam):
    """The course's regularized cross-entropy written afresh in torch; grad by autograd.

    nn_params is Theta1 then Theta2, each unrolled row by row (the documented layout).
    """
    p = torch.tensor(nn_params, dtype=torch.float64, requires_grad=True)
    n1 = hidden_layer_size * (input_layer_size + 1)
    T1 = p[:n1].reshape(hidden_layer_size, input_layer_size + 1)
    T2 = p[n1:].reshape(num_labels, hidden_layer_size + 1)
    X = torch.as_tensor(X, dtype=torch.float64)
    m = len(X)
    ones = torch.ones(m, 1, dtype=torch.float64)
    hidden = torch.sigmoid(torch.cat([ones, X], 1) @ T1.T)  # (m, hidden)
    h = torch.sigmoid(torch.cat([ones, hidden], 1) @ T2.T)  # (m, labels)
    Y = torch.nn.functional.one_hot(torch.as_tensor(y), num_labels).double()
    J = -(Y * torch.log(h) + (1 - Y) * torch.log(1 - h)).sum() / m
    J = J + lam / (2 * m) * ((T1[:, 1:] ** 2).sum() + (T2[:, 1:] ** 2).sum())
    J.backward()
    return J.item(), p.grad.numpy()


def test_independent_references_pass():
    """The checks' expected values agree with autograd, not only with models.mlp."""
    checks.check_sigmoid_gradient(autograd_sigmoid_gradient)
    checks.check_cost(autograd_cost_function)
    checks.check_backprop(autograd_cost_function)  # raises ExerciseFailed on a mismatch


def test_the_course_solutions_pass():
    checks.check_sigmoid_gradient(mlp.sigmoid_gradient)
    checks.check_cost(mlp.nn_cost_function)
    checks.check_backprop(mlp.nn_cost_function)


def test_a_slightly_wrong_answer_fails():
    """The checks compare values, so a relative error of 1e-6 is caught."""
    with pytest.raises(checks.ExerciseFailed, match="sigmoid_gradient"):
        checks.check_sigmoid_gradient(lambda z: autograd_sigmoid_gradient(z) * (1 + 1e-6))

    def off_cost(*args):
        J, grad = autograd_cost_function(*args)
        return J * (1 + 1e-6), grad

    with pytest.raises(checks.ExerciseFailed, match="cost"):
        checks.check_cost(off_cost)

    def off_grad(*args):
        J, grad = autograd_cost_function(*args)
        return J, grad * (1 + 1e-4)

    with pytest.raises(checks.ExerciseFailed, match="gradient"):
        checks.check_backprop(off_grad)


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
    """The autograd cost with a classic mistake injected through a function of the Thetas."""

    def cost_function(nn_params, il, hl, nl, X, y, lambda_):
        J, grad = autograd_cost_function(nn_params, il, hl, nl, X, y, lambda_)
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
