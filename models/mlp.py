"""The ex4 network: a 400-25-10 sigmoid MLP with backpropagation written by hand.

Conventions (the course's, made 0-based):

- ``X`` is ``m x input_layer_size``; for the digits each row is a 20x20 image
  stored column-major, as in the course's ``ex4data1.mat``.
- ``y`` holds integer labels ``0 .. num_labels - 1`` (the course's label 10,
  "zero", is label 0 here).
- ``Theta1`` is ``hidden x (input + 1)`` and ``Theta2`` is ``labels x (hidden + 1)``;
  the bias weights sit in column 0.
- ``nn_params = np.concatenate([Theta1.ravel(), Theta2.ravel()])`` (row-major).

Every function works on numpy arrays and on torch tensors (CPU or CUDA) alike,
with the same hand-written code and no autograd: the array type picks the ops.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch
from torch import nn

Array = np.ndarray | torch.Tensor


def _is_torch(a) -> bool:
    return isinstance(a, torch.Tensor)


def _add_bias(a: Array) -> Array:
    """Prepend a column of ones: (m, n) -> (m, n + 1)."""
    if _is_torch(a):
        return torch.cat([torch.ones_like(a[:, :1]), a], dim=1)
    return np.hstack([np.ones((a.shape[0], 1), dtype=a.dtype), a])


def _softplus(z: Array) -> Array:
    """log(1 + exp(z)) without overflow; -log(sigmoid(z)) == softplus(-z)."""
    if _is_torch(z):
        return torch.nn.functional.softplus(z)
    return np.logaddexp(0.0, z)


def _one_hot(y: Array, num_labels: int, like: Array) -> Array:
    """Labels (m,) -> one-hot rows (m, num_labels) of like's dtype and device."""
    if _is_torch(y):
        return torch.nn.functional.one_hot(y.long(), num_labels).to(like.dtype)
    return np.eye(num_labels, dtype=like.dtype)[y]


def sigmoid(z: Array) -> Array:
    """g(z) = 1 / (1 + exp(-z)), elementwise and overflow-free."""
    if _is_torch(z):
        return torch.sigmoid(z)
    return scipy.special.expit(z)


def sigmoid_gradient(z: Array) -> Array:
    """g'(z) = g(z) * (1 - g(z)); equals 0.25 at z = 0."""
    g = sigmoid(z)
    return g * (1 - g)


def rand_initialize_weights(l_in: int, l_out: int, epsilon_init: float = 0.12, *, rng=None):
    """Weights of a layer with l_in inputs and l_out outputs, uniform in [-eps, eps].

    Returns an ``l_out x (1 + l_in)`` array; column 0 holds the bias weights.
    Random (not zero) values break the symmetry between hidden units.
    """
    rng = np.random.default_rng(rng)
    return rng.uniform(-epsilon_init, epsilon_init, size=(l_out, 1 + l_in))


def debug_initialize_weights(fan_out: int, fan_in: int) -> np.ndarray:
    """The course's deterministic weights for gradient checking: sin(1..n) / 10, column-major."""
    n = fan_out * (1 + fan_in)
    return np.sin(np.arange(1, n + 1)).reshape((fan_out, 1 + fan_in), order="F") / 10


def pack_params(Theta1: Array, Theta2: Array) -> Array:
    """(Theta1, Theta2) -> the unrolled parameter vector nn_params (row-major)."""
    if _is_torch(Theta1):
        return torch.cat([Theta1.reshape(-1), Theta2.reshape(-1)])
    return np.concatenate([Theta1.ravel(), Theta2.ravel()])


