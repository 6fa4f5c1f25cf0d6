"""The Test page (the workshop's demo): one image, or many labelled images, through a model.

    make app        # streamlit run streamlit_app/app.py on http://127.0.0.1:8501

*One image*: upload an image of any size, see the class heatmap, the detections or
the digit; "Visualizations and statistics" (computed when opened) shows each layer's
weights and activations for that image (``streamlit_app.layers``). *Many images*: a
labelled folder or a prepared data set's held-out split through a classifier:
accuracy, confusion matrix, per-class accuracy, the most confident right answers per
class and the most confident mistakes (``streamlit_app.test_many``).

Widgets only: models are the ONNX files under the artifacts folder ($ARTIFACTS,
default artifacts/), served by ``streamlit_app.predictor.Predictor``. Model
outputs are cached per (model file, image content), so moving a slider redraws
without running the network again; sessions are created once per process.
``?model=alexnet,detectnet`` in the URL preselects models by folder name;
``?tab=many`` opens the Many images tab.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import streamlit as st

from models.artifacts import artifacts_root
from models.imageio import BadImage
from streamlit_app import layers, test_many
from streamlit_app.app import through_navigation
from streamlit_app.predictor import MAX_SIDE, Output, Predictor, PredictorError
from streamlit_app.samples import jpeg_bytes, png_bytes, sample_digit, sample_scene

UPLOAD_MB = 50  # also in .streamlit/config.toml (server.maxUploadSize)
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]
FIGURE_WIDTH = 520  # pixels: matplotlib figures (conv1's filters, the confusion matrix)
KIND_TITLES = {
    "fcn": "Class heatmap — fully convolutional AlexNet",
    "detector": "Detections — DetectNet",
    "mlp": "Handwritten digit — the ex4 MLP",
}


@st.cache_resource(show_spinner=False)
def load_predictor(path: str, mtime: float) -> Predictor:
    """One onnxruntime session per model file (and version of it) per process.

    One thread per run: `model_gate` runs one model per core at a time, and more
    threads than cores made onnxruntime's spinning workers fight (30 sessions uploading
    1080p photos at once on 2 cores: p95 11.1 s with a thread per core per run, 9.2 s
    with one). onnxruntime's memory arena keeps its largest buffers for reuse (0.04 s
    less per 1080p FCN run); its size follows the runs that happen at once, which the
    gate bounds.
    """
    return Predictor(path, memory_arena=True, threads=1)


@st.cache_resource(show_spinner=False)
def model_gate() -> threading.BoundedSemaphore:
    """At most one model run (or full-size render) per core at a time, for the server.

    A room uploading at once would otherwise run every network and its full-size
    buffers side by side: no faster (the cores are busy either way), several times the
    memory (30 concurrent 1080p uploads: about 3 GB), and every visitor waits for the
    slowest. With the gate they are served in turn.
    """
    return threading.BoundedSemaphore(os.cpu_count() or 2)


@st.cache_resource(show_spinner=False, max_entries=64)
def run_model(path: str, mtime: float, digest: str, _data: bytes) -> Output:
    """Model outputs for one image; keyed on the model file and the image's SHA-256.

    One read-only copy serves every session that shows this image (a data cache would
    keep a pickled copy besides, and hand each session another: 1080p is 6 MB).
    """
    with model_gate():
        out = load_predictor(path, mtime).infer(_data)
    for array in (out.image, *out.maps.values()):
        array.setflags(write=False)
    return out


def model_label(path: Path, predictor: Predictor) -> str:
    return f"{path.parent.name} ({predictor.kind})"


def knows(card: dict) -> str:
    """The card's classes, the background class marked as the model's "none of these"."""
    named = ", ".join(card["classes"])
    return f"{named} + {card['background']} (none of these)" if card["background"] else named


def trained_on(card: dict) -> str:
    data = {True: "synthetic data", False: "real data"}.get(card["synthetic"], "data not recorded")
    return f"trained on {card['trained_on'] or '?'} ({data})"


def model_card(path: Path, p: Predictor) -> None:
    card = p.card()
    st.markdown(f"**{path.parent.name}** · `{p.kind}`")
    st.caption(f"classes: {knows(card)}")
    st.caption(trained_on(card))
    if card["metrics"]:
        st.caption(" · ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in card["metrics"].items()))
    if not card["background"]:  # a background class says it already: no need to warn
        st.caption(card["scope"])


def show_verdict(verdict: dict, where=st) -> None:
    where.markdown(f"**{verdict['text']}**", help=f"Rule: {verdict['rule']}")


@st.fragment
def show_fcn(p: Predictor, out: Output, key: str) -> None:
    top = p.top_classes(out, k=len(p.classes))
    verdict = p.verdict(out)
    show_verdict(verdict)
    left, right = st.columns([3, 1])
    with right:
        st.markdown("**Top classes** (peak over the image)")
        st.dataframe(
            {
                "class": [t["class"] for t in top],
                "probability": [round(t["score"], 4) for t in top],
            },
            hide_index=True,
        )
        objects = [t["class"] for t in top if t["class"] in p.object_classes]
        default = ([s["class"] for s in verdict["seen"]] + objects + [top[0]["class"]])[0]
        cls = st.selectbox("Class", p.classes, index=p.classes.index(default), key=f"{key}-class")
        opacity = st.slider("Opacity", 0.0, 1.0, 0.6, 0.05, key=f"{key}-opacity")
    reduce = p.preview_reduction(out)
    with model_gate():  # full-size float buffers: one render per core at a time
        shown = jpeg_bytes(p.heatmap(out, cls, opacity=opacity, reduce=reduce))
    half = " (preview at half size; the download is full size)" if reduce > 1 else ""
    with left:
        st.image(shown, caption=f"P({cls}) per 224 window, 32 px apart{half}", width="stretch")
        # made on click, so a session does not hold a full-size picture per model
        full = lambda: png_bytes(p.heatmap(out, cls, opacity=opacity))  # noqa: E731
        st.download_button(
            "Download overlay (PNG)",
            full,
            file_name=f"heatmap_{cls}.png",
            mime="image/png",
            key=f"{key}-dl",
            on_click="ignore",
        )


@st.fragment
def show_detector(p: Predictor, out: Output, key: str) -> None:
    verdict_slot = st.empty()  # filled once the sliders have chosen the boxes
    left, right = st.columns([3, 1])
    with right:
        threshold = st.slider(
            "Confidence",
            0.05,
            0.95,
            float(p.meta.get("threshold", 0.5)),
            0.05,
            key=f"{key}-threshold",
        )
        iou = st.slider(
            "Overlap (clustering IoU)",
            0.1,
            0.9,
            float(p.meta.get("cluster_iou", 0.4)),
            0.05,
            key=f"{key}-iou",
        )
        shown = st.multiselect("Classes", p.classes, default=p.classes, key=f"{key}-classes")
    with model_gate():
        dets = p.detections(out, threshold=threshold, iou=iou, classes=shown)
        picture = jpeg_bytes(p.draw(out, dets, reduce=p.preview_reduction(out)))
    show_verdict(p.verdict(out, threshold=threshold, detections=dets), verdict_slot)
    with left:
        st.image(
            picture,
            caption=f"{len(dets)} detection{'s' * (len(dets) != 1)}",
            width="stretch",
        )
    with right:
        if dets:
            table = {
                "class": [d["class"] for d in dets],
                "score": [round(d["score"], 3) for d in dets],
            }
            st.dataframe(table, hide_index=True)
        coco = json.dumps(p.coco_results(out, dets), indent=1)
        st.download_button(
            "Download detections (COCO JSON)",
            coco,
            key=f"{key}-json",
            file_name="detections.json",
            mime="application/json",
            on_click="ignore",
        )
        st.download_button(
            "Download picture (PNG)",
            lambda: png_bytes(p.draw(out, dets)),
            file_name="detections.png",
            mime="image/png",
            key=f"{key}-png",
            on_click="ignore",
        )


@st.fragment
def show_mlp(p: Predictor, out: Output, key: str) -> None:
    probs = out.maps["probabilities"]
    show_verdict(p.verdict(out))
    left, right = st.columns([1, 2])
    with left:
        best = int(np.argmax(probs))
        st.metric(
            "Prediction", p.classes[best], f"{probs[best]:.1%} (sigmoid output)", delta_color="off"
        )
        side = p.meta.get("input_size", [20, 20])
        digit = out.extra["digit"].reshape(side[1], side[0]).T  # column-major, as trained
        st.image((digit * 255).astype(np.uint8), caption="what the network sees (20x20)", width=160)
    with right:
        st.bar_chart(
            {"probability": {c: float(v) for c, v in zip(p.classes, probs)}},
            x_label="digit",
            y_label="output",
        )


SHOW = {"fcn": show_fcn, "detector": show_detector, "mlp": show_mlp}

# ------------------------------------------------------------------ visualizations and statistics

STATS_INPUT = {  # kind -> what the network was fed, from the model's Output
    "fcn": lambda out: out.image,
    "detector": lambda out: out.image,
    "mlp": lambda out: out.extra["digit"],
}


@st.cache_resource(show_spinner=False, max_entries=4)
def layer_stats(checkpoint: str, mtime: float, kind: str, digest: str, _x) -> layers.NetworkStats:
    """Per-layer statistics of one image (keyed on the checkpoint file and the image)."""
    with model_gate():
        return layers.network_stats(checkpoint, kind, _x)


def histogram(v: layers.Values, label: str) -> None:
    centres = (v.edges[:-1] + v.edges[1:]) / 2
    st.bar_chart({"value": centres.round(4), "count": v.counts}, x="value", y="count", height=160)
    st.caption(f"{label}: shape {'x'.join(map(str, v.shape))}, mean {v.mean:.4g}, std {v.std:.4g}")


def show_layers(path: Path, p: Predictor, out: Output, key: str, digest: str) -> None:
    """DIGITS' "show visualizations and statistics": computed only while the expander is open."""
    box = st.expander(
        "Visualizations and statistics, layer by layer", key=f"{key}-layers", on_change="rerun"
    )
    if not box.open:
        return
    with box:
        found = layers.checkpoint_beside(path)
        if found is None:
            st.info(
                f"No checkpoint.pt beside {path.parent.name}/model.onnx: the layer statistics "
                "read the trained network from it, and this model came without one."
            )
            return
        try:
            with st.spinner("tracing every layer ..."):
                x = STATS_INPUT[p.kind](out)
                net = layer_stats(str(found), found.stat().st_mtime, p.kind, digest, x)
        except (ValueError, KeyError, RuntimeError) as err:
            st.warning(f"{found}: {err}")
            return
        st.caption(
            f"{net.model} from {found.name}, the weights the ONNX file was exported from, "
            "on this image"
        )
        st.dataframe(net.table(), hide_index=True)
        names = [s.name for s in net.layers]
        name = st.selectbox("Layer", names, key=f"{key}-layer")
        layer = net.layers[names.index(name)]
        left, right = st.columns(2)
        with left:
            st.markdown(f"**{name} weights** · {layer.parameters:,} parameters")
            if layer.weights is None:
                st.caption(f"{layer.type}: no weights")
            else:
                histogram(layer.weights, "weights")
                if layer.weights.picture is not None:
                    st.image(layer.weights.picture, output_format="PNG")
        with right:
            st.markdown(f"**{name} activations** · {layer.type}")
            histogram(layer.activations, "activations")
            if layer.activations.picture is not None:
                st.image(layer.activations.picture, output_format="PNG")
        for title, figure in net.figures.items():
            st.markdown(f"**{title}**")
            st.pyplot(figure, width=FIGURE_WIDTH)


