import atexit
import fcntl
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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    schedule(items)


SHARED_SCOPES = ("module", "class", "package")
# The modules that take longest in all (their `--durations` summed, 2 cores, 2026-12), longest
# first: under `make test` (pytest-xdist, --dist loadgroup) they start first, and the short
# tests fill the other workers around them.
LONGEST_FIRST = (
    "test_hub.py",
    "test_digits_loop.py",
    "test_hub_auth.py",
    "test_hub_limits.py",
    "test_browser.py",
    "test_notebooks.py",
    "test_train_alexnet.py",
    "test_train_detectnet.py",
    "test_runs_pages.py",
    "test_datasets_page.py",
    "test_jobs.py",
    "test_tracking.py",
    "test_streamlit_client.py",
    "test_lab.py",
    "test_demo_key.py",
    "test_pages_test.py",
    "test_app.py",
)


def schedule(items) -> None:
    """Tests that share a module-scoped fixture (one server, one hub, one trained model) form
    one group, which pytest-xdist runs on one worker in file order; every other test is a
    unit of its own. Then the longest modules go first."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.items() if info else ()
        keys = [(item.path.name, n) for n, d in defs if d and d[-1].scope in SHARED_SCOPES]
        for key in keys:  # a test using two shared fixtures joins their groups
            parent[root(key)] = root(keys[0])
        shared[item.nodeid] = keys
    for item in items:
        if shared[item.nodeid]:
            module, fixture = root(shared[item.nodeid][0])
            item.add_marker(pytest.mark.xdist_group(f"{module}:{fixture}"))
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


def pytest_collection_finish(session):
    """pytest-xdist's loadgroup marks a grouped test by appending @group to its node id,
    which pytest 9.2 no longer allows (pytest-xdist#1386): the groups would be ignored and
    every worker would start its own hub. Say so instead (pyproject pins pytest below 9.2)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"pytest {pytest.__version__} drops pytest-xdist's test groups "
                "(pytest-xdist#1386): install the pytest that pyproject.toml pins"
            )


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

    # Under pytest-xdist every worker has its own basetemp inside one shared folder: the
    # first worker to get here builds the models there, the others wait and read them.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "shared-artifacts"
    with open(shared / "shared-artifacts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "built").exists():
            make_checkpoints(root)
            for name in MODELS:
                export(root / name / "checkpoint.pt")
            (root / "built").touch()
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
