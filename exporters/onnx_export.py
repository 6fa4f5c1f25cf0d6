"""A checkpoint -> one self-contained, self-describing ONNX file, verified before it is kept.

Every graph takes pixels as the data set stores them and does its own
normalization, so a user elsewhere needs only the metadata's geometry:

- ``mlp``: ``digits`` (n, 400) float in [0, 1], column-major 20x20 images (the
  course's layout) -> ``probabilities`` (n, 10), the sigmoid outputs (the course's h).
- ``fcn``: ``image`` (n, 3, H, W) float RGB 0-255 -> ``logits`` and ``probabilities``
  (n, C, h, w). The graph pads the normalized image by 96 pixels of zeros (the
  mean colour), so cell (i, j) is the 224 window at (32 j - 96, 32 i - 96):
  metadata ``window`` 224, ``stride`` 32, ``offset`` -96.
- ``detector``: ``image`` (n, 3, H, W) float RGB 0-255 -> ``coverage`` (n, C, h, w)
  and ``bboxes`` (n, 4, h, w) in pixels; clustering stays outside the graph
  (``models.boxes.decode``). Cell (i, j) is centred on (16 j + 15, 16 i + 15).

Verification, which fails loudly: ``onnx.checker`` (full check) and onnxruntime
against torch at input sizes other than the export example, odd ones included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import build_model, load_checkpoint
from models.heatmap import MARGIN

KIND_OF_MODEL = {"mlp": "mlp", "alexnet_fcn": "fcn", "detectnet": "detector"}
RTOL, ATOL = 1e-3, 1e-4
FCN_SIZES = ((224, 224), (227, 301), (480, 640), (1080, 1920))
DETECTOR_SIZES = ((301, 517), (480, 640), (768, 1024))
MLP_BATCHES = (1, 7)


class ExportError(RuntimeError):
    """The export failed or did not verify; the message says which check."""


class Normalized(nn.Module):
    """pixels 0-255 -> (x * input_scale - mean) / std, then the model (and FCN padding)."""

    def __init__(self, model: nn.Module, kind: str, meta: dict):
        super().__init__()
        self.model, self.kind = model, kind
        scale = float(meta.get("input_scale", 1.0))
        mean = torch.tensor(meta.get("mean", [0.0]), dtype=torch.float32)
        std = torch.tensor(meta.get("std", [1.0]), dtype=torch.float32)
        shape = (1, -1) if kind == "mlp" else (1, -1, 1, 1)
        # y = x * a + b with a = scale / std, b = -mean / std: one multiply-add in the graph.
        self.register_buffer("a", (scale / std).view(shape))
        self.register_buffer("b", (-mean / std).view(shape))

    def forward(self, x: torch.Tensor):
        x = x * self.a + self.b
        if self.kind == "mlp":
            return torch.sigmoid(self.model(x))
        if self.kind == "fcn":
            logits = self.model(F.pad(x, (MARGIN,) * 4))
            return logits, torch.softmax(logits, dim=1)
        return self.model(x)


def io_names(kind: str) -> tuple[list[str], list[str]]:
    if kind == "mlp":
        return ["digits"], ["probabilities"]
    if kind == "fcn":
        return ["image"], ["logits", "probabilities"]
    return ["image"], ["coverage", "bboxes"]


def example_input(kind: str, meta: dict) -> torch.Tensor:
    """The tracing example; its sizes differ from every verification size."""
    g = torch.Generator().manual_seed(0)
    if kind == "mlp":
        side = meta.get("input_size", [20, 20])
        return torch.rand(3, side[0] * side[1], generator=g)
    return torch.rand(1, 3, 256, 320, generator=g) * 255


def verification_inputs(kind: str, meta: dict) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        side = meta.get("input_size", [20, 20])
        return [torch.rand(n, side[0] * side[1], generator=g) for n in MLP_BATCHES]
    sizes = FCN_SIZES if kind == "fcn" else DETECTOR_SIZES
    return [torch.rand(1, 3, h, w, generator=g) * 255 for h, w in sizes]


def dynamic_shapes(kind: str):
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    if kind == "mlp":
        return {"x": {0: batch}}
    # Height and width free from 32 pixels up (the FCN pads, the detector needs 31).
    return {"x": {0: batch, 2: Dim("height", min=32, max=8192), 3: Dim("width", min=32, max=8192)}}


def metadata(ckpt: dict, kind: str, opset: int, fp16: bool) -> dict[str, str]:
    """The ONNX metadata_props: the checkpoint's meta, plus provenance; values JSON strings."""
    meta = dict(ckpt["meta"])
    meta["kind"] = kind
    names_in, names_out = io_names(kind)
    meta["inputs"], meta["outputs"] = names_in, names_out
    if kind == "fcn":
        meta.update(
            offset=-MARGIN,
            margin=MARGIN,
            window=meta.get("window", 224),
            stride=meta.get("stride", 32),
        )
    meta["pixels"] = "float RGB 0-255, NCHW" if kind != "mlp" else "float in [0, 1], ink bright"
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
    kind = KIND_OF_MODEL.get(ckpt["model_name"])
    if kind is None:
        raise ExportError(
            f"{checkpoint}: a {ckpt['model_name']!r} checkpoint cannot be exported; "
            f"exportable: {sorted(KIND_OF_MODEL)} (a train_state.pt is not a final model)"
        )
    out = Path(out) if out else checkpoint.with_name("model.onnx")
    model = build_model(ckpt).float().eval()
    reference = Normalized(model, kind, ckpt["meta"]).eval()
    exported = (
        Half(Normalized(build_model(ckpt).float(), kind, ckpt["meta"])) if fp16 else reference
    )
    names_in, names_out = io_names(kind)
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
                input_names=names_in,
                output_names=names_out,
                dynamic_shapes=dynamic_shapes(kind),
                opset_version=opset,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, metadata(ckpt, kind, opset, fp16))
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
