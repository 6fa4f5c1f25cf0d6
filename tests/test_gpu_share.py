"""A hosted participant's share of a GPU: the hub's spawner sets the fraction, torch obeys.

Kept apart from the hub's other tests so that `pytest -m gpu` runs on a GPU machine that
has torch but not JupyterHub (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.gpu
def test_a_participant_process_gets_only_its_share_of_the_gpu():
    code = (
        "import torch\n"
        "from workshop.distributed import apply_gpu_share, pick_device\n"
        "d = pick_device('cuda'); apply_gpu_share(d)\n"
        "total = torch.cuda.get_device_properties(d).total_memory\n"
        "small = torch.empty(int(total * 0.05), dtype=torch.uint8, device=d)\n"
        "try:\n"
        "    torch.empty(int(total * 0.5), dtype=torch.uint8, device=d)\n"
        "    print('took half')\n"
        "except torch.OutOfMemoryError:\n"
        "    print('refused')\n"
    )
    env = {**os.environ, "WORKSHOP_GPU_MEMORY_FRACTION": "0.25"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "refused", done.stderr
    env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": "per_process_memory_fraction:0.25"}
    code = code.replace("apply_gpu_share(d)", "pass")  # the allocator alone, as in notebooks
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "refused", done.stderr
