"""Inference latency: torch eager vs onnxruntime on the same trained models and inputs.

The FCN's heatmap at 224x224, 480x640 and 1920x1080, and the detector at
1920x1080, with the achieved GFLOP/s beside a float32 matrix multiply (GEMM)
measured in the same run: ``vs_gemm`` is the time taken over the time the
network's multiply-adds would take at the GEMM's rate (1.0 = GEMM-bound).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import median_seconds
from models.alexnet import MARGIN
from models.checkpoint import build_model, load_checkpoint
from workshop.artifacts import artifacts_dir
from workshop.data.images import normalize

SIZES = ((224, 224), (480, 640), (1080, 1920))


def count_flops(model: nn.Module, x: torch.Tensor) -> float:
    """2 x the multiply-adds of every convolution and linear layer for input x."""
    macs = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.numel() * k)
        elif isinstance(module, nn.Linear):
            macs.append(output.numel() * module.in_features)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return 2.0 * sum(macs)


def gemm_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_seconds(lambda: a @ b, repeats=5)["median_s"]
    return 2 * n**3 / t / 1e9


def _model_and_session(name: str):
    from exporters.onnx_export import export
    from streamlit_app.predictor import Predictor

    ckpt_path = artifacts_dir(name) / "checkpoint.pt"
    if not ckpt_path.is_file():
        return None, None, ckpt_path
    onnx_path = ckpt_path.with_name("model.onnx")
    if not onnx_path.is_file() or onnx_path.stat().st_mtime < ckpt_path.stat().st_mtime:
        export(ckpt_path)
    return build_model(load_checkpoint(ckpt_path)), Predictor(onnx_path), ckpt_path


def _row(model, predictor, h, w, pad: int, repeats: int, gemm: float) -> dict:
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, h, w)).astype(np.float32)
    x = torch.from_numpy(pixels)

    def torch_eager():
        with torch.no_grad():
            model(F.pad(normalize(x), (pad,) * 4) if pad else normalize(x))

    def onnxruntime():
        predictor.session.run(None, {predictor.input_name: pixels})

    flops = count_flops(model, F.pad(x, (pad,) * 4) if pad else x)
    t = median_seconds(torch_eager, repeats=repeats)
    o = median_seconds(onnxruntime, repeats=repeats)
    bound = flops / (gemm * 1e9)
    ort = o["median_s"]
    return {
        "size": f"{w}x{h}",
        "gflop": flops / 1e9,
        "torch_eager": t,
        "onnxruntime": o,
        "ort_speedup": t["median_s"] / ort,
        "ort_gflops": flops / ort / 1e9,
        "ort_vs_gemm": ort / bound,
    }


def run(sizes=SIZES, repeats: int = 7) -> dict:
    fcn, fcn_p, path = _model_and_session("alexnet")
    if fcn is None:
        return {"skipped": f"no {path}: run `make train-alexnet` (or `make demo`) first"}
    gemm = gemm_gflops()
    result = {
        "width": load_checkpoint(path)["model_args"]["width"],
        "provider": fcn_p.provider,
        "gemm_gflops": gemm,
        "rows": [],
    }
    for h, w in sizes:
        result["rows"].append({"model": "fcn", **_row(fcn, fcn_p, h, w, MARGIN, repeats, gemm)})
    det, det_p, _ = _model_and_session("detectnet")
    if det is not None:
        result["rows"].append(
            {"model": "detector", **_row(det, det_p, 1080, 1920, 0, repeats, gemm)}
        )
    return result


def table(result: dict) -> str:
    if "skipped" in result:
        return f"Inference latency: skipped ({result['skipped']})"
    lines = [
        f"Inference latency (width {result['width']}, {result['provider']}; float32 GEMM "
        f"{result['gemm_gflops']:.1f} GFLOP/s):",
        "",
        "| model | image | GFLOP | torch eager (ms) | onnxruntime (ms) | ORT speed-up "
        "| ORT GFLOP/s | ORT time / GEMM-bound time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        t, o = 1e3 * r["torch_eager"]["median_s"], 1e3 * r["onnxruntime"]["median_s"]
        lines.append(
            f"| {r['model']} | {r['size']} | {r['gflop']:.2f} | {t:.1f} | {o:.1f} | "
            f"{r['ort_speedup']:.2f}x | {r['ort_gflops']:.1f} | "
            f"{r['ort_vs_gemm']:.2f} |"
        )
    return "\n".join(lines)
