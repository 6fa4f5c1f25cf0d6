"""Each participant's own disk and own /tmp, and the hub last in line for the OOM killer.

Disk quota. A participant's home is on the machine's root filesystem, mounted here without
quota options, so each participant gets a filesystem of their own: a sparse file
``<HUB_STATE>/disks/<unix name>.img`` of ``HUB_DISK_LIMIT`` bytes, formatted ext4 at their
first spawn (``mkfs.ext4 -q -m 0``: no blocks kept for root) and loop-mounted (nosuid,
nodev) on ``<HUB_STATE>/disks/<unix name>/``. Inside it:

    home/                   theirs, 0700: bind-mounted on their home folder (/home/wsp-<name>)
    tmp/ var-tmp/ shm/      root's, 1777: their server's /tmp, /var/tmp and /dev/shm
    reserve                 root's: 8 MiB held back (see below)

A write past the limit fails with ENOSPC on that participant's filesystem only: the hub's
database and everyone else's files are on other filesystems. Deleting files frees space as
anywhere. A Jupyter server cannot start on a full disk (it writes its runtime files and
config folders first), and a participant has no other way in to delete files: so when a
server starts on a full disk the hub deletes the reserve, and puts it back (at the server's
polls and stop) once twice its size is free again. The image keeps its files across hub
restarts (remounted at the next spawn), a raised limit grows it at its next mount (a lowered
one applies to new images only); `make hub` unmounts every image when it stops and
`remove-users` deletes them with the accounts.
A sparse image takes only what was written from the machine's disk, so the images together
may promise more than the disk holds: `make hub` says how many full ones fit. Where a loop
device cannot be mounted (a container without them), homes stay where they are, without a
limit, and `make hub` says so. The image is mounted beside the home rather than on it: a
participant owns their home and may rename any folder in it and put a link in its place,
and the /tmp folders that root binds must sit where only root can rename them.

Private /tmp. Each server's first process, after joining its cgroups and before dropping
root, enters a mount namespace of its own (``unshare(CLONE_NEWNS)``, every mount made private
so nothing leaks back out) and bind-mounts the three folders above on /tmp, /var/tmp and
/dev/shm; its kernels, terminals and apps inherit them. Another participant's /tmp is another
folder on another filesystem: nothing in it can be listed, guessed or raced. The share is
bound again at its own path when it lives under one of them (the tests keep it in /tmp).
jupyter-server-proxy's sockets land in the private /tmp; the hub still reaches every server
over TCP.

OOM. `make hub` gives itself oom_score_adj -1000, which JupyterHub, the proxy and the
services inherit (where lowering it is not allowed, a container without CAP_SYS_RESOURCE,
they keep their value, 0, and `make hub` says so); each server's first process sets +500
for itself and its children (raising needs no privilege). A
participant at their memory limit loses a process of theirs (their cgroup's OOM kill); a
machine out of memory loses participants' processes before the hub.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pwd
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from workshop.hub.settings import HubSettings, parse_size

HUB_OOM_SCORE_ADJ = -1000  # the hub, the proxy, the services: never chosen
SERVER_OOM_SCORE_ADJ = 500  # participants' servers and all they start: chosen first
# folder in the participant's disk -> where their server sees it
TMP_FOLDERS = {"tmp": "/tmp", "var-tmp": "/var/tmp", "shm": "/dev/shm"}
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"
RESERVE = 8 * 2**20  # held back on each disk so that a server can start on a full one

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
# Looked up now: a forked child (a server's preexec) must not load libraries.
_libc = ctypes.CDLL(None, use_errno=True)
_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_lock = threading.Lock()  # mount and losetup, one participant at a time


class DiskError(RuntimeError):
    """A participant's disk could not be made or mounted; the message says why."""


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def set_oom_score_adj(value: int, pid: int = 0) -> None:
    Path(f"/proc/{pid or 'self'}/oom_score_adj").write_text(f"{value}\n")


def oom_score_adj(pid: int = 0) -> int:
    return int(Path(f"/proc/{pid or 'self'}/oom_score_adj").read_text())


def protect_hub() -> int:
    """This process (the hub, before it starts anything) as the OOM killer's last choice:
    -1000, or, without CAP_SYS_RESOURCE (a container), the value it has (servers still
    go first at +500). The value in effect."""
    with contextlib.suppress(PermissionError):
        set_oom_score_adj(HUB_OOM_SCORE_ADJ)
    return oom_score_adj()


