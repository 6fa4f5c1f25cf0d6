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
            except NotImplementedError:
                raise  # not written yet: nothing to record
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


@exercise("provided_weights", "01_mlp_backprop")
def check_cost_with_provided_weights(cost_function, provided) -> None:
    """Exercise: the cost function on trained weights (``data.digits.provided_weights``).

    With the course's files the references are the course's published costs (0.287629
    without, 0.383770 with lambda = 1); otherwise the library's cost on the same weights.
    """
    nn_params = mlp.pack_params(provided.Theta1, provided.Theta2)
    sizes = (provided.Theta1.shape[1] - 1, provided.Theta1.shape[0], provided.Theta2.shape[0])
    for lambda_ in (0.0, 1.0):
        out = cost_function(nn_params, *sizes, provided.X, provided.y, lambda_)
        got = float(_as_numpy(out[0] if isinstance(out, tuple) else out))
        want, mistakes = _cost_mistakes(
            provided.Theta1, provided.Theta2, provided.X, provided.y, lambda_
        )
        if provided.expected_costs is not None:
            want = provided.expected_costs[lambda_]  # published to 6 decimals
            if abs(got - want) > 5e-7:
                _fail(
                    f"cost with the course's weights, lambda={lambda_:g} (the course's value)",
                    got,
                    want,
                    mistakes,
                )
        elif not np.isclose(got, want, rtol=1e-9, atol=1e-12):
            _fail(f"cost with the provided weights, lambda={lambda_:g}", got, want, mistakes)
        print(f"  lambda = {lambda_:g}: J = {got:.6f} (expected {want:.6f})")
    _passed(f"cost on the provided weights ({provided.source})")


# Module 2: the fully convolutional AlexNet -------------------------------------------------


def _surgery_problem():
    """A narrow classifier whose fc layers carry random weights and biases that matter.

    The training init has zero biases and tiny fc weights, under which a dropped bias
    or a transposed matrix would change nothing visible.
    """
    import torch

    from models.alexnet import AlexNet

    gen = torch.Generator().manual_seed(0)
    classifier = AlexNet(num_classes=3, width=0.125).eval()
    with torch.no_grad():
        for layer in classifier.classifier:
            if isinstance(layer, torch.nn.Linear):
                fan_in = layer.in_features
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * fan_in**-0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.5)
    images = torch.randn(2, 3, 224, 224, generator=gen)
    scene = torch.randn(1, 3, 320, 480, generator=gen)
    return classifier, images, scene


