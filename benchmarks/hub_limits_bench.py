"""A fork bomb in one participant's server, and how another participant's kernel answers meanwhile.

A real hub (benchmarks.hub_room.Hub, loopback) with the room's default limits: 512 processes,
1 CPU and 3G per participant. Participant `other` opens one kernel and runs a small cell
(sum(range(10**5))) over one websocket, as their browser would, CELLS times while the room is
idle (before the bomb and again after it), and CELLS times while participant `bomber`'s
kernel runs a fork bomb: every process forks as fast as it can and its children do the same,
for SECONDS; at the group's limit every fork gets EAGAIN and the bomb keeps trying. The hub's
API is timed alongside. Goal: the cell within 2x of idle. Other work on the machine shows in
the numbers: measure on a quiet one.

    python -m benchmarks.hub_limits_bench          (as root; ~2 minutes on 2 cores)

`fork_bomb_latency(hub)` does the measuring on any started Hub (make bench's hub section).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from benchmarks.hub_room import Hub, start_busy
from workshop.hub import cgroups

CELLS = 30
SECONDS = 40
CELL = "print(sum(range(10**5)))"

# Every process forks until the deadline, the kernel (a subreaper: orphans come back to it)
# reaps them all at the end; children never return to the kernel's code.
BOMB = """
import ctypes, os, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
end, me, refused = time.monotonic() + {seconds}, os.getpid(), 0
while time.monotonic() < end:
    try:
        os.fork()
    except OSError:
        refused += 1
if os.getpid() != me:
    os._exit(0)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


async def _cell_times(ws_url: str, token: str, code: str, n: int) -> list[float]:
    """Run ``code`` n times over one kernel websocket; each round trip in seconds."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    session, times = uuid.uuid4().hex, []
    try:
        for _ in range(n):
            msg_id = uuid.uuid4().hex
            start = time.monotonic()
            conn.write_message(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "msg_type": "execute_request",
                            "username": "bench",
                            "session": session,
                            "version": "5.3",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": False},
                    }
                )
            )
            while True:
                msg = json.loads(await asyncio.wait_for(conn.read_message(), 120))
                mine = msg.get("parent_header", {}).get("msg_id") == msg_id
                state = msg.get("content", {}).get("execution_state")
                if mine and msg["msg_type"] == "status" and state == "idle":
                    break
            times.append(time.monotonic() - start)
            await asyncio.sleep(0.2)
    finally:
        conn.close()
    return times


def _api_times(hub: Hub, session: requests.Session, name: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.monotonic()
        hub.api(session, "GET", f"users/{name}").raise_for_status()
        times.append(time.monotonic() - start)
    return times


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def fork_bomb_latency(hub: Hub, cells: int = CELLS, seconds: int = SECONDS) -> dict:
    """On a started hub: `other`'s cell and the hub API, idle and during `bomber`'s fork bomb."""
    people = {}
    for name in ("bomber", "other"):
        s = hub.login(name)
        people[name] = (s, hub.token(s))
        hub.spawn(s)
    for name, (_, token) in people.items():
        hub.wait_ready(name, token)
    (other_session, other), (_, bomber) = people["other"], people["bomber"]
    kernel = hub.user_api("other", other, "POST", "kernels").json()["id"]
    ws = f"ws://127.0.0.1:{hub.port}/user/other/api/kernels/{kernel}/channels"
    asyncio.run(_cell_times(ws, other, CELL, 3))  # warm
    idle = asyncio.run(_cell_times(ws, other, CELL, cells))
    idle_api = _api_times(hub, other_session, "other", cells)
    groups, _ = cgroups.detect()
    pids = groups.pids / hub.unix("bomber") if groups is not None and groups.pids else None
    limit = groups.pids_limit(hub.unix("bomber")) if pids else None
    started = time.monotonic()
    bomb = start_busy(hub, "bomber", bomber, BOMB.format(seconds=seconds))
    while pids and int((pids / "pids.current").read_text()) < limit * 0.95:
        if time.monotonic() - started > seconds / 2:
            break
        time.sleep(0.1)
    reached_s = time.monotonic() - started
    during = asyncio.run(_cell_times(ws, other, CELL, cells))
    during_api = _api_times(hub, other_session, "other", cells)
    measured_in_bomb = time.monotonic() - started < seconds
    held = {}
    if pids:
        held["tasks_at_limit"] = int((pids / "pids.current").read_text())
        held["forks_refused"] = int((pids / "pids.events").read_text().split()[1])
    while pids and time.monotonic() - started < seconds + 60:  # the bomb ends and is reaped
        if int((pids / "pids.current").read_text()) < 40:
            break
        time.sleep(0.5)
    hub.user_api("bomber", bomber, "DELETE", f"kernels/{bomb}")
    # idle again, so that a machine busier or quieter than at the start shows in both
    idle += asyncio.run(_cell_times(ws, other, CELL, cells))
    idle_api += _api_times(hub, other_session, "other", cells)
    hub.user_api("other", other, "DELETE", f"kernels/{kernel}")
    idle_s, during_s = _summary(idle), _summary(during)
    return {
        "pids_limit": limit,
        "bomb_seconds": seconds,
        "limit_reached_s": reached_s if pids else None,
        "all_measured_during_bomb": measured_in_bomb,
        **held,
        "cells": cells,
        "cell_idle_s": idle_s,
        "cell_during_bomb_s": during_s,
        "cell_p50_ratio": during_s["p50"] / idle_s["p50"],
        "api_idle_s": _summary(idle_api),
        "api_during_bomb_s": _summary(during_api),
    }


def run() -> dict:
    if os.geteuid() != 0:
        return {"skipped": "the hub makes Unix users: run as root"}
    with tempfile.TemporaryDirectory() as folder:  # the hub's state and log
        hub = Hub(Path(folder) / "state", hub_demo="false")
        try:
            hub.start()
            return fork_bomb_latency(hub)
        finally:
            hub.stop()


def table(result: dict) -> str:
    if "skipped" in result:
        return f"Fork bomb: skipped ({result['skipped']})"
    idle, during = result["cell_idle_s"], result["cell_during_bomb_s"]
    api, api_bomb = result["api_idle_s"], result["api_during_bomb_s"]
    ms = lambda s: f"{s['p50'] * 1000:.0f} / {s['p95'] * 1000:.0f} / {s['max'] * 1000:.0f}"  # noqa: E731
    return "\n".join(
        [
            f"A fork bomb in one server (limit {result['pids_limit']} tasks, reached in "
            f"{result['limit_reached_s'] or 0:.1f} s, {result.get('forks_refused', 0)} forks "
            "refused), another participant's kernel meanwhile:",
            "",
            "| | idle: p50 / p95 / max (ms) | during the bomb (ms) | p50 ratio | goal |",
            "| --- | --- | --- | --- | --- |",
            f"| a cell in another kernel | {ms(idle)} | {ms(during)} "
            f"| {result['cell_p50_ratio']:.2f} | <= 2 |",
            f"| the hub API | {ms(api)} | {ms(api_bomb)} | {api_bomb['p50'] / api['p50']:.2f} | |",
        ]
    )


if __name__ == "__main__":
    result = run()
    print(json.dumps(result, indent=1))
    print(table(result))
    sys.exit(0)
