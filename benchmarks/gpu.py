"""`make bench` on a GPU: the CUDA paths side by side, each with its peak GPU memory.

    python -m benchmarks --only gpu               # with CUDA: the sizes below
    python -m benchmarks --only gpu --dry-run     # anywhere: tiny sizes on the CPU (CI runs it)
    bash benchmarks/gpu_check.sh                  # a lent GPU machine: pytest -m gpu, then this

- AlexNet training at 224, full width, batch 256: the fp32 eager reference (NCHW, one
  ready batch) against the engine (bf16 autocast, channels_last, batches cut and augmented
  on the GPU from uint8 images kept there), with and without torch.compile.
- The FCN's heatmap of a 1920x1080 image in torch: fp32 vs bf16, eager vs compiled, per
  image and per batch of 8 (random weights: the time does not depend on them).
- Module 1's hand-written MLP on CUDA: cost + gradient at 5000x400 beside numpy on the
  CPU, and the time to 97 % test accuracy with the on-device gradient-descent loop.

With CUDA each figure's peak memory is `torch.cuda.max_memory_allocated`; GFLOP/s sit
beside the H100's bf16 dense peak (about 790 TFLOP/s) so the bound shows.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks import mlp_bench, training
from benchmarks.common import median_seconds, peak_gpu_mb
from benchmarks.fcn_latency import count_flops
from models.alexnet import MARGIN, alexnet
from workshop.data.images import normalize
from workshop.distributed import describe_device, pick_device

BF16_PEAK_TFLOPS = 790  # H100 SXM dense bf16, for the "what bounds it" column
FULL = {
    "width": 1.0,
    "batch": 256,
    "steps": 40,
    "image": (1080, 1920),
    "fcn_batch": 8,
    "repeats": 20,
    "compile": True,
    "gd_steps": (200, 400, 1000, 2000),
}
DRY = {
    "width": 0.125,
    "batch": 4,
    "steps": 1,
    "image": (200, 264),
    "fcn_batch": 2,
    "repeats": 1,
    "compile": False,
    "gd_steps": (5,),
}


def median_ms(fn, device, repeats: int) -> float:
    """common.median_seconds, waiting for the GPU to finish each run."""

    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return 1e3 * median_seconds(run, repeats=repeats, warmup=3)["median_s"]


def fcn_heatmap(device, size: dict) -> dict:
    """The FCN on a 1920x1080 image (and 8 of them), fp32 / bf16, eager / compiled."""
    h, w = size["image"]
    model = alexnet(num_classes=4, width=size["width"]).to_fully_convolutional().to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    pixels = torch.randint(0, 256, (size["fcn_batch"], 3, h, w), device=device).float()
    flops_one = count_flops(model, F.pad(normalize(pixels[:1]), (MARGIN,) * 4))
    rows = []
    variants = [("fp32", False), ("bf16", False)]
    if size["compile"]:
        variants += [("fp32", True), ("bf16", True)]
    for precision, compiled in variants:
        net = torch.compile(model, dynamic=False) if compiled else model
        bf16 = precision == "bf16"
        row = {"precision": precision, "compiled": compiled}
        for n, key in ((1, "per_image"), (size["fcn_batch"], "per_batch")):
            x = pixels[:n].contiguous(memory_format=torch.channels_last)

            def run(x=x, net=net, bf16=bf16):
                with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    return net(F.pad(normalize(x), (MARGIN,) * 4))

            ms, peak = peak_gpu_mb(lambda run=run: median_ms(run, device, size["repeats"]), device)
            row[f"{key}_ms"] = ms
            row[f"{key}_peak_mb"] = peak
        row["images_per_s_batched"] = 1e3 * size["fcn_batch"] / row["per_batch_ms"]
        row["tflops_batched"] = flops_one * size["fcn_batch"] / (row["per_batch_ms"] / 1e3) / 1e12
        rows.append(row)
    return {
        "image": f"{w}x{h}",
        "width": size["width"],
        "gflop_per_image": flops_one / 1e9,
        "batch": size["fcn_batch"],
        "rows": rows,
    }


def alexnet_training(device, size: dict) -> dict:
    """training.run at the GPU's sizes, with each path's peak memory."""
    result = training.run(
        width=size["width"],
        batch=size["batch"],
        steps=size["steps"],
        compile=size["compile"],
        track_memory=True,
    )
    flops = 3 * count_flops(
        alexnet(num_classes=4, width=size["width"]), torch.zeros(1, 3, 224, 224)
    )  # forward + backward
    best = result["engine_vs_reference"] * result["fp32_eager_reference"]
    result["engine_tflops"] = best * flops / 1e12
    return result


def mlp_on_device(device, size: dict) -> dict:
    """Cost + gradient at 5000x400 (numpy CPU, torch CPU, torch CUDA) and time to 97 %."""
    from workshop.data.digits import load_dataset
    from workshop.train_mlp import MLPConfig, fit

    cost_gradient, peak = peak_gpu_mb(
        lambda: mlp_bench.cost_gradient(repeats=size["repeats"]), device
    )
    out = {"cost_gradient": {**cost_gradient, "peak_mb": peak}}
    data = load_dataset("digits")
    race = {}
    for steps in size["gd_steps"]:
        cfg = MLPConfig(
            optimizer="gd", maxiter=steps, device=device.type, backend="torch", baselines=False
        )
        start = time.perf_counter()
        result, peak = peak_gpu_mb(lambda cfg=cfg: fit(data, cfg, progress=False), device)
        seconds = time.perf_counter() - start
        race = {
            "steps": steps,
            "seconds": seconds,
            "device": device.type,
            "peak_mb": peak,
            "test_accuracy": result.history[-1]["test_accuracy"],
        }
        if race["test_accuracy"] >= mlp_bench.TARGET:
            break
    out["time_to_97_gd"] = race
    return out


def run(dry_run: bool = False) -> dict:
    cuda = torch.cuda.is_available()
    if not cuda and not dry_run:
        return {
            "skipped": "no CUDA here: run it on a GPU machine (bash benchmarks/gpu_check.sh), "
            "or --dry-run for the tiny CPU version"
        }
    device = pick_device("cuda" if cuda else "cpu")
    size = DRY if dry_run else FULL
    out = {"device": describe_device(device), "dry_run": dry_run, "sizes": size}
    for name, fn in (
        ("training", alexnet_training),
        ("fcn_heatmap", fcn_heatmap),
        ("mlp", mlp_on_device),
    ):
        start = time.perf_counter()
        out[name] = fn(device, size)
        out[name]["section_s"] = time.perf_counter() - start
    return out


def table(result: dict) -> str:
    if "skipped" in result:
        return f"GPU: skipped ({result['skipped']})"
    tr, fcn, mlp = result["training"], result["fcn_heatmap"], result["mlp"]
    mem = tr.get("peak_mb", {})
    dry = " (dry run: tiny sizes)" if result["dry_run"] else ""
    lines = [
        f"GPU paths on {result['device']}{dry}:",
        "",
        f"AlexNet training at 224, width {tr['width']}, batch {tr['batch']}:",
        "",
        "| path | images/s | peak MiB |",
        "| --- | --- | --- |",
    ]
    for key in (
        "fp32_eager_reference",
        "fp32_eager_channels_last",
        "engine_channels_last",
        "engine_compiled",
    ):
        if key in tr:
            lines.append(f"| {key.replace('_', ' ')} | {tr[key]:.0f} | {_mb(mem.get(key))} |")
    lines += [
        f"\nengine / reference: {tr['engine_vs_reference']:.2f}x; the engine at "
        f"{tr['engine_tflops']:.1f} TFLOP/s (bf16 dense peak ~{BF16_PEAK_TFLOPS})",
        "",
        f"FCN heatmap, {fcn['image']} ({fcn['gflop_per_image']:.0f} GFLOP per image):",
        "",
        f"| precision | compiled | ms per image | ms per batch of {fcn['batch']} "
        "| images/s | TFLOP/s "
        "| peak MiB (batch) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in fcn["rows"]:
        lines.append(
            f"| {r['precision']} | {r['compiled']} | {r['per_image_ms']:.2f} | "
            f"{r['per_batch_ms']:.2f} | {r['images_per_s_batched']:.0f} | "
            f"{r['tflops_batched']:.1f} | {_mb(r['per_batch_peak_mb'])} |"
        )
    lines += [
        "",
        "MLP (hand-written, no autograd), cost + gradient at 5000x400:",
        "",
        "| implementation | median (ms) |",
        "| --- | --- |",
    ]
    for name, t in mlp["cost_gradient"]["rows"].items():
        lines.append(f"| {name} | {1e3 * t['median_s']:.2f} |")
    race = mlp["time_to_97_gd"]
    lines.append(
        f"\npeak MiB: {_mb(mlp['cost_gradient']['peak_mb'])}; gradient descent on "
        f"{race['device']}: {race['test_accuracy']:.1%} after {race['steps']} steps in "
        f"{race['seconds']:.2f} s (peak MiB {_mb(race['peak_mb'])})"
    )
    return "\n".join(lines)


def _mb(value) -> str:
    return "-" if value is None else f"{value:.0f}"
