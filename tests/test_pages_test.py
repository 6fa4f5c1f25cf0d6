"""The Test page beyond one upload: Test many against the trainers' own answers, the layer
statistics against torch, and the app's pages (navigation, the room's shared demo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import encode, scene_1080p
from PIL import Image
from streamlit.testing.v1 import AppTest

from models.checkpoint import build_model, load_checkpoint, save_checkpoint
from models.mlp import feedforward, predict
from streamlit_app import test_many
from streamlit_app.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app" / "app.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny AlexNet trained by its trainer on the small synthetic crops (3 epochs) and the
    MLP fitted on the bundled digits, both exported; their data folder beside them."""
    from exporters.onnx_export import export
    from models.mlp import to_module
    from workshop.data.digits import load_dataset
    from workshop.train_mlp import MLPConfig, fit

    root = tmp_path_factory.mktemp("trained")
    art, data = root / "artifacts", root / "data"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "workshop.train_alexnet",
            "--synthetic_size=small",
            "--width=0.125",
            "--batch_size=8",
            "--epochs=3",
            "--sliding_check=false",
            "--pointing_scenes=1",
            "--examples=0",
            f"--out_dir={art / 'alexnet'}",
            f"--data_dir={data}",
        ],
        cwd=ROOT,
        env={**os.environ, "ARTIFACTS": str(art), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    export(art / "alexnet" / "checkpoint.pt")
    digits = load_dataset()
    fitted = fit(digits, MLPConfig(device="cpu"), progress=False)
    save_checkpoint(
        art / "mlp" / "checkpoint.pt",
        to_module(fitted.Theta1, fitted.Theta2),
        model_name="mlp",
        model_args={"input_layer_size": 400, "hidden_layer_size": 25, "num_labels": 10},
        meta=digits.meta,
    )
    export(art / "mlp" / "checkpoint.pt")
    return {
        "artifacts": art,
        "data": data,
        "val": data / "synthetic-small" / "crops" / "val",
        "digits": digits,
        "thetas": (fitted.Theta1, fitted.Theta2),
    }


def fc_classifier(checkpoint: Path) -> torch.nn.Module:
    """The FC AlexNet the trainer trained, rebuilt from the FCN checkpoint (surgery undone:
    fc6 is conv6's 6x6 kernels flattened in C, H, W order, fc7 and fc8 their 1x1 kernels)."""
    from models.alexnet import AlexNet

    ckpt = load_checkpoint(checkpoint)
    fcn = build_model(ckpt)
    model = AlexNet(**ckpt["model_args"]).eval()
    model.features.load_state_dict(fcn.features.state_dict())
    convs = [m for m in fcn.conv_classifier if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for conv, fc in zip(convs, linears):
            # (out, in, k, k) -> (out, in * k * k)
            fc.weight.copy_(conv.weight.reshape(fc.weight.shape))
            fc.bias.copy_(conv.bias)
    return model


def test_many_on_the_val_crops_equals_the_fc_classifier(trained):
    """Every val crop gets the FC classifier's answer (as the trainer evaluates it: its image
    cache, its centre crop), and the accuracy is the one the trainer recorded."""
    from workshop.data import images as imgdata

    art = trained["artifacts"] / "alexnet"
    data = test_many.labelled_folder(trained["val"])
    result = test_many.evaluate(Predictor(art / "model.onnx"), data)
    folder = imgdata.ImageFolder.scan(trained["val"])
    cache = imgdata.cache_images(folder, trained["data"] / "cache", "reference-val")
    x = imgdata.make_batch(torch.from_numpy(np.array(cache.images)), train=False)
    with torch.no_grad():
        reference = fc_classifier(art / "checkpoint.pt")(x).softmax(1).numpy()
    assert result.data.names == [f"{p.parent.name}/{p.name}" for p, _ in folder.samples]
    assert result.classes == folder.classes and (result.truth == cache.labels).all()
    np.testing.assert_allclose(result.probs, reference, atol=1e-5)
    assert (result.predictions == reference.argmax(1)).all()
    recorded = json.loads((art / "metrics.json").read_text())["val_accuracy"]
    assert result.accuracy == pytest.approx(recorded, abs=1e-12)
    assert result.accuracy == pytest.approx((reference.argmax(1) == cache.labels).mean())


def test_many_on_the_digits_test_split_equals_the_course_predict(trained, monkeypatch):
    from workshop.data import catalog

    monkeypatch.setenv("DATA_DIR", str(trained["data"]))
    data = test_many.dataset_split(catalog.find("digits"))
    result = test_many.evaluate(Predictor(trained["artifacts"] / "mlp" / "model.onnx"), data)
    digits, (Theta1, Theta2) = trained["digits"], trained["thetas"]
    expected = predict(Theta1, Theta2, digits.X_test)
    assert (result.truth == digits.y_test).all()
    assert (result.predictions == expected).all()
    assert result.accuracy == pytest.approx((expected == digits.y_test).mean(), abs=1e-12)
    h = feedforward(Theta1, Theta2, digits.X_test)[-1]
    np.testing.assert_allclose(result.probs, h, atol=1e-5)


def test_the_numbers_of_a_hand_made_result():
    """Five examples of three classes whose answers are known: the matrix, the per-class
    accuracy, the galleries' order, counted by hand."""
    labels = np.array([0, 0, 1, 1, 2])
    data = test_many.labelled_vectors(np.zeros((5, 4)), labels, ["a", "b", "c"], "hand")
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # a, right, 0.9
            [0.2, 0.7, 0.1],  # a, wrong (b 0.7)
            [0.1, 0.6, 0.3],  # b, right, 0.6
            [0.05, 0.9, 0.05],  # b, right, 0.9
            [0.1, 0.1, 0.8],  # c, right, 0.8
        ]
    )
    r = test_many.Evaluation("m", "mlp", ["a", "b", "c"], data, data.labels, probs, seconds=0.5)
    assert r.confusion().tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert r.accuracy == pytest.approx(0.8)
    assert [row["accuracy"] for row in r.per_class()] == [0.5, 1.0, 1.0]
    assert r.top_per_class(5) == {"a": [0], "b": [3, 2], "c": [4]}
    assert r.mistakes() == [1]
    assert r.caption(1) == "true a, predicted b 0.70 · row 1"
    assert r.images_per_s == pytest.approx(10.0)
    assert r.summary()["mistakes"] == [
        {"example": "row 1", "true": "a", "predicted": "b", "confidence": 0.7}
    ]


