"""Releasing the solution notebooks to the room, and one fresh notebook for a participant."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from workshop.hub.settings import HubSettings

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def release(settings: HubSettings, source: Path = SOLUTIONS) -> list[str]:
    """Publish the solutions in the share and copy them into every participant's
    ``~/workshop/solutions/`` (as that participant; existing files are kept)."""
    from workshop.hub.isolation import disk_full
    from workshop.hub.spawner import fill_home, participants

    target = settings.share / "solutions"
    tmp = target.with_name("solutions.new")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for folder, _, files in os.walk(tmp):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    done = []
    for user in participants(settings):
        if os.path.isdir(user.pw_dir):
            try:
                fill_home(settings, user)
            except subprocess.CalledProcessError as err:
                if not disk_full(err):
                    raise
                continue  # their disk is full: the rest of the room still gets them
            done.append(user.pw_name)
    return done


def fresh(name: str, folder: Path | None = None, course: Path | None = None) -> Path:
    """Put a fresh copy of one exercise notebook in place; the participant's version is
    kept beside it as ``<name>.<time>.ipynb``. Returns the kept copy's path."""
    course = Path(course or os.environ.get("WORKSHOP_COURSE", "")) / "workshop" / "notebooks"
    folder = Path(folder or Path.home() / "workshop")
    matches = sorted(p for p in course.glob("*.ipynb") if p.stem.startswith(name))
    if len(matches) != 1:
        known = ", ".join(p.stem for p in sorted(course.glob("*.ipynb"))) or "none found"
        raise SystemExit(f"which notebook? {name!r} matches {len(matches)}; the notebooks: {known}")
    source = matches[0]
    current = folder / source.name
    kept = folder / f"{source.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
    if current.exists():
        current.rename(kept)
    shutil.copy(source, current)
    return kept
