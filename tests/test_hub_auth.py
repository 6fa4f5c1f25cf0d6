"""Who may use a name in the room: claimed names, resets, the roster's codes and servers.

The parts first (roster names, the memory check, the codes, the own-password rules), then a
real hub (benchmarks/hub_room.Hub, loopback, needs root) with a roster of three, for every
test of the login form. The accounts, cgroups and folders it makes are removed by its stop().
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from urllib.parse import urljoin

import bcrypt
import pytest
import requests

from benchmarks.hub_room import ROOT, Hub
from workshop.hub import roster
from workshop.hub.auth import REFUSALS, WorkshopAuthenticator
from workshop.hub.settings import HubSettings

ROSTER = ("rosa", "rolf", "ruth")
ROOM_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the hub makes Unix users: needs root")


# --- the parts -----------------------------------------------------------------------------
def test_bad_roster_names_are_refused_one_sentence_each(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("alice\n\n# the back row\nBob  # late\nRoot!\ninstructor\nalice\nx\n")
    with pytest.raises(roster.RosterError) as err:
        roster.read_names(names, HubSettings())
    lines = str(err.value).splitlines()
    assert lines[1:] == [
        "  line 5: 'Root!' is not a name (2-20 of a-z 0-9 _ -, starting with a letter).",
        "  line 6: 'instructor' is the instructor's name.",
        "  line 7: 'alice' is on the roster twice.",
        "  line 8: 'x' is not a name (2-20 of a-z 0-9 _ -, starting with a letter).",
    ]
    names.write_text("alice\nBob  # late\n")
    assert roster.read_names(names, HubSettings()) == ["alice", "bob"]
    with pytest.raises(roster.RosterError, match="cannot be read"):
        roster.read_names(tmp_path / "missing.txt", HubSettings())


def test_a_roster_that_does_not_fit_in_memory_is_refused():
    settings = HubSettings(hub_idle_server_mem="200M")
    roster.check_memory(30, settings, available=30 * 200 * 2**20)  # fits exactly
    with pytest.raises(roster.RosterError) as err:
        roster.check_memory(31, settings, available=30 * 200 * 2**20)
    assert str(err.value) == (
        "HUB_ROSTER: 31 servers need 6.1 GiB (31 x HUB_IDLE_SERVER_MEM=200M) but only "
        "5.9 GiB is available: shorten the roster or free memory"
    )
    assert roster.mem_available() > 0  # this machine's /proc/meminfo


def test_make_hub_refuses_a_bad_roster_before_making_anything(tmp_path):
    names = tmp_path / "names.txt"
    state = tmp_path / "state"
    cases = [
        ("ann\nBen Smith\n", {}, ["make hub: HUB_ROSTER=", "  line 2: 'Ben Smith' is not a name"]),
        ("ann\nben\n", {"HUB_IDLE_SERVER_MEM": "1T"}, ["make hub: HUB_ROSTER: 2 servers need"]),
    ]
    for text, env, said in cases:
        names.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "workshop.hub", "serve"],
            cwd=ROOT,
            env={**os.environ, "HUB_STATE": str(state), "HUB_ROSTER": str(names), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == len(said), done.stderr
        assert all(line.startswith(s) for line, s in zip(lines, said)), done.stderr
        assert not state.exists()  # nothing was made


def test_a_code_works_once_for_its_name_only_and_is_kept_hashed(tmp_path):
    codes = roster.Codes(tmp_path)
    issued = codes.issue(["ann", "ben"])
    stored = (tmp_path / roster.CODES).read_text()
    assert all(code not in stored for code in issued.values())
    assert oct((tmp_path / roster.CODES).stat().st_mode & 0o777) == "0o600"
    assert not codes.use("ann", issued["ben"]) and not codes.check("ann", "")
    assert codes.check("ann", issued["ann"].upper())  # typed from paper: case does not matter
    assert codes.use("ann", issued["ann"])
    assert not codes.use("ann", issued["ann"]) and codes.names() == {"ben"}


def test_the_sheet_has_a_slip_per_new_name_with_the_rooms_address(tmp_path):
    settings = HubSettings(hub_state=str(tmp_path), hub_ip="0.0.0.0", hub_port=8000)
    sheet = roster.prepare(settings, ["ann", "ben"], claimed={"ben"})
    text = sheet.read_text()
    assert text.count("<div class=slip>") == 1 and "class=name>ann<" in text
    assert f"http://{socket.getfqdn()}:8000/" in text  # what the room types, not 127.0.0.1
    assert oct(sheet.stat().st_mode & 0o777) == "0o600"
    code = re.search(r"class=code>([^<]+)<", text).group(1)
    assert roster.Codes(tmp_path).check("ann", code)
    assert roster.prepare(settings, ["ann", "ben"], claimed={"ben"}) is None  # kept, not remade


@pytest.mark.parametrize(
    ("new", "again", "why"),
    [
        ("", "", "choose"),
        ("long-enough-1", "long-enough-2", "differ"),
        ("seven77", "seven77", "short"),
        ("room-password", "room-password", "room"),
        ("eight888", "eight888", None),
    ],
)
def test_own_password_rules(new, again, why):
    auth = WorkshopAuthenticator(room_password="room-password", check_passwords_on_startup=False)
    assert auth.new_password_problem(new, again) == why


def test_a_claim_logs_in_at_once_and_its_bcrypt_hash_follows(tmp_path):
    auth = WorkshopAuthenticator(
        room_password="room-password",
        dbm_path=str(tmp_path / "passwords.dbm"),
        check_passwords_on_startup=False,
    )
    page = types.SimpleNamespace(custom_login_error="")  # what the login page would say

    def claim(name: str, own: str = "own-password") -> dict:
        return {"username": name, "password": "room-password", "new_password": own,
                "new_password2": own}  # fmt: skip

    async def room():
        assert await auth.authenticate(page, claim("ann")) == "ann"
        assert auth._stored("ann") is None  # logged in; the hash is still being made
        assert await auth.authenticate(page, claim("ann", "other-password")) is None
        assert page.custom_login_error.startswith("The name ann is taken")
        mine = {"username": "ann", "password": "own-password"}
        assert await auth.authenticate(page, mine) == "ann"
        stored = auth._stored("ann")
        assert stored.startswith(b"$2b$12$") and bcrypt.checkpw(b"own-password", stored)
        # reset while the hash is being made: nothing is stored, the name is free again
        assert await auth.authenticate(page, claim("ben")) == "ben"
        assert auth.forget("ben")
        await asyncio.sleep(1.5)
        assert auth._stored("ben") is None
        assert await auth.authenticate(page, claim("ben", "new-password")) == "ben"

    asyncio.run(room())
    nice = auth._hasher.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert nice.result() == 19  # claims' hashes yield the CPU to the room's labs


# --- a real hub with a roster --------------------------------------------------------------
@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub-auth")
    names = folder / "names.txt"
    names.write_text("\n".join(ROSTER) + "\n")
    hub = Hub(folder / "state", hub_roster=names, hub_demo="false", hub_mem_limit="1G")
    try:
        yield hub.start()
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def instructor(hub):
    return hub.login("instructor", hub.instructor_password)


def server(hub, instructor, name: str) -> dict | None:
    user = hub.api(instructor, "GET", f"users/{name}")
    return user.json().get("servers", {}).get("") if user.status_code == 200 else None


@pytest.fixture(scope="module")
def roster_running(hub, instructor):
    """The roster's servers as the hub reports them once all are ready (before any login)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        servers = {name: server(hub, instructor, name) for name in ROSTER}
        if all(s and s["ready"] for s in servers.values()):
            return servers
        failed = [line for line in hub.output().splitlines() if "did not start" in line]
        assert not failed, "\n".join(failed) + "\n" + hub.output()[-3000:]
        time.sleep(1)
    raise AssertionError(f"the roster's servers did not start: {servers}\n{hub.output()}")


