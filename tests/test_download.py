"""The downloader against a real HTTP server on 127.0.0.1, and hostile archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workshop.data.download import DownloadError, download, safe_extract

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """/ok serves PAYLOAD with Range support (416 for a range past its end); /cut drops the
    first connection half-way; /stall stops sending half-way on the first request;
    /norange ignores Range (200 and the whole body) and drops its first connection
    half-way; /busy always answers 503; /flaky answers 503 twice, then serves;
    /always416 answers 416 to everything; anything else is a 404."""

    counts: dict[str, int] = {}
    ranges: dict[str, list[str | None]] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 -- the http.server name
        n = self.counts[self.path] = self.counts.get(self.path, 0) + 1
        self.ranges.setdefault(self.path, []).append(self.headers.get("Range"))
        if self.path not in ("/ok", "/cut", "/stall", "/norange", "/busy", "/flaky", "/always416"):
            self.send_error(404, "Not Found")
            return
        if self.path == "/busy" or (self.path == "/flaky" and n <= 2):
            self.send_error(503, "Service Unavailable")
            return
        start = 0
        if (rng := self.headers.get("Range")) and self.path != "/norange":
            start = int(rng.split("=")[1].split("-")[0])
        if start >= len(PAYLOAD) or self.path == "/always416":
            self.send_error(416, "Requested Range Not Satisfiable")
            return
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in ("/cut", "/stall", "/norange") and n == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if self.path == "/stall":
                time.sleep(3)  # longer than the client's timeout
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    Handler.counts, Handler.ranges = {}, {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_a_normal_download_is_verified_and_renamed(server, tmp_path):
    out = download(f"{server}/ok", tmp_path / "data.bin", sha256=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD and not list(tmp_path.glob("*.part"))
    download(f"{server}/ok", out, sha256=SHA, progress=False)  # present and valid: no request
    assert Handler.counts["/ok"] == 1


def test_a_cut_connection_is_resumed_with_range(server, tmp_path):
    out = download(f"{server}/cut", tmp_path / "data.bin", sha256=SHA, backoff=0.01, progress=False)
    assert out.read_bytes() == PAYLOAD and Handler.counts["/cut"] == 2


def test_a_stalled_server_times_out_and_resumes(server, tmp_path):
    out = download(
        f"{server}/stall",
        tmp_path / "data.bin",
        sha256=SHA,
        timeout=1,
        backoff=0.01,
        progress=False,
    )
    assert out.read_bytes() == PAYLOAD and Handler.counts["/stall"] == 2


def test_a_checksum_mismatch_deletes_the_file(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        download(f"{server}/ok", tmp_path / "data.bin", sha256="0" * 64, progress=False)
    assert f"SHA-256 {SHA}, expected {'0' * 64}" in str(err.value)
    assert "was deleted" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())  # neither the file nor a .part


def test_a_resumed_download_that_differs_from_its_checksum_is_deleted(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(
            f"{server}/cut", tmp_path / "data.bin", sha256="0" * 64, backoff=0.01, progress=False
        )
    assert Handler.ranges["/cut"] == [None, f"bytes={len(PAYLOAD) // 2}-"]  # it did resume
    assert not list(tmp_path.iterdir())


def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(server, tmp_path):
    out = download(
        f"{server}/norange", tmp_path / "data.bin", sha256=SHA, backoff=0.01, progress=False
    )
    # The resume asked for the second half, got the whole file with 200: not appended.
    assert Handler.ranges["/norange"] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert out.read_bytes() == PAYLOAD and not list(tmp_path.glob("*.part"))


def test_416_for_a_part_file_that_is_already_whole_starts_over(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"junk past the end")
    out = download(f"{server}/ok", tmp_path / "data.bin", sha256=SHA, backoff=0.01, progress=False)
    assert Handler.ranges["/ok"] == [f"bytes={len(PAYLOAD) + 17}-", None]
    assert out.read_bytes() == PAYLOAD and not list(tmp_path.glob("*.part"))


def test_a_server_answering_416_every_time_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        download(f"{server}/always416", tmp_path / "x.zip", retries=2, backoff=0.01, progress=False)
    assert str(err.value) == (
        f"{server}/always416: failed after 3 attempts (HTTP 416 Requested Range Not "
        "Satisfiable); nothing was received"
    )
    assert Handler.counts["/always416"] == 3 and not list(tmp_path.iterdir())


def test_5xx_is_retried_then_a_clear_error_with_nothing_left(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        download(f"{server}/busy", tmp_path / "x.zip", retries=2, backoff=0.01, progress=False)
    assert str(err.value) == (
        f"{server}/busy: failed after 3 attempts (HTTP 503 Service Unavailable); "
        "nothing was received"
    )
    assert Handler.counts["/busy"] == 3 and not list(tmp_path.iterdir())


def test_5xx_then_success_is_retried_to_the_end(server, tmp_path):
    out = download(
        f"{server}/flaky", tmp_path / "data.bin", sha256=SHA, backoff=0.01, progress=False
    )
    assert out.read_bytes() == PAYLOAD and Handler.counts["/flaky"] == 3


def test_a_cut_then_5xx_keeps_the_part_file_to_resume(server, tmp_path):
    """What was received is kept (the next run resumes it) and the message says so."""
    part = tmp_path / "data.bin.part"
    part.write_bytes(PAYLOAD[:1000])
    with pytest.raises(DownloadError) as err:
        download(f"{server}/busy", tmp_path / "data.bin", retries=1, backoff=0.01, progress=False)
    assert str(err.value).endswith(f"the partial file {part} is kept and the next run resumes it")
    assert part.read_bytes() == PAYLOAD[:1000] and not (tmp_path / "data.bin").exists()


def test_a_404_fails_at_once_with_a_message(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server}/missing.zip", tmp_path / "x.zip", progress=False)
    assert Handler.counts["/missing.zip"] == 1 and not list(tmp_path.iterdir())


def test_an_unreachable_host_says_so_and_keeps_nothing(tmp_path):
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download(
            "http://127.0.0.1:9/x.zip", tmp_path / "x.zip", retries=1, backoff=0.01, progress=False
        )
    assert not (tmp_path / "x.zip").exists()


def test_a_complete_file_is_never_replaced_by_a_partial_one(server, tmp_path):
    old = tmp_path / "data.bin"
    old.write_bytes(b"the previous version")
    with pytest.raises(DownloadError):
        download(f"{server}/ok", old, sha256="0" * 64, progress=False)
    assert old.read_bytes() == b"the previous version"


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():  # a fixed date: the same bytes on every call
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def make_tar(members: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def tar_member(name, kind=tarfile.REGTYPE, linkname="", size=1):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size if kind == tarfile.REGTYPE else 0
    return info


def test_a_good_archive_unpacks(tmp_path):
    (tmp_path / "a.zip").write_bytes(make_zip({"PetImages/Cat/1.jpg": b"x", "README": b"y"}))
    out = safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert (out / "PetImages" / "Cat" / "1.jpg").read_bytes() == b"x"
    inner = [tar_member("d/f.txt"), tar_member("d/link", tarfile.SYMTYPE, "f.txt")]
    (tmp_path / "a.tar").write_bytes(make_tar(inner))
    assert (safe_extract(tmp_path / "a.tar", tmp_path / "out2") / "d" / "f.txt").is_file()


HOSTILE = {  # archive name -> its bytes
    "dotdot.zip": make_zip({"ok.txt": b"x", "../evil.txt": b"x"}),
    "absolute.zip": make_zip({"/tmp/evil.txt": b"x"}),
    "dotdot.tar": make_tar([tar_member("a/../../evil.txt")]),
    "absolute.tar": make_tar([tar_member("/tmp/evil.txt")]),
    "symlink.tar": make_tar([tar_member("link", tarfile.SYMTYPE, "/etc/passwd")]),
    "symlink-up.tar": make_tar([tar_member("d/link", tarfile.SYMTYPE, "../../x")]),
    "hardlink.tar": make_tar([tar_member("link", tarfile.LNKTYPE, "/etc/passwd")]),
    "device.tar": make_tar([tar_member("dev", tarfile.CHRTYPE)]),
    "not-an-archive.zip": b"just text",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_archives_are_refused_and_nothing_is_written(tmp_path, name):
    (tmp_path / name).write_bytes(HOSTILE[name])
    with pytest.raises(DownloadError, match="refused|not a zip or tar"):
        safe_extract(tmp_path / name, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "target").exists()
    assert not list((tmp_path / "out").glob(".*")) if (tmp_path / "out").exists() else True
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
