"""The hosted workshop under a room: participants logging in at once, and the shared demo.

A real hub (`python -m workshop.hub serve`, loopback only) with the instructor's exported
models in its share. Logins: N participants log in through the login form at the same
moment and start their servers; the time until every server answers, and each idle
server's memory (the resident memory of the participant's processes). Demo: N sessions
upload a 1920x1080 photo through /services/demo/ (the hub's login in front) at once,
driven by a headless Streamlit client; p50/p95 latency and the demo server's peak memory.
Roster: a hub started with HUB_ROSTER of 30 names pre-starts their servers (the time until
all answer), then the 30 claim their names with their slips' codes at the same moment: the
time from each login POST to their lab answering, p50/p95.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import psutil
import requests

from benchmarks import hub_limits_bench
from benchmarks.hub_room import Hub
from models.artifacts import artifacts_root

ROOMS = (12, 30)
DEMO_SESSIONS = 30
ROSTER = 30


def _rss_of(uid: int) -> int:
    total = 0
    for proc in psutil.process_iter(["uids", "memory_info"]):
        try:
            if proc.info["uids"] and proc.info["uids"].real == uid:
                total += proc.info["memory_info"].rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def room_logs_in(hub: Hub, n: int, tag: str) -> dict:
    names = [f"{tag}{k:02d}" for k in range(n)]

    def one(name: str) -> float:
        s = hub.login(name)
        token = hub.token(s)
        hub.spawn(s)
        hub.wait_ready(name, token, timeout=300)
        return time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        ready = sorted(pool.map(one, names))
    time.sleep(5)  # let the servers settle into idleness
    rss = [_rss_of(pwd.getpwnam(hub.unix(name)).pw_uid) / 2**20 for name in names]
    instructor = hub.login("instructor", hub.instructor_password)
    for name in names:  # stop them so the next measurement starts from a quiet machine
        hub.api(instructor, "DELETE", f"users/{name}/server")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        users = hub.api(instructor, "GET", "users").json()
        if not any(u["servers"] for u in users if u["name"] in names):
            break
        time.sleep(1)
    time.sleep(5)
    return {
        "participants": n,
        "all_ready_s": ready[-1],
        "median_ready_s": statistics.median(ready),
        "idle_server_mb": {"median": statistics.median(rss), "max": max(rss)},
    }


def demo_under_load(hub: Hub, sessions: int) -> dict:
    import numpy as np

    from benchmarks.streamlit_client import load_test
    from models import synthetic

    s = hub.login("viewer")
    page = s.get(f"{hub.url}/services/demo/", timeout=60)
    if page.status_code != 200:
        return {"skipped": f"the demo answered {page.status_code}"}
    cookies = "; ".join(f"{c.name}={c.value}" for c in s.cookies)
    img, _ = synthetic.make_scene(1920, 1080, np.random.default_rng(7))
    path = Path(tempfile.mkdtemp()) / "photo_1080p.jpg"
    img.save(path, quality=90)
    commands = {p: " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])}
    demo = [p for p, cmd in commands.items() if "streamlit" in cmd and str(hub.share) in cmd]
    result = asyncio.run(load_test(f"{hub.url}/services/demo/", path, sessions, cookies=cookies))
    peaks = []
    for p in demo:
        status = Path(f"/proc/{p.pid}/status").read_text().splitlines()
        peaks += [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM")]
    result["server_peak_mb"] = max(peaks) if peaks else None
    return result


def roster_arrives(n: int = ROSTER, spawn_limit: int = 50) -> dict:
    """A hub with a roster of ``n``: the time until every pre-started server answers, then
    the ``n`` claiming their names at once (code, own password twice) until their labs answer."""
    from benchmarks.streamlit_client import percentile

    folder = Path(tempfile.mkdtemp())
    names = [f"ros{k:02d}" for k in range(n)]
    (folder / "names.txt").write_text("\n".join(names) + "\n")
    hub = Hub(folder / "state", hub_roster=folder / "names.txt", hub_spawn_limit=spawn_limit)
    try:
        try:
            hub.start()
        except RuntimeError as err:  # e.g. the roster does not fit in memory: its sentence
            said = [line for line in str(err).splitlines() if line.startswith("make hub:")]
            return {"roster": n, "skipped": said[0] if said else str(err)[-500:]}
        started = time.monotonic()
        instructor = hub.login("instructor", hub.instructor_password)
        ready: dict[str, float] = {}
        while len(ready) < n and time.monotonic() - started < 900:
            if "did not start" in hub.output():
                break
            for user in hub.api(instructor, "GET", "users").json():
                server = user.get("servers", {}).get("")
                if user["name"] in names and server and server["ready"]:
                    ready.setdefault(user["name"], time.monotonic() - started)
            time.sleep(0.5)
        out = {
            "roster": n,
            "prestarted": len(ready),
            "prestart_all_s": max(ready.values()) if len(ready) == n else None,
            "serve_says": [ln for ln in hub.output().splitlines() if ln.startswith("roster:")],
        }
        time.sleep(5)  # let the servers settle into idleness, as before a room arrives
        codes = hub.roster_codes()
        arrive = [name for name in names if name in ready]
        barrier = threading.Barrier(len(arrive))

        def one(name: str) -> tuple[float, float, bool]:
            s = requests.Session()
            s.get(f"{hub.url}/hub/login", timeout=60)  # the form, open before the room starts
            own = f"own-{name}-pass"
            form = {
                "username": name,
                "password": codes[name],
                "new_password": own,
                "new_password2": own,
                "_xsrf": s.cookies.get("_xsrf", path="/hub/"),
            }
            barrier.wait()
            start = time.monotonic()
            claim = s.post(
                f"{hub.url}/hub/login?next=", data=form, timeout=300, allow_redirects=False
            )
            claimed = time.monotonic() - start  # the hub's answer: the name is theirs
            lab = s.get(urljoin(claim.url, claim.headers.get("Location", "")), timeout=300)
            took = time.monotonic() - start
            return claimed, took, lab.status_code == 200 and f"/user/{name}/lab" in lab.url

        if arrive:
            with ThreadPoolExecutor(len(arrive)) as pool:
                done = list(pool.map(one, arrive))
            seconds = [s for _, s, ok in done if ok]
            claims = [c for c, _, ok in done if ok]
            out.update(
                claim_post_p50_s=percentile(claims, 50),
                claim_post_p95_s=percentile(claims, 95),
                logged_in=len(seconds),
                login_to_lab_p50_s=percentile(seconds, 50),
                login_to_lab_p95_s=percentile(seconds, 95),
                login_to_lab_max_s=max(seconds, default=None),
            )
        return out
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the roster's codes among them


def run() -> dict:
    if os.geteuid() != 0:
        return {"skipped": "the hub makes Unix users: run make bench as root"}
    artifacts = artifacts_root()
    models = all((artifacts / m / "model.onnx").is_file() for m in ("alexnet", "detectnet"))
    hub = Hub(Path(tempfile.mkdtemp()) / "state", hub_spawn_limit=50)
    try:
        started = time.monotonic()
        hub.start()
        out = {"hub_start_s": time.monotonic() - started, "rooms": []}
        for n in ROOMS:
            out["rooms"].append(room_logs_in(hub, n, f"r{n}p"))
        out["demo"] = (
            demo_under_load(hub, DEMO_SESSIONS)
            if models
            else {"skipped": f"no exported models in {artifacts}/: run `make demo` first"}
        )
        out["fork_bomb"] = hub_limits_bench.fork_bomb_latency(hub)
    finally:
        hub.stop()
    out["roster"] = roster_arrives(ROSTER)
    return out


def table(result: dict) -> str:
    if "skipped" in result:
        return f"Hub: skipped ({result['skipped']})"
    lines = [
        f"Hosted workshop (hub up in {result['hub_start_s']:.1f} s, share included):",
        "",
        "| participants logging in at once | all servers ready (s) | median (s) "
        "| idle server MB (median / max) | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for room in result["rooms"]:
        mem = room["idle_server_mb"]
        lines.append(
            f"| {room['participants']} | {room['all_ready_s']:.1f} | {room['median_ready_s']:.1f} "
            f"| {mem['median']:.0f} / {mem['max']:.0f} | 30 in <= 60 s, <= 150 MB |"
        )
    lines += ["", *roster_table(result.get("roster"))]
    if "fork_bomb" in result:
        lines += ["", hub_limits_bench.table(result["fork_bomb"])]
    demo = result["demo"]
    if "skipped" in demo:
        lines += ["", f"Demo under the room: skipped ({demo['skipped']})"]
    else:
        lines += [
            "",
            f"Shared demo, {demo['sessions']} sessions uploading a 1080p photo at once:",
            "",
            "| answered | p50 (s) | p95 (s) | max (s) | server peak MB | goal |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {demo['answered']}/{demo['sessions']} | {demo['p50']:.1f} | {demo['p95']:.1f} "
            f"| {demo['max']:.1f} | {demo['server_peak_mb'] or 0:.0f} "
            "| all, p95 <= 10 s, <= 2 GB |",
        ]
    return "\n".join(lines)


def roster_table(roster: dict | None) -> list[str]:
    if roster is None:
        return []
    n = roster["roster"]
    if "skipped" in roster:
        return [f"Roster of {n}: skipped ({roster['skipped']})"]
    every = roster["prestart_all_s"]
    lines = [
        f"Roster of {n} (HUB_ROSTER), servers pre-started, then all {n} claim at once:",
        "",
        "| servers running before the room | all pre-started in (s) | claims reaching their lab "
        "| login POST to lab: p50 / p95 / max (s) | of which the claim POST: p50 / p95 (s) "
        "| goal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if "logged_in" not in roster:
        return lines + [f"| {roster['prestarted']}/{n} | - | - | - | - | p95 <= 2 s |"]
    p50, p95, most = (roster[f"login_to_lab_{k}_s"] or 0 for k in ("p50", "p95", "max"))
    c50, c95 = (roster[f"claim_post_{k}_s"] or 0 for k in ("p50", "p95"))
    lines.append(
        f"| {roster['prestarted']}/{n} | {'-' if every is None else f'{every:.1f}'} "
        f"| {roster['logged_in']}/{roster['prestarted']} | {p50:.2f} / {p95:.2f} / {most:.2f} "
        f"| {c50:.2f} / {c95:.2f} | p95 <= 2 s |"
    )
    return lines
