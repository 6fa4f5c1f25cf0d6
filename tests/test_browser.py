"""The real thing: `streamlit run` on a free port, driven by Debian's chromium through Playwright.

Screenshots are kept under test-artifacts/browser/. These tests need /usr/bin/chromium
(`.ci/run` installs it); without it they fail rather than skip, so CI can't pass
without running them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import awkward_images, scene_1080p

from benchmarks.harness import (
    CHROMIUM,
    DONE,
    IMAGES_LOADED,
    chromium,
    open_page,
    upload_and_wait,
)

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `apt-get install chromium`"
    with chromium() as b:
        yield b


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_a_1080p_scene_and_download_the_results(app, browser, tmp_path):
    url, _ = app
    path = tmp_path / "scene.jpg"
    path.write_bytes(scene_1080p())
    page = open_page(browser, url)
    upload_and_wait(page, path, images=2)
    shot(page, "scene_1080p")
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("scene.jpg: 1920x1080").count() >= 1
    with page.expect_download() as info:
        page.get_by_role("button", name="Download overlay (PNG)").click()
    overlay = Path(info.value.path()).read_bytes()
    assert overlay[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as info:
        page.get_by_role("button", name="Download detections (COCO JSON)").click()
    assert Path(info.value.path()).read_text().lstrip().startswith("[")
    page.close()


@pytest.mark.parametrize("case", ["not-an-image", "truncated", "zero-byte", "bomb"])
def test_bad_files_show_a_message_and_no_traceback(app, browser, tmp_path, case):
    name, data, message = awkward_images()[case]
    path = tmp_path / name
    path.write_bytes(data)
    page = open_page(browser, app[0])
    page.locator("input[type=file]").set_input_files(str(path))
    page.locator("[data-testid='stAlert']", has_text=message).wait_for(timeout=30_000)
    page.wait_for_selector(DONE, timeout=30_000)
    shot(page, f"bad_{case}")
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_eight_concurrent_sessions_all_get_answers(app, browser, tmp_path):
    """A bounded load test: 8 visitors upload at once, three times; memory stays bounded.

    The first rounds grow onnxruntime's arenas and the allocator's to what 8 concurrent
    1080p runs need (how that splits between rounds 1 and 2 depends on how the uploads
    interleave); the third round's new images must not add to it beyond the outputs cache.
    """
    url, pid = app
    pages = [open_page(browser, url) for _ in range(8)]
    peaks = []
    print(f"\nserver RSS before: {rss_mb(pid):.0f} MB")
    for round_ in range(3):  # every round uploads new images: new model runs
        paths = []
        for k in range(8):
            paths.append(tmp_path / f"scene_{round_}_{k}.jpg")
            paths[-1].write_bytes(scene_1080p(seed=100 * round_ + k))
        start = time.perf_counter()
        for page, path in zip(pages, paths):  # every upload starts before any answer is awaited
            page.locator("input[type=file]").set_input_files(str(path))
        for page, path in zip(pages, paths):
            page.get_by_text(f"{path.name}: 1920x1080").first.wait_for(timeout=120_000)
            page.wait_for_function(IMAGES_LOADED, arg=2, timeout=120_000)
            page.wait_for_selector(DONE, timeout=120_000)
            assert page.locator("[data-testid='stException']").count() == 0
        peaks.append(rss_mb(pid))
        print(
            f"round {round_ + 1}: 8 sessions answered in {time.perf_counter() - start:.1f} s, "
            f"server RSS {peaks[-1]:.0f} MB"
        )
    shot(pages[-1], "load_test_last_session")
    for page in pages:
        page.close()
    assert peaks[-1] < 2048  # MB: model outputs are cached with a bound, sessions share models
    assert peaks[2] - peaks[1] < 300  # once warm, a round does not pile up memory
