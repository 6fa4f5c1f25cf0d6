"""The workshop notebooks: exercise versions match their solutions, and both execute headlessly."""

import os
from pathlib import Path

import nbformat
import pytest

from workshop.notebook_tools import NOTEBOOKS, SOLUTIONS, execute, exercise_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_NOTEBOOKS = sorted(SOLUTIONS.glob("*.ipynb"))


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


NAMES = ["01_mlp_backprop.ipynb", "02_fcn_alexnet.ipynb", "03_detectnet.ipynb"]
MIN_IMAGES = {  # pictures each solution notebook must show
    "01_mlp_backprop.ipynb": 5,  # samples, learning curve, hidden layer, mistakes, zero init
    "02_fcn_alexnet.ipynb": 6,  # crops, curves, filters, activations, windows, heatmaps
    "03_detectnet.ipynb": 6,  # targets, crops, filters, curves, maps, detections
}


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def errors(cell):
    return [o for o in cell.outputs if o.output_type == "error"]


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in code_cells(nb) for o in c.outputs)


def test_every_solution_has_its_exercise_notebook():
    assert [p.name for p in SOLUTION_NOTEBOOKS] == NAMES
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for solution in SOLUTION_NOTEBOOKS:
        exercise = NOTEBOOKS / solution.name
        assert exercise.read_text() == exercise_notebook(solution), (
            f"{exercise.name} is stale: run `python -m workshop.notebook_tools`"
        )


def test_every_exercise_has_a_check_that_may_raise_until_written():
    """Each solution block is followed by a check cell tagged to let the notebook go on."""
    for solution in SOLUTION_NOTEBOOKS:
        nb = nbformat.read(solution, as_version=4)
        cells = code_cells(nb)
        blocks = [k for k, c in enumerate(cells) if "### BEGIN SOLUTION" in c.source]
        assert blocks, solution.name
        for k in blocks:
            check = cells[k + 1]
            assert check.source.startswith("checks.check_"), (solution.name, check.source)
            assert "raises-exception" in check.metadata.get("tags", []), check.source


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
    assert not [c.source for c in code_cells(nb) if errors(c)]
    text = "\n".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs)
    checks = sum("checks.check_" in c.source for c in code_cells(nb))
    assert "✗" not in text and text.count("✓") >= checks >= 3
    assert images(nb) >= MIN_IMAGES[path.name]
    if path.name != "01_mlp_backprop.ipynb":
        # What it generated and trained is in the sandbox, not in the repository's data/.
        assert (sandbox / "data" / "synthetic-small" / "synthetic.json").is_file()
        assert list((sandbox / "tmp").glob("*/checkpoint.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_exercise_notebook_runs_with_each_check_raising_not_implemented(path, sandbox):
    """A participant's fresh notebook runs to the end: every check (and only a cell tagged
    for it) stops on the exercise's NotImplementedError, and the rest of the story goes on
    with the library's reference."""
    nb = execute(path, cwd=sandbox)
    raised = [c for c in code_cells(nb) if errors(c)]
    for cell in raised:
        assert [o.ename for o in errors(cell)] == ["NotImplementedError"], cell.source
        assert "raises-exception" in cell.metadata.get("tags", []), cell.source
    checks = [c for c in code_cells(nb) if c.source.startswith("checks.check_")]
    assert checks and all(errors(c) for c in checks)
    assert images(nb) >= MIN_IMAGES[path.name] - 1  # all but the one drawn from an exercise


def test_every_module_has_its_notebook():
    names = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert {"01_mlp_backprop.ipynb", "02_fcn_alexnet.ipynb", "03_detectnet.ipynb"} <= names
