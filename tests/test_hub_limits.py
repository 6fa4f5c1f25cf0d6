"""The room under attack from inside a participant's server, on a real hub: a fork loop, a
disk filled past its quota, a file left in /tmp, and the hub's place in the OOM killer's
line. Each attack stays inside the attacker's limits while another participant works on.

A small process limit (64) and a small disk (64M) keep the attacks short. Needs root (the
hub makes Unix users, cgroups and loop mounts); everything made is removed, and the last
test checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.hub_room import Hub, start_busy
from workshop.hub import cgroups, isolation
from workshop.hub.settings import HubSettings, parse_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the hub makes Unix users: needs root"),
]

PIDS_LIMIT = 64
DISK_LIMIT = "64M"
GROUPS, NO_GROUPS_WHY = cgroups.detect()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = Hub(
        tmp_path_factory.mktemp("limits") / "state",
        hub_mem_limit="1G",
        hub_cpu_limit=1.0,
        hub_pids_limit=PIDS_LIMIT,
        hub_disk_limit=DISK_LIMIT,
        hub_demo="false",
    )
    try:
        yield hub.start()
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def room(hub):
    """Two participants logged in, each with a token and a running server."""
    people = {}
    for name in ("alice", "bob"):
        s = hub.login(name)
        assert hub.logged_in(s), hub.output()
        people[name] = (s, hub.token(s))
        hub.spawn(s)
    for name, (_, token) in people.items():
        hub.wait_ready(name, token)
    return people


@pytest.fixture(scope="module")
def disks(hub, room) -> isolation.Isolation:
    """What the hub found it can enforce here (the same trial, made again)."""
    return isolation.detect(HubSettings.from_env(hub.env))


def home(hub, name: str) -> Path:
    return Path(pwd.getpwnam(hub.unix(name)).pw_dir)


# The fork loop, in alice's kernel: fork until refused (at most 2,000 children, each waiting on
# a pipe), say how far it got, hold them until the test says `release`, then end them all.
FORK_LOOP = """
import errno, json, os, time
group = next(l.split(':')[2] for l in open('/proc/self/cgroup').read().splitlines()
             if l.split(':')[1] == 'pids')
current = lambda: int(open(f'/sys/fs/cgroup/pids{group}/pids.current').read())
before = current()
r, w = os.pipe()
children, error = [], None
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
    if pid == 0:
        os.close(w); os.read(r, 1); os._exit(0)
    children.append(pid)
report = {'before': before, 'made': len(children), 'error': error, 'at_most': current()}
open('bomb.tmp', 'w').write(json.dumps(report)); os.rename('bomb.tmp', 'bomb.json')
deadline = time.monotonic() + 120
while not os.path.exists('release') and time.monotonic() < deadline:
    time.sleep(0.1)
os.close(w)
for pid in children:
    os.waitpid(pid, 0)
os.rename('bomb.json', 'bomb.done')
"""


@pytest.mark.skipif(
    GROUPS is None or GROUPS.pids is None, reason=f"no pids cgroup here: {NO_GROUPS_WHY}"
)
def test_a_fork_loop_stops_at_the_process_limit_and_the_room_keeps_answering(hub, room):
    (alice_session, alice), (bob_session, bob) = room["alice"], room["bob"]
    assert GROUPS.pids_limit(hub.unix("alice")) == PIDS_LIMIT
    events = GROUPS.pids / hub.unix("alice") / "pids.events"
    refused_before = int(events.read_text().split()[1])
    workshop = home(hub, "alice") / "workshop"
    kernel = start_busy(hub, "alice", alice, FORK_LOOP)
    try:
        deadline = time.monotonic() + 60
        while not (workshop / "bomb.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        report = json.loads((workshop / "bomb.json").read_text())
        # refused with EAGAIN once her group held its limit: well short of the 2,000 asked for
        assert report["error"] == "EAGAIN", report
        assert report["made"] < PIDS_LIMIT
        assert report["before"] + report["made"] >= PIDS_LIMIT - 4, report
        assert report["at_most"] <= PIDS_LIMIT
        assert int(events.read_text().split()[1]) > refused_before  # the kernel's count
        # meanwhile bob's kernel answers a cell, the hub's API and its database answer
        assert hub.run("bob", bob, "print(sum(range(10)))").strip() == "45"
        assert hub.api(bob_session, "GET", "users/bob").status_code == 200
        assert hub.token(bob_session)
    finally:
        (workshop / "release").touch()
    deadline = time.monotonic() + 60
    while not (workshop / "bomb.done").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (workshop / "bomb.done").exists()
    hub.user_api("alice", alice, "DELETE", f"kernels/{kernel}")
    for name in ("bomb.done", "release"):
        (workshop / name).unlink()
    # her server lives on and runs her next cell
    assert hub.run("alice", alice, "print('still here')").strip() == "still here"
    assert hub.api(alice_session, "GET", "users/alice").status_code == 200


FILL = """
import errno, os
written, error = 0, None
block = b'x' * 2**20
try:
    with open('big.bin', 'wb') as f:
        for _ in range({chunks}):
            f.write(block)
            f.flush()
            written += len(block)