# ------------------------------------------------------------------ one image


def one_image(predictors: dict[Path, Predictor], chosen: list[Path]) -> None:
    upload = st.file_uploader(
        f"An image (any size; over {MAX_SIDE} px it is scaled down)",
        type=IMAGE_TYPES,
        max_upload_size=UPLOAD_MB,
    )
    digits_only = chosen and all(predictors[p].kind == "mlp" for p in chosen)
    if st.button("Draw a sample digit" if digits_only else "Generate a sample scene"):
        n = st.session_state.get("samples", 0) + 1
        st.session_state["samples"] = n
        if digits_only:
            st.session_state["sample"] = ("sample digit.png", sample_digit(n)[0])
        else:
            st.session_state["sample"] = ("sample scene.jpg", sample_scene(n))
    if upload is not None:
        name, data = upload.name, upload.getvalue()
    elif "sample" in st.session_state:
        name, data = st.session_state["sample"]
    else:
        st.info("Upload an image, or generate a sample scene.")
        return
    if not chosen:
        st.info("Pick a model in the sidebar.")
        return

    digest = hashlib.sha256(data).hexdigest()
    for path in chosen:
        p = predictors[path]
        st.subheader(KIND_TITLES[p.kind])
        try:
            with st.spinner(f"running {path.parent.name} ..."):
                out = run_model(str(path), path.stat().st_mtime, digest, data)
        except BadImage as err:
            st.error(f"{name}: {err}")
            return
        w, h = out.original_size
        note = (
            ""
            if (w, h) == out.image.shape[1::-1]
            else (f", shown at {out.image.shape[1]}x{out.image.shape[0]}")
        )
        st.caption(f"{name}: {w}x{h}{note} · {1e3 * out.seconds:.0f} ms on {p.provider}")
        card = p.card()
        st.caption(f"{path.parent.name} knows {knows(card)}; {trained_on(card)}")
        SHOW[p.kind](p, out, key=path.parent.name)
        show_layers(path, p, out, path.parent.name, digest)


