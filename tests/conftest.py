import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Same thread policy as the Makefile, also when pytest is started by hand.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WORKSHOP_PROFILE", "smoke")


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
