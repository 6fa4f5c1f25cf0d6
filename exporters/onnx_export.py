"""A checkpoint -> one self-contained, self-describing ONNX file, verified before it is kept.

Every graph takes pixels as the data set stores them and does its own
normalization, so a user elsewhere needs only the metadata's geometry (``window``,
``stride``, ``offset``: see ``models.grid``). What differs between kinds is one
entry of ``KINDS``:

- ``mlp``: ``digits`` (n, 400) float in [0, 1], column-major 20x20 images (the
  course's layout) -> ``probabilities`` (n, 10), the sigmoid outputs (the course's h).
- ``fcn``: ``image`` (n, 3, H, W) float RGB 0-255 -> ``logits`` and ``probabilities``
  (n, C, h, w). The graph pads the normalized image by 96 pixels of zeros (the
  mean colour), so cell (i, j) is the 224 window at (32 j - 96, 32 i - 96):
  metadata ``window`` 224, ``stride`` 32, ``offset`` -96.
- ``detector``: ``image`` (n, 3, H, W) float RGB 0-255 -> ``coverage`` (n, C, h, w)
  and ``bboxes`` (n, 4, h, w) in pixels; clustering stays outside the graph
  (``models.boxes.decode``). Cell (i, j) is centred on (16 j + 15, 16 i + 15):
  metadata ``window`` 16, ``stride`` 16, ``offset`` 7 (the 16x16 block about that centre).

Verification, which fails loudly: ``onnx.checker`` (full check) and onnxruntime
against torch at input sizes other than the export example, odd ones included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from models.alexnet import PaddedFCN
from models.checkpoint import build_model, load_checkpoint
from models.grid import Grid

RTOL, ATOL = 1e-3, 1e-4


class ExportError(RuntimeError):
    """The export failed or did not verify; the message says which check."""


def _digits(meta: dict, batch: int, g: torch.Generator) -> torch.Tensor:
    """A batch of random digit rows: (batch, 400) in [0, 1]."""
    side = meta.get("input_size", [20, 20])
    return torch.rand(batch, side[0] * side[1], generator=g)


def _image(meta: dict, hw: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """A random RGB image: (1, 3, h, w) float 0-255."""
    return torch.rand(1, 3, *hw, generator=g) * 255


def _with_softmax(logits):
    return logits, torch.softmax(logits, dim=1)


def _same(out):
    return out


# Dynamic axes: name, min, max. Heights and widths free from 32 pixels up (the FCN pads,
# the detector needs 31).
BATCH, HEIGHT, WIDTH = ("batch", 1, 4096), ("height", 32, 8192), ("width", 32, 8192)


@dataclass(frozen=True)
class Kind:
    """Everything the exporter does differently for one kind of model."""

    model_name: str  # the checkpoint's model that this kind exports
    inputs: tuple[str, ...]  # ONNX input names
    outputs: tuple[str, ...]  # ONNX output names
    pixels: str  # what the input holds (metadata, for people)
    make_input: Callable  # (meta, size, generator) -> an input tensor
    example: object  # the tracing example's size; differs from every verification size
    verify: tuple  # sizes compared with torch under onnxruntime
    dynamic: dict[int, tuple[str, int, int]]  # input axis -> dynamic dimension
    per_channel: tuple[int, ...]  # the shape mean and std take to broadcast over the input
    body: Callable[[nn.Module], nn.Module] = _same  # the model as the graph runs it
    head: Callable = _same  # the body's output -> the graph's outputs
    meta: dict = field(default_factory=dict)  # constant metadata of the kind


KINDS: dict[str, Kind] = {
    "mlp": Kind(
        model_name="mlp",
        inputs=("digits",),
        outputs=("probabilities",),
        pixels="float in [0, 1], ink bright",
        make_input=_digits,
        example=3,
        verify=(1, 7),
        dynamic={0: BATCH},
        per_channel=(1, -1),
        head=torch.sigmoid,
    ),
    "fcn": Kind(
        model_name="alexnet_fcn",
        inputs=("image",),
        outputs=("logits", "probabilities"),
        pixels="float RGB 0-255, NCHW",
        make_input=_image,
        example=(256, 320),
        verify=((224, 224), (227, 301), (480, 640), (1080, 1920)),
        dynamic={0: BATCH, 2: HEIGHT, 3: WIDTH},
        per_channel=(1, -1, 1, 1),
        body=PaddedFCN,
        head=_with_softmax,
        meta={"margin": PaddedFCN.margin},
    ),
    "detector": Kind(
        model_name="detectnet",
        inputs=("image",),
        outputs=("coverage", "bboxes"),
        pixels="float RGB 0-255, NCHW",
        make_input=_image,
        example=(256, 320),
        verify=((301, 517), (480, 640), (768, 1024)),
        dynamic={0: BATCH, 2: HEIGHT, 3: WIDTH},
        per_channel=(1, -1, 1, 1),
    ),
}


class Normalized(nn.Module):
    """pixels 0-255 -> (x * input_scale - mean) / std, then the kind's body and head."""

    def __init__(self, model: nn.Module, kind: str, meta: dict):
        super().__init__()
        spec = KINDS[kind]
        self.body, self.head = spec.body(model), spec.head
        self.grid: Grid | None = getattr(self.body, "grid", None)  # where its cells sit
        scale = float(meta.get("input_scale", 1.0))
        mean = torch.tensor(meta.get("mean", [0.0]), dtype=torch.float32)
        std = torch.tensor(meta.get("std", [1.0]), dtype=torch.float32)
        # y = x * a + b with a = scale / std, b = -mean / std: one multiply-add in the graph.
        self.register_buffer("a", (scale / std).view(spec.per_channel))
        self.register_buffer("b", (-mean / std).view(spec.per_channel))

    def forward(self, x: torch.Tensor):
        return self.head(self.body(x * self.a + self.b))


