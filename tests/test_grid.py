"""Grid geometry: one owner, carried unchanged into the ONNX metadata, enough to place every cell.

The placement tests read an exported file's metadata only (window, stride,
offset, margin) and check the graph's real outputs against independent
computations: the FCN's cells against the plain classifier (fully connected
fc6-fc8) run on the window the metadata names, the detector's cells against
their receptive field (195 pixels through conv1-conv5 and the 3x3 neck,
derived by hand) centred where the metadata says.
"""

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from helpers import make_checkpoints

from exporters.onnx_export import export, read_metadata
from models.alexnet import MARGIN, AlexNet, FullyConvolutionalAlexNet, PaddedFCN
from models.boxes import GRID, cell_centres
from models.checkpoint import build_model, load_checkpoint, save_checkpoint
from models.detectnet import DetectNet
from models.grid import Grid
from workshop.data.images import normalize


def test_grid_round_trips_through_metadata_and_places_cells():
    g = Grid(window=224, stride=32, offset=-96)
    assert g.to_meta() == {"window": 224, "stride": 32, "offset": -96}
    assert Grid.from_meta({**g.to_meta(), "classes": ["a"]}) == g
    assert Grid.from_meta({"window": 224.0, "stride": "32", "offset": -96}) == g
    with pytest.raises(KeyError, match="window"):
        Grid.from_meta({"stride": 16, "offset": 15})
    xs, ys = g.cell_centers(2, 3)
    assert xs.tolist() == [[16, 48, 80]] * 2 and ys.tolist() == [[16] * 3, [48] * 3]
    assert g.window_box(1, 2) == (-32, -64, 192, 160)
    assert g.block_start() == 0  # the first centre's 32x32 block starts at the image's corner
    assert g.padded(4) == Grid(224, 32, -100) and Grid(224, 32).padded(96) == g
    assert g.scaled(2) == Grid(112, 16, -48) and g.scaled(64) is None
    assert g.nearest_cell(47.9, 0, 5, 5) == (0, 1) and g.nearest_cell(1e4, -1e4, 5, 5) == (0, 4)