except OSError as e:
    error = errno.errorcode[e.errno]
print(error, written, os.path.getsize('big.bin'))
"""


def test_a_write_past_the_disk_quota_fails_for_that_participant_only(hub, room, disks):
    if disks.disk_size is None:
        pytest.skip(f"no loop-mounted disks here: {disks.disk_why}")
    (alice_session, alice), (bob_session, bob) = room["alice"], room["bob"]
    fs = os.statvfs(home(hub, "alice"))
    size, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    assert parse_size(DISK_LIMIT) * 0.8 < size <= parse_size(DISK_LIMIT)  # ext4 keeps a little
    assert os.statvfs(home(hub, "bob")).f_fsid != fs.f_fsid != os.statvfs(hub.state).f_fsid
    # a notebook of hers is missing: the restart below must copy it onto a full disk
    assert hub.user_api("alice", alice, "DELETE", "contents/03_detectnet.ipynb").status_code == 204
    # what jupyter-server-proxy leaves in her (private) /tmp; the hub removes it at her stop
    probe = "import os; os.mkdir('/tmp/jupyter-server-proxy-probe'); print('made')"
    assert hub.run("alice", alice, probe).strip() == "made"
    left = disks.root(hub.unix("alice")) / "tmp" / "jupyter-server-proxy-probe"
    assert left.is_dir()
    chunks = 2 * parse_size(DISK_LIMIT) // 2**20
    error, written, on_disk = hub.run("alice", alice, FILL.format(chunks=chunks)).split()
    assert error == "ENOSPC"
    assert free - 2**21 <= int(on_disk) <= free  # she got what was free, and no more
    assert int(written) <= int(on_disk)
    # while her disk is full, bob saves a notebook and the hub's database takes a new token
    notebook = {
        "type": "notebook",
        "format": "json",
        "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
    }
    r = hub.user_api("bob", bob, "PUT", "contents/saved.ipynb", json=notebook)
    assert r.status_code in (200, 201), r.text[:300]
    assert (home(hub, "bob") / "workshop" / "saved.ipynb").stat().st_size > 0
    assert hub.token(bob_session)
    # she restarts her server on the full disk, deletes the file, and writes again
    stop_server(hub, alice_session)
    assert not left.exists()
    # (the stop freed a few blocks: she fills them too, so the restart meets a full disk)
    user = pwd.getpwnam(hub.unix("alice"))
    subprocess.run(
        ["dd", "if=/dev/zero", "of=workshop/more.bin", "bs=1024"],  # small writes: to the end
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd=user.pw_dir,
        capture_output=True,
    )
    assert os.statvfs(user.pw_dir).f_bavail == 0
    hub.spawn(alice_session)  # the hub gives back the room it kept aside on her disk
    hub.wait_ready("alice", alice)
    for name in ("big.bin", "more.bin"):
        assert hub.user_api("alice", alice, "DELETE", f"contents/{name}").status_code == 204
    out = hub.run("alice", alice, "open('after.bin', 'wb').write(b'y' * 2**20); print('ok')")
    assert out.strip() == "ok"
    assert hub.user_api("alice", alice, "DELETE", "contents/after.bin").status_code == 204
    # with room again, the room kept aside is back (at her next stop, or a poll before it)
    stop_server(hub, alice_session)
    reserve = disks.root(hub.unix("alice")) / "reserve"
    assert reserve.stat().st_blocks * 512 >= isolation.RESERVE
    hub.spawn(alice_session)
    hub.wait_ready("alice", alice)


PROBE_TMP = """
import os, multiprocessing
for folder in ('/tmp', '/var/tmp', '/dev/shm'):
    with open(f'{{folder}}/{mine}', 'w') as f:
        f.write('secret')
    print(folder, oct(os.stat(f'{{folder}}/{mine}').st_mode & 0o777),
          os.stat(folder).st_dev == os.stat(os.path.expanduser('~')).st_dev,
          os.path.exists(f'{{folder}}/{theirs}'),
          '{theirs}' in os.listdir(folder))
