"""The hosted workshop for real: JupyterHub, configurable-http-proxy, participants' JupyterLab
servers as their own Unix users, cgroup limits, the culler, the progress and demo services.

Everything listens on 127.0.0.1; the accounts, cgroups and shared folders made here are
removed here (benchmarks/hub_room.py). Needs root (CI runs as root).
"""

from __future__ import annotations

import csv
import io
import os
import pwd
import stat
import time
from pathlib import Path

import pytest
import requests

from benchmarks.hub_room import Hub, start_busy
from workshop.hub import cgroups
from workshop.hub.settings import parse_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the hub makes Unix users: needs root"),
]

PEOPLE = ("alice", "bob", "carol")
GROUPS, NO_GROUPS_WHY = cgroups.detect()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = Hub(
        tmp_path_factory.mktemp("hub") / "state",
        hub_mem_limit="1200M",
        hub_cpu_limit=1.0,
        hub_instructor_mem_limit="2G",
    )
    try:
        yield hub.start()
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def room(hub):
    """Three participants logged in, each with a token and a running server."""
    people = {}
    for name in PEOPLE:
        s = hub.login(name)
        assert hub.logged_in(s), hub.output()
        people[name] = (s, hub.token(s))
        hub.spawn(s)
    for name, (_, token) in people.items():
        hub.wait_ready(name, token)
    return people


def test_each_participant_runs_as_their_own_user_with_their_own_notebooks(hub, room):
    uids = set()
    for name, (_, token) in room.items():
        out = hub.run(name, token, "import os, models, workshop; print(os.getuid(), os.getcwd())")
        uid, cwd = out.split()
        user = pwd.getpwnam(hub.unix(name))
        assert int(uid) == user.pw_uid != 0
        assert cwd == f"{user.pw_dir}/workshop"
        assert stat.S_IMODE(os.stat(user.pw_dir).st_mode) == 0o700
        listing = hub.user_api(name, token, "GET", "contents/").json()
        names = {item["name"] for item in listing["content"]}
        assert {"01_mlp_backprop.ipynb", "02_fcn_alexnet.ipynb", "03_detectnet.ipynb"} <= names
        assert "solutions" not in names
        owner = os.stat(Path(user.pw_dir) / "workshop" / "01_mlp_backprop.ipynb").st_uid
        assert owner == user.pw_uid
        uids.add(int(uid))
    assert len(uids) == len(PEOPLE)


def test_nobody_reaches_another_participants_server(hub, room):
    _, alice_token = room["alice"]
    bob_session, _ = room["bob"]
    # bob's token and bob's browser cookies on alice's server
    assert hub.user_api("alice", room["bob"][1], "GET", "contents/").status_code == 403
    r = bob_session.get(f"{hub.url}/user/alice/api/contents/", timeout=30, allow_redirects=True)
    assert r.status_code in (403, 404) or "contents" not in r.text
    # anonymous
    r = requests.get(f"{hub.url}/user/alice/api/contents/", timeout=30, allow_redirects=False)
    assert r.status_code in (302, 403)
    r = requests.get(f"{hub.url}/user/alice/lab", timeout=30)
    assert "/hub/login" in r.url
    # and on the file system: another participant's home is closed
    out = hub.run(
        "bob", room["bob"][1], f"import os; print(os.access('/home/{hub.unix('alice')}', os.R_OK))"
    )
    assert out.strip() == "False"
    assert hub.user_api("alice", alice_token, "GET", "contents/").status_code == 200


def test_wrong_password_and_bad_names_get_the_login_page_with_a_message(hub):
    for name, password in (("dave", "not-the-password"), ("Root!", None), ("x", None)):
        s = requests.Session()
        s.get(f"{hub.url}/hub/login", timeout=30)
        r = s.post(
            f"{hub.url}/hub/login",
            data={
                "username": name,
                "password": password or hub.password,
                "_xsrf": s.cookies.get("_xsrf", path="/hub/"),
            },
            timeout=30,
        )
        assert r.status_code == 403
        assert "Invalid username or password" in r.text
        assert "choose a name" in r.text  # the rule is on the page
    # a participant cannot take the instructor's name with the room's password
    s = hub.login("instructor", hub.password)
    assert not hub.logged_in(s)
    # the instructor's password is long and the admin page is theirs
    assert len(hub.instructor_password) >= 32
    i = hub.login("instructor", hub.instructor_password)
    assert i.get(f"{hub.url}/hub/admin", timeout=30).status_code == 200
    assert hub.login("alice").get(f"{hub.url}/hub/admin", timeout=30).status_code == 403


