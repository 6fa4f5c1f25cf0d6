"""The participants' spawner: a Unix user each, their own notebooks, disk, /tmp, limits, GPU share.

A `LocalProcessSpawner` whose servers run as ``<prefix><login>`` (so no login name can
be a system account such as ``root``), made at first login with a 0700 home on a disk of
their own (workshop/hub/isolation.py: a loop-mounted image of HUB_DISK_LIMIT). Before a
server starts, the participant's ``~/workshop`` gets any course notebook it lacks (as
that user, so nothing they wrote is touched and no link they made is followed by root).
The server's first process, still root, joins the participant's cgroups (memory, CPU,
pids), raises its oom_score_adj, enters a mount namespace of its own with a private /tmp,
/var/tmp and /dev/shm on their disk, then drops root with umask 077.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import math
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid

from workshop.hub import cgroups as cg
from workshop.hub import isolation as iso
from workshop.hub.settings import HubSettings

# Run as the participant: copies only what is absent, never overwrites.
HOME_SCRIPT = r"""
set -e
src="$1"; data="$2"; solutions="$3"
mkdir -p "$HOME/workshop/artifacts"
cd "$HOME/workshop"
for nb in "$src"/*.ipynb; do
  n=$(basename "$nb"); [ -e "$n" ] || [ -L "$n" ] || cp "$nb" "$n"
done
if [ -d "$data" ] && [ ! -e data ] && [ ! -L data ]; then ln -s "$data" data; fi
if [ -n "$solutions" ] && [ -d "$solutions" ]; then
  mkdir -p solutions
  for nb in "$solutions"/*.ipynb; do
    n="solutions/$(basename "$nb")"; [ -e "$n" ] || [ -L "$n" ] || cp "$nb" "$n"
  done
fi
"""

_useradd_lock = asyncio.Lock()  # useradd takes /etc/passwd's lock; a room logs in at once
_detect_lock = asyncio.Lock()


def gpu_count() -> int:
    """GPUs on this machine, from nvidia-smi (the hub does not import torch)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def ensure_group(group: str) -> None:
    try:
        grp.getgrnam(group)
    except KeyError:
        subprocess.run(["groupadd", "-f", group], check=True, capture_output=True)


def ensure_user(settings: HubSettings, login: str) -> pwd.struct_passwd:
    """The participant's Unix account (made now if new), home 0700."""
    name = settings.unix_name(login)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    ensure_group(settings.hub_group)
    home = Path(settings.hub_home) / name
    subprocess.run(
        [
            "useradd",
            "--create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            "--gid",
            settings.hub_group,
            "--comment",
            f"workshop participant {login}",
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    os.chmod(home, 0o700)
    return pwd.getpwnam(name)


def participants(settings: HubSettings) -> list[pwd.struct_passwd]:
    """Every account the hub made (its prefix and group)."""
    try:
        gid = grp.getgrnam(settings.hub_group).gr_gid
    except KeyError:
        return []
    return [
        p
        for p in pwd.getpwall()
        if p.pw_name.startswith(settings.hub_user_prefix) and p.pw_gid == gid
    ]


def fill_home(settings: HubSettings, user: pwd.struct_passwd) -> None:
    """Copy what the participant lacks into ~/workshop, running as the participant."""
    share = settings.share
    solutions = share / "solutions"
    subprocess.run(
        [
            "/bin/sh",
            "-c",
            HOME_SCRIPT,
            "sh",
            str(share / "course" / "workshop" / "notebooks"),
            str(share / "data"),
            str(solutions) if solutions.is_dir() else "",
        ],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd=user.pw_dir,
        env={"HOME": user.pw_dir, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


class WorkshopSpawner(LocalProcessSpawner):
    """One participant's JupyterLab, as their own Unix user, inside their own cgroup."""

    hub_settings: HubSettings | None = None  # set by the hub's config file
    cgroups: cg.Cgroups | None = None
    isolation: iso.Isolation | None = None  # found at the first spawn (a trial mount)
    gpus: int = 0
    _gpu_of: dict[str, int] = {}  # login -> GPU index, for the servers running now

    @property
    def settings_(self) -> HubSettings:
        if self.hub_settings is None:
            WorkshopSpawner.hub_settings = HubSettings.from_env()
        return self.hub_settings

    @property
    def unix_name(self) -> str:
        return self.settings_.unix_name(self.user.name)

    def make_preexec_fn(self, name):
        setuid = set_user_setuid(self.unix_name)
        groups, unix = self.cgroups, self.unix_name
        workdir = f"{pwd.getpwnam(unix).pw_dir}/workshop"
        isolation = self.isolation
        private_tmp = isolation.root(unix) if isolation and isolation.private_tmp else None
        keep = (self.settings_.share,)

        def preexec():
            if groups is not None:
                groups.join(unix)
            iso.set_oom_score_adj(iso.SERVER_OOM_SCORE_ADJ)  # inherited by all it starts
            if private_tmp is not None:
                iso.enter_private_tmp(private_tmp, keep)
            os.umask(0o077)  # what they make (their run store, /tmp files) is theirs alone
            setuid()
            os.chdir(workdir)  # terminals and kernels start beside the notebooks

        return preexec

    def user_env(self, env):
        user = pwd.getpwnam(self.unix_name)
        env.update(USER=user.pw_name, HOME=user.pw_dir, SHELL=user.pw_shell or "/bin/bash")
        return env

    def _pick_gpu(self) -> int | None:
        if not self.gpus:
            return None
        load = [0] * self.gpus
        for index in self._gpu_of.values():
            load[index] += 1
        self._gpu_of[self.user.name] = load.index(min(load))
        return self._gpu_of[self.user.name]

    def get_env(self):
        env = super().get_env()
        s = self.settings_
        share = s.share
        home = pwd.getpwnam(self.unix_name).pw_dir
        mem, cpus = s.limits_for(self.user.name)
        threads = str(max(1, math.ceil(cpus)))
        env.update(
            PATH=f"{share / 'env' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            ARTIFACTS=f"{home}/workshop/artifacts",
            WORKSHOP_SHARED_ARTIFACTS=str(share / "artifacts"),
            WORKSHOP_COURSE=str(share / "course"),
            WORKSHOP_PROGRESS_URL=s.extra.get("progress_url", ""),
            MEM_LIMIT=str(mem),
            CPU_LIMIT=str(cpus),
            OMP_NUM_THREADS=threads,
            OPENBLAS_NUM_THREADS="1",
            JUPYTERHUB_ACTIVITY_INTERVAL=str(s.hub_activity_interval),
            MPLCONFIGDIR=f"{home}/.cache/matplotlib",
        )
        gpu = self._pick_gpu()
        if gpu is not None:
            # one GPU per participant, and a share of its memory (workshop.distributed applies it)
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            fraction = f"{1 / s.hub_gpu_share:.4f}"
            env["WORKSHOP_GPU_MEMORY_FRACTION"] = fraction
            env["PYTORCH_CUDA_ALLOC_CONF"] = f"per_process_memory_fraction:{fraction}"
        return env

    async def start(self):
        s = self.settings_
        async with _useradd_lock:
            user = await asyncio.to_thread(ensure_user, s, self.user.name)
        async with _detect_lock:
            if WorkshopSpawner.isolation is None:
                WorkshopSpawner.isolation = await asyncio.to_thread(iso.detect, s)
        await asyncio.to_thread(self.isolation.attach, user)
        try:
            await asyncio.to_thread(fill_home, s, user)
        except subprocess.CalledProcessError as err:
            if not iso.disk_full(err):
                raise
            # their disk is full: the server still starts, so they can delete files in it
            self.log.warning("%s's disk is full; notebooks not copied", self.unix_name)
        if self.cgroups is not None:
            mem, cpus = s.limits_for(self.user.name)
            await asyncio.to_thread(
                self.cgroups.create, self.unix_name, mem, cpus, s.hub_pids_limit
            )
        self.notebook_dir = f"{user.pw_dir}/workshop"
        return await super().start()

    async def poll(self):
        status = await super().poll()
        if status is None and self.isolation is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.isolation.rearm, self.unix_name)
        return status

    async def stop(self, now=False):
        await super().stop(now=now)
        self._gpu_of.pop(self.user.name, None)
        if self.cgroups is not None:
            await asyncio.to_thread(end_group, self.cgroups, self.unix_name)
        uid = pwd.getpwnam(self.unix_name).pw_uid
        await asyncio.to_thread(remove_proxy_sockets, uid)
        if self.isolation is not None:  # their private /tmp
            tmp = self.isolation.root(self.unix_name) / "tmp"
            await asyncio.to_thread(remove_proxy_sockets, uid, tmp)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.isolation.rearm, self.unix_name)


def end_group(groups: cg.Cgroups, name: str) -> None:
    """End what the stopped server left behind (orphaned kernels) and remove its cgroup."""
    for path in groups.group(name):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        groups.remove(name)
        if not any(p.exists() for p in groups.group(name)):
            return
        time.sleep(0.1)


def remove_proxy_sockets(uid: int, tmp: Path = Path("/tmp")) -> None:
    """The socket folders jupyter-server-proxy made for a stopped server's apps (it leaves
    them behind) in ``tmp``: their private /tmp, or /tmp where servers share it."""
    for folder in tmp.glob("jupyter-server-proxy-*"):
        with contextlib.suppress(OSError):
            info = folder.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == uid:  # never a link, only theirs
                shutil.rmtree(folder)
