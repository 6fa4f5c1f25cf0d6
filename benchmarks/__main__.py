"""make bench: run the sections, write benchmarks/results/<device>.json, print tables.

    python -m benchmarks                    # every section but the pipeline
    python -m benchmarks --only inference,app
    python -m benchmarks --pipeline         # also time the embedded pipeline (~11 min on CPU)

On a GPU machine the same command measures the CUDA paths (torch on CUDA, the
onnxruntime CUDA provider, training with bf16, channels_last and torch.compile).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks import (
    app_latency,
    digits_bench,
    fcn_latency,
    gpu,
    hub_bench,
    mlp_bench,
    pipeline,
    realdata,
    tracking_bench,
    training,
)
from benchmarks.common import RESULTS, environment, write_results

SECTIONS = {
    "mlp": mlp_bench,
    "training": training,
    "tracking": tracking_bench,
    "inference": fcn_latency,
    "app": app_latency,
    "digits": digits_bench,
    "hub": hub_bench,
    "realdata": realdata,
    "gpu": gpu,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(SECTIONS)}")
    parser.add_argument("--pipeline", action="store_true", help="also time the whole pipeline")
    parser.add_argument(
        "--dry-run", action="store_true", help="gpu section: tiny sizes, on the CPU if no GPU"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="folder for <device>.json (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    # The benches train in-process: their runs are measurements, not the participant's runs
    # (the tracking section switches tracking on for its own runs).
    os.environ.setdefault("WORKSHOP_TRACKING", "off")
    names = [n for n in args.only.split(",") if n] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    env = environment()
    env["command"] = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    print(
        f"benchmarks on {env['device']} (torch {env['torch']}, {env['torch_threads']} threads, "
        f"onnxruntime {env['onnxruntime']})\n"
    )
    results = {"environment": env}
    chosen = [(n, SECTIONS[n]) for n in names] + ([("pipeline", pipeline)] if args.pipeline else [])
    for name, section in chosen:
        results[name] = (
            section.run(dry_run=True) if name == "gpu" and args.dry_run else section.run()
        )
        print(section.table(results[name]), "\n", flush=True)
    print(f"results: {write_results(results, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
