"""make bench: run every section, write benchmarks/results/<device>.json, print tables."""

from __future__ import annotations

import sys

from benchmarks import app_latency, fcn_latency
from benchmarks.common import environment, write_results


def main() -> int:
    env = environment()
    print(f"benchmarks on {env['device']} (torch {env['torch']}, {env['torch_threads']} threads, "
          f"onnxruntime {env['onnxruntime']})\n")  # fmt: skip
    results = {"environment": env}
    results["fcn_latency"] = fcn = fcn_latency.run()
    print(fcn_latency.table(fcn), "\n")
    results["app_latency"] = app = app_latency.run()
    print(app_latency.table(app), "\n")
    path = write_results(results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
