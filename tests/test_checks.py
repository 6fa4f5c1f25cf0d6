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


# Module 2 -----------------------------------------------------------------------------------


def surgery(
    *, order="chw", transpose=False, bias=True, relu="between", kernels=(6, 1, 1), mode="eval"
):
    """A participant's net surgery, written as they would, with one mistake switched on."""
    from torch import nn

    from models.alexnet import FullyConvolutionalAlexNet

    def to_fcn(classifier):
        fc6, fc7, fc8 = (m for m in classifier.classifier if isinstance(m, nn.Linear))
        fcn = FullyConvolutionalAlexNet(num_classes=fc8.out_features, width=classifier.width)
        fcn.features.load_state_dict(classifier.features.state_dict())
        c5 = fc6.in_features // 36
        convs = [
            nn.Conv2d(fc.in_features // (36 if k == 6 and fc is fc6 else 1), fc.out_features, k)
            for fc, k in zip((fc6, fc7, fc8), kernels)
        ]
        with torch.no_grad():
            if order == "chw":
                convs[0].weight.copy_(fc6.weight.view(-1, c5, 6, 6))
            else:  # (out, 6, 6, C) moved to (out, C, 6, 6)
                convs[0].weight.copy_(fc6.weight.view(-1, 6, 6, c5).permute(0, 3, 1, 2))
            for conv, fc in zip(convs[1:], (fc7, fc8)):
                w = fc.weight.T if (transpose and fc is fc7) else fc.weight
                conv.weight.zero_()
                conv.weight[:, :, 0, 0] = w  # a kxk kernel with fc's weights in one tap
            for conv, fc in zip(convs, (fc6, fc7, fc8)):
                conv.bias.copy_(fc.bias if bias else torch.zeros_like(fc.bias))
        layers = {
            "between": [convs[0], nn.ReLU(), convs[1], nn.ReLU(), convs[2]],
            "after fc8": [convs[0], nn.ReLU(), convs[1], nn.ReLU(), convs[2], nn.ReLU()],
            "none": convs,
            "with dropout": [nn.Dropout(), convs[0], nn.ReLU(), nn.Dropout(), convs[1], nn.ReLU()]
            + [convs[2]],
        }[relu]
        fcn.conv_classifier = nn.Sequential(*layers)
        return fcn.eval() if mode == "eval" else fcn.train()

    return to_fcn


def test_net_surgery_reference_and_a_clean_solution_pass():
    checks.check_net_surgery(lambda classifier: classifier.to_fully_convolutional())
    checks.check_net_surgery(surgery())
    checks.check_net_surgery(surgery(relu="with dropout"))  # dropout is harmless in eval mode


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (dict(order="hwc"), "fc6's weights were reshaped in the wrong order"),
        (dict(transpose=True), "fc7's weight was transposed"),
        (dict(bias=False), "the biases were not copied"),
        (dict(relu="after fc8"), "a ReLU follows fc8"),
        (dict(relu="none"), "the ReLUs between fc6, fc7 and fc8 are missing"),
        (dict(relu="with dropout", mode="train"), "dropout is active"),
        (dict(kernels=(6, 6, 1)), "fc7 and fc8 are 1x1 convolutions"),
    ],
)
def test_net_surgery_mistakes_are_named(kwargs, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_net_surgery(surgery(**kwargs))


def test_net_surgery_outside_the_list_reports_the_largest_difference():
    def doubled(classifier):
        fcn = classifier.to_fully_convolutional()
        with torch.no_grad():
            fcn.conv_classifier[-1].weight.mul_(2)
        return fcn

    with pytest.raises(checks.ExerciseFailed, match="no classic mistake matches; largest diff"):
        checks.check_net_surgery(doubled)


def test_net_surgery_leaves_no_classifier_changed():
    def in_place(classifier):
        with torch.no_grad():
            classifier.classifier[1].bias.zero_()
        return classifier.to_fully_convolutional()

    with pytest.raises(checks.ExerciseFailed, match="the classifier's own weights were changed"):
        checks.check_net_surgery(in_place)


def test_output_size_formula_against_the_network():
    """The reference formula is the network's real map size (with the padding for small sides)."""
    from models.alexnet import FullyConvolutionalAlexNet, output_size

    fcn = FullyConvolutionalAlexNet(num_classes=2, width=0.125).eval()
    for n in (100, 223, 224, 254, 255, 256, 300):
        with torch.no_grad():
            assert fcn(torch.zeros(1, 3, n, 230)).shape[-2] == output_size(n)
    checks.check_output_size(lambda n: (max(n, 224) - 191) // 32)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda n: (max(n, 224) - 224) // 32 + 1, "conv1's 2-pixel padding"),
        (lambda n: n // 32, "the stride alone"),
        (lambda n: max((n - 191) // 32, 0), "padded to 224 first"),
        (lambda n: -(-(max(n, 224) - 191) // 32), "ceil instead of floor"),
        (lambda n: (max(n, 224) - 224) // 32, "one cell short"),
        (lambda n: (max(n, 224) - 191) // 16, "wrong at"),
    ],
)
def test_output_size_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_output_size(wrong)


def test_cell_window_reference_against_the_network():
    """The reference window of a cell is centred on what that cell really reads: the pixels
    with a nonzero gradient (the receptive field, wider than the window by the context the
    features see) are centred on the window's centre."""
    from models.alexnet import FullyConvolutionalAlexNet

    torch.manual_seed(0)
    fcn = FullyConvolutionalAlexNet(num_classes=2, width=0.125).eval()
    x = torch.rand(1, 3, 640, 640, requires_grad=True)
    i, j = 5, 7
    fcn(x)[0, 0, i, j].backward()
    rows, cols = np.nonzero(x.grad.abs().sum((0, 1)).numpy())  # the receptive field
    x0, y0, x1, y1 = 32 * j, 32 * i, 32 * j + 224, 32 * i + 224  # the reference's window
    assert abs((cols.min() + cols.max() + 1) / 2 - (x0 + x1) / 2) <= 2
    assert abs((rows.min() + rows.max() + 1) / 2 - (y0 + y1) / 2) <= 2
    assert cols.min() < x0 and cols.max() >= x1  # wider than the window, on both sides
    checks.check_cell_window(
        lambda i, j, margin: (
            32 * j - margin,
            32 * i - margin,
            32 * j - margin + 224,
            32 * i - margin + 224,
        )
    )


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda i, j, m: (32 * i - m, 32 * j - m, 32 * i - m + 224, 32 * j - m + 224), "swapped"),
        (lambda i, j, m: (32 * j + m, 32 * i + m, 32 * j + m + 224, 32 * i + m + 224), "added"),
        (lambda i, j, m: (32 * j, 32 * i, 32 * j + 224, 32 * i + 224), "ignored"),
        (lambda i, j, m: (32 * j - m, 32 * i - m, 32 * j - m + 227, 32 * i - m + 227), "227"),
        (lambda i, j, m: (16 * j - m, 16 * i - m, 16 * j - m + 224, 16 * i - m + 224), "stride 16"),
        (
            lambda i, j, m: (32 * j - m + 96, 32 * i - m + 96, 32 * j - m + 128, 32 * i - m + 128),
            "32x32 block",
        ),
        (
            lambda i, j, m: (32 * j - m, 32 * i - m, 32 * j - m + 224, 32 * i - m + 225),
            "largest difference",
        ),
    ],
)
def test_cell_window_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_cell_window(wrong)


# Module 3 -----------------------------------------------------------------------------------


def iou_written_out(a, b):
    """A participant's IoU for two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_iou_reference_and_a_written_out_solution_pass():
    from models.boxes import box_iou

    # hand-computed: 50x30 overlap of a 100x60 and a 100x80 box
    assert box_iou(np.array([[10, 20, 110, 80.0]]), np.array([[60, 50, 160, 130.0]]))[
        0, 0
    ] == pytest.approx(1500 / (6000 + 8000 - 1500))
    checks.check_iou(iou_written_out)


def xywh(box):
    return [box[0], box[1], box[0] + box[2], box[1] + box[3]]


def cxcywh(box):
    return [box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2]


def no_clip(a, b):
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda a, b: iou_written_out(xywh(a), xywh(b)), "(x, y, width, height)"),
        (lambda a, b: iou_written_out(cxcywh(a), cxcywh(b)), "(centre x, centre y"),
        (
            lambda a, b: (
                iou_written_out(a, b) * 0
                + (
                    max(0, min(a[2], b[2]) - max(a[0], b[0]))
                    * max(0, min(a[3], b[3]) - max(a[1], b[1]))
                )
                / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]))
            ),
            "counts the intersection twice",
        ),
        (no_clip, "not clipped to 0"),
        (
            lambda a, b: iou_written_out(
                [a[0], a[1], a[2] + 1, a[3] + 1], [b[0], b[1], b[2] + 1, b[3] + 1]
            ),
            "+1 pixel convention",
        ),
        (lambda a, b: iou_written_out(a, b) ** 2, "largest difference"),
    ],
)
def test_iou_mistakes_are_named(wrong, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_iou(wrong)


def coverage_written_out(
    box, grid_hw, *, shrink=0.4, centre=15, stride=16, nearest=True, swap=False
):
    """A participant's coverage target for one box, with switches for the mistakes."""
    h, w = grid_hw
    out = np.zeros((h, w))
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    for i in range(h):
        for j in range(w):
            x, y = (i, j) if swap else (j, i)
            x, y = x * stride + centre, y * stride + centre
            if abs(x - cx) <= (x1 - x0) * shrink / 2 and abs(y - cy) <= (y1 - y0) * shrink / 2:
                out[i, j] = 1
    if nearest and not out.any():
        i = min(max(round((cy - centre) / stride), 0), h - 1)
        j = min(max(round((cx - centre) / stride), 0), w - 1)
        out[i, j] = 1
    return out


def test_coverage_target_reference_and_a_written_out_solution_pass():
    checks.check_coverage_target(coverage_written_out)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (dict(shrink=1.0), "the whole box covers cells"),
        (dict(centre=0), "cell centres at 16 j:"),
        (dict(centre=8), "16 j + 8"),
        (dict(swap=True), "rows and columns swapped"),
        (dict(nearest=False), "a small box must still cover"),
        (dict(shrink=0.6), "largest difference"),
    ],
)
def test_coverage_target_mistakes_are_named(kwargs, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_coverage_target(lambda box, grid: coverage_written_out(box, grid, **kwargs))


def test_coverage_target_stride_applied_twice_is_named():
    def twice(box, grid_hw):  # the box converted to cells, then compared with pixel centres
        return coverage_written_out(np.asarray(box) / 16, grid_hw, nearest=True)

    with pytest.raises(checks.ExerciseFailed, match="the stride applied twice"):
        checks.check_coverage_target(twice)


def box_target_written_out(box, i, j, *, centre=15, swap=False, scale=1.0, sign=1):
    cx, cy = (16 * i + centre, 16 * j + centre) if swap else (16 * j + centre, 16 * i + centre)
    return sign * np.array([box[0] - cx, box[1] - cy, box[2] - cx, box[3] - cy]) / scale


def test_box_target_matches_the_encoded_targets():
    """The reference is what encode_targets writes on a covered cell."""
    from models.boxes import encode_targets

    box = np.array([52.0, 40.0, 180.0, 132.0])
    t = encode_targets(box[None], np.array([0]), (12, 14), 1)
    for i, j in zip(*np.nonzero(t["mask"])):
        np.testing.assert_allclose(t["bboxes"][:, i, j], box_target_written_out(box, i, j))
    checks.check_box_target(box_target_written_out)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (dict(centre=0), "top-left corner"),
        (dict(centre=8), "16 j + 8"),
        (dict(swap=True), "rows and columns swapped"),
        (dict(scale=16), "the stride applied twice"),
        (dict(scale=64), "the box scale belongs to the network's output"),
        (dict(sign=-1), "the sign is flipped"),
        (dict(scale=2), "largest difference"),
    ],
)
def test_box_target_mistakes_are_named(kwargs, hint):
    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_box_target(lambda box, i, j: box_target_written_out(box, i, j, **kwargs))


def test_box_target_centre_and_size_is_named():
    def centre_size(box, i, j):
        cx, cy = 16 * j + 15, 16 * i + 15
        return [
            (box[0] + box[2]) / 2 - cx,
            (box[1] + box[3]) / 2 - cy,
            box[2] - box[0],
            box[3] - box[1],
        ]

    with pytest.raises(checks.ExerciseFailed, match="centre and size instead of corners"):
        checks.check_box_target(centre_size)


def cluster_written_out(props, scores, iou, *, ordered=True, merge="weighted", score="seed"):
    """A participant's greedy clustering, with switches for the mistakes."""
    from models.boxes import box_iou

    order = np.argsort(-scores) if ordered else np.arange(len(scores))
    left = list(order)
    boxes, out = [], []
    while left:
        seed = left[0]
        group = [k for k in left if k == seed or box_iou(props[[seed]], props[[k]])[0, 0] > iou]
        w = scores[group]
        if merge == "weighted":
            boxes.append((props[group] * w[:, None]).sum(0) / w.sum())
        elif merge == "mean":
            boxes.append(props[group].mean(0))
        else:
            boxes.append(props[seed])
        out.append(scores[seed] if score == "seed" else w.mean())
        left = [k for k in left if k not in group]
    best = np.argsort(-np.array(out), kind="stable")
    return np.array(boxes)[best], np.array(out)[best]


def test_clustering_reference_and_a_written_out_solution_pass():
    from models.boxes import cluster_proposals

    props, scores = checks._clustering_problem()
    boxes, box_scores = cluster_proposals(props, scores, 0.4)
    assert len(boxes) == 3  # three objects
    np.testing.assert_allclose(box_scores, [0.91, 0.84, 0.68])
    checks.check_clustering(cluster_written_out)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        (dict(ordered=False), "not taken in score order"),
        (dict(merge="seed"), "non-maximum suppression"),
        (dict(merge="mean"), "a plain mean of the members"),
        (dict(score="mean"), "not the members' mean"),
        (dict(iou=0.99), "nothing was clustered"),
        (dict(iou=0.0), "largest difference"),
    ],
)
def test_clustering_mistakes_are_named(kwargs, hint):
    iou = kwargs.pop("iou", None)

    def cluster(props, scores, given_iou):
        return cluster_written_out(props, scores, given_iou if iou is None else iou, **kwargs)

    with pytest.raises(checks.ExerciseFailed, match=re.escape(hint)):
        checks.check_clustering(cluster)


