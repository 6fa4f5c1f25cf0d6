"""The one-run GPU check works before any GPU sees it: the same script, tiny sizes, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_the_tests_and_the_bench(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests_log = (tmp_path / "gpu_tests.log").read_text()
    assert "skipped" in tests_log or "passed" in tests_log
    [results] = tmp_path.glob("*.json")
    r = json.loads(results.read_text())
    env, gpu = r["environment"], r["gpu"]
    assert env["command"].startswith("python -m benchmarks --only gpu --dry-run")
    assert env["torch"] and env["torchvision"]
    assert gpu["dry_run"] is True
    assert (
        gpu["training"]["fp32_eager_reference"] > 0 and gpu["training"]["engine_vs_reference"] > 0
    )
    assert [(row["precision"], row["compiled"]) for row in gpu["fcn_heatmap"]["rows"]] == [
        ("fp32", False),
        ("bf16", False),
    ]
    assert all(row["per_batch_ms"] > 0 for row in gpu["fcn_heatmap"]["rows"])
    assert "vectorized (numpy)" in gpu["mlp"]["cost_gradient"]["rows"]
    assert gpu["mlp"]["time_to_97_gd"]["steps"] > 0
    assert "GPU paths on" in (tmp_path / "gpu_bench.log").read_text()


def test_gpu_section_says_why_it_does_not_run_without_cuda():
    import torch

    from benchmarks import gpu

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the section runs")
    assert "gpu_check.sh" in gpu.run()["skipped"]
