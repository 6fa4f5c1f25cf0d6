"""The headless Streamlit client against a real `streamlit run`: it sees what a browser sees.

The app runs on the exported test models, like tests/test_browser.py's; a session here
speaks the websocket protocol itself (no chromium), so the load test can be 30 sessions
on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from helpers import awkward_images, scene_1080p
from PIL import Image

from benchmarks.harness import app_server, free_port
from benchmarks.streamlit_client import (
    StreamlitSession,
    load_test,
    percentile,
    unique_jpeg,
    upload_session,
)
from models import synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 1920x1080 JPEG, made as benchmarks.app_latency.run makes its uploads."""
    img, _ = synthetic.make_scene(1920, 1080, np.random.default_rng([42, 0]))
    path = tmp_path_factory.mktemp("scene") / "scene.jpg"
    img.save(path, quality=90)
    return path


def test_one_upload_is_answered_with_both_pictures(app, scene):
    result = asyncio.run(upload_session(app[0], scene, timeout=120))
    assert result["errors"] == []
    assert result["images"] >= 2
    assert 0 < result["upload_s"] <= result["run_s"] <= result["seconds"] < 120


def test_the_session_sees_what_the_browser_sees(app, tmp_path):
    """tests/test_browser.py after a 1080p upload: 2 stImage pictures, the size caption, the
    download buttons, no stException."""
    path = tmp_path / "scene.jpg"
    path.write_bytes(scene_1080p())

    async def visit():
        session = StreamlitSession(app[0])
        try:
            await session.connect()
            assert session.session_id and session.uploader_id
            assert session.images() == []  # before the upload: the uploader and a hint
            result = await session.upload(path.name, path.read_bytes())
            kinds = [kind for _, kind, _ in session.elements.values()]
            texts = [
                e.markdown.body for _, kind, e in session.elements.values() if kind == "markdown"
            ]
            buttons = [
                e.download_button.label
                for _, kind, e in session.elements.values()
                if kind == "download_button"
            ]
            return result, session.images(), kinds, texts, buttons
        finally:
            await session.close()

    result, images, kinds, texts, buttons = asyncio.run(visit())
    assert result["images"] == len(images) == 2  # upload_and_wait(page, path, images=2)
    assert all(url.startswith("/media/") for url in images)
    assert "exception" not in kinds and result["errors"] == []
    assert sum("scene.jpg: 1920x1080" in t for t in texts) == 2  # one caption per model
    assert "Download overlay (PNG)" in buttons
    assert "Download detections (COCO JSON)" in buttons


def test_a_bad_file_is_an_explicit_failure(app, tmp_path):
    """The app's st.error for a non-image is reported, and load_test counts it as a failure."""
    name, data, message = awkward_images()["not-an-image"]
    path = tmp_path / name
    path.write_bytes(data)
    result = asyncio.run(upload_session(app[0], path, timeout=60))
    assert result["images"] == 0
    assert any(message in e and e.startswith("error:") for e in result["errors"])
    summary = asyncio.run(load_test(app[0], path, 1, timeout=60))
    assert summary["answered"] == 0 and summary["p50"] is None
    assert message in summary["failures"][0]["reason"]


def test_three_sessions_at_once_are_all_answered(app, scene):
    summary = asyncio.run(load_test(app[0], scene, 3, timeout=180))
    print(f"\n3 sessions: p50 {summary['p50']:.2f} s, max {summary['max']:.2f} s")
    assert summary["failures"] == []
    assert summary["answered"] == 3
    assert summary["images"] == [2, 2, 2]
    assert summary["p50"] <= summary["p95"] <= summary["max"] < 180


def test_unique_uploads_decode_to_the_same_picture(scene):
    data = scene.read_bytes()
    a, b = unique_jpeg(data, "a"), unique_jpeg(data, "b")
    assert len({data, a, b}) == 3
    same = [np.asarray(Image.open(io.BytesIO(x)).convert("RGB")) for x in (data, a, b)]
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])
    assert unique_jpeg(b"\x89PNG rest", "a") == b"\x89PNG rest"
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([1.0, 2.0], 95) == 1.95


