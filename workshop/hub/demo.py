"""The room's web demo: Streamlit behind the hub's login, at /services/demo/.

A hub service is proxied without authentication, and Streamlit knows nothing of the
hub, so this service is a small authenticating reverse proxy: every request and the
app's websocket must carry the hub's OAuth cookie (a visitor without one is sent to
the hub's login; a websocket without one is refused), then goes to one Streamlit
server on 127.0.0.1 that serves the instructor's exported models.

The room's demo runs as ``nobody`` for everyone, so it shows the Test page only
(``WORKSHOP_PAGES=test``): data sets, runs and training live in each participant's own
"Demo (my models)", as that participant.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import httpclient, ioloop, web, websocket

HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "host",
}


def _cookies_without_hub(header: str) -> str:
    """The visitor's cookies minus the hub's own (the app has no use for them)."""
    parts = [c.strip() for c in header.split(";") if c.strip()]
    return "; ".join(c for c in parts if not c.startswith("jupyterhub-"))


def _forward_headers(request) -> dict:
    headers = {k: v for k, v in request.headers.get_all() if k.lower() not in HOP_HEADERS}
    headers.pop("Cookie", None)
    cookies = _cookies_without_hub(request.headers.get("Cookie", ""))
    if cookies:
        headers["Cookie"] = cookies
    return headers


class ProxyHandler(HubOAuthenticated, web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")

    def check_xsrf_cookie(self):
        pass  # the app behind has its own

    @web.authenticated
    async def _proxy(self, path: str = ""):
        url = f"{self.settings['backend']}{self.request.uri}"
        body = self.request.body if self.request.method not in ("GET", "HEAD") else None
        request = httpclient.HTTPRequest(
            url,
            method=self.request.method,
            headers=_forward_headers(self.request),
            body=body,
            follow_redirects=False,
            allow_nonstandard_methods=True,
            decompress_response=False,
            request_timeout=300,
        )
        response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:
            raise web.HTTPError(502, "the demo is starting or has stopped; try again shortly")
        self.set_status(response.code, response.reason)
        self._headers.clear()
        for name, value in response.headers.get_all():
            if name.lower() not in HOP_HEADERS:
                self.add_header(name, value)
        if response.body and self.request.method != "HEAD":
            self.write(response.body)
        await self.finish()

    get = head = post = put = delete = options = patch = _proxy


class StreamProxy(HubOAuthenticated, websocket.WebSocketHandler):
    """The app's websocket, both ways, for signed-in visitors only."""

    backend_ws = None

    async def get(self, *args, **kwargs):
        if self.current_user is None:
            raise web.HTTPError(403, "sign in to the workshop hub first")
        return await super().get(*args, **kwargs)

    def check_xsrf_cookie(self):
        pass

    def select_subprotocol(self, subprotocols):
        self._asked = list(subprotocols)
        return subprotocols[0] if subprotocols else None

    async def open(self, *args):
        url = f"{self.settings['backend'].replace('http', 'ws', 1)}{self.request.uri}"
        request = httpclient.HTTPRequest(url, headers=_forward_headers(self.request))
        try:
            self.backend_ws = await websocket.websocket_connect(
                request, subprotocols=getattr(self, "_asked", None), max_message_size=200 << 20
            )
        except (OSError, websocket.WebSocketError, httpclient.HTTPClientError):
            self.close(1011, "the demo is not running")
            return
        asyncio.ensure_future(self._pump())

    async def _pump(self):
        while True:
            message = await self.backend_ws.read_message()
            if message is None:
                self.close()
                return
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                return

    async def on_message(self, message):
        if self.backend_ws is not None:
            await self.backend_ws.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        if self.backend_ws is not None:
            self.backend_ws.close()


def start_streamlit(prefix: str, port: int, artifacts: str) -> subprocess.Popen:
    course = Path(__file__).resolve().parents[2]
    base = prefix.strip("/")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(course / "streamlit_app" / "app.py"),
            "--server.address=127.0.0.1",
            f"--server.port={port}",
            f"--server.baseUrlPath={base}",
            "--server.headless=true",
            "--server.fileWatcherType=none",
            "--browser.gatherUsageStats=false",
            "--server.enableCORS=false",
            "--server.enableXsrfProtection=false",
        ],
        cwd=course,
        env={**os.environ, "ARTIFACTS": artifacts, "WORKSHOP_PAGES": "test"},
    )
    deadline = time.monotonic() + 90
    health = f"http://127.0.0.1:{port}/{base}/_stcore/health"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(health, timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    return proc


def main() -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/demo/")
    service = os.environ["JUPYTERHUB_SERVICE_URL"].split("://", 1)[1].split("/", 1)[0]
    host, port = service.rsplit(":", 1)
    backend_port = int(os.environ["DEMO_PORT"])
    streamlit = start_streamlit(prefix, backend_port, os.environ["ARTIFACTS"])
    # tornado's default of 10 requests at a time would queue a room's uploads here
    httpclient.AsyncHTTPClient.configure(None, max_clients=256)
    app = web.Application(
        [
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "_stcore/stream", StreamProxy),
            (prefix + ".*", ProxyHandler),
            (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
        ],
        backend=f"http://127.0.0.1:{backend_port}",
        cookie_secret=os.urandom(32),
        websocket_max_message_size=200 << 20,
    )
    app.listen(int(port), host, max_body_size=60 << 20)
    try:
        ioloop.IOLoop.current().start()
    finally:
        streamlit.terminate()


if __name__ == "__main__":
    main()
