"""AlexNet training throughput at 224: a plain fp32 eager loop vs the engine's path.

Reference: a contiguous (NCHW) float32 model, a plain loop over one ready-made
normalized batch (and the same in channels_last, to separate the memory format
from the data work). Engine: ``workshop.engine.train_one_epoch`` with channels_last,
bf16 autocast on CUDA, batches cut and augmented from uint8 images kept on the
device (``make_batch``), and torch.compile when ``compile`` is set (on CUDA by
default; on a CPU compiling costs about a minute, so it is opt-in there).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks.common import peak_gpu_mb
from models.alexnet import alexnet
from workshop import engine
from workshop.data.images import make_batch, normalize
from workshop.distributed import Dist, describe_device, pick_device


def _images_per_s(step, batch: int, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def run(
    width: float | None = None,
    batch: int = 64,
    steps: int = 0,
    compile: bool | None = None,
    track_memory: bool = False,
):
    """Images/s of each path; with ``track_memory`` on CUDA also each path's peak MiB."""
    device = pick_device("auto")
    cuda = device.type == "cuda"
    width = width or (1.0 if cuda else 0.25)
    steps = steps or (50 if cuda else 8)
    compile = cuda if compile is None else compile
    store = torch.randint(
        0, 256, (max(batch * 4, 256), 256, 256, 3), dtype=torch.uint8, device=device
    )
    labels = torch.randint(0, 4, (len(store),), device=device)
    g = torch.Generator(device="cpu").manual_seed(0)

    # Reference: plain float32 eager, NCHW, a fixed normalized batch.
    model = alexnet(num_classes=4, width=width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = normalize(store[:batch, 16:240, 16:240].permute(0, 3, 1, 2).float())
    y = labels[:batch]

    def plain_step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    result = {
        "device": describe_device(device),
        "width": width,
        "batch": batch,
        "steps": steps,
    }
    peaks = {}

    def measure(key, fn):
        result[key], peak = peak_gpu_mb(fn, device) if track_memory else (fn(), None)
        if peak is not None:
            peaks[key] = peak

    measure("fp32_eager_reference", lambda: _images_per_s(plain_step, batch, steps, 2, device))
    # The memory format alone, same fixed batch: what channels_last buys without the data work.
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    measure("fp32_eager_channels_last", lambda: _images_per_s(plain_step, batch, steps, 2, device))

    def engine_path(compiled: bool) -> float:
        m, raw = engine.prepare_model(
            alexnet(num_classes=4, width=width), device, channels_last=True, d=Dist()
        )
        train_model = torch.compile(m) if compiled else m
        o = torch.optim.SGD(raw.parameters(), lr=1e-3, momentum=0.9)

        def get(idx):
            return make_batch(store[idx.to(device)], train=True, generator=g), labels[
                idx.to(device)
            ]

        def loss_fn(logits, target):
            loss = F.cross_entropy(logits, target)
            return loss, {}, 0

        batches = [torch.randint(0, len(store), (batch,), generator=g) for _ in range(steps + 3)]
        engine.train_one_epoch(
            train_model,
            batches[:3],
            get,
            loss_fn,
            o,
            None,
            device,
            epoch=0,
            d=Dist(),
            channels_last=True,
            desc="warm-up",
        )
        stats = engine.train_one_epoch(
            train_model,
            batches[3:],
            get,
            loss_fn,
            o,
            None,
            device,
            epoch=1,
            d=Dist(),
            channels_last=True,
            desc="bench",
        )
        return stats["images_per_s"]

    measure("engine_channels_last", lambda: engine_path(False))
    if compile:
        measure("engine_compiled", lambda: engine_path(True))
    best = max(v for k, v in result.items() if k.startswith("engine_"))
    result["engine_vs_reference"] = best / result["fp32_eager_reference"]
    if peaks:
        result["peak_mb"] = peaks
    return result


def table(result: dict) -> str:
    lines = [
        f"AlexNet training at 224 (width {result['width']}, batch {result['batch']}, "
        f"{result['device']}):",
        "",
        "| path | images/s |",
        "| --- | --- |",
    ]
    for key in (
        "fp32_eager_reference",
        "fp32_eager_channels_last",
        "engine_channels_last",
        "engine_compiled",
    ):
        if key in result:
            lines.append(f"| {key.replace('_', ' ')} | {result[key]:.0f} |")
    lines.append(f"\nengine / reference: {result['engine_vs_reference']:.2f}x")
    return "\n".join(lines)