@pytest.fixture(scope="module")
def prefixed_server(artifacts, tmp_path_factory):
    """The app under a path prefix, as behind a proxy, with XSRF protection off."""
    log_path = tmp_path_factory.mktemp("log") / "streamlit_prefixed.log"
    flags = ("--server.enableXsrfProtection=false",)
    with (
        open(log_path, "w") as log,
        app_server(artifacts, log, base="/services/demo", args=flags) as (url, _),
    ):
        yield f"{url}/"


class CookieProxy:
    """An authenticating reverse proxy in miniature: no `proxy_session=abc123` cookie, 403.

    Forwards HTTP requests and the websocket (frames both ways) to the app; counts what
    it let through.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.passed = {"http": 0, "websocket": 0}
        self.refused = 0

    async def handle(self, request):
        if request.cookies.get("proxy_session") != "abc123":
            self.refused += 1
            return web.Response(status=403, text="log in first")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("cookie", "x-xsrftoken", "content-type")
        }
        url = self.upstream + request.rel_url.path_qs
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                self.passed["websocket"] += 1
                down = web.WebSocketResponse(protocols=["streamlit"], max_msg_size=0)
                await down.prepare(request)
                protocols = [
                    p.strip() for p in request.headers["Sec-WebSocket-Protocol"].split(",")
                ]
                async with http.ws_connect(
                    url.replace("http", "ws", 1),
                    protocols=protocols,
                    headers=headers,
                    max_msg_size=0,
                ) as up:

                    async def pump(src, dst):
                        async for msg in src:
                            if msg.type != aiohttp.WSMsgType.BINARY:
                                break
                            await dst.send_bytes(msg.data)
                        await dst.close()

                    await asyncio.gather(pump(down, up), pump(up, down))
                return down
            self.passed["http"] += 1
            body = await request.read()
            async with http.request(request.method, url, headers=headers, data=body) as resp:
                out = web.Response(status=resp.status, body=await resp.read())
                for key in ("Content-Type", "Set-Cookie"):
                    for value in resp.headers.getall(key, []):
                        out.headers.add(key, value)
                return out


async def behind_proxy(upstream: str, fn):
    """Run fn(proxy_url) with a CookieProxy in front of upstream; returns (result, proxy)."""
    proxy = CookieProxy(upstream)
    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await fn(f"http://127.0.0.1:{port}"), proxy
    finally:
        await runner.cleanup()


def test_a_path_prefix_and_a_query_string(prefixed_server, scene):
    """base_url keeps its prefix for the websocket, the PUT and /media/; ?model= is sent as
    the page's query string: one model, one picture."""
    url = f"{prefixed_server}?model=detectnet"

    async def visit():
        session = StreamlitSession(url)
        try:
            await session.connect()
            assert session.cookies == {}  # XSRF protection off: no _streamlit_xsrf cookie
            return await session.upload(scene.name, scene.read_bytes())
        finally:
            await session.close()

    result = asyncio.run(visit())
    assert result["errors"] == [] and result["images"] == 1
    summary = asyncio.run(load_test(url, scene, 2, timeout=180))
    assert summary["answered"] == 2 and summary["failures"] == []


def test_cookies_reach_an_authenticating_proxy(app, scene):
    """Every request and the websocket handshake carry the cookies, next to the XSRF one."""
    url, _ = app

    async def both(proxy_url):
        ok = await upload_session(proxy_url, scene, cookies="proxy_session=abc123", timeout=120)
        try:
            await upload_session(proxy_url, scene, timeout=30)
        except Exception as err:  # noqa: BLE001
            return ok, err
        return ok, None

    (ok, refused), proxy = asyncio.run(behind_proxy(url, both))
    assert ok["errors"] == [] and ok["images"] == 2
    assert proxy.passed["websocket"] == 1
    assert proxy.passed["http"] >= 4  # health, PUT, two pictures
    assert refused is not None and "403" in str(refused) and proxy.refused == 1