def example_input(kind: str, meta: dict) -> torch.Tensor:
    """The tracing example; its sizes differ from every verification size."""
    return KINDS[kind].make_input(meta, KINDS[kind].example, torch.Generator().manual_seed(0))


def verification_inputs(kind: str, meta: dict) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [KINDS[kind].make_input(meta, size, g) for size in KINDS[kind].verify]


def dynamic_shapes(kind: str):
    from torch.export import Dim

    axes = KINDS[kind].dynamic.items()
    return {"x": {axis: Dim(name, min=lo, max=hi) for axis, (name, lo, hi) in axes}}


def _written_grid(meta: dict) -> Grid | None:
    try:
        return Grid.from_meta(meta)
    except KeyError:
        return None


def metadata(ckpt: dict, graph: Normalized, opset: int, fp16: bool) -> dict[str, str]:
    """The ONNX metadata_props: the checkpoint's meta, plus provenance; values JSON strings."""
    meta = dict(ckpt["meta"])  # kind, classes, preprocessing, grid: written by the trainer
    spec = KINDS[meta["kind"]]
    if graph.grid is not None and _written_grid(meta) != graph.grid:
        # Checkpoints written before the grid had one owner carry a stale copy (the FCN's
        # "offset": 0, the detector's cell centre 15 as "offset"): the graph's own wins.
        meta.update(graph.grid.to_meta())
    meta.update(spec.meta)
    meta["inputs"], meta["outputs"] = list(spec.inputs), list(spec.outputs)
    meta["pixels"] = spec.pixels
    meta["normalized_in_graph"] = True
    meta["metrics"] = meta.get("metrics") or {
        k: v for k, v in ckpt["metrics"].items() if isinstance(v, int | float)
    }
    meta.update(
        model_name=ckpt["model_name"],
        model_args=ckpt["model_args"],
        exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        torch_version=torch.__version__,
        onnx_version=onnx.__version__,
        opset=opset,
        fp16=fp16,
    )
    return {k: json.dumps(v) for k, v in meta.items()}


def read_metadata(path) -> dict:
    """metadata_props of an ONNX file, JSON-decoded."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def export(checkpoint, out=None, *, opset: int = 18, fp16: bool = False, verify=True) -> Path:
    """Export one checkpoint to ``out`` (default: model.onnx beside it); returns the path.

    The file is written to a temporary name, checked, compared with torch under
    onnxruntime, and only then renamed into place.
    """
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    kind = ckpt["meta"].get("kind")
    if kind not in KINDS or KINDS[kind].model_name != ckpt["model_name"]:
        exportable = sorted(k.model_name for k in KINDS.values())
        raise ExportError(
            f"{checkpoint}: a {ckpt['model_name']!r} checkpoint cannot be exported; "
            f"exportable: {exportable} (a train_state.pt is not a final model)"
        )
    spec = KINDS[kind]
    out = Path(out) if out else checkpoint.with_name("model.onnx")
    model = build_model(ckpt).float().eval()
    reference = Normalized(model, kind, ckpt["meta"]).eval()
    exported = (
        Half(Normalized(build_model(ckpt).float(), kind, ckpt["meta"])) if fp16 else reference
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        with torch.no_grad():
            torch.onnx.export(
                exported.eval(),
                (example_input(kind, ckpt["meta"]),),
                str(tmp),
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_shapes=dynamic_shapes(kind),
                opset_version=opset,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, metadata(ckpt, reference, opset, fp16))
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as err:
            raise ExportError(f"onnx.checker rejected the export of {checkpoint}: {err}") from err
        if verify:
            tol = (2e-2, 2e-2) if fp16 else (RTOL, ATOL)
            # fp16 is compared with the float32 model: the question is how far it strays.
            verify_parity(reference, tmp, verification_inputs(kind, ckpt["meta"]), *tol)
        tmp.chmod(0o644)  # mkstemp makes owner-only files; models are meant to be shared
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".data").unlink(missing_ok=True)
    return out


class Half(nn.Module):
    """fp16 weights and arithmetic inside, float32 at the edges (inputs and outputs)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.half()

    def forward(self, x):
        out = self.inner(x.half())
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def verify_parity(torch_model: nn.Module, onnx_path, inputs, rtol=RTOL, atol=ATOL) -> list[dict]:
    """onnxruntime (CPU) vs torch on each input; raises ExportError past rtol/atol."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    report = []
    for x in inputs:
        with torch.no_grad():
            ref = torch_model(x)
        ref = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
        got = sess.run(None, {name: x.numpy()})
        for r, o, out in zip(ref, got, sess.get_outputs()):
            if r.shape != o.shape:
                raise ExportError(
                    f"{onnx_path}: output {out.name} has shape {o.shape} in onnxruntime but "
                    f"{r.shape} in torch for input {tuple(x.shape)}"
                )
            diff = np.abs(r - o)
            if not np.all(diff <= atol + rtol * np.abs(r)):
                raise ExportError(
                    f"{onnx_path}: onnxruntime differs from torch on {out.name} for input "
                    f"{tuple(x.shape)}: max |diff| {diff.max():.3g} (rtol {rtol}, atol {atol})"
                )
            report.append(
                {"input": list(x.shape), "output": out.name, "max_abs_diff": float(diff.max())}
            )
    return report