def enter_private_tmp(root: Path, keep: tuple[Path, ...] = ()) -> None:
    """In a server's process before exec (as root): a mount namespace of its own whose /tmp,
    /var/tmp and /dev/shm are ``root``'s folders; the ``keep`` folders stay visible."""
    _new_mount_namespace()
    # every source opened before anything is covered (once /tmp is, a path through it leads
    # elsewhere), and in the new namespace (a bind from another namespace's mount is EINVAL)
    sources = {
        target: os.open(root / folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        for folder, target in TMP_FOLDERS.items()
    }
    covered = [Path(t) for t in TMP_FOLDERS.values()]
    kept = {
        path: os.open(path, os.O_PATH | os.O_DIRECTORY)
        for path in keep
        if any(path.is_relative_to(t) for t in covered)
    }
    for target, fd in [*sources.items(), *kept.items()]:
        os.makedirs(target, mode=0o755, exist_ok=True)  # a kept folder's place in the new /tmp
        _check(
            _mount(
                f"/proc/self/fd/{fd}".encode(), str(target).encode(), None, MS_BIND | MS_REC, None
            ),
            f"binding {target}",
        )
        os.close(fd)


def _new_mount_namespace() -> None:
    """unshare(CLONE_NEWNS), every mount in it made private (nothing propagates out)."""
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(CLONE_NEWNS)
    else:
        _check(_unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")


# --- what is mounted where (/proc/self/mountinfo) ---------------------------------------
def mounts() -> list[tuple[str, Path, str]]:
    """(device major:minor, mount point, source) of every mount, in mounting order."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        after = fields[fields.index("-") + 1 :]
        found.append((fields[2], Path(_unescape(fields[4])), _unescape(after[1])))
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def is_mounted(path: Path) -> bool:
    path = Path(os.path.realpath(path))  # mountinfo has the real path
    return any(point == path for _, point, _ in mounts())


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        # still in use (a process that escaped its server): detach now, freed when it ends
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise DiskError(f"{what} failed: {(done.stderr or done.stdout).strip()}")


@dataclass(frozen=True)
class Isolation:
    """What this machine enforces: a disk per participant (``disk_size`` bytes, None when
    loop devices cannot be mounted) and a private /tmp per server."""

    folder: Path  # <HUB_STATE>/disks: images and mount points (root only)
    disk_size: int | None
    private_tmp: bool
    disk_why: str = ""  # why there is no quota, for `make hub`
    tmp_why: str = ""  # why there is no private /tmp

    def root(self, unix: str) -> Path:
        """The participant's disk (or, without quotas, a folder for their /tmp)."""
        return self.folder / unix

    def image(self, unix: str) -> Path:
        return self.folder / f"{unix}.img"

    def attach(self, user: pwd.struct_passwd) -> Path:
        """The participant's disk made (first spawn) and mounted, their home on it; its root."""
        with _lock:
            root = self.root(user.pw_name)
            if self.disk_size is None:
                root.mkdir(mode=0o755, parents=True, exist_ok=True)
                _tmp_folders(root)
                return root
            image = self.image(user.pw_name)
            new = not image.exists()
            if new:
                _make_image(image, self.disk_size)
            if not is_mounted(root):
                _grow(image, self.disk_size)
                root.mkdir(mode=0o755, exist_ok=True)
                _run(["mount", "-o", MOUNT_OPTIONS, str(image), str(root)], f"mounting {image}")
            home = Path(user.pw_dir)
            if new or not (root / "home").is_dir():
                try:
                    _lay_out(root, user)
                except (OSError, DiskError) as err:
                    if new:  # nothing of theirs is on it yet
                        _umount(root)
                        image.unlink()
                    raise DiskError(
                        f"{user.pw_name}'s home ({home}) does not fit in HUB_DISK_LIMIT: {err}"
                    ) from None
            if not is_mounted(home):
                _run(["mount", "--bind", str(root / "home"), str(home)], f"mounting {home}")
            if _free(root) < RESERVE:  # full: room for their server to start and clean up
                with contextlib.suppress(FileNotFoundError):
                    (root / "reserve").unlink()
            _arm(root)
            return root

    def rearm(self, unix: str) -> None:
        """Put the participant's reserve back once they have freed the room for it."""
        root = self.root(unix)
        if self.disk_size is not None and is_mounted(root):
            _arm(root)

    def detach(self, unix: str) -> None:
        """Unmount the participant's disk and every other place it is mounted (their home)."""
        root = Path(os.path.realpath(self.root(unix)))
        table = mounts()
        devices = {dev for dev, point, _ in table if point == root}
        for dev, point, _ in reversed(table):
            if dev in devices and point != root:
                _umount(point)
        if root in {point for _, point, _ in table}:
            _umount(root)

    def detach_all(self) -> list[str]:
        """Unmount every participant's disk (the hub stops); their names."""
        folder = Path(os.path.realpath(self.folder))
        names = sorted({p.name for _, p, _ in mounts() if p.parent == folder})
        for name in names:
            self.detach(name)
        return names

    def remove(self, unix: str) -> None:
        """Delete the participant's disk (their account goes)."""
        self.detach(unix)
        root = self.root(unix)
        if not is_mounted(root):
            shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.image(unix).unlink()

    def full_images_that_fit(self) -> int | None:
        """How many images could fill up at once on what the machine's disk has free."""
        if not self.disk_size:
            return None
        fs = os.statvfs(self.folder)
        free = fs.f_bavail * fs.f_frsize
        for image in self.folder.glob("*.img"):  # what the existing images may still take
            info = image.stat()
            free -= max(0, info.st_size - info.st_blocks * 512)
        return max(0, free // self.disk_size)


def _free(root: Path) -> int:
    fs = os.statvfs(root)
    return fs.f_bavail * fs.f_frsize


def _arm(root: Path) -> None:
    """The reserve (root's, beside their home) where it is missing and twice its size is free."""
    reserve = root / "reserve"
    if reserve.exists() or _free(root) < 2 * RESERVE:
        return
    tmp = root / "reserve.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE)  # real blocks, taken from what they may write
    finally:
        os.close(fd)
    tmp.rename(reserve)


def _make_image(image: Path, size: int) -> None:
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = image.with_suffix(".new")
    with open(tmp, "wb") as f:
        f.truncate(size)  # sparse: nothing is written until the participant writes
    os.chmod(tmp, 0o600)
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(tmp)], f"mkfs.ext4 {tmp}")
    tmp.rename(image)


def _grow(image: Path, size: int) -> None:
    """A raised HUB_DISK_LIMIT: the (unmounted) image and its filesystem grow to it."""
    if image.stat().st_size >= size:
        return
    with open(image, "r+b") as f:
        f.truncate(size)
    subprocess.run(["e2fsck", "-f", "-p", str(image)], capture_output=True)
    _run(["resize2fs", str(image)], f"resize2fs {image}")


def _tmp_folders(root: Path) -> None:
    for folder in TMP_FOLDERS:
        path = root / folder
        path.mkdir(exist_ok=True)
        os.chown(path, 0, 0)
        os.chmod(path, 0o1777)


def _lay_out(root: Path, user: pwd.struct_passwd) -> None:
    """A new disk: the tmp folders, and the home moved onto it (useradd's files, or all of
    an existing participant's from before quotas)."""
    os.chown(root, 0, 0)
    os.chmod(root, 0o755)
    _tmp_folders(root)
    home, new_home = Path(user.pw_dir), root / "home"
    new_home.mkdir(exist_ok=True)
    os.chown(new_home, user.pw_uid, user.pw_gid)
    os.chmod(new_home, 0o700)
    if home.is_dir() and not is_mounted(home):
        _run(["cp", "-a", "--", f"{home}/.", str(new_home)], f"copying {home}")
        for entry in os.scandir(home):  # the copies are on the disk; free the root fs
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def detect(settings: HubSettings) -> Isolation:
    """What this machine can enforce, tried for real (a tiny image mounted, a namespace made)."""
    folder = settings.state / "disks"
    size = parse_size(settings.hub_disk_limit, "HUB_DISK_LIMIT")
    if os.geteuid() != 0:
        why = "the hub is not running as root"
        return Isolation(folder, None, False, why, why)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    disk_why = _disk_trial(folder)
    trial = folder / f"trial-tmp-{os.getpid()}"
    try:
        trial.mkdir(exist_ok=True)
        _tmp_folders(trial)
        subprocess.run(["/bin/true"], preexec_fn=lambda: enter_private_tmp(trial), check=True)
        tmp_why = ""
    except (OSError, subprocess.SubprocessError) as err:
        tmp_why = f"no mount namespace of their own for the servers ({err})"
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    return Isolation(folder, None if disk_why else size, not tmp_why, disk_why, tmp_why)


def _disk_trial(folder: Path) -> str:
    """'' when a loop-mounted ext4 image works here, else why not."""
    for tool in ("mkfs.ext4", "mount", "umount", "resize2fs"):
        if not shutil.which(tool):
            return f"{tool} is missing"
    image, point = folder / f"trial-{os.getpid()}.img", folder / f"trial-{os.getpid()}"
    try:
        _make_image(image, 16 * 2**20)
        point.mkdir(exist_ok=True)
        _run(["mount", "-o", MOUNT_OPTIONS, str(image), str(point)], "mounting a loop device")
        _umount(point)
        return ""
    except (OSError, DiskError) as err:
        return str(err) if isinstance(err, DiskError) else f"{err.strerror}: {err.filename}"
    finally:
        with contextlib.suppress(OSError):
            point.rmdir()
        for path in (image, image.with_suffix(".new")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def disk_full(err: BaseException) -> bool:
    text = str(getattr(err, "stderr", "") or err)
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in text
