"""python -m exporters CHECKPOINT [--out PATH] [--opset N] [--fp16]   (or --all)

Exports a trained model to one self-describing ONNX file, checked with
onnx.checker and compared with torch under onnxruntime; --all exports every
final checkpoint under the artifacts folder (artifacts/*/checkpoint.pt).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from exporters.onnx_export import ExportError, export, read_metadata
from models.artifacts import artifacts_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporters", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint.pt written by a trainer")
    parser.add_argument("--all", action="store_true", help="every artifacts/*/checkpoint.pt")
    parser.add_argument("--artifacts", default=None, help="artifacts folder for --all")
    parser.add_argument("--out", help="output path (default: model.onnx beside the checkpoint)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and arithmetic inside")
    args = parser.parse_args(argv)
    if args.all == bool(args.checkpoint):
        parser.error("give one CHECKPOINT, or --all")
    if args.all:
        root = Path(args.artifacts) if args.artifacts else artifacts_root()
        checkpoints = sorted(root.glob("*/checkpoint.pt"))
        if not checkpoints:
            print(f"nothing to export: no {root}/*/checkpoint.pt (run `make demo` first)")
            return 1
    else:
        checkpoints = [Path(args.checkpoint)]
    for ckpt in checkpoints:
        start = time.perf_counter()
        try:
            out = export(ckpt, None if args.all else args.out, opset=args.opset, fp16=args.fp16)
        except (ExportError, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        meta = read_metadata(out)
        size = out.stat().st_size / 2**20
        print(
            f"{out}: {meta['kind']}, classes {meta['classes']}, {size:.1f} MiB, verified with "
            f"onnxruntime in {time.perf_counter() - start:.1f} s"
        )
        if meta.get("metrics"):
            print(f"  metrics {json.dumps(meta['metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
