"""Hand-written backprop of the ex4 network against autograd, finite differences and itself."""

import numpy as np
import pytest
import torch

from models import mlp


def random_problem(m=40, sizes=(400, 25, 10), seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    Theta1 = rng.normal(0, scale, (sizes[1], sizes[0] + 1))
    Theta2 = rng.normal(0, scale, (sizes[2], sizes[1] + 1))
    X = rng.uniform(0, 1, (m, sizes[0]))
    y = rng.integers(0, sizes[2], m)
    return mlp.pack_params(Theta1, Theta2), sizes, X, y


def autograd_cost(nn_params, sizes, X, y, lambda_):
    """An independent torch formulation of the same cost; autograd gives the reference gradient."""
    p = torch.tensor(nn_params, dtype=torch.float64, requires_grad=True)
    n1 = sizes[1] * (sizes[0] + 1)
    T1 = p[:n1].view(sizes[1], sizes[0] + 1)
    T2 = p[n1:].view(sizes[2], sizes[1] + 1)
    Xt = torch.tensor(X, dtype=torch.float64)
    a2 = torch.sigmoid(Xt @ T1[:, 1:].T + T1[:, 0])
    z3 = a2 @ T2[:, 1:].T + T2[:, 0]
    Y = torch.nn.functional.one_hot(torch.tensor(y), sizes[2]).double()
    m = len(X)
    J = torch.nn.functional.binary_cross_entropy_with_logits(z3, Y, reduction="sum") / m
    J = J + lambda_ / (2 * m) * ((T1[:, 1:] ** 2).sum() + (T2[:, 1:] ** 2).sum())
    J.backward()
    return J.item(), p.grad.numpy()


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


def test_sigmoid_and_its_gradient():
    assert mlp.sigmoid_gradient(0.0) == 0.25
    assert mlp.sigmoid_gradient(torch.tensor(0.0)).item() == 0.25
    z = np.array([-1e3, -5.0, 0.0, 5.0, 1e3])
    assert np.all(np.isfinite(mlp.sigmoid(z)))
    np.testing.assert_allclose(
        mlp.sigmoid(z), 1 / (1 + np.exp(-np.clip(z, -700, 700))), atol=1e-300
    )
    eps = 1e-6
    np.testing.assert_allclose(
        mlp.sigmoid_gradient(z[1:4]),
        (mlp.sigmoid(z[1:4] + eps) - mlp.sigmoid(z[1:4] - eps)) / (2 * eps),
        rtol=1e-8,
    )


@pytest.mark.parametrize("lambda_", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_hand_gradient_equals_autograd(lambda_, backend):
    nn_params, sizes, X, y = random_problem()
    J_ref, grad_ref = autograd_cost(nn_params, sizes, X, y, lambda_)
    if backend == "torch":
        args = [torch.from_numpy(a) for a in (nn_params, X, y)]
        J, grad = mlp.nn_cost_function(args[0], *sizes, args[1], args[2], lambda_)
        J, grad = J.item(), grad.numpy()
    else:
        J, grad = mlp.nn_cost_function(nn_params, *sizes, X, y, lambda_)
    assert abs(J - J_ref) / J_ref < 1e-12
    assert rel(grad, grad_ref) < 1e-10


@pytest.mark.parametrize("lambda_", [0.0, 3.0])
@pytest.mark.parametrize("method", ["vectorized", "loop"])
def test_check_nn_gradients(lambda_, method):
    assert mlp.check_nn_gradients(lambda_, method=method) < 1e-9


@pytest.mark.parametrize("lambda_", [0.0, 1.0])
def test_loop_equals_vectorized(lambda_):
    nn_params, sizes, X, y = random_problem(m=60, seed=1)
    J_loop, grad_loop = mlp.nn_cost_function(nn_params, *sizes, X, y, lambda_, method="loop")
    J_vec, grad_vec = mlp.nn_cost_function(nn_params, *sizes, X, y, lambda_)
    assert abs(J_loop - J_vec) / J_vec < 1e-12
    assert rel(grad_loop, grad_vec) < 1e-12


def test_loop_runs_on_torch_too():
    nn_params, sizes, X, y = random_problem(m=8, seed=2)
    t = [torch.from_numpy(a) for a in (nn_params, X, y)]
    J, grad = mlp.nn_cost_function(t[0], *sizes, t[1], t[2], 1.0, method="loop")
    J_ref, grad_ref = mlp.nn_cost_function(nn_params, *sizes, X, y, 1.0)
    assert isinstance(grad, torch.Tensor)
    assert abs(J.item() - J_ref) / J_ref < 1e-12
    assert rel(grad.numpy(), grad_ref) < 1e-12


def test_cost_is_finite_when_the_output_saturates():
    nn_params, sizes, X, y = random_problem(m=10, scale=40.0)
    Theta1, Theta2 = mlp.unpack_params(nn_params, *sizes)
    h = mlp.feedforward(Theta1, Theta2, X)[-1]
    assert ((h == 0) | (h == 1)).any(), "the test needs saturated outputs"
    J, grad = mlp.nn_cost_function(nn_params, *sizes, X, y, 1.0)
    J_ref, grad_ref = autograd_cost(nn_params, sizes, X, y, 1.0)
    assert np.isfinite(J) and np.isfinite(grad).all()
    assert abs(J - J_ref) / J_ref < 1e-10


def test_regularization_skips_the_bias_columns():
    nn_params, sizes, X, y = random_problem(m=20)
    Theta1, Theta2 = mlp.unpack_params(nn_params.copy(), *sizes)
    J0, _ = mlp.nn_cost_function(mlp.pack_params(Theta1, Theta2), *sizes, X, y, 0.0)
    J1, _ = mlp.nn_cost_function(mlp.pack_params(Theta1, Theta2), *sizes, X, y, 1.0)
    expected = 1.0 / (2 * 20) * ((Theta1[:, 1:] ** 2).sum() + (Theta2[:, 1:] ** 2).sum())
    assert pytest.approx(expected, rel=1e-12) == J1 - J0


def test_rand_initialize_weights():
    W = mlp.rand_initialize_weights(400, 25, rng=0)
    assert W.shape == (25, 401)
    assert np.abs(W).max() <= 0.12 and W.std() > 0.05
    np.testing.assert_array_equal(W, mlp.rand_initialize_weights(400, 25, rng=0))
    assert not np.array_equal(W, mlp.rand_initialize_weights(400, 25, rng=1))


def test_predict_and_to_module_agree():
    nn_params, sizes, X, y = random_problem(m=30)
    Theta1, Theta2 = mlp.unpack_params(nn_params, *sizes)
    h = mlp.feedforward(Theta1, Theta2, X)[-1]
    module = mlp.to_module(Theta1, Theta2).double()
    with torch.no_grad():
        logits = module(torch.from_numpy(X))
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), h, rtol=1e-6)  # float32 weights
    np.testing.assert_array_equal(mlp.predict(Theta1, Theta2, X), h.argmax(1))
    T1, T2 = module.thetas()
    np.testing.assert_allclose(T1, Theta1, rtol=1e-6)
    np.testing.assert_allclose(T2, Theta2, rtol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, X, y: (p, X[:, :399], y), r"X must be \(m, 400\)"),
        (lambda p, X, y: (p, X, y + 1), r"labels must lie in 0\.\.9"),
        (lambda p, X, y: (p, X, y[:-1]), r"y must be a vector of 40 labels"),
        (lambda p, X, y: (p, X, y.astype(float)), "integer labels"),
        (lambda p, X, y: (p, np.where(X > 0.99, np.nan, X), y), "NaN"),
        (lambda p, X, y: (p[:-1], X, y), r"nn_params has shape"),
        (lambda p, X, y: (p, X[:0], y[:0]), "no examples"),
    ],
)
def test_bad_input_gives_a_clear_value_error(change, message):
    nn_params, sizes, X, y = random_problem()
    p, X, y = change(nn_params, X, y)
    with pytest.raises(ValueError, match=message):
        mlp.nn_cost_function(p, *sizes, X, y, 1.0)


