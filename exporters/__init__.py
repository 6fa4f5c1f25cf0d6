"""Checkpoint -> ONNX with metadata, parity-checked with onnxruntime."""