def test_passwords_and_state_are_private(hub):
    for name in ("passwords.json", "jupyterhub_cookie_secret"):
        assert stat.S_IMODE(os.stat(hub.state / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(hub.state).st_mode) == 0o700


def test_an_exercise_check_reaches_the_instructors_page_only(hub, room):
    session, token = room["carol"]
    out = hub.run(
        "carol",
        token,
        (
            "from workshop.checks import check_sigmoid_gradient, check_cost\n"
            "from models import mlp\n"
            "check_sigmoid_gradient(mlp.sigmoid_gradient)\n"
            "try:\n"
            "    check_cost(lambda *a: mlp.nn_cost_function(*a)[0] * 2)\n"
            "except AssertionError as e:\n"
            "    print('failed as expected')\n"
        ),
    )
    assert "✓ sigmoid_gradient" in out and "failed as expected" in out, out
    instructor = hub.login("instructor", hub.instructor_password)
    page = instructor.get(f"{hub.url}/services/progress/", timeout=30)
    assert page.status_code == 200
    assert "carol" in page.text and "alice" in page.text  # a row for everyone logged in
    assert "http-equiv=refresh" in page.text
    rows = list(
        csv.DictReader(
            io.StringIO(instructor.get(f"{hub.url}/services/progress/results.csv", timeout=30).text)
        )
    )
    carol = {r["exercise"]: r for r in rows if r["participant"] == "carol"}
    assert carol["sigmoid_gradient"]["result"] == "pass"
    assert (
        carol["cost"]["result"] == "fail"
        and "differs from the reference" in carol["cost"]["mistake"]
    )
    assert carol["backprop"]["result"] == "not run"
    # the participant cannot read the room's results, in the browser or with their token
    assert session.get(f"{hub.url}/services/progress/", timeout=30).status_code == 403
    r = requests.get(
        f"{hub.url}/services/progress/api/results",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 403
    # ... nor write in another's name: the name comes from the token
    r = requests.post(
        f"{hub.url}/services/progress/api/results",
        json={"exercise": "backprop", "passed": True, "participant": "alice", "user": "alice"},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 201 and r.json()["participant"] == "carol"
    r = requests.post(
        f"{hub.url}/services/progress/api/results",
        json={"exercise": "backprop", "passed": True},
        timeout=30,
    )
    assert r.status_code in (302, 403)


def test_the_demo_is_for_the_room_only(hub, room):
    r = requests.get(f"{hub.url}/services/demo/", timeout=30, allow_redirects=False)
    assert r.status_code in (302, 403) and "Streamlit" not in r.text
    r = requests.get(f"{hub.url}/services/demo/_stcore/health", timeout=30, allow_redirects=False)
    assert r.status_code in (302, 403)
    session, _ = room["alice"]
    page = session.get(f"{hub.url}/services/demo/", timeout=60)
    assert page.status_code == 200 and "streamlit" in page.text.lower()
    assert session.get(f"{hub.url}/services/demo/_stcore/health", timeout=30).text == "ok"


def test_each_participant_has_their_own_demo_behind_their_login(hub, room):
    _, alice = room["alice"]
    r = hub.user_api("alice", alice, "GET", "status")
    assert r.status_code == 200
    url = f"{hub.url}/user/alice/demo/_stcore/health"
    deadline = time.monotonic() + 90
    while True:
        r = requests.get(url, headers={"Authorization": f"token {alice}"}, timeout=60)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200 and r.text == "ok", r.text[:300]
    assert requests.get(url, timeout=30, allow_redirects=False).status_code in (302, 403)
    bob = room["bob"][1]
    assert (
        requests.get(url, headers={"Authorization": f"token {bob}"}, timeout=30).status_code == 403
    )


def test_notebooks_are_never_overwritten_and_one_comes_back_fresh(hub, room):
    session, token = room["bob"]
    user = pwd.getpwnam(hub.unix("bob"))
    mine = Path(user.pw_dir) / "workshop" / "02_fcn_alexnet.ipynb"
    other = Path(user.pw_dir) / "workshop" / "01_mlp_backprop.ipynb"
    hub.run(
        "bob", token, f"open({str(mine)!r}, 'a').write(' ')\nopen({str(other)!r}, 'a').write(' ')"
    )
    edited, edited_other = mine.read_bytes(), other.read_bytes()
    # a restart copies only what is missing
    assert hub.api(session, "DELETE", "users/bob/server").status_code in (202, 204)
    for _ in range(60):
        if hub.api(session, "GET", "users/bob").json().get("servers", {}) == {}:
            break
        time.sleep(0.5)
    hub.spawn(session)
    hub.wait_ready("bob", token)
    assert mine.read_bytes() == edited
    # fresh: notebook 02 from the course, bob's version kept beside it, 01 untouched
    out = hub.run(
        "bob",
        token,
        "import subprocess, sys\n"
        "print(subprocess.run([sys.executable, '-m', 'workshop.hub', 'fresh', '02'],"
        " capture_output=True, text=True).stdout)",
    )
    assert "fresh copy" in out, out
    kept = list(mine.parent.glob("02_fcn_alexnet.*.ipynb"))
    assert len(kept) == 1 and kept[0].read_bytes() == edited
    assert mine.read_bytes() != edited and other.read_bytes() == edited_other


def test_solutions_arrive_only_when_released(hub, room):
    session, token = room["alice"]
    out = hub.run("alice", token, "import os; print(sorted(os.listdir('.')))")
    assert "solutions" not in out
    instructor = hub.login("instructor", hub.instructor_password)
    page = instructor.get(f"{hub.url}/services/progress/", timeout=30)
    assert "Release the solutions" in page.text
    r = instructor.post(
        f"{hub.url}/services/progress/release",
        data={"_xsrf": instructor.cookies.get("_xsrf", path="/services/progress/")},
        timeout=60,
    )
    assert r.status_code == 200 and "Solutions are released" in r.text
    out = hub.run("alice", token, "import os; print(sorted(os.listdir('solutions')))")
    assert "01_mlp_backprop.ipynb" in out
    # a participant cannot release them
    r = session.post(f"{hub.url}/services/progress/release", timeout=30)
    assert r.status_code == 403


@pytest.mark.skipif(GROUPS is None, reason=f"no writable cgroups: {NO_GROUPS_WHY}")
def test_memory_limit_stops_one_kernel_and_spares_the_others(hub, room):
    mem, cpus = GROUPS.limits(hub.unix("alice"))
    assert mem == parse_size("1200M") and cpus == 1.0
    assert (
        GROUPS.limits(hub.unix("instructor"))[0] == parse_size("2G")
        if (GROUPS.memory / hub.unix("instructor")).exists()
        else True
    )
    _, alice = room["alice"]
    _, bob = room["bob"]
    hog = hub.run(
        "alice", alice, "import numpy as np\nx = np.ones(2_000_000_000 // 8)\nprint('survived')"
    )
    assert "survived" not in hog
    assert hub.run("bob", bob, "print(sum(range(10)))").strip() == "45"
    assert hub.user_api("alice", alice, "GET", "status").status_code == 200  # the server lives on


def test_participants_cannot_read_the_hub_state_nor_change_the_share(hub, room):
    _, token = room["alice"]
    out = hub.run(
        "alice",
        token,
        (
            "import os\n"
            f"print(os.access({str(hub.state)!r}, os.R_OK), os.access({str(hub.share)!r}, os.W_OK),"
            f" os.access({str(hub.share / 'course' / 'models')!r}, os.W_OK))"
        ),
    )
    assert out.split() == ["False", "False", "False"]


@pytest.fixture(scope="module")
def culling_hub(tmp_path_factory):
    hub = Hub(
        tmp_path_factory.mktemp("cull") / "state",
        hub_idle_timeout=30,
        hub_cull_every=5,
        hub_activity_interval=5,
        hub_demo="false",
    )
    try:
        yield hub.start()
    finally:
        hub.stop()


def test_the_culler_stops_idle_servers_and_spares_busy_ones(culling_hub):
    hub = culling_hub
    tokens = {}
    for name in ("idle", "busy"):
        s = hub.login(name)
        tokens[name] = (s, hub.token(s))
        hub.spawn(s)
        hub.wait_ready(name, tokens[name][1])
    start_busy(hub, "busy", tokens["busy"][1], "import time\ntime.sleep(300)")

    def running(name):
        return hub.api(tokens[name][0], "GET", f"users/{name}").json().get("servers", {}) != {}

    deadline = time.monotonic() + 120
    while running("idle") and time.monotonic() < deadline:
        time.sleep(2)
    assert not running("idle"), "the idle server was not culled"
    time.sleep(35)  # more than the idle timeout again
    assert running("busy"), hub.output()


def test_a_participant_logs_in_and_runs_notebook_1_in_a_real_browser(hub):
    from benchmarks.harness import chromium

    shots = Path(__file__).resolve().parents[1] / "test-artifacts" / "hub"
    shots.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _log_in_and_run(hub, page, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))
            raise


def _log_in_and_run(hub, page, shots):
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", "dana")
    page.fill("#password_input", hub.password)
    kernel_channels = lambda ws: "/api/kernels/" in ws.url and "/channels" in ws.url  # noqa: E731
    with page.expect_websocket(kernel_channels, timeout=120_000):
        page.click("#login_submit")
        # straight into JupyterLab with notebook 1 open, its kernel connected
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    assert "/user/dana/lab" in page.url
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    for _ in range(4):  # title, imports, a heading, load the digits
        page.keyboard.press("Shift+Enter")
    prompt = page.locator(".jp-Cell .jp-InputPrompt", has_text="[2]:")
    prompt.first.wait_for(timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    page.screenshot(path=str(shots / "notebook1.png"))
    outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert outputs and "Traceback" not in outputs and "Error" not in outputs, outputs
    # no news pop-up, no extension manager
    assert page.get_by_text("official Jupyter news").count() == 0
    assert page.locator("[data-id='extensionmanager.main-view']").count() == 0