def test_models_own_their_grids():
    assert FullyConvolutionalAlexNet.grid == Grid(224, 32, 0)
    assert PaddedFCN.grid == Grid(224, 32, -MARGIN) and MARGIN == 96
    assert DetectNet.grid == GRID == Grid(16, 16, 7)
    xs, ys = cell_centres(2, 3)  # the detector's receptive-field centres, 16 j + 15
    assert xs[0].tolist() == [15, 31, 47] and ys[:, 0].tolist() == [15, 31]
    torch.manual_seed(0)
    fcn = AlexNet(num_classes=3, width=0.125).eval().to_fully_convolutional()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():  # the padding is the model's: 96 zeros on every side, then the FCN
        torch.testing.assert_close(PaddedFCN(fcn)(x), fcn(F.pad(x, (96, 96, 96, 96))))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = make_checkpoints(tmp_path_factory.mktemp("artifacts"))
    return {name: export(root / name / "checkpoint.pt") for name in ("alexnet", "detectnet")}


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def classifier_of(fcn: FullyConvolutionalAlexNet) -> AlexNet:
    """The fully connected classifier carrying the FCN's weights (net surgery undone)."""
    conv6, conv7, conv8 = fcn.conv_classifier[0], fcn.conv_classifier[2], fcn.conv_classifier[4]
    net = AlexNet(num_classes=conv8.out_channels, width=0.125).eval()
    net.features.load_state_dict(fcn.features.state_dict())
    fc6, fc7, fc8 = (m for m in net.classifier if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        for fc, conv in ((fc6, conv6), (fc7, conv7), (fc8, conv8)):
            fc.weight.copy_(conv.weight.flatten(1))  # (out, c, kh, kw) -> (out, c * kh * kw)
            fc.bias.copy_(conv.bias)
    return net


@pytest.mark.parametrize("hw", [(227, 301), (287, 351)])
def test_fcn_metadata_alone_places_every_cell(exported, hw):
    """Cell (i, j) of the ONNX map is the classifier on the window the metadata names.

    The consumer's view: the graph sees the image with ``margin`` pixels of the mean colour
    on every side, and cell (i, j) is the window at (offset + stride j, offset + stride i).
    The classifier reads that window's 6x6 pool5 block, whose features see 66 pixels before
    the window and 64 after it: the crop carries that context (96 and 128, multiples of the
    stride, so the crop's cells stay on the image's cell grid). 287 + 2 * 96 = 479 leaves
    a last window one pixel short of the padded image, which conv1's padding fills.
    """
    path = exported["alexnet"]
    meta = read_metadata(path)
    grid, margin = Grid.from_meta(meta), meta["margin"]
    image = np.random.default_rng(hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    pixels = image.astype(np.float32).transpose(2, 0, 1)[None]  # (1, 3, H, W)
    (logits, _) = session(path).run(None, {"image": pixels})
    logits = logits[0]  # (C, h, w)
    classifier = classifier_of(build_model(load_checkpoint(path.with_name("checkpoint.pt"))))
    canvas = F.pad(normalize(torch.from_numpy(pixels)), (margin,) * 4)  # zeros: the mean colour
    h, w = logits.shape[1:]
    assert (h, w) == ((hw[0] + 1) // 32, (hw[1] + 1) // 32)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                x0, y0, x1, y1 = grid.window_box(i, j)
                cx0, cy0 = x0 + margin, y0 + margin  # canvas pixels
                top, left = max(0, cy0 - 96), max(0, cx0 - 96)
                crop = canvas[..., top : cy0 + 224 + 128, left : cx0 + 224 + 128]
                r, c = (cy0 - top) // 32, (cx0 - left) // 32
                block = classifier.features(crop)[..., r : r + 6, c : c + 6]  # (1, 256 w, 6, 6)
                ref = classifier.classifier(block.flatten(1))[0].numpy()
                np.testing.assert_allclose(logits[:, i, j], ref, rtol=1e-3, atol=1e-5)


RF_BEFORE, RF_AFTER = 97, 98  # the detector cell's receptive field: [centre - 97, centre + 98)


@pytest.mark.parametrize("hw", [(301, 343)])
def test_detector_metadata_alone_places_every_cell_at_its_receptive_field(exported, hw):
    """Scrambling every pixel outside [centre - 97, centre + 98)^2 of a cell (centre from the
    metadata) leaves its outputs bit for bit unchanged; scrambling the one-pixel line just
    inside any of the four edges changes them (a little: the field's edge reaches the cell
    through one path of max-pool choices): the field is exactly there, so the centre is too."""
    path = exported["detectnet"]
    grid = Grid.from_meta(read_metadata(path))
    sess = session(path)
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (*hw, 3)).astype(np.float32)
    xs, ys = grid.cell_centers(
        *sess.run(None, {"image": image.transpose(2, 0, 1)[None]})[0].shape[2:]
    )

    def outputs(img, i, j):
        coverage, bboxes = sess.run(None, {"image": img.transpose(2, 0, 1)[None].copy()})
        return np.concatenate([coverage[0, :, i, j], bboxes[0, :, i, j]])

    for i, j in [(6, 6), (9, 13), (11, 14)]:
        cx, cy = int(xs[i, j]), int(ys[i, j])
        x0, x1, y0, y1 = cx - RF_BEFORE, cx + RF_AFTER, cy - RF_BEFORE, cy + RF_AFTER
        assert min(x0, y0) >= 0 and x1 <= hw[1] and y1 <= hw[0]  # wholly inside the image
        ref = outputs(image, i, j)
        outside = 255 - image
        outside[y0:y1, x0:x1] = image[y0:y1, x0:x1]
        np.testing.assert_array_equal(outputs(outside, i, j), ref)  # the same arithmetic
        for edge in (
            np.s_[y0:y1, x0],
            np.s_[y0:y1, x1 - 1],
            np.s_[y0, x0:x1],
            np.s_[y1 - 1, x0:x1],
        ):
            line = image.copy()
            line[edge] = 255 - line[edge]
            assert (outputs(line, i, j) != ref).any(), (i, j, edge)


def test_a_stale_checkpoint_grid_is_replaced_and_a_current_one_copied(tmp_path, exported):
    """make_checkpoints writes the old form (FCN "offset": 0, detector cell centre 15 as
    "offset", no window); a checkpoint written as the trainers write now carries the model's
    grid: both export the graph's true geometry."""
    for name, grid in (("alexnet", PaddedFCN.grid), ("detectnet", DetectNet.grid)):
        ckpt = load_checkpoint(exported[name].with_name("checkpoint.pt"))
        assert Grid.from_meta(read_metadata(exported[name])) == grid
        current = {**ckpt["meta"], **grid.to_meta()}
        save_checkpoint(
            tmp_path / name / "checkpoint.pt",
            build_model(ckpt),
            model_name=ckpt["model_name"],
            model_args=ckpt["model_args"],
            metrics=ckpt["metrics"],
            meta=current,
        )
        meta = read_metadata(export(tmp_path / name / "checkpoint.pt", verify=False))
        assert {k: meta[k] for k in current} == current  # copied unchanged
