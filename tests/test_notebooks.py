"""The workshop notebooks: exercise versions match their solutions, and both execute headlessly."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from workshop.notebook_tools import NOTEBOOKS, SOLUTIONS, execute, exercise_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_NOTEBOOKS = sorted(SOLUTIONS.glob("*.ipynb"))
PLAIN_NOTEBOOKS = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not (SOLUTIONS / p.name).exists())


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder to run a notebook in: its kernel starts there, so the trainers' relative
    data/ lands inside it, and ARTIFACTS and temporary files point inside it too."""
    path = os.environ.get("PYTHONPATH")  # the kernel imports this checkout, from anywhere
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *([path] if path else [])]))
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("WORKSHOP_SHARED_ARTIFACTS", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # tempfile.mkdtemp() in the kernel
    return tmp_path


def test_every_solution_has_its_exercise_notebook():
    assert [p.name for p in SOLUTION_NOTEBOOKS] == ["01_mlp_backprop.ipynb"]
    for solution in SOLUTION_NOTEBOOKS:
        exercise = NOTEBOOKS / solution.name
        assert exercise.read_text() == exercise_notebook(solution), (
            f"{exercise.name} is stale: run `python -m workshop.notebook_tools`"
        )


@pytest.mark.parametrize(
    "path",
    SOLUTION_NOTEBOOKS + sorted(NOTEBOOKS.glob("*.ipynb")),
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=lambda p: p.name)
def test_solution_notebook_runs_headlessly(path, sandbox):
    nb = execute(path, cwd=sandbox)  # WORKSHOP_PROFILE=smoke (conftest) keeps training short
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "✗" not in text and text.count("✓") >= 4
    images = sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert images >= 5  # samples, learning curve, hidden layer, mistakes, zero-init units


@pytest.mark.slow
@pytest.mark.parametrize("path", PLAIN_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headlessly(path, sandbox):
    nb = execute(path, cwd=sandbox)  # the smoke profile trains a tiny model for two steps
    images = sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert images >= 3
    # What it generated and trained is in the sandbox, not in the repository's data/.
    assert (sandbox / "data" / "synthetic-small" / "synthetic.json").is_file()
    assert list((sandbox / "tmp").glob("*/checkpoint.pt"))


def test_every_module_has_its_notebook():
    names = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert {"01_mlp_backprop.ipynb", "02_fcn_alexnet.ipynb", "03_detectnet.ipynb"} <= names


@pytest.mark.slow
def test_exercise_notebook_stops_at_the_first_exercise(sandbox):
    with pytest.raises(CellExecutionError, match="NotImplementedError") as err:
        execute(NOTEBOOKS / "01_mlp_backprop.ipynb", cwd=sandbox)
    assert "check_cost(nn_cost)" in str(err.value)  # the cell after exercise 1
