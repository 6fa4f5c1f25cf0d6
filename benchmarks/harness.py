"""Real processes and the clients that drive them, for the benchmarks and the tests alike.

A free port on 127.0.0.1; the web app as `streamlit run` serves it; Debian's chromium
(through Playwright) opening its page and uploading; one cell run in a Jupyter kernel
over its websocket. The benchmarks time these; the tests assert on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # several pages at once: keep the ones not in front from being throttled
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# The quickest real training job (workshop.jobs settings): a width-0.125 AlexNet on the small
# synthetic set, 96 crops in 24 steps of 4 an epoch (about 2 s here), 4 epochs, one
# pointing scene. The jobs' tests, the DIGITS loop's browser test and its bench train it.
TINY_JOB = {
    "synthetic_size": "small",
    "width": "0.125",
    "batch_size": "4",
    "epochs": "4",
    "sliding_check": "false",
    "pointing_scenes": "1",
    "examples": "0",  # no example heatmaps to draw
    "device": "cpu",
}
DONE = "[data-testid='stApp'][data-test-script-state='notRunning']"
IMAGES_LOADED = (
    "(n) => { const imgs = document.querySelectorAll(\"[data-testid='stImage'] img\");"
    " return imgs.length >= n && Array.from(imgs).every(i => i.complete); }"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(artifacts, log=subprocess.DEVNULL, *, base: str = "", args: tuple = ()):
    """`streamlit run streamlit_app/app.py` on a free port (under the path ``base``, e.g.
    "/services/demo", with any extra ``args``); yields (url, process), url ending in base."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "streamlit_app" / "app.py"),
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
            *([f"--server.baseUrlPath={base}"] if base else []),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "ARTIFACTS": str(artifacts)},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}{base}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"{CHROMIUM} is missing: `apt-get install chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
    page.wait_for_selector(DONE, timeout=60_000)
    return page


def upload_and_wait(page, path: Path, images: int = 2, timeout: float = 120_000) -> float:
    """Upload one file; seconds until its results (``images`` pictures) are loaded."""
    start = time.perf_counter()
    page.locator("input[type=file]").set_input_files(str(path))
    page.get_by_text(f"{path.name}: ").first.wait_for(timeout=timeout)
    page.wait_for_function(IMAGES_LOADED, arg=images, timeout=timeout)
    seconds = time.perf_counter() - start
    page.wait_for_selector(DONE, timeout=timeout)
    return seconds


# ---------------------------------------------------------------------- kernels


async def send_cell(ws_url: str, code: str, token: str | None):
    """Open the kernel's websocket and send one execute request; (connection, msg_id)."""
    from tornado.httpclient import HTTPRequest

    headers = {"Authorization": f"token {token}"} if token else {}
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    msg_id = uuid.uuid4().hex
    conn.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            }
        )
    )
    return conn, msg_id


async def run_cell(ws_url: str, code: str, token: str | None = None, timeout: float = 60) -> str:
    """Execute one cell over the kernel's websocket; stdout, stderr and errors as text."""
    conn, msg_id = await send_cell(ws_url, code, token)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(conn.read_message(), max(1, deadline - time.monotonic()))
        if raw is None:
            out.append("ERROR kernel connection closed")
            return "".join(out)
        msg = json.loads(raw)
        state = msg.get("content", {}).get("execution_state")
        if msg["msg_type"] == "status" and state in ("restarting", "dead"):
            out.append(f"ERROR kernel {state}")
            return "".join(out)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"ERROR {msg['content']['ename']}: {msg['content']['evalue']}")
        elif msg["msg_type"] == "status" and state == "idle":
            conn.close()
            return "".join(out)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder):
    """Serve ``folder`` over HTTP on 127.0.0.1 while the block runs; yields the base url."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
