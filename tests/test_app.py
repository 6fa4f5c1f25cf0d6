"""The Streamlit app through AppTest: every path a visitor can take, bad files included."""

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    awkward_images,
    encode,
    export_known_fcns,
    photo_without_cats_or_dogs,
    scene_1080p,
)
from PIL import Image
from streamlit.testing.v1 import AppTest

from streamlit_app.predictor import Predictor

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")
AWKWARD = awkward_images()


def start(monkeypatch, artifacts, model: str | None = None) -> AppTest:
    monkeypatch.setenv("ARTIFACTS", str(artifacts))
    at = AppTest.from_file(APP, default_timeout=120)
    if model:
        at.query_params["model"] = model
    return at.run()


def upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    return at.file_uploader[0].set_value((name, data, mime)).run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_uploads_are_limited_and_typed(monkeypatch, artifacts):
    uploader = start(monkeypatch, artifacts).file_uploader[0].proto
    assert uploader.max_upload_size_mb == 50
    assert {".png", ".jpg", ".webp", ".bmp", ".tiff", ".gif"} <= set(uploader.type)


def test_without_models_the_page_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "empty"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    no_exception(at)
    assert "make demo" in texts(at.info)


def test_a_1080p_scene_gets_a_heatmap_and_boxes(monkeypatch, artifacts):
    at = upload(start(monkeypatch, artifacts), "scene.jpg", scene_1080p(), "image/jpeg")
    no_exception(at)
    assert [s.value for s in at.subheader] == [
        "Class heatmap — fully convolutional AlexNet",
        "Detections — DetectNet",
    ]
    assert len(at.get("image")) == 2
    captions = texts(at.caption)
    assert "scene.jpg: 1920x1080" in captions and "ms on CPUExecutionProvider" in captions
    labels = [d.label for d in at.get("download_button")]
    assert labels == [
        "Download overlay (PNG)",
        "Download detections (COCO JSON)",
        "Download picture (PNG)",
    ]
    # the model cards: classes, training data and metrics from the ONNX metadata
    sidebar = texts(at.sidebar.caption) + texts(at.sidebar.markdown)
    assert "trained on synthetic-test (synthetic data)" in sidebar
    assert "val accuracy 0.500" in sidebar and "AP 0.100" in sidebar
    assert "classes: star, ring, cross + background (none of these)" in sidebar


def test_sliders_reuse_the_cached_model_outputs(monkeypatch, artifacts):
    calls = []
    real = Predictor.infer
    monkeypatch.setattr(Predictor, "infer", lambda self, src: calls.append(1) or real(self, src))
    plain = encode(Image.new("RGB", (640, 480), (90, 120, 40)), "JPEG")
    at = upload(start(monkeypatch, artifacts), "plain.jpg", plain)
    ran = len(calls)
    assert ran == 2  # the FCN and the detector, once each
    at.slider(key="alexnet-opacity").set_value(0.2).run()
    at.selectbox(key="alexnet-class").set_value("ring").run()
    at.slider(key="detectnet-threshold").set_value(0.3).run()
    at.slider(key="detectnet-iou").set_value(0.6).run()
    no_exception(at)
    assert len(calls) == ran


def test_detection_sliders_and_class_filter_change_the_boxes(monkeypatch, artifacts):
    at = upload(
        start(monkeypatch, artifacts, "detectnet"), "scene.jpg", scene_1080p(), "image/jpeg"
    )
    at.slider(key="detectnet-threshold").set_value(0.05).run()
    many = int(at.get("image")[0].proto.imgs[0].caption.split()[0])
    at.slider(key="detectnet-threshold").set_value(0.95).run()
    few = int(at.get("image")[0].proto.imgs[0].caption.split()[0])
    assert many > few
    at.slider(key="detectnet-threshold").set_value(0.05).run()
    for wanted in (["star"], ["cross", "ring"]):
        at.multiselect(key="detectnet-classes").set_value(wanted).run()
        shown = set(at.dataframe[0].value["class"])
        assert shown and shown <= set(wanted)
    at.multiselect(key="detectnet-classes").set_value([]).run()
    assert "0 detections" in at.get("image")[0].proto.imgs[0].caption
    no_exception(at)


def test_sample_scene_button_works_offline(monkeypatch, artifacts):
    at = start(monkeypatch, artifacts)
    at.button[0].click().run()
    no_exception(at)
    assert "sample scene.jpg: 1280x720" in texts(at.caption)
    assert len(at.get("image")) == 2


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    """An MLP trained on the bundled digits (100 L-BFGS steps, ~97 % test accuracy), exported."""
    from exporters.onnx_export import export
    from models.checkpoint import save_checkpoint
    from models.mlp import to_module
    from workshop.data.digits import load_dataset
    from workshop.train_mlp import MLPConfig, fit

    data = load_dataset()
    result = fit(data, MLPConfig(device="cpu"), progress=False)
    root = tmp_path_factory.mktemp("trained")
    save_checkpoint(
        root / "mlp" / "checkpoint.pt",
        to_module(result.Theta1, result.Theta2),
        model_name="mlp",
        model_args={"input_layer_size": 400, "hidden_layer_size": 25, "num_labels": 10},
        meta=data.meta,
    )
    export(root / "mlp" / "checkpoint.pt")
    return root, result, data


def prediction(at: AppTest) -> str:
    no_exception(at)
    assert [s.value for s in at.subheader] == ["Handwritten digit — the ex4 MLP"]
    assert at.metric[0].label == "Prediction"
    assert "this model reads handwritten digits only" in texts(at.markdown)  # the verdict line
    return at.metric[0].value


