"""Timing helpers and the results file shared by every benchmark section."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def median_seconds(fn, *, repeats: int = 7, warmup: int = 2) -> dict:
    """Run fn warmup times, then repeats times; the median and the spread, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
    }


def peak_gpu_mb(fn, device):
    """(fn(), the peak GPU memory in MiB while it ran; None off CUDA)."""
    import torch

    if device.type != "cuda":
        return fn(), None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    return out, torch.cuda.max_memory_allocated(device) / 2**20


def device_name() -> str:
    """'cpu-2-cores' or the GPU's name, as a file-name-safe slug."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"cpu-{os.cpu_count()}-cores"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def environment() -> dict:
    import onnxruntime
    import torch

    return {
        "device": device_name(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def write_results(results: dict, folder: Path | None = None) -> Path:
    folder = Path(folder or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{results['environment']['device']}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(results)
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return path
