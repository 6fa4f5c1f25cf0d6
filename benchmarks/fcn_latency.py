"""FCN heatmap latency: torch eager vs onnxruntime, same trained model, same images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import median_seconds
from models.checkpoint import build_model, load_checkpoint
from models.heatmap import MARGIN
from workshop.data.images import normalize
from workshop.engine import artifacts_dir

SIZES = ((224, 224), (480, 640), (1080, 1920))


def run(sizes=SIZES, repeats: int = 7) -> dict:
    from exporters.onnx_export import export
    from streamlit_app.predictor import Predictor

    ckpt_path = artifacts_dir("alexnet") / "checkpoint.pt"
    if not ckpt_path.is_file():
        return {"skipped": f"no {ckpt_path}: run `make train-alexnet` (or `make demo`) first"}
    onnx_path = ckpt_path.with_name("model.onnx")
    if not onnx_path.is_file() or onnx_path.stat().st_mtime < ckpt_path.stat().st_mtime:
        export(ckpt_path)
    fcn = build_model(load_checkpoint(ckpt_path))
    predictor = Predictor(onnx_path)
    rows = []
    for h, w in sizes:
        pixels = np.random.default_rng(0).integers(0, 256, (1, 3, h, w)).astype(np.float32)
        x = torch.from_numpy(pixels)

        def torch_eager(x=x):
            with torch.no_grad():
                fcn(F.pad(normalize(x), (MARGIN,) * 4)).softmax(1)

        def onnxruntime(pixels=pixels):
            predictor.session.run(None, {predictor.input_name: pixels})

        t = median_seconds(torch_eager, repeats=repeats)
        o = median_seconds(onnxruntime, repeats=repeats)
        rows.append({"size": f"{w}x{h}", "torch_eager": t, "onnxruntime": o,
                     "ort_speedup": t["median_s"] / o["median_s"]})  # fmt: skip
    return {"model": str(ckpt_path), "width": load_checkpoint(ckpt_path)["model_args"]["width"],
            "provider": predictor.provider, "rows": rows}  # fmt: skip


def table(result: dict) -> str:
    if "skipped" in result:
        return f"FCN latency: skipped ({result['skipped']})"
    lines = [f"FCN heatmap latency (AlexNet width {result['width']}, {result['provider']}):", "",
             "| image | torch eager (ms) | onnxruntime (ms) | ORT speed-up |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for r in result["rows"]:
        t, o = 1e3 * r["torch_eager"]["median_s"], 1e3 * r["onnxruntime"]["median_s"]
        lines.append(f"| {r['size']} | {t:.1f} | {o:.1f} | {r['ort_speedup']:.2f}x |")
    return "\n".join(lines)