# ------------------------------------------------------------------ many images

# the catalog's kinds of data set each model kind is scored on
DATA_KINDS = {"fcn": ("crops",), "mlp": ("digits",)}
GALLERY_COLUMNS = 6


def shared_demo() -> bool:
    """The room's shared demo (Test only, user nobody): typed folders stay in its own data."""
    return bool(os.environ.get("WORKSHOP_PAGES"))


def allowed_roots() -> list[Path]:
    """Where a typed folder may be: the artifacts and data folders, and the user's home
    (not in the shared demo, where the server's home is nobody's)."""
    from workshop.data import catalog  # here, not above: One image needs no data catalog

    roots = [artifacts_root(), catalog.data_root()]
    if not shared_demo():
        roots.append(Path.home())
    return [r.resolve() for r in roots]


@st.cache_resource(show_spinner=False)
def load_batch_predictor(path: str, mtime: float, threads: int) -> Predictor:
    """A predictor for Test many: all cores on the user's own server, one in the shared demo."""
    return Predictor(path, threads=threads)


@st.cache_data(show_spinner=False, ttl=60)
def data_sets(root: str) -> list:
    from workshop.data import catalog

    return catalog.data_sets(root)


def pick_data(p: Predictor) -> tuple[str, object] | None:
    """The widgets that choose the examples; (what they are, a loader) or None."""
    from workshop.data import catalog

    kinds = DATA_KINDS[p.kind]
    sets = [s for s in data_sets(str(catalog.data_root())) if s.kind in kinds]
    where = st.radio(
        "Images",
        ["A prepared data set", "A folder with one subfolder per class"],
        horizontal=True,
        key="many-source",
    )
    if where == "A prepared data set":
        if not sets:
            st.info(
                f"No prepared data set for a {p.kind} model in {catalog.data_root()}/: "
                "prepare one on the Data sets page, or type a folder."
            )
            return None
        names = [s.name for s in sets]
        name = st.selectbox(
            "Data set",
            names,
            key="many-set",
            format_func=lambda n: f"{n} ({sets[names.index(n)].held_out} split)",
        )
        chosen = sets[names.index(name)]
        return f"{name}:{chosen.held_out}", lambda: test_many.dataset_split(chosen)
    typed = st.text_input(
        "Folder",
        key="many-folder",
        placeholder=str(catalog.data_root() / "cats-dogs" / "val"),
        help="Class subfolders of images, under " + ", ".join(str(r) for r in allowed_roots()),
    ).strip()
    if not typed:
        return None
    folder = Path(typed).expanduser().resolve()
    if not any(folder.is_relative_to(r) for r in allowed_roots()):
        st.error(
            f"{typed} is outside the folders Test many reads "
            f"({', '.join(str(r) for r in allowed_roots())})."
        )
        return None
    return str(folder), lambda: test_many.labelled_folder(folder)