multiprocessing.Lock()  # a semaphore in /dev/shm
"""


def test_each_server_has_its_own_tmp_inside_its_quota(hub, room, disks):
    if not disks.private_tmp:
        pytest.skip(f"no private /tmp here: {disks.tmp_why}")
    lines = {}
    for me, other in (("alice", "bob"), ("bob", "alice")):
        code = PROBE_TMP.format(mine=f"note-{me}", theirs=f"note-{other}")
        lines[me] = hub.run(me, room[me][1], code).strip().splitlines()
    for me in ("alice", "bob"):
        for line in lines[me]:
            folder, mode, on_their_disk, exists, listed = line.split()
            # theirs alone (umask 077), on their own disk, the other's file nowhere in sight
            assert mode == "0o600", line
            assert on_their_disk == str(disks.disk_size is not None), line
            assert (exists, listed) == ("False", "False"), line
    # root finds alice's file on her disk only, not in the machine's /tmp
    assert (disks.root(hub.unix("alice")) / "tmp" / "note-alice").read_text() == "secret"
    assert not Path("/tmp/note-alice").exists() and not Path("/dev/shm/note-alice").exists()


def test_the_hub_proxy_and_services_are_the_oom_killers_last_choice(hub, room):
    hub_pid = next(p for p in children(hub.proc.pid) if "jupyterhub" in cmdline(p))
    outside = [p for p in tree(hub_pid) if uid_of(p) == 0]  # the hub, the proxy, the services
    names = " ".join(cmdline(p) for p in outside)
    assert "configurable-http-proxy" in names and "workshop.hub.progress" in names
    assert "jupyterhub_idle_culler" in names
    # -1000 where lowering it is allowed (CAP_SYS_RESOURCE), else what the hub was started with
    lowest = isolation.HUB_OOM_SCORE_ADJ if can_lower_oom_score() else oom_score_adj(os.getpid())
    for pid in [hub.proc.pid, *outside]:
        assert oom_score_adj(pid) == lowest, cmdline(pid)
        assert cgroups.PARENT not in Path(f"/proc/{pid}/cgroup").read_text(), cmdline(pid)
    # each participant's server and its kernels: first in line, inside their own groups
    for name in ("alice", "bob"):
        uid = pwd.getpwnam(hub.unix(name)).pw_uid
        theirs = [p for p in tree(hub_pid) if uid_of(p) == uid]
        assert theirs
        for pid in theirs:
            assert oom_score_adj(pid) == isolation.SERVER_OOM_SCORE_ADJ > 0
            if GROUPS is not None:
                assert (
                    f"/{cgroups.PARENT}/{hub.unix(name)}" in Path(f"/proc/{pid}/cgroup").read_text()
                )


def test_stopping_the_hub_leaves_no_user_group_mount_loop_device_or_image(hub, room, disks):
    hub.stop()
    names = [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(hub.prefix)]
    assert names == []
    assert [str(point) for _, point, _ in isolation.mounts() if hub.prefix in str(point)] == []
    loops = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
        capture_output=True,
        text=True,
    ).stdout
    assert str(hub.state) not in loops
    assert list(disks.folder.glob("*")) == []
    if GROUPS is not None:
        left = [p for g in GROUPS.group("") for p in g.glob(f"{hub.prefix}*")]
        assert left == []


def stop_server(hub, session) -> None:
    r = hub.api(session, "DELETE", f"users/{session.name}/server")
    assert r.status_code in (202, 204), r.text
    for _ in range(120):
        if hub.api(session, "GET", f"users/{session.name}").json().get("servers", {}) == {}:
            return
        time.sleep(0.5)
    raise AssertionError(f"{session.name}'s server did not stop:\n{hub.output()}")


# --- helpers: processes as root sees them -------------------------------------------------
def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def tree(pid: int) -> list[int]:
    return [pid, *(p for child in children(pid) for p in tree(child))]


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def can_lower_oom_score() -> bool:
    """CAP_SYS_RESOURCE (capability 24) in this process's effective set."""
    status = Path("/proc/self/status").read_text()
    return bool(int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16) >> 24 & 1)
