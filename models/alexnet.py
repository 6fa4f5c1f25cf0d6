"""AlexNet (torchvision's topology) and its fully convolutional twin ("net surgery").

The classifier sees a 224x224 crop: ``features`` (conv1-conv5, 64-192-384-256-256
channels times ``width``) end in a 256x6x6 map, and ``classifier`` is fc6 (9216 ->
4096), fc7 (4096 -> 4096) and fc8 (4096 -> classes), with dropout. There is no
``AdaptiveAvgPool2d``: it would hide the geometry and export wrong to ONNX.

``to_fully_convolutional()`` rewrites fc6 as a 6x6 convolution and fc7, fc8 as
1x1 convolutions with the same weights. On an H x W input the network then
returns a map of logits with

    out = floor((H - 191) / 32)   (and likewise for W), for H >= 223,

one cell per 224x224 window at stride 32: cell (i, j) is the classifier applied
to the window whose top-left corner is (32 i, 32 j). (conv1's 2-pixel padding
makes the network see a 227x227 patch of the zero-padded image, hence 191 =
227 - 4 - 32.) Smaller inputs are zero-padded (at the bottom and right, after
normalization) up to 224 first. That geometry is ``FullyConvolutionalAlexNet.grid``.

Whole images go through ``PaddedFCN``, which zero-pads (the mean colour, after
normalization) by MARGIN = 96 pixels on every side first, so that window
centres reach 16 pixels from each edge and objects near the border are seen
centred too: its grid is window 224, stride 32, offset -96.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.grid import Grid

WINDOW = 224  # the classifier's input size, and the FCN's window
STRIDE = 32  # total stride of features (4 * 2 * 2 * 2)
MARGIN = (WINDOW - STRIDE) // 2  # 96: padding that puts the first window centre at 16 px
CONV1_PAD = 2


def output_size(n: int) -> int:
    """Heatmap cells along an input side of n pixels (after padding to the window)."""
    return (max(n, WINDOW) - 191) // STRIDE


def _widths(width: float) -> tuple[int, ...]:
    """Channels of conv1..conv5 and units of fc6/fc7, scaled by width."""
    return (
        *(max(8, round(c * width)) for c in (64, 192, 384, 256, 256)),
        max(64, round(4096 * width)),
    )


def _features(width: float) -> nn.Sequential:
    c1, c2, c3, c4, c5, _ = _widths(width)
    return nn.Sequential(
        nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=CONV1_PAD),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c1, c2, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c2, c3, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class AlexNet(nn.Module):
    """The classifier: a 224x224 crop -> class logits."""

    def __init__(self, *, num_classes: int = 4, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        self.width = width
        self.features = _features(width)
        *_, c5, hidden = _widths(width)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, hidden),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),  # fc7
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),  # fc8
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for the ReLU convolutions; small normal weights for the linear layers.

        PyTorch's default (uniform, a=sqrt(5)) shrinks activations layer after
        layer, and AlexNet without batch norm then sits at chance for epochs.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-2:] != (6, 6):
            raise ValueError(
                f"the classifier takes 223..254 pixel inputs (224 nominal), got "
                f"{tuple(x.shape[-2:])} feature cells; use to_fully_convolutional() for other sizes"
            )
        return self.classifier(torch.flatten(x, 1))  # (n, 256, 6, 6) -> (n, 9216)

    def to_fully_convolutional(self) -> FullyConvolutionalAlexNet:
        """Net surgery: the same weights, with fc6/fc7/fc8 as 6x6/1x1/1x1 convolutions."""
        fc6, fc7, fc8 = (m for m in self.classifier if isinstance(m, nn.Linear))
        c5 = _widths(self.width)[4]
        fcn = FullyConvolutionalAlexNet(num_classes=fc8.out_features, width=self.width)
        fcn.features.load_state_dict(self.features.state_dict())
        conv6, conv7, conv8 = fcn.conv_classifier[0], fcn.conv_classifier[2], fcn.conv_classifier[4]
        with torch.no_grad():
            # fc6 read the (256, 6, 6) map flattened in C, H, W order: the same order here.
            conv6.weight.copy_(fc6.weight.view(fc6.out_features, c5, 6, 6))
            conv7.weight.copy_(fc7.weight.view(fc7.out_features, fc7.in_features, 1, 1))
            conv8.weight.copy_(fc8.weight.view(fc8.out_features, fc8.in_features, 1, 1))
            for conv, fc in ((conv6, fc6), (conv7, fc7), (conv8, fc8)):
                conv.bias.copy_(fc.bias)
        return fcn.to(fc6.weight.device).eval()


class FullyConvolutionalAlexNet(nn.Module):
    """Any H x W (>= 64) image -> a map of class logits, one cell per 224 window at stride 32."""

    grid = Grid(window=WINDOW, stride=STRIDE, offset=0)

    def __init__(self, *, num_classes: int = 4, width: float = 1.0):
        super().__init__()
        self.features = _features(width)
        *_, c5, hidden = _widths(width)
        self.conv_classifier = nn.Sequential(
            nn.Conv2d(c5, hidden, kernel_size=6),  # fc6
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, kernel_size=1),  # fc8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Too small for one window: zero-pad (the normalized mean colour) bottom and right.
        x = F.pad(x, (0, max(0, WINDOW - w), 0, max(0, WINDOW - h)))
        return self.conv_classifier(self.features(x))


class PaddedFCN(nn.Module):
    """The FCN on a whole image: padded by MARGIN (zeros: the normalized mean colour) first."""

    margin = MARGIN
    grid = FullyConvolutionalAlexNet.grid.padded(MARGIN)  # window 224, stride 32, offset -96

    def __init__(self, fcn: FullyConvolutionalAlexNet):
        super().__init__()
        self.fcn = fcn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fcn(F.pad(x, (self.margin,) * 4))


def alexnet(*, num_classes: int, width: float = 1.0, pretrained: bool = False) -> AlexNet:
    """Build the classifier; ``pretrained`` starts features and fc6/fc7 from ImageNet weights.

    The ImageNet weights come from torchvision (its cache, or the internet); when
    neither is reachable this raises a RuntimeError that says so.
    """
    model = AlexNet(num_classes=num_classes, width=width)
    if pretrained:
        if width != 1.0:
            raise ValueError("pretrained ImageNet weights exist for width 1.0 only")
        from torchvision.models import AlexNet_Weights

        try:
            state = AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as err:  # URLError, socket errors, HTTP errors...
            raise RuntimeError(
                "could not load torchvision's ImageNet AlexNet weights: they are neither in "
                f"the torch hub cache ({torch.hub.get_dir()}) nor downloadable here "
                f"({err.__class__.__name__}: {err}). Train from scratch (drop --pretrained) "
                "or copy alexnet-owt-7be5be79.pth into that cache."
            ) from None
        # Same names for features; classifier.1/.4 are fc6/fc7; fc8 stays fresh (our classes).
        state = {k: v for k, v in state.items() if not k.startswith("classifier.6")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) == {"classifier.6.weight", "classifier.6.bias"}
    return model
