"""The Visualize page against references: torch's FlopCounterMode, torchvision's AlexNet and
its published size, the layer stacks run by hand, the weights, the trainers' source."""

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import AlexNet_Weights
from torchvision.models import alexnet as tv_alexnet

from models.alexnet import AlexNet, FullyConvolutionalAlexNet, alexnet
from models.checkpoint import load_checkpoint, save_checkpoint
from models.detectnet import DetectNet
from models.mlp import MLP
from workshop.train_alexnet import AlexNetConfig
from workshop.train_detectnet import DetectNetConfig
from workshop.train_mlp import MLPConfig
from workshop.visualize import (
    activations,
    conv1_filters,
    field_comments,
    layer_table,
    settings_table,
)

MEAN = np.array([0.485, 0.456, 0.406])  # ImageNet's, written out here as the reference
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return alexnet(num_classes=3, width=0.125).eval()


@pytest.fixture(scope="module")
def fcn(classifier):
    return classifier.to_fully_convolutional()


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return DetectNet(num_classes=3, width=0.125).eval()


def outputs_by_hand(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every leaf module's output, running the model's Sequential stacks one layer at a time."""
    out = {}

    def stack(name, x):
        for i, layer in enumerate(getattr(model, name)):
            x = layer(x.clone())  # clone: the in-place ReLUs would rewrite the stored outputs
            out[f"{name}.{i}"] = x
        return x

    with torch.no_grad():
        if isinstance(model, AlexNet):
            stack("classifier", torch.flatten(stack("features", x), 1))
        elif isinstance(model, FullyConvolutionalAlexNet):
            assert min(x.shape[-2:]) >= 224  # no padding in this reference
            stack("conv_classifier", stack("features", x))
        else:
            f = stack("neck", stack("features", x))
            out["coverage"], out["bboxes"] = model.coverage(f), model.bboxes(f)
    return out


def listed(model: nn.Module, outputs: dict) -> list[str]:
    """The layers a table lists: all but the ReLUs (folded) and Dropout (the identity)."""
    return [k for k in outputs if not isinstance(model.get_submodule(k), nn.ReLU | nn.Dropout)]


def params_from_hyperparameters(m: nn.Module) -> int:
    if isinstance(m, nn.Conv2d):
        per_output = m.in_channels // m.groups * math.prod(m.kernel_size) + 1  # weights, bias
        return m.out_channels * per_output
    if isinstance(m, nn.Linear):
        return m.out_features * m.in_features + m.out_features
    return 0


CASES = [
    ("classifier", (224, 224)),
    ("fcn", (224, 224)),
    ("fcn", (300, 437)),
    ("detector", (300, 437)),
    ("fcn", (1080, 1920)),
]


@pytest.mark.parametrize(("name", "hw"), CASES)
def test_flops_match_flop_counter_mode(name, hw, request):
    model = request.getfixturevalue(name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, *hw))
    prefix = type(model).__name__ + "."
    reference = {
        k.removeprefix(prefix): sum(ops.values())
        for k, ops in counter.get_flop_counts().items()
        if k.startswith(prefix)
    }
    table = layer_table(model, hw)
    rows, total = table.iloc[:-1], table.iloc[-1]
    for layer, flops in zip(rows["layer"], rows["FLOPs"]):
        assert flops == reference.get(layer, 0), layer
    assert total["layer"] == "total"
    assert total["FLOPs"] == counter.get_total_flops() > 0


@pytest.mark.parametrize(("name", "hw"), CASES[:4])
def test_shapes_and_parameters_match_the_layers_run_by_hand(name, hw, request):
    model = request.getfixturevalue(name)
    outputs = outputs_by_hand(model, torch.randn(1, 3, *hw))
    table = layer_table(model, hw)
    rows = table.iloc[:-1]
    assert list(rows["layer"]) == listed(model, outputs)
    for layer, shape, params in zip(rows["layer"], rows["output"], rows["parameters"]):
        assert shape == tuple(outputs[layer].shape[1:]), layer
        assert params == params_from_hyperparameters(model.get_submodule(layer)), layer
    assert table.iloc[-1]["parameters"] == sum(p.numel() for p in model.parameters())


def test_names_and_folded_relus(classifier, fcn, detector):
    table = layer_table(classifier, 224)
    assert list(table["name"][:-1]) == [
        *("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"),
        *("fc6", "fc7", "fc8"),
    ]
    assert list(table["type"][:3]) == ["Conv2d+ReLU", "MaxPool2d", "Conv2d+ReLU"]
    assert list(table["type"][-4:-1]) == ["Linear+ReLU", "Linear+ReLU", "Linear"]
    assert list(layer_table(fcn, 224)["name"][-4:-1]) == ["fc6", "fc7", "fc8"]
    assert list(layer_table(detector, 224)["name"][-4:-1]) == ["neck.0", "coverage", "bboxes"]


def test_full_alexnet_matches_torchvision():
    """Width 1 with 1000 classes is torchvision's AlexNet: its layers and its published size."""
    with torch.device("meta"):  # shapes only: nothing to initialize
        ours, theirs = alexnet(num_classes=1000), tv_alexnet()
    table = layer_table(ours, 224)
    for layer, params in zip(table["layer"][:-1], table["parameters"][:-1]):
        assert params == sum(p.numel() for p in theirs.get_submodule(layer).parameters()), layer
    published = AlexNet_Weights.IMAGENET1K_V1.meta
    assert table.iloc[-1]["parameters"] == published["num_params"] == 61_100_840
    # torchvision's "_ops" is GFLOPS counted as multiply-adds, so half our FLOPs.
    assert round(table.iloc[-1]["FLOPs"] / 2e9, 3) == published["_ops"]


def test_fcn_keeps_fc6_weights(classifier, fcn):
    row = layer_table(classifier, 224).set_index("name").loc["fc6"]
    fcn_row = layer_table(fcn, 224).set_index("name").loc["fc6"]
    assert fcn_row["parameters"] == row["parameters"] > 0
    assert fcn_row["FLOPs"] == row["FLOPs"]
    assert fcn_row["output"] == (*row["output"], 1, 1)


def test_classifier_refuses_other_sizes(classifier):
    with pytest.raises(ValueError, match="to_fully_convolutional"):
        layer_table(classifier, (300, 437))


@pytest.mark.parametrize("name", ["classifier", "fcn", "detector"])
def test_conv1_filters_are_the_weights_scaled_to_0_1(name, request):
    model = request.getfixturevalue(name)
    fig = conv1_filters(model, columns=5)
    images = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    weight = model.features[0].weight.detach().numpy()  # (out, 3, 11, 11)
    assert len(images) == len(fig.axes) == weight.shape[0]
    for img, w in zip(images, weight):
        w = w.transpose(1, 2, 0)  # (3, kh, kw) -> (kh, kw, 3)
        np.testing.assert_allclose(img, (w - w.min()) / (w.max() - w.min()), atol=1e-6)
        assert img.min() == 0 and img.max() == 1


@pytest.mark.parametrize(("name", "hw"), [("classifier", (224, 224)), ("detector", (200, 260))])
def test_activations_show_each_layer_once(name, hw, request):
    model = request.getfixturevalue(name)
    image = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    fig = activations(model, image, channels=4)

    # The reference input: the image normalized with ImageNet's statistics, by hand.
    x = torch.from_numpy(((image / 255 - MEAN) / STD).transpose(2, 0, 1)).float()[None]
    outputs = outputs_by_hand(model, x)
    expected = [k for k in listed(model, outputs) if outputs[k].dim() == 4]
    labelled = [ax for ax in fig.axes if ax.get_ylabel()]
    shapes = [
        tuple(int(n) for n in re.search(r"\(([\d, ]+)\)", ax.get_ylabel())[1].split(","))
        for ax in labelled
    ]
    assert shapes == [tuple(outputs[k].shape[1:]) for k in expected]
    # conv1's first channel, after the ReLU, as drawn.
    conv1 = np.asarray(labelled[0].images[0].get_array())
    np.testing.assert_allclose(conv1, outputs["features.1"][0, 0].numpy(), rtol=1e-4, atol=1e-4)


def test_activations_of_the_fcn_include_its_conv_classifier(fcn):
    image = np.zeros((230, 250, 3), dtype=np.uint8)
    labels = [ax.get_ylabel() for ax in activations(fcn, image, channels=2).axes if ax.get_ylabel()]
    assert [label.split("\n")[0] for label in labels[-3:]] == ["fc6", "fc7", "fc8"]
    assert labels[-1].endswith("(3, 1, 1)")


# ------------------------------------------------------------------------ settings


def test_settings_of_a_config_list_every_field():
    cfg = AlexNetConfig(epochs=3, lr=0.01, dataset="cats-dogs")
    table = settings_table(cfg).set_index("setting")
    assert list(table.index) == [f.name for f in fields(AlexNetConfig)]
    for f in fields(AlexNetConfig):
        assert table.loc[f.name, "value"] == getattr(cfg, f.name)
        assert table.loc[f.name, "default"] == f.default
    # Copied from workshop/train_alexnet.py by hand.
    assert table.loc["lr", "comment"] == "peak AdamW learning rate (one-cycle schedule)"
    assert table.loc["width", "comment"] == "channel multiplier; 0 = auto (0.25 on CPU, 1.0 on GPU)"
    assert (table["comment"] != "").all()  # STYLE: one comment per config field


def test_settings_from_an_mlp_checkpoint(tmp_path):
    cfg = MLPConfig(hidden_layer_size=7, optimizer="cg")
    path = save_checkpoint(
        tmp_path / "checkpoint.pt",
        MLP(hidden_layer_size=7),
        model_name="mlp",
        model_args={"hidden_layer_size": 7},
        optimizer={"name": "cg", "config": asdict(cfg)},  # as workshop/train_mlp.py saves it
    )
    table = settings_table(load_checkpoint(path)).set_index("setting")
    assert table["value"].to_dict() == {
        **asdict(cfg),
        "model_name": "mlp",
        "model_args.hidden_layer_size": 7,
        "epoch": 0,
    }
    assert table.loc["hidden_layer_size", "comment"] == "hidden sigmoid units"


def test_settings_from_an_alexnet_run_folder(tmp_path, fcn):
    """The AlexNet trainer's checkpoint has no config; its metrics.json beside it has."""
    cfg = asdict(AlexNetConfig(epochs=2))
    save_checkpoint(
        tmp_path / "checkpoint.pt", fcn, model_name="alexnet_fcn", model_args={"width": 0.125}
    )
    # engine.write_json sorts the keys; the table keeps the config's field order.
    metrics = json.dumps({"val_accuracy": 0.5, "config": cfg}, sort_keys=True)
    (tmp_path / "metrics.json").write_text(metrics)
    built = {"model_name": "alexnet_fcn", "model_args.width": 0.125, "epoch": 0}
    for run, extra in (
        (tmp_path, built),
        (tmp_path / "checkpoint.pt", built),
        (tmp_path / "metrics.json", {}),
    ):
        table = settings_table(run)
        assert list(table["setting"]) == [*cfg, *extra]
        table = table.set_index("setting")
        assert table["value"].to_dict() == {**cfg, **extra}
        assert table.loc["epochs", "comment"] == "passes over the training crops"
    with pytest.raises(ValueError, match="metrics.json"):
        settings_table(load_checkpoint(tmp_path / "checkpoint.pt"))


def test_settings_from_a_detectnet_checkpoint():
    cfg = asdict(DetectNetConfig(crop_h=96))
    # As workshop/train_detectnet.py saves it: the config inside the metrics.
    ckpt = {"model_name": "detectnet", "state_dict": {}, "metrics": {"config": cfg}}
    table = settings_table(ckpt).set_index("setting")
    assert table["value"].to_dict() == {**cfg, "model_name": "detectnet", "epoch": None}
    assert table.loc["crop_h", "comment"] == "training crop height (pixels)"


@dataclass
class Tricky:
    plain: int = 1  # the plain one
    hashed: str = "a # not a comment"  # after the string's # sign
    bare: float = 2.0
    spread: tuple = field(  # first line's comment
        default=(1, 2)  # not this one
    )
    listed: list = field(default_factory=lambda: [1])  # made fresh

    def method(self) -> float:
        bare: float = 3.0  # a method's local of a field's name, not the field's comment
        return bare


@dataclass
class TrickierChild(Tricky):
    plain: int = 5  # the child's comment
    extra: bool = True  # only in the child


def test_field_comments_read_trailing_comments_only():
    assert field_comments(Tricky) == {
        "plain": "the plain one",
        "hashed": "after the string's # sign",
        "spread": "first line's comment",
        "listed": "made fresh",
    }
    assert field_comments(TrickierChild) == {
        "plain": "the child's comment",
        "hashed": "after the string's # sign",
        "spread": "first line's comment",
        "listed": "made fresh",
        "extra": "only in the child",
    }
    table = settings_table(TrickierChild()).set_index("setting")
    assert table.loc["bare", "comment"] == ""
    assert table.loc["listed", "default"] == [1]