def _surgery_mistakes(classifier) -> dict:
    """FCNs built with each classic net-surgery mistake."""
    import torch
    from torch import nn

    def variant(edit):
        fcn = classifier.to_fully_convolutional()
        fc6, fc7, fc8 = (m for m in classifier.classifier if isinstance(m, nn.Linear))
        conv6, conv7, conv8 = (m for m in fcn.conv_classifier if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            edit(fcn, (fc6, fc7, fc8), (conv6, conv7, conv8))
        return fcn.eval()

    def channels_last(fcn, fcs, convs):
        c = convs[0].in_channels
        # (out, 6 * 6 * C) read as (out, 6, 6, C): the flatten order of a channels-last map
        convs[0].weight.copy_(fcs[0].weight.view(-1, 6, 6, c).permute(0, 3, 1, 2))

    def transposed(fcn, fcs, convs):
        convs[1].weight.copy_(fcs[1].weight.T.reshape(convs[1].weight.shape))

    def no_bias(fcn, fcs, convs):
        for conv in convs:
            conv.bias.zero_()

    def relu_after_fc8(fcn, fcs, convs):
        fcn.conv_classifier.append(nn.ReLU())

    def no_relu(fcn, fcs, convs):
        fcn.conv_classifier = nn.Sequential(*convs)

    return {
        "fc6's weights were reshaped in the wrong order: view(out, C, 6, 6), the order in "
        "which fc6 read the flattened (C, 6, 6) map, not channels last": variant(channels_last),
        "fc7's weight was transposed: a Linear computes x @ W.T with W of shape (out, in), "
        "and a 1x1 convolution's weight is that W viewed as (out, in, 1, 1)": variant(transposed),
        "the biases were not copied (conv.bias = fc.bias)": variant(no_bias),
        "a ReLU follows fc8: the logits must stay unclipped (ReLU after fc6 and fc7 only)": (
            variant(relu_after_fc8)
        ),
        "the ReLUs between fc6, fc7 and fc8 are missing": variant(no_relu),
    }


def _run(model, x):
    import torch

    with torch.no_grad():
        return model(x)


@exercise("net_surgery", "02_fcn_alexnet")
def check_net_surgery(to_fcn) -> None:
    """Exercise: ``to_fcn(classifier)`` returns the fully convolutional network.

    Checked on two 224x224 inputs (a 1x1 map equal to the classifier's logits) and
    on a 320x480 input (the map's shape and values against the reference surgery).
    """
    import torch

    from models.alexnet import output_size

    classifier, images, scene = _surgery_problem()
    reference = classifier.to_fully_convolutional()
    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    fcn = to_fcn(classifier)
    if not isinstance(fcn, torch.nn.Module):
        raise ExerciseFailed(f"net surgery: to_fcn returned {type(fcn).__name__}, not a module")
    if any(not torch.equal(v, classifier.state_dict()[k]) for k, v in state.items()):
        raise ExerciseFailed("net surgery: the classifier's own weights were changed; copy them")
    try:
        first, second = _run(fcn, images), _run(fcn, images)
    except RuntimeError as err:
        raise ExerciseFailed(
            f"net surgery: a 224x224 input fails ({str(err).splitlines()[0]}): fc6 is a 6x6 "
            "convolution on the (C, 6, 6) map, fc7 and fc8 are 1x1 convolutions"
        ) from None
    if not torch.equal(first, second):
        raise ExerciseFailed(
            "net surgery: two runs on the same input differ, so dropout is active: "
            "return the network in evaluation mode (fcn.eval())"
        )
    want = classifier(images).detach()
    if first.ndim != 4 or tuple(first.shape[-2:]) != (1, 1):
        raise ExerciseFailed(
            f"net surgery: a 224x224 input must give a (n, classes, 1, 1) map, got "
            f"{tuple(first.shape)}: are fc6/fc7/fc8 convolutions (6x6, 1x1, 1x1)?"
        )
    got = first[:, :, 0, 0]
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
        mistakes = {
            k: _run(m, images)[:, :, 0, 0].numpy() for k, m in _surgery_mistakes(classifier).items()
        }
        _fail("net surgery at 224x224", got.numpy(), want.numpy(), mistakes)
    try:
        big = _run(fcn, scene)
    except RuntimeError as err:
        raise ExerciseFailed(
            f"net surgery: a 320x480 input fails ({str(err).splitlines()[0]}): fc7 and fc8 "
            "must be 1x1 convolutions, which accept any map size"
        ) from None
    cells = (output_size(320), output_size(480))
    if tuple(big.shape[-2:]) != cells:
        kernels = [m.kernel_size for m in fcn.modules() if isinstance(m, torch.nn.Conv2d)][-3:]
        raise ExerciseFailed(
            f"net surgery: a 320x480 input must give a {cells[0]}x{cells[1]} map, got "
            f"{tuple(big.shape[-2:])}; the last three convolutions have kernels {kernels}, "
            "they must be 6x6, 1x1, 1x1"
        )
    if not torch.allclose(big, _run(reference, scene), atol=1e-5, rtol=1e-4):
        raise ExerciseFailed(
            "net surgery: right at 224x224 but not on a larger input: the features must "
            "stay the classifier's convolutions, unchanged (no padding added or removed)"
        )
    _passed("net surgery (224 logits and a 320x480 map)")


_SIDES = np.array([32, 100, 191, 223, 224, 225, 254, 255, 256, 287, 300, 480, 640, 1080, 1920])


@exercise("output_size", "02_fcn_alexnet")
def check_output_size(output_size) -> None:
    """Exercise: ``output_size(n)``, the FCN's map cells along an n-pixel side."""
    from models.alexnet import output_size as reference

    got = np.array([output_size(int(n)) for n in _SIDES])
    want = np.array([reference(int(n)) for n in _SIDES])
    if not np.array_equal(got, want):
        n = _SIDES
        mistakes = {
            "the first window was taken as 224 pixels: with conv1's 2-pixel padding the "
            "network sees 227, so floor((n - 191) / 32), not (n - 224) // 32 + 1": (
                (np.maximum(n, 224) - 224) // 32 + 1
            ),
            "the stride alone (n // 32): the first cell needs a whole window": n // 32,
            "inputs under 224 pixels are padded to 224 first, so they give one cell": (
                np.maximum((n - 191) // 32, 0)
            ),
            "ceil instead of floor: a window that does not fit gives no cell": (
                -(-(np.maximum(n, 224) - 191) // 32)
            ),
            "one cell short: (n - 224) // 32 counts the steps, add 1 for the first window": (
                (np.maximum(n, 224) - 224) // 32
            ),
        }
        bad = ", ".join(f"{n}: {g} (want {w})" for n, g, w in zip(_SIDES, got, want) if g != w)
        hint = _diagnose(got, mistakes) or f"no classic mistake matches; wrong at {bad}"
        raise ExerciseFailed(f"output_size: differs from the reference. Likely mistake: {hint}")
    _passed("output_size (small inputs included)")


_CELLS = [(0, 0), (0, 3), (2, 1), (5, 7)]


@exercise("cell_window", "02_fcn_alexnet")
def check_cell_window(cell_window) -> None:
    """Exercise: ``cell_window(i, j, margin)``, the (x0, y0, x1, y1) window cell (i, j)
    of the map answers for, in the original image's pixels, when the image was padded by
    ``margin`` pixels on every side before the FCN ran."""
    from models.alexnet import STRIDE, WINDOW, FullyConvolutionalAlexNet

    for margin in (0, 96):
        grid = FullyConvolutionalAlexNet.grid.padded(margin)
        got = np.array([cell_window(i, j, margin) for i, j in _CELLS], dtype=float)
        want = np.array([grid.window_box(i, j) for i, j in _CELLS], dtype=float)
        if got.shape != want.shape or not np.allclose(got, want):
            ij = np.array(_CELLS, dtype=float)
            i, j = ij[:, :1], ij[:, 1:]

            def box(x0, y0, side=WINDOW):
                return np.hstack([x0, y0, x0 + side, y0 + side])

            mistakes = {
                "rows and columns swapped: j (the column) moves x, i (the row) moves y": box(
                    STRIDE * i - margin, STRIDE * j - margin
                ),
                "the margin was added: the padded image's pixel 0 is the original's -margin": box(
                    STRIDE * j + margin, STRIDE * i + margin
                ),
                "the margin was ignored: windows are placed on the padded image": box(
                    STRIDE * j, STRIDE * i
                ),
                "a 227-pixel window (conv1's padded field): the classifier's window is 224": box(
                    STRIDE * j - margin, STRIDE * i - margin, WINDOW + 3
                ),
                "stride 16: the FCN's cells are 32 pixels apart (4 x 2 x 2 x 2)": box(
                    16 * j - margin, 16 * i - margin
                ),
                "the 32x32 block drawn for the cell, not the 224 window it answers for": box(
                    STRIDE * j - margin + 96, STRIDE * i - margin + 96, STRIDE
                ),
            }
            _fail(f"cell_window with margin {margin}", got, want, mistakes)
    _passed("cell_window")


# Module 3: DetectNet -----------------------------------------------------------------------

_BOX_PAIRS = np.array(
    [
        [[10, 20, 110, 80], [60, 50, 160, 130]],  # partial overlap
        [[0, 0, 100, 100], [25, 25, 75, 75]],  # nested
        [[0, 0, 50, 40], [60, 50, 90, 95]],  # disjoint on both axes
        [[0, 0, 50, 50], [50, 0, 100, 50]],  # touching edges
        [[30, 40, 90, 70], [30, 40, 90, 70]],  # identical
    ],
    float,
)


def _iou_mistakes(pairs: np.ndarray) -> dict:
    a, b = pairs[:, 0], pairs[:, 1]

    def overlap(a, b, clip=True, plus=0.0):
        lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
        wh = rb - lt + plus
        return (np.clip(wh, 0, None) if clip else wh).prod(1)

    def area(box, plus=0.0):
        return (box[:, 2:] - box[:, :2] + plus).prod(1)

    def as_corners(box):  # (x, y, w, h) read as corners
        return np.hstack([box[:, :2], box[:, :2] + box[:, 2:]])

    def from_centre(box):  # (cx, cy, w, h) read as corners
        return np.hstack([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2])

    def iou(a, b, **kw):
        inter = overlap(a, b, **kw)
        plus = kw.get("plus", 0.0)
        return inter / (area(a, plus) + area(b, plus) - inter)

    inter = overlap(a, b)
    return {
        "the boxes were read as (x, y, width, height); they are corners (x0, y0, x1, y1)": iou(
            as_corners(a), as_corners(b)
        ),
        "the boxes were read as (centre x, centre y, width, height); they are corners": iou(
            from_centre(a), from_centre(b)
        ),
        "the union counts the intersection twice: union = area(a) + area(b) - intersection": (
            inter / (area(a) + area(b))
        ),
        "negative overlaps were not clipped to 0: disjoint boxes must give IoU 0": iou(
            a, b, clip=False
        ),
        "the +1 pixel convention (x1 - x0 + 1): these boxes are continuous coordinates": iou(
            a, b, plus=1.0
        ),
        "intersection over the smaller box, not over the union": inter
        / np.minimum(area(a), area(b)),
    }


@exercise("iou", "03_detectnet")
def check_iou(iou) -> None:
    """Exercise: ``iou(a, b)``, intersection over union of two boxes (x0, y0, x1, y1)."""
    from models.boxes import box_iou

    got = np.array([float(iou(a, b)) for a, b in _BOX_PAIRS])
    want = np.array([box_iou(a[None], b[None])[0, 0] for a, b in _BOX_PAIRS])
    if not np.allclose(got, want, atol=1e-9):
        _fail("iou", got, want, _iou_mistakes(_BOX_PAIRS))
    _passed("iou (overlapping, nested, disjoint, touching, identical)")


_TARGET_BOXES = np.array([[40, 30, 200, 150], [100, 90, 108, 97], [0, 0, 64, 300]], float)
_GRID = (20, 14)  # rows, columns: a 335 x 239 image on the stride-16 grid


def _coverage(box, grid_hw, *, scale=None, offset=None, stride=16, nearest=True, swap=False):
    """Coverage of one box, written out: the cells whose centres fall in the shrunk box."""
    from models.boxes import CELL_OFFSET, COVERAGE_SCALE

    scale = COVERAGE_SCALE if scale is None else scale
    offset = CELL_OFFSET if offset is None else offset
    h, w = grid_hw
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    xs, ys = (rows, cols) if swap else (cols, rows)
    xs, ys = xs * stride + offset, ys * stride + offset
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    inside = (np.abs(xs - cx) <= (x1 - x0) * scale / 2) & (np.abs(ys - cy) <= (y1 - y0) * scale / 2)
    if nearest and not inside.any():
        i = int(np.clip(round((cy - offset) / stride), 0, h - 1))
        j = int(np.clip(round((cx - offset) / stride), 0, w - 1))
        inside[i, j] = True
    return inside.astype(float)


@exercise("coverage_target", "03_detectnet")
def check_coverage_target(coverage_target) -> None:
    """Exercise: ``coverage_target(box, grid_hw)``: the (h, w) map, 1 on the cells one box
    covers (centres inside the box shrunk to 40 % about its centre, at least the nearest)."""
    from models.boxes import encode_targets

    for box in _TARGET_BOXES:
        got = _as_numpy(coverage_target(box.copy(), _GRID)).astype(float)
        want = encode_targets(box[None], np.array([0]), _GRID, 1)["coverage"][0]
        if got.shape != want.shape or not np.array_equal(got, want):
            mistakes = {
                "the whole box covers cells: DetectNet covers it shrunk to 40 % about its "
                "centre": _coverage(box, _GRID, scale=1.0),
                "cell centres at 16 j: cell (i, j) is centred on pixel (16 j + 15, 16 i + 15)": (
                    _coverage(box, _GRID, offset=0)
                ),
                "cell centres at 16 j + 8 (the middle of a block): the receptive field's centre "
                "is 16 j + 15": _coverage(box, _GRID, offset=8),
                "the stride applied twice: the box was divided by 16 and then compared with "
                "the cells' pixel centres; keep one unit (pixels) on both sides": _coverage(
                    box / 16, _GRID
                ),
                "rows and columns swapped: x goes with the column j, y with the row i": (
                    _coverage(box, _GRID, swap=True)
                ),
                "a small box must still cover the cell nearest its centre": _coverage(
                    box, _GRID, nearest=False
                ),
            }
            _fail(f"coverage_target of box {box.astype(int).tolist()}", got, want, mistakes)
    _passed("coverage_target (a large, a small and an edge box)")


_TARGET_CELLS = [(3, 4), (0, 0), (7, 2)]


@exercise("box_target", "03_detectnet")
def check_box_target(box_target) -> None:
    """Exercise: ``box_target(box, i, j)``: what cell (i, j) regresses for a box, its four
    corners relative to the cell's centre: (x0 - cx, y0 - cy, x1 - cx, y1 - cy), in pixels."""
    from models.boxes import cell_centres

    box = np.array([52.0, 40.0, 180.0, 132.0])
    for i, j in _TARGET_CELLS:
        got = _as_numpy(box_target(box.copy(), i, j)).astype(float).ravel()
        xs, ys = cell_centres(i + 1, j + 1)
        cx, cy = xs[i, j], ys[i, j]
        want = box - np.array([cx, cy, cx, cy])
        if got.shape != want.shape or not np.allclose(got, want):
            x0, y0, x1, y1 = box

            def rel(x, y):
                return box - np.array([x, y, x, y])

            mistakes = {
                "corners relative to the cell's top-left corner (16 j, 16 i); the reference is "
                "the cell's centre (16 j + 15, 16 i + 15)": rel(16 * j, 16 * i),
                "cell centre at 16 j + 8: the grid's centres are at 16 j + 15": rel(
                    16 * j + 8, 16 * i + 8
                ),
                "rows and columns swapped: x goes with the column j": rel(16 * i + 15, 16 * j + 15),
                "the stride applied twice: the target is in pixels, not in cells": want / 16,
                "the box scale belongs to the network's output: the target is in pixels": want / 64,
                "the sign is flipped: corner minus centre, not centre minus corner": -want,
                "centre and size instead of corners: DetectNet regresses the four corners": (
                    np.array([(x0 + x1) / 2 - cx, (y0 + y1) / 2 - cy, x1 - x0, y1 - y0])
                ),
            }
            _fail(f"box_target of cell ({i}, {j})", got, want, mistakes)
    _passed("box_target")


def _clustering_problem():
    """Three objects' proposals, shuffled: two overlapping groups and a lone box."""
    rng = np.random.default_rng(3)
    groups = [([50, 40, 150, 120], 0.91), ([120, 90, 220, 170], 0.84), ([300, 300, 360, 350], 0.68)]
    props, scores = [], []
    for box, top in groups:
        for k in range(5):
            props.append(np.array(box, float) + rng.normal(0, 3, 4))
            scores.append(top - 0.03 * k)  # no two scores equal: the order is unambiguous
    order = rng.permutation(len(props))
    return np.array(props)[order], np.array(scores)[order]


def _greedy(props, scores, iou, *, ordered=True, merge="weighted", score="seed"):
    """Greedy clustering written out, with switches for the classic mistakes."""
    from models.boxes import box_iou

    order = np.argsort(-scores, kind="stable") if ordered else np.arange(len(scores))
    props, scores = props[order], scores[order]
    alive, boxes, out = list(range(len(props))), [], []
    while alive:
        seed = alive[0]
        overlaps = box_iou(props[[seed]], props[alive])[0]
        members = [k for k, o in zip(alive, overlaps) if k == seed or o > iou]
        w = scores[members][:, None]
        merged = {
            "weighted": (props[members] * w).sum(0) / w.sum(),
            "mean": props[members].mean(0),
            "seed": props[seed],
        }
        boxes.append(merged[merge])
        out.append(scores[seed] if score == "seed" else scores[members].mean())
        alive = [k for k in alive if k not in members]
    best = np.argsort(-np.array(out), kind="stable")
    return np.array(boxes)[best], np.array(out)[best]


def _clustering_mistakes(props, scores, iou) -> dict:
    by_score = np.argsort(-scores, kind="stable")
    return {
        "the proposals were not taken in score order: the seed of each cluster is the most "
        "covered proposal left": _greedy(props, scores, iou, ordered=False)[0],
        "the seed's box was kept (non-maximum suppression); a cluster's box is the "
        "score-weighted mean of its members": _greedy(props, scores, iou, merge="seed")[0],
        "a plain mean of the members: weight each by its score": _greedy(
            props, scores, iou, merge="mean"
        )[0],
        "nothing was clustered: every proposal is its own box": props[by_score],
    }


@exercise("clustering", "03_detectnet")
def check_clustering(cluster) -> None:
    """Exercise: ``cluster(proposals, scores, iou)`` -> (boxes, scores), best first: greedy
    clustering of one class's proposals (see models.boxes.cluster_proposals)."""
    from models.boxes import cluster_proposals

    props, scores = _clustering_problem()
    iou = 0.4
    boxes, box_scores = cluster(props.copy(), scores.copy(), iou)
    got = np.asarray(_as_numpy(boxes), float).reshape(-1, 4)
    want, want_scores = cluster_proposals(props, scores, iou)
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-6):
        _fail("clustering (boxes)", got, want, _clustering_mistakes(props, scores, iou))
    got_scores = np.asarray(_as_numpy(box_scores), float).ravel()
    if not np.allclose(got_scores, want_scores):
        mistakes = {
            "a cluster's score is its seed's (the best member's) score, not the members' mean": (
                _greedy(props, scores, iou, score="mean")[1]
            ),
            "the proposals were not taken in score order: the seed of each cluster is the most "
            "covered proposal left, and its score is the cluster's": (
                _greedy(props, scores, iou, ordered=False)[1]
            ),
        }
        _fail("clustering (scores)", got_scores, want_scores, mistakes)
    _passed("clustering (three objects, shuffled proposals)")
