"""A headless Streamlit session: the browser's side of the protocol, without a browser.

Many visitors at once on a small machine: each session here is a websocket and an HTTP
client in one asyncio loop, not a chromium page, so 30 of them cost the client a few
megabytes and leave the CPUs to the server being measured.

    python -m benchmarks.streamlit_client --sessions 30            # starts the app itself
    python -m benchmarks.streamlit_client --url http://127.0.0.1:8501/ --sessions 30

What a browser does, and so what a session does here (Streamlit 1.67, Starlette server):

1. ``GET <base>/_stcore/health``: the server sets the ``_streamlit_xsrf`` cookie when
   server.enableXsrfProtection is on (the default).
2. Websocket ``<base>/_stcore/stream`` with Sec-WebSocket-Protocol
   ``streamlit, <xsrf cookie or PLACEHOLDER_AUTH_TOKEN>``; the frames are protobufs:
   ``BackMsg`` up, ``ForwardMsg`` down. Nothing runs until the client asks:
   ``BackMsg.rerun_script`` (a ``ClientState``) starts the first run.
3. A run is ``new_session`` (carries the session id), ``delta`` messages (elements, at
   ``metadata.delta_path``), then ``script_finished``. The uploader is the element with
   a ``file_uploader`` field; its ``id`` is the widget id.
4. Upload: ``BackMsg.file_urls_request`` (request id, file names, session id) is answered
   by ``ForwardMsg.file_urls_response`` (file id, upload/delete URLs, relative to the
   server root, which the browser prefixes with the base URL). The file goes up with
   ``PUT <base>/_stcore/upload_file/<session>/<file>``, a multipart form with one file
   field; with XSRF protection on, the ``X-Xsrftoken`` header must carry the token of the
   ``_streamlit_xsrf`` cookie (403 otherwise). Then a ``rerun_script`` whose widget states
   hold a ``FileUploaderState`` (``UploadedFileInfo``: name, size, file id, file URLs)
   under the uploader's id.
5. The run's ``st.image`` elements (``Element.imgs``) carry ``/media/<hash>.<ext>`` URLs,
   fetched over HTTP like ``<img>`` tags do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mimetypes
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState, ContextInfo
from streamlit.proto.Common_pb2 import FileURLs, FileURLsRequest, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Origin, Subprotocol

from models.artifacts import artifacts_root

XSRF_COOKIE = "_streamlit_xsrf"
DONE_STATUSES = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}


class SessionError(RuntimeError):
    """The server refused a step, or answered something a browser could not show."""


def _split_base(base_url: str) -> tuple[str, str]:
    """'http://h:p/prefix?model=x' -> ('http://h:p/prefix/', 'model=x')."""
    parts = urlsplit(base_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), parts.query


def _parse_cookies(header: str) -> dict[str, str]:
    cookies = {}
    for item in header.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name:
            cookies[name] = value
    return cookies


def unique_jpeg(data: bytes, tag: str) -> bytes:
    """The same JPEG with a comment segment (FF FE) after SOI: same pixels, new SHA-256.

    The app caches model outputs per image digest, so 30 uploads of identical bytes
    would run the networks once; this makes each upload a different file, as 30
    visitors' photos are. Other formats are returned as they are.
    """
    if data[:2] != b"\xff\xd8":
        return data
    body = f"streamlit_client {tag}".encode()
    return data[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


class StreamlitSession:
    """One browser tab's worth of protocol: connect, run, upload, fetch the images."""

    def __init__(self, base_url: str, *, cookies: str = "", http_timeout: float = 300):
        self.base, self.query_string = _split_base(base_url)
        self.cookies = _parse_cookies(cookies)
        self.http_timeout = http_timeout
        self.session_id = ""
        self.page_script_hash = ""
        self.uploader_id = ""
        self.errors: list[str] = []
        self.elements: dict[tuple[int, ...], tuple[int, str, object]] = {}  # (run, kind, proto)
        self._run = 0
        self._run_started = False
        self._finished: asyncio.Future | None = None
        self._file_urls: dict[str, asyncio.Future] = {}
        self._fetches: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._failure: SessionError | None = None  # why the websocket reader stopped

    # -- HTTP ------------------------------------------------------------------------

    def _cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _headers(self, extra: dict | None = None) -> dict:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = self._cookie_header()
        return headers

    def _keep_cookies(self, response: aiohttp.ClientResponse) -> None:
        for raw in response.headers.getall("Set-Cookie", []):
            name, _, value = raw.split(";", 1)[0].strip().partition("=")
            if name:
                self.cookies[name] = value

    def url(self, path: str) -> str:
        """A server path as the frontend builds it: relative paths go under the base URL."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base + path.lstrip("/")

    async def _request(self, method: str, path: str, **kw) -> tuple[int, bytes]:
        assert self._http is not None
        async with self._http.request(
            method, self.url(path), headers=self._headers(kw.pop("headers", None)), **kw
        ) as response:
            self._keep_cookies(response)
            return response.status, await response.read()

    # -- websocket -------------------------------------------------------------------

    async def connect(self) -> None:
        """Health check (the XSRF cookie), websocket, first run to its end."""
        self._http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies are kept by hand, proxy's too
            timeout=aiohttp.ClientTimeout(total=self.http_timeout),
        )
        status, body = await self._request("GET", "_stcore/health")
        if status != 200 or body.strip() != b"ok":
            raise SessionError(f"GET {self.url('_stcore/health')}: {status} {body[:200]!r}")
        parts = urlsplit(self.base)
        ws_url = urlunsplit(
            (
                "wss" if parts.scheme == "https" else "ws",
                parts.netloc,
                parts.path + "_stcore/stream",
                "",
                "",
            )
        )
        token = self.cookies.get(XSRF_COOKIE) or "PLACEHOLDER_AUTH_TOKEN"
        self._ws = await ws_connect(
            ws_url,
            subprotocols=[Subprotocol("streamlit"), Subprotocol(token)],
            origin=Origin(f"{parts.scheme}://{parts.netloc}"),
            additional_headers=self._headers(),
            max_size=None,  # ForwardMsgs may be large (server.maxMessageSize)
            ping_interval=None,  # browsers don't ping; a busy server would time out pings
            proxy=None,
            open_timeout=self.http_timeout,
        )
        self._reader = asyncio.create_task(self._read())
        await self.rerun(WidgetStates())

    async def _send(self, msg: BackMsg) -> None:
        if self._failure is not None:
            raise self._failure
        await self._ws.send(msg.SerializeToString())

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if isinstance(frame, str):
                    raise SessionError(f"text frame from the server: {frame[:200]!r}")
                msg = ForwardMsg()
                msg.ParseFromString(frame)
                self._handle(msg)
            raise SessionError(f"websocket closed by the server ({self._ws.close_code})")
        except Exception as err:  # handed to whoever waits, now or later
            self._failure = (
                err if isinstance(err, SessionError) else SessionError(f"websocket: {err!r}")
            )
            for fut in [self._finished, *self._file_urls.values()]:
                if fut is not None and not fut.done():
                    fut.set_exception(self._failure)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            new = msg.new_session
            if new.HasField("initialize") and new.initialize.session_id:
                self.session_id = new.initialize.session_id
            self.page_script_hash = new.page_script_hash
            if not msg.metadata.run.fragment_ids:  # a full run: a fresh page
                self._run += 1
            self._run_started = True
        elif kind == "delta":
            self._delta(tuple(msg.metadata.delta_path), msg.delta)
        elif kind == "script_finished":
            if msg.script_finished in DONE_STATUSES:
                if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    self.errors.append("script finished with a compile error")
                # what the frontend does at the end of a run: drop what it didn't redraw
                self.elements = {p: e for p, e in self.elements.items() if e[0] == self._run}
            if (
                msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN
                and self._run_started
                and self._finished is not None
                and not self._finished.done()
            ):
                self._finished.set_result(time.perf_counter())
        elif kind == "file_urls_response":
            fut = self._file_urls.pop(msg.file_urls_response.response_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg.file_urls_response)
        elif kind == "session_event":
            event = msg.session_event
            if event.HasField("script_compilation_exception"):
                exc = event.script_compilation_exception
                self.errors.append(f"compile error: {exc.type}: {exc.message}")
        elif kind == "ref_hash":  # only sent for hashes the client says it has cached
            self.errors.append(f"unexpected ref_hash {msg.ref_hash}")
        elif kind in {"page_not_found", "auth_redirect"}:
            self.errors.append(f"{kind}: {getattr(msg, kind)}".strip())

    def _delta(self, path: tuple[int, ...], delta) -> None:
        kind = delta.WhichOneof("type")
        if kind == "add_block":
            self.elements[path] = (self._run, "block", delta.add_block)
            return
        if kind != "new_element":
            return  # transient elements (toasts and the like)
        element = delta.new_element
        which = element.WhichOneof("type")
        self.elements[path] = (self._run, which, element)
        if which == "imgs":
            for img in element.imgs.imgs:
                self._fetches.append(asyncio.create_task(self._fetch(img.url)))
        elif which == "exception":
            exc = element.exception
            label = "warning" if exc.is_warning else "exception"  # st.exception either way
            self.errors.append(f"{label}: {exc.type}: {exc.message}")
        elif which == "alert" and element.alert.format in (Alert.ERROR, Alert.WARNING):
            name = Alert.Format.Name(element.alert.format).lower()
            self.errors.append(f"{name}: {element.alert.body}")
        elif which == "file_uploader":
            self.uploader_id = element.file_uploader.id

    async def _fetch(self, url: str) -> float:
        status, body = await self._request("GET", url)
        if status != 200 or not body:
            self.errors.append(f"GET {url}: HTTP {status}, {len(body)} bytes")
        return time.perf_counter()

    def images(self) -> list[str]:
        """Image URLs on the page as it stands (after the last finished run)."""
        return [
            img.url
            for _, kind, e in self.elements.values()
            if kind == "imgs"
            for img in e.imgs.imgs
        ]

    async def rerun(self, widget_states: WidgetStates) -> tuple[float, float]:
        """Run with these widget states, as a widget change does in the browser.

        Returns the times (perf_counter) its script_finished came and the last of the
        run's images was fetched (the former when it made none).
        """
        self._finished = asyncio.get_running_loop().create_future()
        self._run_started = False
        self._fetches = []
        client_state = ClientState(
            query_string=self.query_string,
            page_script_hash=self.page_script_hash,
            widget_states=widget_states,
            context_info=ContextInfo(
                timezone="UTC",
                timezone_offset=0,
                locale="en-US",
                url=self.base,
                is_embedded=False,
                color_scheme="light",
            ),
        )
        await self._send(BackMsg(rerun_script=client_state))
        finished = await self._finished
        fetched = await asyncio.gather(*self._fetches)
        return finished, max([finished, *fetched])

    # -- the upload ------------------------------------------------------------------

    async def upload(self, name: str, data: bytes) -> dict:
        """Upload like the browser's uploader; wait for the rerun and its images."""
        if not self.uploader_id:
            raise SessionError("the page has no st.file_uploader")
        start = time.perf_counter()
        request_id = str(uuid.uuid4())
        fut = asyncio.get_running_loop().create_future()
        self._file_urls[request_id] = fut
        await self._send(
            BackMsg(
                file_urls_request=FileURLsRequest(
                    request_id=request_id, file_names=[name], session_id=self.session_id
                )
            )
        )
        response = await fut
        if response.error_msg or not response.file_urls:
            raise SessionError(f"file URL request refused: {response.error_msg!r}")
        urls: FileURLs = response.file_urls[0]
        form = aiohttp.FormData()
        form.add_field(
            name,
            data,
            filename=name,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        )
        xsrf = self.cookies.get(XSRF_COOKIE)
        status, body = await self._request(
            "PUT", urls.upload_url, data=form, headers={"X-Xsrftoken": xsrf} if xsrf else None
        )
        if status not in (200, 204):
            raise SessionError(f"PUT {self.url(urls.upload_url)}: HTTP {status} {body[:200]!r}")
        uploaded = time.perf_counter()
        info = UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id, file_urls=urls)
        state = WidgetState(id=self.uploader_id)
        state.file_uploader_state_value.uploaded_file_info.append(info)
        finished, done = await self.rerun(WidgetStates(widgets=[state]))
        return {
            "seconds": done - start,
            "upload_s": uploaded - start,
            "run_s": finished - start,
            "images": len(self.images()),
            "errors": list(self.errors),
        }

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()


