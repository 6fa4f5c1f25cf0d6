"""Memory, CPU and process limits per participant through the machine's cgroups (v1 or v2).

JupyterHub's local spawners only pass MEM_LIMIT / CPU_LIMIT on as variables; nothing
enforces them. Here the spawner makes one cgroup per participant under a parent
``dl-workshop`` group and the server's process joins it before it drops root, so the
server, its kernels and everything they start share the limit: a kernel that
allocates too much is stopped by the kernel's OOM killer in that cgroup only, and a fork
bomb gets EAGAIN once the group holds ``pids.max`` tasks (processes and threads; the pids
controller, v1 ``pids/dl-workshop/<name>`` or v2 ``pids.max``). Without a writable pids
controller the memory and CPU limits still hold and `make hub` says processes are not limited.
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
    """Where the limits go: v2 (one unified folder) or v1 (memory, cpu, pids hierarchies)."""

    version: int
    memory: Path  # v1: the memory hierarchy's parent group; v2: the parent group
    cpu: Path  # v1: the cpu hierarchy's parent group; v2: the same as memory
    pids: Path | None = None  # v1: the pids hierarchy's parent group; v2: the same; None: none

    def group(self, name: str) -> list[Path]:
        parents = {self.memory, self.cpu} | ({self.pids} if self.pids else set())
        return sorted(parent / name for parent in parents)

    def create(self, name: str, mem_bytes: int, cpus: float, pids: int | None = None) -> None:
        """Make (or update) the participant's group with its limits (``pids``: tasks)."""
        for path in self.group(name):  # the parent too, should a cleanup have removed it
            path.mkdir(parents=True, exist_ok=True)
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
        if self.pids is not None:
            _write(self.pids / name / "pids.max", pids or "max")

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
        for path in {self.memory, self.cpu} | ({self.pids} if self.pids else set()):
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

    def pids_limit(self, name: str) -> int | None:
        """The group's pids.max (None: no pids controller, or no limit)."""
        if self.pids is None:
            return None
        value = (self.pids / name / "pids.max").read_text().strip()
        return None if value == "max" else int(value)


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
            return Cgroups(1, memory, cpu, _v1_pids(root)), ""
        if (root / "unified" / "cgroup.controllers").is_file():
            return _v2(root / "unified"), ""
    except OSError as err:
        return None, f"the cgroups under {root} are not writable ({err.strerror})"
    return None, f"no memory and cpu cgroup controllers under {root}"


def _v1_pids(root: Path) -> Path | None:
    """The pids hierarchy's ``dl-workshop`` group, or None where there is none to write."""
    if not (root / "pids" / "cgroup.procs").is_file():
        return None
    try:
        (root / "pids" / PARENT).mkdir(exist_ok=True)
    except OSError:
        return None
    return root / "pids" / PARENT


def _v2(root: Path) -> Cgroups:
    available = (root / "cgroup.controllers").read_text().split()
    if not {"memory", "cpu"} <= set(available):
        raise OSError(0, f"the memory and cpu controllers are not enabled (only {available})")
    wanted = "+memory +cpu" + (" +pids" if "pids" in available else "")
    _write(root / "cgroup.subtree_control", wanted)
    parent = root / PARENT
    parent.mkdir(exist_ok=True)
    _write(parent / "cgroup.subtree_control", wanted)
    return Cgroups(2, parent, parent, parent if "pids" in available else None)
