"""The web app as a visitor feels it: a real `streamlit run`, driven by Debian's chromium.

Upload-to-overlay: from choosing a 1920x1080 JPEG to both result images being
loaded in the page. Slider: from a keypress on the opacity slider to the end of
the rerun. The server, browser and page come from benchmarks.harness, shared with the tests.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import CHROMIUM, DONE, app_server, chromium, open_page, upload_and_wait
from models.artifacts import artifacts_root


def run(repeats: int = 5) -> dict:
    from models import synthetic

    artifacts = artifacts_root()
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