def many_images(predictors: dict[Path, Predictor], chosen: list[Path]) -> None:
    classifiers = [path for path in chosen if predictors[path].kind in DATA_KINDS]
    if not classifiers:
        st.info(
            "Test many scores classifiers: pick the AlexNet (fcn) or the MLP in the sidebar "
            "(a detector is scored by its AP in training)."
        )
        return
    path = st.selectbox(
        "Model",
        classifiers,
        key="many-model",
        format_func=lambda p: model_label(p, predictors[p]),
    )
    p = predictors[path]
    picked = pick_data(p)
    limit = st.number_input(
        "At most this many images (0: all; evenly spread over the classes)",
        min_value=0,
        value=1000,
        step=100,
        key="many-limit",
    )
    if picked is None:
        return
    source, load = picked
    job = (str(path), path.stat().st_mtime, source, int(limit))
    if st.button("Test many", type="primary", key="many-run"):
        bar = st.progress(0.0, text="reading the examples ...")
        try:
            data = load()
            threads = 1 if shared_demo() else 0
            batch = load_batch_predictor(str(path), path.stat().st_mtime, threads)
            with model_gate():
                result = test_many.evaluate(
                    batch,
                    data,
                    limit=int(limit),
                    progress=lambda done, total: bar.progress(
                        done / total, text=f"{done} of {total} images"
                    ),
                )
        except (test_many.EvaluationError, PredictorError, ValueError) as err:
            bar.empty()
            st.error(str(err))
            return
        bar.empty()
        st.session_state["many-result"] = (job, result)
    found = st.session_state.get("many-result")
    if found and found[0] == job:
        show_evaluation(found[1])