def test_every_module_has_exercises_on_the_progress_view():
    assert {n for n, nb in checks.EXERCISES.items() if nb == "02_fcn_alexnet"} == {
        "net_surgery",
        "output_size",
        "cell_window",
    }
    assert {n for n, nb in checks.EXERCISES.items() if nb == "03_detectnet"} == {
        "iou",
        "coverage_target",
        "box_target",
        "clustering",
    }
    assert list(checks.EXERCISES.values()) == sorted(checks.EXERCISES.values())  # notebook order


def test_module_2_and_3_checks_record_their_result(monkeypatch):
    seen = []
    monkeypatch.setattr(checks, "record", lambda name, ok, detail="": seen.append((name, ok)))
    checks.check_iou(iou_written_out)
    with pytest.raises(checks.ExerciseFailed):
        checks.check_output_size(lambda n: n // 32)
    assert seen == [("iou", True), ("output_size", False)]


def test_an_exercise_not_written_yet_records_nothing(monkeypatch):
    seen = []
    monkeypatch.setattr(checks, "record", lambda *args: seen.append(args))

    def not_written(*args):
        raise NotImplementedError("exercise: write this part, then run the check below")

    with pytest.raises(NotImplementedError):
        checks.check_iou(not_written)
    assert seen == []


def course_files(tmp_path, data):
    """ex4weights.mat and an ex4data1.mat in the course's format (our digits as the data)."""
    import scipy.io

    from workshop.data.digits import save_ex4data
    from workshop.train_mlp import MLPConfig, fit

    result = fit(data, MLPConfig(maxiter=15, baselines=False), progress=False)
    course_order = np.roll(result.Theta2, -1, axis=0)  # the course's output rows: zero last
    scipy.io.savemat(tmp_path / "ex4weights.mat", {"Theta1": result.Theta1, "Theta2": course_order})
    save_ex4data(tmp_path / "ex4data1.mat", data.X_train, data.y_train)
    return result


def test_provided_weights_prefer_the_course_files_then_the_checkpoint(tmp_path):
    from models.checkpoint import save_checkpoint
    from models.mlp import to_module
    from workshop.data.digits import COURSE_COSTS, load_dataset, provided_weights

    data = load_dataset()
    assert provided_weights(data, tmp_path, tmp_path / "none.pt") is None
    result = course_files(tmp_path, data)
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(
        tmp_path / "ckpt" / "checkpoint.pt",
        to_module(result.Theta1, result.Theta2),
        model_name="mlp",
        model_args=dict(input_layer_size=400, hidden_layer_size=25, num_labels=10),
        meta=data.meta,
    )
    course = provided_weights(data, tmp_path, tmp_path / "ckpt" / "checkpoint.pt")
    assert course.source == "course" and course.expected_costs == COURSE_COSTS
    np.testing.assert_allclose(course.Theta2, result.Theta2)  # the course's row order undone
    own = provided_weights(data, tmp_path / "ckpt", tmp_path / "ckpt" / "checkpoint.pt")
    assert own.expected_costs is None and own.source.endswith("checkpoint.pt")
    np.testing.assert_allclose(own.Theta1, result.Theta1, atol=1e-6)  # stored as float32
    checks.check_cost_with_provided_weights(mlp.nn_cost_function, own)


def test_provided_weights_check_compares_with_the_course_values(tmp_path):
    """With the course's files the reference is the course's published cost, not our code."""
    from workshop.data.digits import load_dataset, provided_weights

    data = load_dataset()
    course_files(tmp_path, data)
    provided = provided_weights(data, tmp_path)
    with pytest.raises(checks.ExerciseFailed, match=re.escape("(the course's value)")):
        checks.check_cost_with_provided_weights(mlp.nn_cost_function, provided)  # not ex4 data
    J0 = mlp.nn_cost_function(
        mlp.pack_params(provided.Theta1, provided.Theta2), 400, 25, 10, provided.X, provided.y, 0
    )[0]
    provided.expected_costs = {0.0: round(J0, 6), 1.0: 99.0}
    with pytest.raises(checks.ExerciseFailed, match="lambda=1"):  # lambda 0 passed
        checks.check_cost_with_provided_weights(mlp.nn_cost_function, provided)


def test_provided_weights_mistakes_are_named(tmp_path):
    from workshop.data.digits import load_dataset, provided_weights

    data = load_dataset()
    course_files(tmp_path, data)
    provided = provided_weights(data, tmp_path)
    provided.expected_costs = None  # compare with the library on these weights

    def unregularized(p, il, hl, nl, X, y, lambda_):
        return mlp.nn_cost_function(p, il, hl, nl, X, y, 0.0)[0]

    with pytest.raises(checks.ExerciseFailed, match="regularization is missing"):
        checks.check_cost_with_provided_weights(unregularized, provided)