def labelled_crops(root: Path, classes, per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{k}.jpg")
    return root


def test_unreadable_images_are_skipped_and_counted(exported, tmp_path):
    folder = labelled_crops(tmp_path / "val", ["star", "ring"])
    (folder / "star" / "empty.jpg").write_bytes(b"")
    whole = encode(Image.new("RGB", (256, 256), (9, 9, 9)), "PNG")
    (folder / "ring" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (folder / "ring" / "notes.txt").write_text("not an image: not even listed")
    result = test_many.evaluate(Predictor(exported["alexnet"]), test_many.labelled_folder(folder))
    assert len(result.truth) == 4
    assert result.skipped == Counter(
        {"not an image file PIL can read": 1, "corrupt or truncated image": 1}
    )
    assert sorted(result.per_class()[k]["images"] for k in range(4)) == [0, 0, 2, 2]


def test_data_the_model_cannot_score_is_one_sentence(exported, tmp_path):
    folder = labelled_crops(tmp_path / "zoo", ["star", "zebra"], per_class=1)
    with pytest.raises(test_many.EvaluationError, match="the data's zebra is not among them"):
        test_many.evaluate(Predictor(exported["alexnet"]), test_many.labelled_folder(folder))
    with pytest.raises(test_many.EvaluationError, match="scores classifiers"):
        test_many.evaluate(Predictor(exported["detectnet"]), test_many.labelled_folder(folder))
    with pytest.raises(test_many.EvaluationError, match="no labelled images"):
        test_many.labelled_folder(tmp_path / "zoo" / "star")


def test_the_cli_prints_what_evaluate_finds(trained, capsys):
    model = trained["artifacts"] / "alexnet" / "model.onnx"
    assert test_many.main([str(trained["val"]), f"--model={model}", "--limit=20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    data = test_many.labelled_folder(trained["val"])
    direct = test_many.evaluate(Predictor(model), data, limit=20)
    assert printed["images"] == 20 and printed["accuracy"] == pytest.approx(direct.accuracy)
    assert printed["confusion"] == direct.confusion().tolist()
    assert test_many.main(["--dataset=nothing-here", f"--model={model}"]) == 2
    assert "no prepared data set named 'nothing-here'" in capsys.readouterr().err


# ------------------------------------------------------------------------ the page


def start(monkeypatch, artifacts, data=None, model=None, tab=None) -> AppTest:
    monkeypatch.setenv("ARTIFACTS", str(artifacts))
    if data is not None:
        monkeypatch.setenv("DATA_DIR", str(data))
    at = AppTest.from_file(APP, default_timeout=180)
    if model:
        at.query_params["model"] = model
    if tab:
        at.query_params["tab"] = tab
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def test_many_images_on_the_digits_shows_the_course_accuracy(trained, monkeypatch):
    at = start(monkeypatch, trained["artifacts"], trained["data"], model="mlp", tab="many")
    no_exception(at)
    assert at.radio(key="many-source").value == "A prepared data set"
    at.selectbox(key="many-set").set_value("digits").run()
    at.button(key="many-run").click().run()
    no_exception(at)
    digits, (Theta1, Theta2) = trained["digits"], trained["thetas"]
    accuracy = (predict(Theta1, Theta2, digits.X_test) == digits.y_test).mean()
    assert metrics(at)["Accuracy"] == f"{accuracy:.1%}"
    assert metrics(at)["Images"] == f"{len(digits.y_test):,}"
    confusion = next(d.value for d in at.dataframe if "true \\ predicted" in d.value.columns)
    assert confusion.shape == (10, 11)
    assert len(at.get("image")) >= 10  # the galleries


def test_many_images_on_a_typed_folder(trained, monkeypatch, tmp_path):
    at = start(monkeypatch, trained["artifacts"], trained["data"], model="alexnet", tab="many")
    at.radio(key="many-source").set_value("A folder with one subfolder per class").run()
    at.text_input(key="many-folder").set_value(str(tmp_path)).run()
    assert "outside the folders Test many reads" in at.error[0].value
    at.text_input(key="many-folder").set_value(str(trained["val"])).run()
    at.button(key="many-run").click().run()
    no_exception(at)
    direct = test_many.evaluate(
        Predictor(trained["artifacts"] / "alexnet" / "model.onnx"),
        test_many.labelled_folder(trained["val"]),
    )
    assert metrics(at)["Accuracy"] == f"{direct.accuracy:.1%}"
    assert metrics(at)["Images"] == "48"
    captions = "\n".join(i.proto.imgs[0].caption for i in at.get("image"))
    wrong = direct.mistakes(12)
    assert wrong and all(direct.caption(i) in captions for i in wrong)


def test_many_images_explains_what_a_detector_cannot_do(artifacts, monkeypatch, tmp_path):
    at = start(monkeypatch, artifacts, tmp_path / "data", model="detectnet", tab="many")
    no_exception(at)
    assert "Test many scores classifiers" in at.info[0].value


def layer_table(at: AppTest):
    return next(d.value for d in at.dataframe if "activation mean" in d.value.columns)


def test_the_layer_statistics_are_torchs(artifacts, monkeypatch):
    """Opened, the statistics give conv1's weights and its (ReLU'd) output for the uploaded
    image as torch computes them from the checkpoint; closed, nothing is traced."""
    from workshop.data.images import normalize

    data = scene_1080p()
    at = start(monkeypatch, artifacts, model="alexnet")
    at.file_uploader[0].set_value(("scene.jpg", data, "image/jpeg")).run()
    assert not [d for d in at.dataframe if "activation mean" in d.value.columns]
    at.session_state["alexnet-layers"] = True  # what opening the expander does
    at.run()
    no_exception(at)
    table = layer_table(at)
    assert list(table["layer"][:3]) == ["conv1", "pool1", "conv2"]
    assert list(table["layer"])[-3:] == ["fc6", "fc7", "fc8"]
    fcn = build_model(load_checkpoint(artifacts / "alexnet" / "checkpoint.pt"))
    image = Predictor(artifacts / "alexnet" / "model.onnx").load_image(data)[0]
    x = normalize(torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float())
    with torch.no_grad():
        conv1 = torch.relu(fcn.features[0](x))
    row = table.iloc[0]
    assert row["weight mean"] == pytest.approx(fcn.features[0].weight.mean().item(), rel=1e-5)
    assert row["activation mean"] == pytest.approx(conv1.mean().item(), rel=1e-4)
    assert row["activation std"] == pytest.approx(conv1.std(unbiased=False).item(), rel=1e-4)
    assert row["output"] == "x".join(map(str, conv1.shape[1:]))
    at.selectbox(key="alexnet-layer").set_value("conv2").run()
    no_exception(at)
    shown = [m.value for m in at.markdown]
    parameters = sum(p.numel() for p in fcn.features[3].parameters())
    assert f"**conv2 weights** · {parameters:,} parameters" in shown
    assert "**conv2 activations** · Conv2d+ReLU" in shown


def test_the_mlp_statistics_are_the_courses_a2_and_theta1(trained, monkeypatch):
    from streamlit_app.samples import sample_digit

    at = start(monkeypatch, trained["artifacts"], model="mlp")
    png, _ = sample_digit(3)
    at.file_uploader[0].set_value(("digit.png", png, "image/png")).run()
    at.session_state["mlp-layers"] = True
    at.run()
    no_exception(at)
    table = layer_table(at)
    ckpt = load_checkpoint(trained["artifacts"] / "mlp" / "checkpoint.pt")
    Theta1, Theta2 = build_model(ckpt).thetas()
    seen = Predictor(trained["artifacts"] / "mlp" / "model.onnx").infer(png).extra["digit"]
    _, _, a2, _, h = feedforward(Theta1, Theta2, seen[None].astype(np.float64))
    assert list(table["layer"]) == ["hidden", "output"]
    assert table["weight mean"][0] == pytest.approx(Theta1.mean())
    assert table["activation mean"][0] == pytest.approx(a2[0, 1:].mean(), rel=1e-6)
    assert table["activation mean"][1] == pytest.approx(h.mean(), rel=1e-6)


def test_without_a_checkpoint_the_statistics_say_so(exported, monkeypatch, tmp_path):
    (tmp_path / "alexnet").mkdir()
    (tmp_path / "alexnet" / "model.onnx").write_bytes(exported["alexnet"].read_bytes())
    at = start(monkeypatch, tmp_path, model="alexnet")
    at.file_uploader[0].set_value(("plain.jpg", scene_1080p(), "image/jpeg")).run()
    at.session_state["alexnet-layers"] = True
    at.run()
    no_exception(at)
    assert "No checkpoint.pt beside alexnet/model.onnx" in at.info[0].value


def test_the_pages_and_the_shared_demo(monkeypatch):
    from streamlit_app.app import PAGES, shown_pages

    everything = [p for p in PAGES if (ROOT / "streamlit_app" / "pages" / p[0]).is_file()]
    assert [p[1] for p in everything][:2] == ["Test", "Data sets"]
    assert shown_pages({}) == everything
    assert [p[1] for p in shown_pages({"WORKSHOP_PAGES": "test"})] == ["Test"]
    assert [p[1] for p in shown_pages({"WORKSHOP_PAGES": "nothing"})] == ["Test"]
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "minimal"
    assert config["client"]["showErrorDetails"] == "none"


def first_action(path: Path) -> str:
    """The source of a page's first top-level statement that can draw: past the docstring,
    imports, definitions and assignments that call no st.* (constants, tables)."""
    import ast

    tree = ast.parse(path.read_text())
    for node in tree.body:
        drawing = any(
            isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "st"
            for n in ast.walk(node)
        )
        quiet = isinstance(
            node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.AnnAssign
        ) or (isinstance(node, ast.Assign) and not drawing)
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not (quiet or docstring) or (isinstance(node, ast.Assign) and drawing):
            return ast.unparse(node)
    return ""


@pytest.mark.parametrize(
    "page", sorted(p.name for p in (ROOT / "streamlit_app" / "pages").glob("[!_]*.py"))
)
def test_every_page_runs_through_the_navigation_first(page):
    """Else a fresh server's first request to the page's URL runs it outside st.navigation
    (Streamlit's legacy pages/ mode), past $WORKSHOP_PAGES: see app.through_navigation."""
    first = first_action(ROOT / "streamlit_app" / "pages" / page)
    assert first in ("through_navigation()", "app.through_navigation()"), (
        f"pages/{page} starts with {first!r}"
    )
