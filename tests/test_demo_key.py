"""The participant's own app in the room answers only requests its JupyterLab proxy forwards.

Its loopback port is open to every account on the machine; the proxy adds a key made at
each server start (workshop/hub/environment.py), which only it and the app know. Real
`streamlit run` and the headless websocket client: one visit without the key, one with it.
"""

from __future__ import annotations

import asyncio

import pytest
from test_hub_parts import _server_config

from benchmarks.harness import app_server
from benchmarks.streamlit_client import StreamlitSession

KEY = "a-key-only-the-proxy-knows"


def test_each_server_start_makes_a_key_given_to_the_demo_and_its_proxy(tmp_path):
    keys = []
    for start in ("first", "second"):
        demo = _server_config(tmp_path / start).ServerProxy.servers["demo"]
        key = demo["environment"]["WORKSHOP_PROXY_KEY"]
        assert demo["request_headers_override"] == {"X-Workshop-Key": key}
        assert len(key) >= 32
        keys.append(key)
    assert keys[0] != keys[1]


async def _visit(url: str, headers: dict) -> StreamlitSession:
    session = StreamlitSession(url)
    plain = session._headers
    session._headers = lambda extra=None: {**plain(extra), **headers}
    try:
        await session.connect()
    finally:
        await session.close()
    return session


@pytest.mark.slow
def test_the_app_answers_only_requests_carrying_the_proxys_key(artifacts, monkeypatch):
    monkeypatch.setenv("WORKSHOP_PROXY_KEY", KEY)
    with app_server(artifacts) as (url, _):
        stranger = asyncio.run(_visit(url + "/", {}))
        wrong = asyncio.run(_visit(url + "/", {"X-Workshop-Key": KEY[:-1] + "?"}))
        owner = asyncio.run(_visit(url + "/", {"X-Workshop-Key": KEY}))
    for refused in (stranger, wrong):
        assert refused.errors == [
            "error: This app answers through its owner's JupyterLab only (Demo in their launcher)."
        ]
        assert not refused.uploader_id
    assert owner.errors == [] and owner.uploader_id  # the Test page, upload and all
