"""Net surgery: the fully convolutional AlexNet against the classifier and the sliding window."""

import pytest
import torch
from torchvision.models import AlexNet_Weights
from torchvision.models import alexnet as tv_alexnet

from models.alexnet import WINDOW, AlexNet, alexnet, output_size
from workshop.fcn import sliding_window


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return AlexNet(num_classes=4, width=0.25).eval()


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_fcn_equals_classifier_at_224(width):
    torch.manual_seed(1)
    model = AlexNet(num_classes=5, width=width).eval()
    x = torch.randn(3, 3, WINDOW, WINDOW)
    with torch.no_grad():
        logits = model(x)
        fcn_out = model.to_fully_convolutional()(x)
    assert fcn_out.shape == (3, 5, 1, 1)
    assert (fcn_out[:, :, 0, 0] - logits).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    ("hw", "cells"),
    [
        ((224, 224), (1, 1)),
        ((225, 225), (1, 1)),
        ((255, 255), (2, 2)),
        ((256, 256), (2, 2)),
        ((480, 640), (9, 14)),
        ((1080, 1920), (27, 54)),
        ((100, 50), (1, 1)),
    ],
)
def test_output_size_formula(net, hw, cells):
    with torch.no_grad():
        out = net.to_fully_convolutional()(torch.randn(1, 3, *hw))
    assert tuple(out.shape[-2:]) == cells == (output_size(hw[0]), output_size(hw[1]))


def test_small_images_are_padded_not_refused(net):
    x = torch.randn(1, 3, 100, 150)
    padded = torch.nn.functional.pad(x, (0, WINDOW - 150, 0, WINDOW - 100))
    with torch.no_grad():
        torch.testing.assert_close(net.to_fully_convolutional()(x)[:, :, 0, 0], net(padded))


def test_classifier_refuses_other_sizes_clearly(net):
    with pytest.raises(ValueError, match="to_fully_convolutional"):
        net(torch.randn(1, 3, 480, 640))


def test_fcn_matches_the_sliding_window_with_context():
    torch.manual_seed(2)
    model = AlexNet(num_classes=4, width=0.25).eval()
    x = torch.randn(1, 3, 300, 417)
    with torch.no_grad():
        fcn = torch.softmax(model.to_fully_convolutional()(x)[0], 0)
        slide = torch.softmax(sliding_window(model, x), 0)
    assert slide.shape == fcn.shape == (4, output_size(300), output_size(417))
    assert (fcn - slide).abs().max().item() <= 1e-4


def test_fcn_matches_the_sliding_window_on_a_1080p_scene():
    torch.manual_seed(3)
    model = AlexNet(num_classes=4, width=0.125).eval()
    x = torch.randn(1, 3, 1080, 1920)
    rows, cols = output_size(1080), output_size(1920)
    g = torch.Generator().manual_seed(0)
    inner = [
        (
            int(torch.randint(1, rows - 1, (1,), generator=g)),
            int(torch.randint(1, cols - 1, (1,), generator=g)),
        )
        for _ in range(12)
    ]
    corners = [(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1), (rows // 2, 0)]
    with torch.no_grad():
        fcn = torch.softmax(model.to_fully_convolutional()(x)[0], 0)
        slide = torch.softmax(sliding_window(model, x, cells=corners + inner), 0)
    for i, j in corners + inner:
        assert (fcn[:, i, j] - slide[:, i, j]).abs().max().item() <= 1e-4, (i, j)


def test_plain_crops_match_only_where_the_crop_has_no_neighbours(net):
    """A lone 224 crop reads zeros where the FCN reads neighbours: equal only for a 224 image."""
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(sliding_window(net, x, context=False)[:, 0, 0], net(x)[0])
        big = torch.randn(1, 3, 320, 320)
        plain = sliding_window(net, big, context=False)
        exact = net.to_fully_convolutional()(big)[0]
    assert (plain - exact).abs().max().item() > 1e-4


def redirect_weights_url(monkeypatch):
    """Point torchvision's download at a closed local port: a real, offline network failure."""
    import torch.hub

    real = torch.hub.load_state_dict_from_url

    def offline(url, *args, **kwargs):
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[-1], *args, **kwargs)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)


def test_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    redirect_weights_url(monkeypatch)
    with pytest.raises(RuntimeError, match="neither in the torch hub cache"):
        alexnet(num_classes=2, pretrained=True)


def test_pretrained_loads_from_the_cache(tmp_path, monkeypatch):
    torch.hub.set_dir(str(tmp_path / "hub"))
    redirect_weights_url(monkeypatch)
    reference = tv_alexnet().state_dict()  # stands in for the ImageNet file in the cache
    filename = AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, tmp_path / "hub" / "checkpoints" / filename)
    model = alexnet(num_classes=2, pretrained=True)
    torch.testing.assert_close(model.features[0].weight, reference["features.0.weight"])
    torch.testing.assert_close(model.classifier[4].weight, reference["classifier.4.weight"])
    assert model.classifier[6].out_features == 2
