"""The web app as a visitor feels it: a real `streamlit run`, driven by Debian's chromium.

Upload-to-overlay: from choosing a 1920x1080 JPEG to both result images being
loaded in the page. Slider: from a keypress on the opacity slider to the end of
the rerun. The helpers here (server, browser, page) serve the browser tests too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

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


def run(repeats: int = 5) -> dict:
    from models import synthetic

    artifacts = Path(os.environ.get("ARTIFACTS", "artifacts"))
    if not all((artifacts / m / "model.onnx").is_file() for m in ("alexnet", "detectnet")):
        return {"skipped": f"no exported models in {artifacts}/: run `make demo` first"}
    if not Path(CHROMIUM).is_file():
        return {"skipped": f"{CHROMIUM} is missing (apt-get install chromium)"}
    import numpy as np

    folder = Path(tempfile.mkdtemp())
    paths = []
    for k in range(repeats + 1):
        img, _ = synthetic.make_scene(1920, 1080, np.random.default_rng([42, k]))
        paths.append(folder / f"scene_{k}.jpg")
        img.save(paths[-1], quality=90)
    with app_server(artifacts) as (url, _), chromium() as browser:
        page = open_page(browser, url)
        first = upload_and_wait(page, paths[0])  # includes the sessions' warm-up
        uploads = [upload_and_wait(page, p) for p in paths[1:]]
        sliders = []
        slider = page.get_by_role("slider").first  # the heatmap's opacity
        first_image = "document.querySelector(\"[data-testid='stImage'] img\")"
        for k in range(repeats + 1):
            before = page.evaluate(f"{first_image}.src")
            slider.focus()
            start = time.perf_counter()
            page.keyboard.press("ArrowLeft" if k % 2 else "ArrowRight")
            page.wait_for_function(  # a new overlay, loaded
                f"(old) => {{ const i = {first_image}; return i && i.src !== old && i.complete; }}",
                arg=before,
                timeout=30_000,
            )
            if k:  # the first one warms up
                sliders.append(time.perf_counter() - start)
            page.wait_for_selector(DONE, timeout=30_000)
    return {
        "image": "1920x1080 JPEG, FCN + detector",
        "first_upload_s": first,
        "upload_to_overlay": {"median_s": statistics.median(uploads), "runs": uploads},
        "slider_change": {"median_s": statistics.median(sliders), "runs": sliders},
    }


def table(result: dict) -> str:
    if "skipped" in result:
        return f"App latency: skipped ({result['skipped']})"
    up, sl = result["upload_to_overlay"]["median_s"], result["slider_change"]["median_s"]
    return "\n".join(
        [
            "Web app in a real browser (chromium), both image models on a 1920x1080 upload:",
            "",
            "| step | median (s) | goal (s) |",
            "| --- | --- | --- |",
            f"| upload to overlay | {up:.2f} | 1.5 |",
            f"| slider change | {sl:.2f} | 0.3 |",
            f"| first upload (cold) | {result['first_upload_s']:.2f} | - |",
        ]
    )
