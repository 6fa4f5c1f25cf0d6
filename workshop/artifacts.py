"""Where a trainer's outputs go (artifacts/<model>/) and how they are written (atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from models.artifacts import artifacts_root


def write_json(path, data: dict) -> Path:
    """Write JSON atomically (temporary file + rename), so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def artifacts_dir(model: str) -> Path:
    """artifacts/<model>/, or $ARTIFACTS/<model>/ when ARTIFACTS is set."""
    return artifacts_root() / model


def trained_artifacts(model: str) -> Path:
    """Where a trained <model> is: one's own (artifacts_dir), else the instructor's shared,
    read-only one in the hosted workshop ($WORKSHOP_SHARED_ARTIFACTS), else one's own."""
    own = artifacts_dir(model)
    shared = Path(os.environ.get("WORKSHOP_SHARED_ARTIFACTS") or own) / model
    if not (own / "checkpoint.pt").is_file() and (shared / "checkpoint.pt").is_file():
        return shared
    return own
