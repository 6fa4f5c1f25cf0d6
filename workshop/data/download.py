"""Downloading and unpacking data sets safely (standard library only).

``download`` streams to ``<dest>.part`` with a progress bar, resumes it with an
HTTP Range request after a cut or a stall, retries with exponential backoff,
checks the free disk space first, verifies the SHA-256 when one is pinned, and
only then renames the file into place: a complete file is never replaced by a
partial one, and a failed download leaves at most the ``.part`` file to resume.

``safe_extract`` unpacks zip and tar archives into a temporary folder beside the
target and renames it into place at the end, refusing members that would land
outside it (``..``, absolute paths, links that point outside, device files).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or an extraction that failed; the message says why and what to do."""


def sha256_of(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_space(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DownloadError(
            f"not enough disk space in {folder}: {need / 2**20:.0f} MiB needed, "
            f"{free / 2**20:.0f} MiB free"
        )


def download(
    url: str,
    dest,
    *,
    sha256: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Fetch url to dest (see the module docstring); returns dest.

    A dest that already exists is kept when it matches ``sha256`` (or when no
    checksum is pinned). ``timeout`` is per socket operation, so a stalled server
    counts as a failed attempt and the next attempt resumes where it stopped.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    last_error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _fetch(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416:  # the .part is already whole (or bigger): start over
                part.unlink(missing_ok=True)
                last_error = err
                continue
            if 400 <= err.code < 500:  # the server will not change its mind
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            last_error = err
        except (urllib.error.URLError, TimeoutError, ConnectionError, _Incomplete) as err:
            last_error = err
    else:
        if isinstance(last_error, urllib.error.HTTPError):
            reason = f"HTTP {last_error.code} {last_error.reason}"
        else:
            reason = getattr(last_error, "reason", last_error)
        if part.is_file() and part.stat().st_size:
            kept = f"the partial file {part} is kept and the next run resumes it"
        else:
            part.unlink(missing_ok=True)
            kept = "nothing was received"
        raise DownloadError(f"{url}: failed after {retries + 1} attempts ({reason}); {kept}")
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise DownloadError(
                f"{url}: checksum mismatch (SHA-256 {got}, expected {sha256}); the file "
                "was deleted. The server may serve a different version, or it was damaged "
                "on the way: try again."
            )
    os.replace(part, dest)
    return dest


class _Incomplete(OSError):
    """The connection ended before Content-Length bytes arrived."""


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "workshop-downloader"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        if remaining is not None:
            _check_space(part.parent, remaining)
        total = have + remaining if remaining is not None else None
        got = 0
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                disable=not progress,
                desc=Path(url).name[:40],
                leave=False,
            ) as bar,
        ):
            while block := response.read(CHUNK):
                f.write(block)
                got += len(block)
                bar.update(len(block))
        if remaining is not None and got < remaining:
            raise _Incomplete(f"connection closed after {have + got} of {total} bytes")


# ---------------------------------------------------------------------- extraction


def _inside(root: Path, name: str) -> bool:
    if not name or PurePosixPath(name).is_absolute() or Path(name).is_absolute():
        return False
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return False
    target = (root / name).resolve()
    return target == root or root in target.parents


def _check_member(archive: Path, root: Path, name: str) -> None:
    if not _inside(root, name):
        raise DownloadError(
            f"{archive.name}: refused member {name!r} (it would land outside the target folder)"
        )


def safe_extract(archive, target) -> Path:
    """Unpack a .zip, .tar, .tar.gz or .tgz into target (created whole, or not at all)."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DownloadError(f"{target} exists already; remove it to unpack {archive.name} again")
    tmp = target.with_name(f".{target.name}.unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    root = tmp.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(archive, root, info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DownloadError(
                            f"{archive.name}: refused symbolic link {info.filename!r}"
                        )
                zf.extractall(root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    _check_member(archive, root, m.name)
                    if m.issym() or m.islnk():
                        link = (Path(m.name).parent / m.linkname) if m.issym() else Path(m.linkname)
                        if not _inside(root, str(link)):
                            raise DownloadError(
                                f"{archive.name}: refused link {m.name!r} -> "
                                f"{m.linkname!r} (points outside)"
                            )
                    elif not (m.isfile() or m.isdir()):
                        raise DownloadError(f"{archive.name}: refused special file {m.name!r}")
                tf.extractall(root, filter="data")
        else:
            raise DownloadError(f"{archive}: not a zip or tar archive")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