def show_evaluation(r: test_many.Evaluation) -> None:
    skipped = sum(r.skipped.values())
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{r.accuracy:.1%}")
    cols[1].metric("Images", f"{len(r.truth):,}")
    cols[2].metric("Images/s", f"{r.images_per_s:.0f}", help="reading, preprocessing, inference")
    cols[3].metric("Skipped", skipped, help=", ".join(f"{k}: {v}" for k, v in r.skipped.items()))
    st.caption(f"{r.data.source} · {r.provider} · {r.seconds:.1f} s")

    left, right = st.columns(2)
    with left:
        st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        st.pyplot(test_many.confusion_figure(r), width=FIGURE_WIDTH)
    with right:
        matrix = r.confusion()
        st.dataframe(
            {"true \\ predicted": r.classes}
            | {c: matrix[:, k].tolist() for k, c in enumerate(r.classes)},
            hide_index=True,
        )
        st.markdown("**Per-class accuracy**")
        st.dataframe(
            r.per_class(),
            hide_index=True,
            column_config={"accuracy": st.column_config.NumberColumn(format="percent")},
        )

    st.markdown("**Top images per class** (the most confident right answers)")
    for cls, found in r.top_per_class(GALLERY_COLUMNS).items():
        if found:
            gallery(r, found, label=cls)
        else:
            st.caption(f"{cls}: no right answers")
    st.markdown("**The most confident mistakes**")
    wrong = r.mistakes(2 * GALLERY_COLUMNS)
    if wrong:
        gallery(r, wrong)
    else:
        st.caption("No mistakes.")
    st.download_button(
        "Download the results (JSON)",
        json.dumps(r.summary(), indent=1),
        file_name="test_many.json",
        mime="application/json",
        on_click="ignore",
    )


def gallery(r: test_many.Evaluation, found: list[int], label: str = "") -> None:
    if label:
        st.markdown(f"*{label}*")
    for row in range(0, len(found), GALLERY_COLUMNS):
        cols = st.columns(GALLERY_COLUMNS)
        for col, i in zip(cols, found[row : row + GALLERY_COLUMNS]):
            col.image(r.picture(i), caption=r.caption(i), output_format="PNG", width="stretch")


# ------------------------------------------------------------------ the page

TABS = ["One image", "Many images"]


def main() -> None:
    st.title("From a classifier to a detector")
    st.caption(
        "Upload an image of any size: the fully convolutional AlexNet maps where each "
        "class is, DetectNet boxes the objects. All on onnxruntime."
    )

    paths = sorted(artifacts_root().glob("*/model.onnx"))
    if not paths:
        st.info(
            f"No exported models in `{artifacts_root()}/` yet. Run `make demo` (it trains the "
            "three workshop models on generated data, exports them to ONNX and starts this "
            "app), or `make export` if they are trained already."
        )
        st.stop()
    predictors, broken = {}, []
    for path in paths:
        try:
            predictors[path] = load_predictor(str(path), path.stat().st_mtime)
        except PredictorError as err:
            broken.append(str(err))
    for message in broken:
        st.warning(message)
    if not predictors:
        st.stop()

    wanted = st.query_params.get("model", "")
    by_name = {p.parent.name: p for p in predictors}
    if wanted:
        default = [by_name[n] for n in wanted.split(",") if n in by_name]
    else:
        default = [p for p, pr in predictors.items() if pr.kind != "mlp"]
    with st.sidebar:
        st.header("Models")
        chosen = st.multiselect(
            "Run",
            list(predictors),
            default=default or list(predictors)[:1],
            format_func=lambda p: model_label(p, predictors[p]),
        )
        for path in chosen:
            model_card(path, predictors[path])
        provider = next(iter(predictors.values())).provider
        st.caption(f"onnxruntime provider: `{provider}`")

    # each tab runs only while it is open (Many images reads the data catalog)
    first = TABS[1] if st.query_params.get("tab") == "many" else TABS[0]
    one, many = st.tabs(TABS, default=first, key="test-tab", on_change="rerun")
    if one.open:
        with one:
            one_image(predictors, chosen)
    if many.open:
        with many:
            many_images(predictors, chosen)


through_navigation()
main()
