"""Where the trained models live: ``$ARTIFACTS`` when set, else ``artifacts/`` (one reader).

Numpy-free and torch-free, so the web app, the exporter, the trainers, the hub and the
benchmarks all ask this one function.
"""

from __future__ import annotations

import os
from pathlib import Path


def artifacts_root() -> Path:
    """The artifacts folder: $ARTIFACTS, or ``artifacts`` (relative to the working folder)."""
    return Path(os.environ.get("ARTIFACTS") or "artifacts")