async def upload_session(
    base_url: str, image_path: Path, *, cookies: str = "", timeout: float = 300
) -> dict:
    """One visitor: open the app, wait for the page, upload image_path, wait for the results.

    Returns {"seconds": upload to every image of the rerun fetched, "images": images on
    the page, "errors": exception and error/warning alert texts seen, ...}.
    """
    image_path = Path(image_path)
    session = StreamlitSession(base_url, cookies=cookies, http_timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            await session.connect()
            return await session.upload(image_path.name, image_path.read_bytes())
    finally:
        await session.close()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    return f"{type(err).__name__}: {err}"


async def load_test(
    base_url: str,
    image_path: Path | Sequence[Path],
    sessions: int,
    *,
    cookies: str = "",
    timeout: float = 300,
    unique: bool = True,
) -> dict:
    """`sessions` visitors: all connect and get the page first, then all upload at once.

    image_path: one file for everyone, or a list (session k uploads path k % len).
    unique: give each JPEG upload distinct bytes (a comment segment) so the app's
    per-image model cache does not turn 30 uploads into one model run.
    A session fails on an exception, an error element or a timeout (its reason kept).
    """
    paths = (
        [Path(image_path)] if isinstance(image_path, str | Path) else list(map(Path, image_path))
    )
    clients = [
        StreamlitSession(base_url, cookies=cookies, http_timeout=timeout) for _ in range(sessions)
    ]
    failures: list[dict] = []
    seconds: list[float | None] = [None] * sessions
    results: list[dict | None] = [None] * sessions
    start = time.perf_counter()
    try:

        async def connect(c):
            async with asyncio.timeout(timeout):
                await c.connect()

        connected = await asyncio.gather(*map(connect, clients), return_exceptions=True)
        connect_s = time.perf_counter() - start
        ready = []
        for k, outcome in enumerate(connected):
            if isinstance(outcome, BaseException):
                failures.append({"session": k, "step": "connect", "reason": _reason(outcome)})
            else:
                ready.append(k)

        files = {p: p.read_bytes() for p in paths}
        payloads = {}
        for k in ready:
            path = paths[k % len(paths)]
            data = unique_jpeg(files[path], f"{k}-{uuid.uuid4().hex}") if unique else files[path]
            payloads[k] = (path.name, data)

        async def upload(k):
            async with asyncio.timeout(timeout):
                return await clients[k].upload(*payloads[k])

        upload_start = time.perf_counter()
        outcomes = await asyncio.gather(*map(upload, ready), return_exceptions=True)
        wall = time.perf_counter() - upload_start
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    for k, outcome in zip(ready, outcomes):
        if isinstance(outcome, BaseException):
            failures.append({"session": k, "step": "upload", "reason": _reason(outcome)})
            continue
        results[k] = outcome
        if outcome["errors"]:
            failures.append(
                {"session": k, "step": "upload", "reason": "; ".join(outcome["errors"])}
            )
        elif outcome["images"] == 0:
            failures.append({"session": k, "step": "upload", "reason": "no images"})
        else:
            seconds[k] = outcome["seconds"]
    answered = [s for s in seconds if s is not None]
    return {
        "sessions": sessions,
        "answered": len(answered),
        "failures": sorted(failures, key=lambda f: f["session"]),
        "seconds": seconds,
        "p50": percentile(answered, 50),
        "p95": percentile(answered, 95),
        "max": max(answered, default=None),
        "mean": statistics.fmean(answered) if answered else None,
        "images": [r["images"] if r else None for r in results],
        "connect_s": connect_s,
        "wall_s": wall,
    }


# -- command line: a measurement against a running app, or one started here --------------


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _scene(folder: Path) -> Path:
    import numpy as np

    from models import synthetic

    img, _ = synthetic.make_scene(1920, 1080, np.random.default_rng(42))
    path = folder / "scene_1080p.jpg"
    img.save(path, quality=90)
    return path


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.streamlit_client")
    parser.add_argument("--url", help="a running app (default: start one on $ARTIFACTS)")
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--image", type=Path, help="default: a generated 1920x1080 JPEG")
    parser.add_argument("--cookies", default="")
    parser.add_argument(
        "--same-bytes",
        action="store_true",
        help="upload identical bytes (the app's model cache then hits)",
    )
    args = parser.parse_args(argv)
    image = args.image or _scene(Path(tempfile.mkdtemp()))

    def measure(url: str) -> dict:
        return asyncio.run(
            load_test(url, image, args.sessions, cookies=args.cookies, unique=not args.same_bytes)
        )

    if args.url:
        result = measure(args.url)
    else:
        from benchmarks.harness import app_server

        artifacts = artifacts_root()
        with app_server(artifacts) as (url, proc):
            asyncio.run(upload_session(url, image))  # warm-up: sessions loaded, caches made
            result = measure(url)
            result["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
    print(json.dumps(result, indent=1))
    return 0 if result["answered"] == result["sessions"] else 1


if __name__ == "__main__":
    sys.exit(main())