def refusal(s) -> str:
    """The sentence on the login page a refused POST got back."""
    assert s.response.status_code == 403, s.response.status_code
    return s.response.text.split('<p class="login_error">', 1)[1].split("</p>", 1)[0].strip()


def follow(s) -> requests.Response:
    """Where the browser lands after the login's redirect: the lab, through the hub's OAuth."""
    return s.get(urljoin(s.response.url, s.response.headers["Location"]), timeout=120)


@pytest.mark.slow
@ROOM_ONLY
def test_the_login_form_has_the_claim_fields(hub):
    page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert 'name="new_password"' in page and 'name="new_password2"' in page
    assert "choose a name" in page and "code on your slip" in page


@pytest.mark.slow
@ROOM_ONLY
def test_a_claimed_name_opens_with_its_own_password_only(hub):
    owner = hub.login("alice")
    assert owner.response.status_code == 302 and hub.logged_in(owner)
    # someone else with the room password, with or without a password of their own
    other = hub.post_login("alice", hub.password)
    assert refusal(other) == REFUSALS["taken"].format(name="alice") and not hub.logged_in(other)
    other = hub.post_login(
        "alice", hub.password, new_password="mine-now!", new_password2="mine-now!"
    )
    assert refusal(other).startswith("The name alice is taken") and not hub.logged_in(other)
    assert refusal(hub.post_login("alice", "not-her-password")) == "Invalid username or password"
    # her own password, again and again
    assert hub.logged_in(hub.post_login("alice", hub.own["alice"]))
    # her change-password page never takes the room's password (it would open her name)
    change = owner.post(
        f"{hub.url}/hub/auth/change-password",
        data={"password": hub.password, "_xsrf": owner.cookies.get("_xsrf", path="/hub/")},
        timeout=30,
    )
    assert REFUSALS["room"].replace("'", "&#39;") in change.text
    assert not hub.logged_in(hub.post_login("alice", hub.password))
    # the instructor's name is never claimed with the room's password
    i = hub.post_login("instructor", hub.password, new_password="x" * 12, new_password2="x" * 12)
    assert not hub.logged_in(i)


