"""Exercise notebooks from solution notebooks, and headless execution.

The solution notebooks in ``workshop/notebooks/solutions/`` are the source. An
exercise notebook is its solution with every ``### BEGIN SOLUTION`` ..
``### END SOLUTION`` block replaced by a placeholder that raises:

    python -m workshop.notebook_tools      # rewrite workshop/notebooks/*.ipynb
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.M | re.S)


def _placeholder(match: re.Match) -> str:
    indent = match.group(1)
    return (
        f"{indent}# YOUR CODE HERE\n"
        f"{indent}raise NotImplementedError("
        '"exercise: write this part, then run the check below")\n'
    )


def strip_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with solution blocks replaced and every output cleared."""
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.source = _BLOCK.sub(_placeholder, cell.source).rstrip("\n")
            cell.outputs, cell.execution_count = [], None
    return out


def exercise_notebook(solution_path: Path) -> str:
    """The exercise notebook of a solution notebook, as the text written to disk."""
    nb = strip_solutions(nbformat.read(solution_path, as_version=4))
    return nbformat.writes(nb) + "\n"


def build() -> list[Path]:
    written = []
    for solution in sorted(SOLUTIONS.glob("*.ipynb")):
        target = NOTEBOOKS / solution.name
        target.write_text(exercise_notebook(solution))
        written.append(target)
    return written


def execute(path: Path, *, timeout: int = 600, cwd: Path | None = None) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel; raises CellExecutionError on failure."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    cwd = cwd or NOTEBOOKS.parent.parent
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


if __name__ == "__main__":
    for p in build():
        print(f"wrote {p}")
