"""The embedded pipeline from nothing to a ready web app, step by step (package install excluded).

It runs what `make demo` runs, into fresh temporary ARTIFACTS and DATA_DIR
folders: the three trainers (data generation included), the export, and the app
until its health check answers. About 11 minutes on 2 CPU cores: opt-in
(`make bench PIPELINE=1`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, app_server


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-"))
    env = {**os.environ, "ARTIFACTS": str(tmp / "artifacts")}
    steps = {}
    total = time.perf_counter()
    for target in ("train-mlp", "train-alexnet", "train-detectnet", "export"):
        start = time.perf_counter()
        run = subprocess.run(
            [
                "make",
                "--no-print-directory",
                target,
                f"DATA_DIR={tmp / 'data'}",
                f"ARTIFACTS={tmp / 'artifacts'}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if run.returncode:
            return {"failed": target, "stderr": run.stderr[-2000:]}
        steps[target] = time.perf_counter() - start
    start = time.perf_counter()
    with app_server(tmp / "artifacts"):
        steps["app ready"] = time.perf_counter() - start
    return {"steps_s": steps, "total_s": time.perf_counter() - total, "goal_s": 15 * 60}


def table(result: dict) -> str:
    if "failed" in result:
        return f"Pipeline: `make {result['failed']}` failed:\n{result['stderr']}"
    lines = ["The embedded pipeline to a ready app:", "", "| step | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in result["steps_s"].items()]
    lines.append(f"| **total** | **{result['total_s']:.0f}** (goal {result['goal_s']}) |")
    return "\n".join(lines)