@pytest.mark.slow
@ROOM_ONLY
@pytest.mark.parametrize(
    ("new", "again", "says"),
    [
        ("", "", "To claim bea, also choose your own password (at least 8 characters)"),
        ("long-enough-1", "long-enough-2", "The two new passwords differ"),
        ("short", "short", "Your own password needs at least 8 characters."),
        (None, None, "Your own password must differ from the room&#39;s password."),
    ],
)
def test_a_claim_with_bad_new_passwords_says_why(hub, new, again, says):
    new = hub.password if new is None else new
    again = hub.password if again is None else again
    s = hub.post_login("bea", hub.password, new_password=new, new_password2=again)
    assert refusal(s).startswith(says) and not hub.logged_in(s)
    assert 'value="bea"' in s.response.text  # the name stays in the form


@pytest.mark.slow
@ROOM_ONLY
def test_roster_servers_run_before_the_first_login(hub, instructor, roster_running):
    codes = hub.roster_codes()
    assert set(codes) == set(ROSTER)
    before = roster_running["rosa"]
    start = time.monotonic()
    s = hub.post_login("rosa", codes["rosa"], new_password="rosa-own-1", new_password2="rosa-own-1")
    lab = follow(s)
    took = time.monotonic() - start
    assert lab.status_code == 200 and "/user/rosa/lab" in lab.url, (lab.status_code, lab.url)
    after = server(hub, instructor, "rosa")
    assert after["started"] == before["started"]  # the same server, started before she came
    print(f"rosa: login POST to her lab answering in {took:.2f} s (server already running)")


@pytest.mark.slow
@ROOM_ONLY
def test_roster_codes_claim_their_own_names_once_and_no_other(hub, roster_running):
    codes = hub.roster_codes()
    pw = {"new_password": "own-pass-9", "new_password2": "own-pass-9"}
    # nobody else's code, and not the room's password: the name waits for its slip
    assert refusal(hub.post_login("ruth", codes["rolf"], **pw)) == "Invalid username or password"
    says = REFUSALS["roster"].format(name="ruth")
    assert refusal(hub.post_login("ruth", hub.password, **pw)) == says
    assert refusal(hub.post_login("zoe", codes["rolf"], **pw)) == "Invalid username or password"
    # her own code, once
    assert hub.logged_in(hub.post_login("ruth", codes["ruth"], **pw))
    again = hub.post_login("ruth", codes["ruth"], **pw)
    assert refusal(again).startswith("The name ruth is taken") and not hub.logged_in(again)
    assert hub.logged_in(hub.post_login("ruth", "own-pass-9"))
    assert hub.logged_in(hub.post_login("rolf", codes["rolf"], **pw))


@pytest.mark.slow
@ROOM_ONLY
def test_the_instructor_resets_a_password_and_the_files_stay(hub, instructor):
    carl = hub.login("carl")
    token = hub.token(carl)
    hub.spawn(carl)
    hub.wait_ready("carl", token)
    hub.run("carl", token, "open('mine.txt', 'w').write('kept')")
    progress = f"{hub.url}/services/progress/"
    # a participant cannot reset anyone (the page, the hub's API)
    assert carl.get(progress, timeout=60).status_code == 403
    xsrf = carl.cookies.get("_xsrf", path="/services/progress/")
    r = carl.post(progress + "reset", data={"name": "alice", "_xsrf": xsrf}, timeout=60)
    assert r.status_code == 403
    assert hub.api(carl, "POST", "forget-password/alice").status_code == 403
    # the instructor's button
    page = instructor.get(progress, timeout=60).text
    assert "<input type=hidden name=name value='carl'>" in page
    xsrf = instructor.cookies.get("_xsrf", path="/services/progress/")
    r = instructor.post(progress + "reset", data={"name": "carl", "_xsrf": xsrf}, timeout=60)
    assert r.status_code == 200 and "Carl&#x27;s password is forgotten" in r.text, r.text[-800:]
    assert not hub.logged_in(hub.post_login("carl", hub.own.pop("carl")))
    # he claims it again (his server stopped meanwhile), and his files are there
    assert hub.api(instructor, "DELETE", "users/carl/server").status_code in (202, 204)
    while server(hub, instructor, "carl"):
        time.sleep(0.5)
    carl = hub.login("carl")
    assert carl.response.status_code == 302, carl.response.text
    token = hub.token(carl)
    hub.spawn(carl)
    hub.wait_ready("carl", token)
    assert hub.run("carl", token, "print(open('mine.txt').read())").strip() == "kept"
    # the command line does the same: sudo make hub-reset NAME=carl
    done = _reset(hub, "carl")
    assert done.returncode == 0 and "carl's password is forgotten" in done.stdout, done
    assert not hub.logged_in(hub.post_login("carl", hub.own.pop("carl")))
    assert (
        _reset(hub, "carl").stdout.strip() == "carl has not claimed the name yet: nothing to reset"
    )
    nobody = _reset(hub, "nobody")
    assert (
        nobody.returncode == 2
        and nobody.stderr.strip() == "make hub: no participant is named nobody"
    )


def _reset(hub, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workshop.hub", "reset", name],
        cwd=ROOT,
        env=hub.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
