"""The hosted workshop's commands (run as root on the workshop machine).

    python -m workshop.hub serve                # make hub: JupyterHub for the room
    python -m workshop.hub release-solutions    # make hub-release: solutions to everyone
    python -m workshop.hub fresh 02             # (a participant) notebook 02 back fresh
    python -m workshop.hub reset alice          # make hub-reset: alice forgot her password
    python -m workshop.hub remove-users         # delete every participant account (after)

Settings are environment variables (HUB_IP, HUB_PORT, WORKSHOP_PASSWORD, ...; see
workshop/hub/settings.py or README). A mistake ends with one sentence and exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from workshop.hub import auth, cgroups, isolation, roster
from workshop.hub.environment import ROOT, ShareError, prepare_share
from workshop.hub.settings import HubSettings, SettingsError, load_passwords

HERE = Path(__file__).resolve().parent
PROXY = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"


class Refused(Exception):
    """What stops the hub from starting, as one sentence for the instructor."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def preflight(settings: HubSettings) -> dict:
    """Everything that can be checked before JupyterHub starts; raises Refused."""
    if os.geteuid() != 0:
        raise Refused(
            "the hub must run as root (it makes a Unix user per participant and starts their "
            "servers as them): run `sudo make hub`"
        )
    proxy = Path(settings.extra.get("proxy") or PROXY)
    if not os.access(proxy, os.X_OK):
        raise Refused(f"configurable-http-proxy is missing ({proxy}): run `make proxy` (npm)")
    if port_taken(settings.hub_ip, settings.hub_port):
        raise Refused(
            f"port {settings.hub_port} on {settings.hub_ip} is taken (another hub or server?): "
            "stop it or choose another HUB_PORT"
        )
    if not shutil.which("useradd"):
        raise Refused("useradd is missing: the hub needs it to make participants' accounts")
    settings.state.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state, 0o700)
    try:
        share = prepare_share(settings.share)
    except ShareError as err:
        raise Refused(str(err)) from None
    demo_home = settings.share / "run" / "demo"
    demo_home.mkdir(parents=True, exist_ok=True)
    shutil.chown(demo_home, "nobody")
    groups, why = cgroups.detect()
    return {
        "proxy": str(proxy),
        "share": share,
        "cgroups": groups,
        "cgroups_why": why,
        "isolation": isolation.detect(settings),
    }


def announce(settings: HubSettings, found: dict, passwords: tuple[str, str, bool]) -> None:
    workshop, instructor, generated = passwords
    groups = found["cgroups"]
    print(f"\nThe workshop hub: {settings.url}")
    if settings.hub_ip == "127.0.0.1":
        print("  (this machine only: HUB_IP=0.0.0.0 opens it to the room; see README for TLS)")
    print(f"  participants: a new name is claimed with password {workshop!r} and their own")
    print("    password (typed twice); from then on that name opens with its own password only")
    print(f"  instructor:   {settings.instructor!r}, password in {settings.state}/passwords.json")
    if generated:
        print(f"  (new passwords, shown once: instructor {instructor!r})")
    print(f"  progress: {settings.url}services/progress/   demo: {settings.url}services/demo/")
    if groups is None:
        print(f"  limits NOT enforced: {found['cgroups_why']}")
    else:
        mem, cpus = settings.limits_for("x")
        each = f"{mem / 2**30:.1f} GiB and {cpus:g} CPU per participant"
        print(f"  limits: {each} (cgroup v{groups.version})")
        if groups.pids is None:
            print("  process limit NOT enforced: no writable pids cgroup controller")
        else:
            print(f"  processes: {settings.hub_pids_limit} per participant (pids cgroup)")
    rooms = found["isolation"]
    if rooms.disk_size is None:
        print(f"  disk quota NOT enforced: {rooms.disk_why}")
    else:
        fit = rooms.full_images_that_fit()
        print(
            f"  disk: {rooms.disk_size / 2**30:.1f} GiB per participant (an image each in "
            f"{rooms.folder}; the free disk holds {fit} more full ones)"
        )
    if not rooms.private_tmp:
        print(f"  private /tmp NOT enforced (/tmp is shared): {rooms.tmp_why}")
    adj = found["oom_score_adj"]
    if adj > isolation.HUB_OOM_SCORE_ADJ:
        print(
            f"  out of memory: the hub keeps oom_score_adj {adj} (lowering it needs "
            f"CAP_SYS_RESOURCE); participants' servers have {isolation.SERVER_OOM_SCORE_ADJ}"
        )
    outputs = found["share"]["outputs"]
    if "artifacts" not in outputs:
        print(
            "  no trained models yet: run `make demo` first so notebooks 2-3 and the demo use them"
        )
    print(f"  state and logs: {settings.state}   shared files: {settings.share}\n", flush=True)