def unpack_params(nn_params: Array, input_layer_size: int, hidden_layer_size: int, num_labels: int):
    """nn_params -> (Theta1, Theta2), views into nn_params."""
    n1 = hidden_layer_size * (input_layer_size + 1)
    n2 = num_labels * (hidden_layer_size + 1)
    if tuple(nn_params.shape) != (n1 + n2,):
        raise ValueError(
            f"nn_params has shape {tuple(nn_params.shape)}, expected ({n1 + n2},) for a "
            f"{input_layer_size}-{hidden_layer_size}-{num_labels} network"
        )
    Theta1 = nn_params[:n1].reshape(hidden_layer_size, input_layer_size + 1)
    Theta2 = nn_params[n1:].reshape(num_labels, hidden_layer_size + 1)
    return Theta1, Theta2


def validate_data(X: Array, y: Array | None, input_layer_size: int, num_labels: int) -> None:
    """Raise a clear ValueError for inputs that would fail deep inside the math."""
    if X.ndim != 2 or X.shape[1] != input_layer_size:
        raise ValueError(
            f"X must be (m, {input_layer_size}) with one example per row, got {tuple(X.shape)}"
        )
    if X.shape[0] == 0:
        raise ValueError("X holds no examples")
    finite = torch.isfinite(X).all() if _is_torch(X) else np.isfinite(X).all()
    if not finite:
        raise ValueError("X contains NaN or infinite values")
    if y is None:
        return
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be a vector of {X.shape[0]} labels, got shape {tuple(y.shape)}")
    is_int = not y.is_floating_point() if _is_torch(y) else np.issubdtype(y.dtype, np.integer)
    if not is_int:
        raise ValueError(f"y must hold integer labels 0..{num_labels - 1}, got dtype {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_labels:
        raise ValueError(
            f"labels must lie in 0..{num_labels - 1}, found {lo}..{hi} "
            "(course files use 1..10 with 10 for zero: load them with load_ex4data)"
        )


def _validate_lambda(lambda_: float) -> None:
    if not (math.isfinite(lambda_) and lambda_ >= 0):
        raise ValueError(f"lambda_ must be a finite number >= 0, got {lambda_}")


def feedforward(Theta1: Array, Theta2: Array, X: Array):
    """Forward pass; returns (a1, z2, a2, z3, h) with the bias columns in a1 and a2."""
    a1 = _add_bias(X)  # (m, in + 1)
    z2 = a1 @ Theta1.T  # (m, hidden)
    a2 = _add_bias(sigmoid(z2))  # (m, hidden + 1)
    z3 = a2 @ Theta2.T  # (m, labels)
    return a1, z2, a2, z3, sigmoid(z3)


def _regularization(Theta1: Array, Theta2: Array, lambda_: float, m: int):
    """lambda / (2m) * sum of squared weights, bias columns excluded."""
    return lambda_ / (2 * m) * ((Theta1[:, 1:] ** 2).sum() + (Theta2[:, 1:] ** 2).sum())


def _cross_entropy(z3: Array, Y: Array):
    """Sum over examples and labels of -y log h - (1 - y) log(1 - h), from z3 = logit(h).

    With h = g(z): -log h = softplus(-z) = softplus(z) - z and -log(1 - h) = softplus(z),
    so each term is softplus(z) - y z: one softplus, and h == 0 or h == 1 in floating
    point gives a large finite cost instead of inf or nan.
    """
    return (_softplus(z3) - Y * z3).sum()


def backprop_vectorized(Theta1, Theta2, X, y, lambda_):
    """Cost, gradients and output h for all m examples at once (matrix form of backprop)."""
    m, num_labels = X.shape[0], Theta2.shape[0]
    a1, z2, a2, z3, h = feedforward(Theta1, Theta2, X)
    Y = _one_hot(y, num_labels, like=h)  # (m, labels)
    J = _cross_entropy(z3, Y) / m + _regularization(Theta1, Theta2, lambda_, m)

    delta3 = h - Y  # (m, labels)
    delta2 = (delta3 @ Theta2[:, 1:]) * sigmoid_gradient(z2)  # (m, hidden)
    Theta1_grad = delta2.T @ a1 / m
    Theta2_grad = delta3.T @ a2 / m
    Theta1_grad[:, 1:] += lambda_ / m * Theta1[:, 1:]
    Theta2_grad[:, 1:] += lambda_ / m * Theta2[:, 1:]
    return J, Theta1_grad, Theta2_grad, h


def backprop_loop(Theta1, Theta2, X, y, lambda_):
    """Cost, gradients and output h one example at a time, as in the lecture.

    For each example t: forward pass, delta3 = a3 - y_t, delta2 = Theta2^T delta3 .* g'(z2)
    (bias row dropped), Delta_l += delta_(l+1) a_l^T. Then D_l = Delta_l / m, plus
    lambda / m * Theta_l for every column j != 0.
    """
    m, num_labels = X.shape[0], Theta2.shape[0]
    Y = _one_hot(y, num_labels, like=X)
    Delta1 = Theta1 * 0
    Delta2 = Theta2 * 0
    J = 0.0
    h = []
    for t in range(m):
        a1, z2, a2, z3, a3 = feedforward(Theta1, Theta2, X[t : t + 1])
        a1, z2, a2, z3, a3 = a1[0], z2[0], a2[0], z3[0], a3[0]  # (1, n) -> (n,)
        J = J + _cross_entropy(z3, Y[t])
        h.append(a3)
        delta3 = a3 - Y[t]  # (labels,)
        delta2 = (Theta2.T @ delta3)[1:] * sigmoid_gradient(z2)  # (hidden,)
        Delta2 = Delta2 + delta3[:, None] * a2[None, :]  # outer product
        Delta1 = Delta1 + delta2[:, None] * a1[None, :]
    J = J / m + _regularization(Theta1, Theta2, lambda_, m)
    Theta1_grad = Delta1 / m
    Theta2_grad = Delta2 / m
    Theta1_grad[:, 1:] += lambda_ / m * Theta1[:, 1:]
    Theta2_grad[:, 1:] += lambda_ / m * Theta2[:, 1:]
    h = torch.stack(h) if _is_torch(X) else np.stack(h)  # (m, labels)
    return J, Theta1_grad, Theta2_grad, h


def nn_cost_function(
    nn_params,
    input_layer_size: int,
    hidden_layer_size: int,
    num_labels: int,
    X,
    y,
    lambda_: float,
    *,
    method: str = "vectorized",
    return_output: bool = False,
    check_inputs: bool = True,
):
    """Regularized cross-entropy cost J and its gradient for a two-layer sigmoid network.

    J = 1/m sum_i sum_k [-y_k log h_k - (1 - y_k) log(1 - h_k)]
        + lambda / (2m) (sum Theta1[:, 1:]^2 + sum Theta2[:, 1:]^2)

    The bias columns are not regularized. ``method`` picks the backpropagation
    form: "vectorized" (default) or "loop" (per example, as in the lecture);
    both give the same gradient. Returns ``(J, grad)`` with grad unrolled like
    nn_params; J is a float for numpy input and a 0-dim tensor for torch input.
    ``return_output=True`` adds the network's output h (m, labels) of that forward
    pass, so a trainer can score the training set without a second pass.
    ``check_inputs=False`` skips the data checks (a full scan of X) for a caller
    that made them once and calls again on the same X, as an optimizer does.
    """
    Theta1, Theta2 = unpack_params(nn_params, input_layer_size, hidden_layer_size, num_labels)
    if check_inputs:
        validate_data(X, y, input_layer_size, num_labels)
    _validate_lambda(lambda_)
    backprop = {"vectorized": backprop_vectorized, "loop": backprop_loop}.get(method)
    if backprop is None:
        raise ValueError(f"method must be 'vectorized' or 'loop', got {method!r}")
    J, Theta1_grad, Theta2_grad, h = backprop(Theta1, Theta2, X, y, lambda_)
    grad = pack_params(Theta1_grad, Theta2_grad)
    J = J if _is_torch(J) else float(J)
    return (J, grad, h) if return_output else (J, grad)


def predict(Theta1: Array, Theta2: Array, X: Array) -> Array:
    """Most likely label (0-based) of each row of X."""
    validate_data(X, None, Theta1.shape[1] - 1, Theta2.shape[0])
    h = feedforward(Theta1, Theta2, X)[-1]
    return h.argmax(dim=1) if _is_torch(h) else h.argmax(axis=1)


def compute_numerical_gradient(J, theta: np.ndarray, e: float = 1e-4) -> np.ndarray:
    """Central differences (J(theta + e) - J(theta - e)) / 2e, one parameter at a time.

    ``J`` maps a parameter vector to a scalar cost. Slow: for checking only.
    """
    numgrad = np.zeros_like(theta)
    perturb = np.zeros_like(theta)
    for p in range(theta.size):
        perturb[p] = e
        numgrad[p] = (J(theta + perturb) - J(theta - perturb)) / (2 * e)
        perturb[p] = 0
    return numgrad


def check_nn_gradients(lambda_: float = 0.0, cost_function=None, *, method="vectorized") -> float:
    """Compare backprop with finite differences on the course's 3-5-3 network, 5 examples.

    Returns the relative difference ||num - grad|| / ||num + grad||, below 1e-9
    for a correct implementation. ``cost_function`` defaults to nn_cost_function
    and takes the same arguments, so a participant's own version can be checked.
    """
    cost_function = cost_function or (lambda *a: nn_cost_function(*a, method=method))
    input_layer_size, hidden_layer_size, num_labels, m = 3, 5, 3, 5
    Theta1 = debug_initialize_weights(hidden_layer_size, input_layer_size)
    Theta2 = debug_initialize_weights(num_labels, hidden_layer_size)
    X = debug_initialize_weights(m, input_layer_size - 1)  # (5, 3), reuses the sin pattern
    y = np.arange(1, m + 1) % num_labels
    nn_params = pack_params(Theta1, Theta2)

    def cost(p):
        return cost_function(p, input_layer_size, hidden_layer_size, num_labels, X, y, lambda_)

    _, grad = cost(nn_params)
    numgrad = compute_numerical_gradient(lambda p: cost(p)[0], nn_params)
    return float(np.linalg.norm(numgrad - grad) / np.linalg.norm(numgrad + grad))


class MLP(nn.Module):
    """The same network as a torch module (for export and serving); outputs logits z3.

    sigmoid(logits) is the course's h; argmax(logits) is ``predict``.
    """

    def __init__(self, *, input_layer_size: int = 400, hidden_layer_size: int = 25, num_labels=10):
        super().__init__()
        self.hidden = nn.Linear(input_layer_size, hidden_layer_size)
        self.output = nn.Linear(hidden_layer_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.sigmoid(self.hidden(x)))

    def thetas(self) -> tuple[np.ndarray, np.ndarray]:
        """(Theta1, Theta2) as float64 numpy arrays, bias in column 0."""
        return tuple(
            np.hstack(
                [
                    layer.bias.detach().double().cpu().numpy()[:, None],
                    layer.weight.detach().double().cpu().numpy(),
                ]
            )
            for layer in (self.hidden, self.output)
        )

    def extra_repr(self) -> str:
        return "ex4 network: sigmoid hidden layer, logits out (no autograd used in training)"


def to_module(Theta1: Array, Theta2: Array) -> MLP:
    """Copy hand-trained Theta1, Theta2 into an MLP module (float32)."""
    Theta1, Theta2 = (torch.as_tensor(t, dtype=torch.float64).cpu() for t in (Theta1, Theta2))
    module = MLP(
        input_layer_size=Theta1.shape[1] - 1,
        hidden_layer_size=Theta1.shape[0],
        num_labels=Theta2.shape[0],
    )
    with torch.no_grad():
        for layer, theta in ((module.hidden, Theta1), (module.output, Theta2)):
            layer.bias.copy_(theta[:, 0])
            layer.weight.copy_(theta[:, 1:])
    return module