def test_the_mlp_reads_a_digit(monkeypatch, trained_mlp):
    """Training digits, drawn large, are read as their labels; the course's numpy forward
    pass on the vector the app fed the network gives the same answer."""
    from models.mlp import predict
    from workshop.data.digits import from_course_layout

    root, result, data = trained_mlp
    at = start(monkeypatch, root, "mlp")
    predictor = Predictor(root / "mlp" / "model.onnx")
    sure = predict(result.Theta1, result.Theta2, data.X_train) == data.y_train
    for digit in (0, 3, 8):
        k = int(np.flatnonzero(sure & (data.y_train == digit))[0])
        image = (from_course_layout(data.X_train[k : k + 1])[0] * 255).astype(np.uint8)
        big = Image.fromarray(image).resize((200, 200), Image.NEAREST)  # (20, 20) -> (200, 200)
        seen = predictor.digit_vector(np.asarray(big.convert("RGB")))
        assert predict(result.Theta1, result.Theta2, seen[None])[0] == digit
        assert prediction(upload(at, f"digit{digit}.png", encode(big, "PNG"))) == str(digit)


def test_the_sample_digit_button_gives_the_course_models_answer(monkeypatch, trained_mlp):
    from models.mlp import predict
    from streamlit_app.samples import sample_digit

    root, result, _ = trained_mlp
    at = start(monkeypatch, root, "mlp")
    assert at.button[0].label == "Draw a sample digit"
    at.button[0].click().run()
    png, _ = sample_digit(1)  # the first click draws sample 1
    seen = Predictor(root / "mlp" / "model.onnx").infer(png).extra["digit"]
    assert prediction(at) == str(predict(result.Theta1, result.Theta2, seen[None])[0])


@pytest.mark.parametrize("case", sorted(AWKWARD))
def test_awkward_files_get_a_result_or_a_message(monkeypatch, artifacts, case):
    name, data, message = AWKWARD[case]
    at = upload(start(monkeypatch, artifacts), name, data, "application/octet-stream")
    no_exception(at)
    if message:
        assert message in texts(at.error)
        assert not at.get("image")
    else:
        assert not at.error, texts(at.error)
        assert len(at.get("image")) == 2


def test_huge_images_are_scaled_to_the_cap(monkeypatch, artifacts):
    name, data, _ = AWKWARD["huge"]
    at = upload(start(monkeypatch, artifacts), name, data, "image/jpeg")
    assert "huge.jpg: 5000x3000, shown at 1920x1152" in texts(at.caption)


def test_a_broken_model_file_is_a_warning_not_a_crash(monkeypatch, artifacts, tmp_path):
    root = tmp_path / "artifacts"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "model.onnx").write_bytes(b"not onnx at all")
    (root / "alexnet").mkdir()
    (root / "alexnet" / "model.onnx").write_bytes(
        (artifacts / "alexnet" / "model.onnx").read_bytes()
    )
    at = start(monkeypatch, root)
    no_exception(at)
    assert "not a usable ONNX model" in texts(at.warning)
    assert at.multiselect[0].value  # the working model is still offered


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """An artifacts folder with FCNs whose answer is known (helpers.export_known_fcns)."""
    root = tmp_path_factory.mktemp("known")
    export_known_fcns(root)
    return root


def test_the_card_and_the_result_say_what_the_model_knows(monkeypatch, known):
    """A cat/dog/background model on a photo of something else: the card shows its classes
    and its training data; the result's first line says none of its classes."""
    photo = photo_without_cats_or_dogs()
    at = upload(start(monkeypatch, known, "pets"), photo.name, photo.read_bytes(), "image/jpeg")
    no_exception(at)
    sidebar = texts(at.sidebar.caption) + texts(at.sidebar.markdown)
    assert "classes: cat, dog + background (none of these)" in sidebar
    assert "trained on pets-test (real data)" in sidebar and "val accuracy 0.900" in sidebar
    assert "pets knows cat, dog + background (none of these)" in texts(at.caption)
    verdict = [m.value for m in at.markdown if "none of my classes" in m.value]
    assert verdict == ["**none of my classes: background wins, no cat or dog above 0.5**"]
    assert at.selectbox(key="pets-class").value == "cat"  # an object class, not background


def test_a_model_without_background_says_so_in_the_result(monkeypatch, known):
    plain = encode(Image.new("RGB", (640, 480), (90, 120, 40)), "JPEG")
    at = upload(start(monkeypatch, known, "two"), "plain.jpg", plain)
    no_exception(at)
    assert "this model knows only cat, dog: it cannot say 'neither'" in texts(at.sidebar.caption)
    assert (
        "**dog (0.88, all over the image) · this model knows only cat, dog: it cannot say "
        "'neither'**" in texts(at.markdown)
    )
    assert at.selectbox(key="two-class").value == "dog"  # the class the verdict names


def test_every_kind_shows_its_verdict(monkeypatch, artifacts):
    """The verdict line the predictor gives for an upload is on the page, for each kind."""
    data = scene_1080p()
    at = upload(start(monkeypatch, artifacts, "alexnet,detectnet"), "scene.jpg", data)
    no_exception(at)
    shown = texts(at.markdown)
    fcn, det = (
        Predictor(artifacts / "alexnet" / "model.onnx"),
        Predictor(artifacts / "detectnet" / "model.onnx"),
    )
    assert f"**{fcn.verdict(fcn.infer(data))['text']}**" in shown
    assert f"**{det.verdict(det.infer(data))['text']}**" in shown