def test_bad_lambda_and_method():
    nn_params, sizes, X, y = random_problem(m=5)
    with pytest.raises(ValueError, match="lambda_"):
        mlp.nn_cost_function(nn_params, *sizes, X, y, -1.0)
    with pytest.raises(ValueError, match="method"):
        mlp.nn_cost_function(nn_params, *sizes, X, y, 1.0, method="fast")


@pytest.mark.parametrize("method", ["vectorized", "loop"])
def test_return_output_is_the_forward_pass_of_that_point(method):
    p, sizes, X, y = random_problem(m=12)
    J, grad, h = mlp.nn_cost_function(p, *sizes, X, y, 1.0, method=method, return_output=True)
    Theta1, Theta2 = mlp.unpack_params(p, *sizes)
    a2 = 1 / (1 + np.exp(-(X @ Theta1[:, 1:].T + Theta1[:, 0])))  # written out, not feedforward
    np.testing.assert_allclose(h, 1 / (1 + np.exp(-(a2 @ Theta2[:, 1:].T + Theta2[:, 0]))))
    J_plain, grad_plain = mlp.nn_cost_function(p, *sizes, X, y, 1.0, method=method)
    assert J_plain == J and np.array_equal(grad, grad_plain)


def test_unchecked_inputs_give_the_same_cost_and_gradient():
    p, sizes, X, y = random_problem(m=12)
    J, grad = mlp.nn_cost_function(p, *sizes, X, y, 1.0)
    J_fast, grad_fast = mlp.nn_cost_function(p, *sizes, X, y, 1.0, check_inputs=False)
    assert J_fast == J and np.array_equal(grad, grad_fast)
