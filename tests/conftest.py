import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import MODELS, make_checkpoints

ROOT = Path(__file__).resolve().parents[1]
# Same thread policy as the Makefile, also when pytest is started by hand.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WORKSHOP_PROFILE", "smoke")
# Trainers run in-process by the tests write $ARTIFACTS (their outputs, the MLflow store):
# never the repo's artifacts/, which the Makefile exports. Tests needing their own set it.
os.environ["ARTIFACTS"] = tempfile.mkdtemp(prefix="workshop-test-artifacts-")
atexit.register(shutil.rmtree, os.environ["ARTIFACTS"], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def python():
    """The interpreter running the tests (the project's .venv under make test)."""
    return sys.executable


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """An artifacts folder with the tiny model of every kind, saved and exported once.

    Shared by the whole session: read it, never write into it (make_checkpoints gives a
    test its own copy when it must).
    """
    from exporters.onnx_export import export

    root = make_checkpoints(tmp_path_factory.mktemp("artifacts"))
    for name in MODELS:
        export(root / name / "checkpoint.pt")
    return root


@pytest.fixture(scope="session")
def exported(artifacts) -> dict[str, Path]:
    """Model name -> its model.onnx (checkpoint.pt beside it)."""
    return {name: artifacts / name / "model.onnx" for name in MODELS}


@pytest.fixture(scope="module")
def app(artifacts, tmp_path_factory):
    """The Streamlit app on the exported test models, one per test module; yields (url, pid)."""
    from benchmarks.harness import app_server

    log_path = tmp_path_factory.mktemp("log") / "streamlit.log"
    with open(log_path, "w") as log, app_server(artifacts, log=log) as (url, proc):
        yield url, proc.pid