def serve(settings: HubSettings) -> int:
    settings.extra.setdefault("proxy", str(PROXY))
    # a bad roster is refused before anything is made
    names = roster.read_names(Path(settings.hub_roster), settings) if settings.hub_roster else []
    if names:
        roster.check_memory(len(names), settings)
    found = preflight(settings)
    passwords = load_passwords(settings)
    ports = {
        name: free_port() for name in ("hub", "proxy_api", "progress", "demo", "demo_streamlit")
    }
    settings.extra.update(
        ports=ports,
        proxy=found["proxy"],
        templates=str(HERE / "templates"),
        progress_url=f"http://127.0.0.1:{ports['progress']}/services/progress/api/results",
    )
    accounts = auth.write_accounts(settings, f"http://127.0.0.1:{ports['hub']}/hub/api/")
    sheet = roster.prepare(settings, names, auth.claimed(settings)) if names else None
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    # the hub, its proxy and services inherit it: the OOM killer takes participants first
    found["oom_score_adj"] = isolation.protect_hub()
    log = (settings.state / "hub.log").open("ab")
    os.chmod(settings.state / "hub.log", 0o600)
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "jupyterhub_config.py")],
        cwd=settings.state,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop = lambda *_: hub.send_signal(signal.SIGTERM)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    health = f"http://127.0.0.1:{settings.hub_port}/hub/health"
    deadline = time.monotonic() + 120
    while hub.poll() is None:
        try:
            urllib.request.urlopen(health, timeout=2)
            announce(settings, found, passwords)
            if names:
                start_roster(settings, names, sheet, accounts)
            break
        except OSError:
            if time.monotonic() > deadline:
                hub.terminate()
                break
            time.sleep(0.3)
    code = hub.wait()
    found["isolation"].detach_all()  # the servers are stopped: their disks come off
    if code not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        tail = (settings.state / "hub.log").read_text(errors="replace").splitlines()[-15:]
        print("the hub stopped; the end of its log:\n  " + "\n  ".join(tail), file=sys.stderr)
        return 1
    return 0


def start_roster(settings: HubSettings, names: list[str], sheet, accounts: dict) -> None:
    """Say where the roster's codes are and start its servers in the background."""
    where = f"their codes: {sheet} (print it)" if sheet else "their codes were made before"
    print(f"roster: {len(names)} names, {where}; their servers are starting", flush=True)
    roster.prestart_in_background(
        accounts["api"],
        accounts["token"],
        names,
        settings.hub_spawn_limit,
        settings.hub_start_timeout + 60,
    )


def remove_users(settings: HubSettings) -> list[str]:
    from workshop.hub.spawner import participants

    disks = isolation.detect(settings)
    removed = []
    for user in participants(settings):
        disks.remove(user.pw_name)
        subprocess.run(["userdel", "--remove", user.pw_name], capture_output=True)
        removed.append(user.pw_name)
    return removed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "serve"
    try:
        if command == "fresh":
            from workshop.hub.solutions import fresh

            if len(argv) != 2:
                raise Refused("usage: python -m workshop.hub fresh 02   (the notebook's number)")
            kept = fresh(argv[1])
            print(f"a fresh copy is in place; your version is kept as {kept.name}")
            return 0
        settings = HubSettings.from_env()
        if command == "serve":
            return serve(settings)
        if os.geteuid() != 0:
            raise Refused(f"`{command}` must run as root (sudo)")
        if command == "release-solutions":
            from workshop.hub.solutions import release

            done = release(settings)
            print(f"solutions released: in {settings.share / 'solutions'} and {len(done)} homes")
            return 0
        if command == "remove-users":
            print(json.dumps(remove_users(settings)))
            return 0
        if command == "reset":
            if len(argv) != 2:
                raise Refused("usage: sudo make hub-reset NAME=alice   (the participant's name)")
            print(auth.reset(settings, argv[1].strip().lower()))
            return 0
        raise Refused(
            f"unknown command {command!r}: serve, release-solutions, fresh, remove-users, reset"
        )
    except (Refused, SettingsError, auth.AccountError) as err:
        print(f"make hub: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
