"""Memory and CPU limits per participant through the machine's cgroups (v1 or v2).

JupyterHub's local spawners only pass MEM_LIMIT / CPU_LIMIT on as variables; nothing
enforces them. Here the spawner makes one cgroup per participant under a parent
``dl-workshop`` group and the server's process joins it before it drops root, so the
server, its kernels and everything they start share the limit: a kernel that
allocates too much is stopped by the kernel's OOM killer in that cgroup only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "dl-workshop"
PERIOD_US = 100_000


@dataclass(frozen=True)
class Cgroups:
    """Where the limits go: v2 (one unified folder) or v1 (memory and cpu hierarchies)."""

    version: int
    memory: Path  # v1: the memory hierarchy's parent group; v2: the parent group
    cpu: Path  # v1: the cpu hierarchy's parent group; v2: the same as memory

    def group(self, name: str) -> list[Path]:
        return sorted({self.memory / name, self.cpu / name})

    def create(self, name: str, mem_bytes: int, cpus: float) -> None:
        """Make (or update) the participant's group with its limits."""
        for path in self.group(name):
            path.mkdir(exist_ok=True)
        quota = max(1000, int(cpus * PERIOD_US))
        if self.version == 2:
            _write(self.memory / name / "memory.max", mem_bytes)
            _write(self.memory / name / "memory.swap.max", 0, optional=True)
            _write(self.cpu / name / "cpu.max", f"{quota} {PERIOD_US}")
        else:
            _write(self.memory / name / "memory.limit_in_bytes", mem_bytes)
            _write(self.memory / name / "memory.memsw.limit_in_bytes", mem_bytes, optional=True)
            _write(self.cpu / name / "cpu.cfs_period_us", PERIOD_US)
            _write(self.cpu / name / "cpu.cfs_quota_us", quota)

    def join(self, name: str, pid: int = 0) -> None:
        """Move ``pid`` (0: this process) into the group; children follow."""
        pid = pid or os.getpid()
        for path in self.group(name):
            _write(path / "cgroup.procs", pid)

    def remove(self, name: str) -> None:
        """Remove the group once no process is left in it (a busy group is kept)."""
        for path in self.group(name):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                pass  # still has processes: the next stop or the next start reuses it

    def remove_parent(self) -> None:
        """Remove the ``dl-workshop`` parent once no participant group is left in it."""
        for path in {self.memory, self.cpu}:
            with contextlib.suppress(OSError):
                path.rmdir()

    def limits(self, name: str) -> tuple[int, float]:
        """(memory bytes, CPUs) as the kernel holds them."""
        if self.version == 2:
            mem = (self.memory / name / "memory.max").read_text().strip()
            quota, period = (self.cpu / name / "cpu.max").read_text().split()
        else:
            mem = (self.memory / name / "memory.limit_in_bytes").read_text().strip()
            quota = (self.cpu / name / "cpu.cfs_quota_us").read_text().strip()
            period = (self.cpu / name / "cpu.cfs_period_us").read_text().strip()
        return int(mem), int(quota) / int(period)


def _write(path: Path, value, optional: bool = False) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError:
        if not optional:
            raise


def detect(root: Path = ROOT) -> tuple[Cgroups | None, str]:
    """The machine's writable cgroups, or None with the reason they cannot be used."""
    if os.geteuid() != 0:
        return None, "the hub is not running as root"
    unified = root / "cgroup.controllers"
    try:
        if unified.is_file():  # pure v2
            return _v2(root), ""
        if (root / "memory" / "memory.limit_in_bytes").is_file() and (root / "cpu").is_dir():
            memory, cpu = root / "memory" / PARENT, root / "cpu" / PARENT
            memory.mkdir(exist_ok=True)
            cpu.mkdir(exist_ok=True)
            _write(memory / "memory.use_hierarchy", 1, optional=True)
            return Cgroups(1, memory, cpu), ""
        if (root / "unified" / "cgroup.controllers").is_file():
            return _v2(root / "unified"), ""
    except OSError as err:
        return None, f"the cgroups under {root} are not writable ({err.strerror})"
    return None, f"no memory and cpu cgroup controllers under {root}"


def _v2(root: Path) -> Cgroups:
    available = (root / "cgroup.controllers").read_text().split()
    if not {"memory", "cpu"} <= set(available):
        raise OSError(0, f"the memory and cpu controllers are not enabled (only {available})")
    _write(root / "cgroup.subtree_control", "+memory +cpu")
    parent = root / PARENT
    parent.mkdir(exist_ok=True)
    _write(parent / "cgroup.subtree_control", "+memory +cpu")
    return Cgroups(2, parent, parent)
