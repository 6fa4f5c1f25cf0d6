"""python -m streamlit_app.predict IMAGE --model artifacts/alexnet/model.onnx

Runs one exported model on one image with onnxruntime and prints JSON: the top
classes; for the FCN the heatmap's geometry and each class's peak; for the
detector the boxes in COCO result format (in the image's own pixels); for the
MLP the digit; for every model the verdict (what the image shows in the
model's terms, "none of my classes" included). Needs no torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from models.imageio import BadImage
from streamlit_app.predictor import Predictor, PredictorError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamlit_app.predict", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("image", help="an image file (PNG, JPEG, WebP, BMP, TIFF, GIF, ...)")
    parser.add_argument("--model", required=True, help="an exported .onnx file")
    parser.add_argument("--threshold", type=float, help="detector: coverage threshold")
    parser.add_argument("--iou", type=float, help="detector: clustering overlap")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.model, threads=args.threads, device=args.device)
        result = predictor.summary(args.image, threshold=args.threshold, iou=args.iou)
    except (PredictorError, BadImage, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
