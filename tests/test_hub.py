"""The hosted workshop for real: JupyterHub, configurable-http-proxy, participants' JupyterLab
servers as their own Unix users, cgroup limits, the culler, the progress and demo services,
each participant's own demo, MLflow UI and training jobs.

Everything listens on 127.0.0.1; the accounts, cgroups and shared folders made here are
removed here (benchmarks/hub_room.py). Needs root (CI runs as root).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pwd
import re
import stat
import time
from pathlib import Path

import pytest
import requests

from benchmarks.hub_room import Hub, start_busy
from benchmarks.streamlit_client import StreamlitSession
from workshop.hub import cgroups
from workshop.hub.settings import parse_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the hub makes Unix users: needs root"),
]

PEOPLE = ("alice", "bob", "carol")
GROUPS, NO_GROUPS_WHY = cgroups.detect()
# The pages that start and show training: never in the room's shared demo (user nobody).
TRAINING_PAGES = {"Data sets", "Runs", "New run", "Job", "Compare"}
# A browser in the room: the hub's name, not 127.0.0.1 (MLflow refuses unknown hosts and
# cross-origin writes by default).
ROOM = "workshop.example.org:8000"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = Hub(
        tmp_path_factory.mktemp("hub") / "state",
        hub_mem_limit="2G",  # JupyterLab, a kernel, the demo, MLflow's UI and a training job
        hub_cpu_limit=1.0,
        hub_instructor_mem_limit="3G",
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


def test_a_finished_run_reaches_the_instructors_page_only(hub, room):
    session, token = room["carol"]
    out = hub.run(
        "carol",
        token,
        "from workshop.hub.record import report_run\n"
        "print(report_run('alexnet', 'run-a', 'val_accuracy', 0.5),"
        " report_run('alexnet', 'run-b', 'val_accuracy', 0.75),"
        " report_run('alexnet', 'run-c', 'val_accuracy', 0.625))",
    )
    assert out.split() == ["True", "True", "True"], out
    api = f"{hub.url}/services/progress/api/runs"
    auth = {"Authorization": f"token {token}"}
    # the name comes from the token, never from the body
    r = requests.post(
        api,
        json={
            "module": "detectnet",
            "run_id": "x",
            "metric": "AP",
            "value": 0.9,
            "user": "alice",
            "participant": "alice",
        },
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 201 and r.json()["participant"] == "carol"
    bad = {"module": "mlp", "run_id": "y", "metric": "test_accuracy", "value": "NaN"}
    assert requests.post(api, json=bad, headers=auth, timeout=30).status_code == 400
    assert requests.post(api, json=bad, timeout=30, allow_redirects=False).status_code in (302, 403)
    # participants read nobody's runs, not even with their token
    assert requests.get(api, headers=auth, timeout=30).status_code == 403
    assert session.get(f"{hub.url}/services/progress/", timeout=30).status_code == 403
    instructor = hub.login("instructor", hub.instructor_password)
    page = instructor.get(f"{hub.url}/services/progress/", timeout=30).text
    carol_row = next(row for row in page.split("<tr>") if row.startswith("<th>carol</th>"))
    assert "val_accuracy 0.750" in carol_row and "AP 0.900" in carol_row
    assert "best run: alexnet" in page and "best run: mlp" in page
    rows = list(
        csv.DictReader(
            io.StringIO(instructor.get(f"{hub.url}/services/progress/results.csv", timeout=30).text)
        )
    )
    runs = {(r["participant"], r["exercise"]): r for r in rows if r["exercise"].startswith("run:")}
    best = runs[("carol", "run:alexnet")]
    assert (best["run_id"], best["metric"], float(best["value"])) == ("run-b", "val_accuracy", 0.75)
    assert best["attempts"] == "3" and best["result"] == "finished"
    assert runs[("alice", "run:detectnet")]["result"] == "not run"
    assert runs[("carol", "run:mlp")]["result"] == "not run"
    assert instructor.get(api, timeout=30).json()["modules"] == ["mlp", "alexnet", "detectnet"]


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
    # every page of the web app, training included: it runs as alice
    session, _ = room["alice"]
    pages, errors = served_pages(hub, session, "/user/alice/demo/")
    assert set(pages) >= TRAINING_PAGES | {"Test"} and not errors, (pages, errors)
    own = "--server.baseUrlPath=/user/alice/demo"
    (pid,) = processes(lambda cmd: "streamlit" in cmd and own in cmd)
    assert uid_of(pid) == pwd.getpwnam(hub.unix("alice")).pw_uid


def test_the_room_demo_shows_the_test_page_only(hub, room):
    (pid,) = processes(
        lambda cmd: (
            "streamlit" in cmd
            and "--server.baseUrlPath=services/demo" in cmd
            and str(hub.share) in cmd
        )
    )
    assert uid_of(pid) == pwd.getpwnam("nobody").pw_uid
    assert environ_of(pid).get("WORKSHOP_PAGES") == "test"
    session, _ = room["bob"]
    pages, errors = served_pages(hub, session, "/services/demo/")
    assert pages == ["Test"] and not errors, (pages, errors)


# --- helpers: what runs on the machine, as root sees it ------------------------------------
def processes(match) -> list[int]:
    """Pids whose command line (arguments joined by spaces) ``match`` accepts."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if match(cmd):
                pids.append(int(proc.name))
    return pids


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # the real uid


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in tree(int(child)))]


def listening_tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def assert_private_socket(hub, room, pid: int, name: str) -> None:
    """The app started by jupyter-server-proxy (``pid``) listens on a Unix socket in a 0700
    folder of ``name``'s, on no TCP port, and another participant cannot connect to it."""
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    sock = next(Path(re.sub(r"^.*unix://", "", a)) for a in cmd if "socket" in a)
    seen_by_app = f"/proc/{pid}/root{sock}"  # in its server's private /tmp
    folder = os.stat(Path(seen_by_app).parent)
    assert folder.st_uid == pwd.getpwnam(hub.unix(name)).pw_uid
    assert stat.S_IMODE(folder.st_mode) == 0o700, oct(folder.st_mode)
    assert not {i for p in tree(pid) for i in socket_inodes(p)} & listening_tcp_inodes()
    other = next(p for p in PEOPLE if p != name)
    for path in (sock, seen_by_app):  # absent from their /tmp; their way into hers is closed
        out = hub.run(
            other,
            room[other][1],
            "import socket\ns = socket.socket(socket.AF_UNIX)\n"
            f"try:\n    s.connect({str(path)!r}); print('connected')\n"
            "except OSError as e:\n    print(type(e).__name__)",
        )
        assert out.strip() in ("PermissionError", "FileNotFoundError"), out


def cookie_header(session: requests.Session, path: str) -> str:
    """The Cookie header a browser sends to ``path``: the session's cookies for it."""
    return "; ".join(
        f"{c.name}={c.value}" for c in session.cookies if path.startswith(c.path.rstrip("/") + "/")
    )


class _PageList(StreamlitSession):
    """A Streamlit session that keeps the page list the app sends (st.navigation)."""

    pages: list[str] = []

    def _handle(self, msg):
        if msg.WhichOneof("type") == "navigation":
            self.pages = [page.page_name for page in msg.navigation.app_pages]
        super()._handle(msg)


def served_pages(hub, session: requests.Session, path: str) -> tuple[list[str], list[str]]:
    """The pages a signed-in visitor of the app at ``path`` is offered, and any errors."""
    assert session.get(f"{hub.url}{path}", timeout=120).status_code == 200  # the hub's OAuth
    cookies = cookie_header(session, path)

    async def visit():
        app = _PageList(f"{hub.url}{path}", cookies=cookies)
        try:
            await asyncio.wait_for(app.connect(), 120)
            return app.pages, app.errors
        finally:
            await app.close()

    return asyncio.run(visit())


@pytest.fixture(scope="module")
def alice_job(hub, room):
    """Alice starts a tiny MLP job from her kernel; what root saw of its trainer while it ran,
    and the run as her store has it once it ended."""
    _, token = room["alice"]
    out = hub.run(
        "alice",
        token,
        "from workshop import jobs\n"
        "print(jobs.submit('mlp', {'maxiter': '3', 'baselines': 'false'}))",
    )
    run_id = out.strip().splitlines()[-1] if out.strip() else out
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), out
    # the trainer, found by the run id its runner gives it (root reads every environment)
    trainer, deadline = None, time.monotonic() + 120
    while trainer is None and time.monotonic() < deadline:
        for pid in processes(lambda cmd: "workshop.train_mlp" in cmd):
            try:
                if environ_of(pid).get("WORKSHOP_RUN_ID") == run_id:
                    trainer = {
                        "pid": pid,
                        "uid": uid_of(pid),
                        "cgroup": Path(f"/proc/{pid}/cgroup").read_text(),
                    }
            except OSError:  # ended between the listing and the reading
                continue
        time.sleep(0.05)
    out = hub.run(
        "alice",
        token,
        "import json, time\n"
        "from workshop import tracking\n"
        "for _ in range(600):\n"
        f"    run = tracking.get_run({run_id!r})\n"
        "    if run['status'] not in ('SCHEDULED', 'RUNNING'):\n"
        "        break\n"
        "    time.sleep(0.5)\n"
        "print(json.dumps(run, default=str))",
        timeout=400,
    )
    run = json.loads(out.strip().splitlines()[-1])
    return {"run_id": run_id, "trainer": trainer, "run": run}


def test_a_participants_job_runs_as_them_in_their_cgroup(hub, room, alice_job):
    user = pwd.getpwnam(hub.unix("alice"))
    trainer, run = alice_job["trainer"], alice_job["run"]
    assert trainer is not None, f"no trainer of run {alice_job['run_id']} was seen: {run}"
    assert run["status"] == "FINISHED", run
    assert run["tags"].get("pid") == str(trainer["pid"])  # the process the run names
    assert trainer["uid"] == user.pw_uid != 0
    if GROUPS is not None:
        memory = [line for line in trainer["cgroup"].splitlines() if "memory" in line.split(":")[1]]
        assert memory[0].endswith(f"/{cgroups.PARENT}/{user.pw_name}"), trainer["cgroup"]
    # its records and outputs are hers alone (umask 077 inside a 0700 home)
    artifacts = Path(user.pw_dir) / "workshop" / "artifacts"
    made = [artifacts / "mlflow.db", *artifacts.rglob("*")]
    assert (artifacts / "mlruns").is_dir() and Path(run["tags"]["out_dir"]).is_dir()
    for path in made:
        info = os.lstat(path)
        assert info.st_uid == user.pw_uid and stat.S_IMODE(info.st_mode) & 0o077 == 0, path


def test_another_participant_neither_sees_nor_reads_the_job(hub, room, alice_job):
    store = Path(pwd.getpwnam(hub.unix("alice")).pw_dir) / "workshop" / "artifacts" / "mlflow.db"
    out = hub.run(
        "carol",
        room["carol"][1],
        "import os\nfrom workshop import tracking\n"
        "ids = [run['run_id'] for run in tracking.list_runs()]\n"
        f"print({alice_job['run_id']!r} in ids, os.access({str(store)!r}, os.R_OK))",
    )
    assert out.split() == ["False", "False"], out
    # the room sees her best run, through the instructor's page only
    instructor = hub.login("instructor", hub.instructor_password)
    text = instructor.get(f"{hub.url}/services/progress/results.csv", timeout=30).text
    mlp = next(
        r
        for r in csv.DictReader(io.StringIO(text))
        if r["participant"] == "alice" and r["exercise"] == "run:mlp"
    )
    metric, value = mlp["metric"], float(mlp["value"])
    assert mlp["run_id"] == alice_job["run_id"]
    assert value == pytest.approx(float(alice_job["run"]["metrics"][metric]))


def test_runs_mlflow_is_in_the_launcher_for_its_owner_only(hub, room, alice_job):
    session, token = room["alice"]
    info = requests.get(
        f"{hub.url}/user/alice/server-proxy/servers-info",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    ).json()
    titles = {s["name"]: s["launcher_entry"]["title"] for s in info["server_processes"]}
    assert titles == {"demo": "Demo (my models)", "mlflow": "Runs (MLflow)"}
    base = f"{hub.url}/user/alice/mlflow/"
    start = time.monotonic()
    r = requests.get(base, headers={"Authorization": f"token {token}"}, timeout=180)
    started = time.monotonic() - start
    assert r.status_code == 200 and "<title>MLflow</title>" in r.text, r.text[:500]
    script = re.findall(r'src="([^"]+\.js)"', r.text)[0]
    assert requests.get(base + script, headers={"Authorization": f"token {token}"}, timeout=60).ok
    # the UI's API calls from her browser (her hub cookie, the room's host name) find her run
    assert session.get(base, timeout=60).status_code == 200  # the hub's OAuth, as a browser
    browser = {
        "Host": ROOM,
        "Origin": f"http://{ROOM}",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
        # what the browser holds for the room's host (requests matches cookies to Host)
        "Cookie": cookie_header(session, "/user/alice/mlflow/"),
    }
    experiments = requests.post(
        base + "ajax-api/2.0/mlflow/experiments/search",
        json={"max_results": 100},
        headers=browser,
        timeout=60,
    )
    assert experiments.status_code == 200, experiments.text[:500]
    ids = [e["experiment_id"] for e in experiments.json()["experiments"]]
    runs = requests.post(
        base + "ajax-api/2.0/mlflow/runs/search",
        json={"experiment_ids": ids, "max_results": 100},
        headers=browser,
        timeout=60,
    )
    assert runs.status_code == 200, runs.text[:500]
    assert [r["info"]["run_id"] for r in runs.json()["runs"]] == [alice_job["run_id"]]
    # nobody else gets in
    assert requests.get(base, timeout=30, allow_redirects=False).status_code in (302, 403)
    bob = {"Authorization": f"token {room['bob'][1]}"}
    assert requests.get(base, headers=bob, timeout=30).status_code == 403
    (pid,) = processes(lambda cmd: "workshop.hub.runs_ui" in cmd and "/user/alice/mlflow" in cmd)
    assert uid_of(pid) == pwd.getpwnam(hub.unix("alice")).pw_uid
    assert_private_socket(hub, room, pid, "alice")
    pids = tree(pid)
    pss = sum(_pss_mb(p) for p in pids)
    print(f"MLflow UI: first answer in {started:.1f} s, {pss:.0f} MB PSS in {len(pids)} processes")
    if GROUPS is not None:  # her peak so far: JupyterLab, kernels, the demo, the job, MLflow
        group = GROUPS.memory / hub.unix("alice")
        peak = next(
            group / f for f in ("memory.max_usage_in_bytes", "memory.peak") if (group / f).exists()
        )
        print(f"alice's memory cgroup peak: {int(peak.read_text()) / 2**20:.0f} MB")


def _pss_mb(pid: int) -> float:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1)) / 1024


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
    assert mem == parse_size("2G") and cpus == 1.0
    assert (
        GROUPS.limits(hub.unix("instructor"))[0] == parse_size("3G")
        if (GROUPS.memory / hub.unix("instructor")).exists()
        else True
    )
    _, alice = room["alice"]
    _, bob = room["bob"]
    hog = hub.run(
        "alice", alice, "import numpy as np\nx = np.ones(3_000_000_000 // 8)\nprint('survived')"
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
        # a busy kernel's activity reaches the hub within 5 s (the extension's check) + 3 s
        hub_idle_timeout=20,
        hub_cull_every=3,
        hub_activity_interval=3,
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
    time.sleep(25)  # more than the idle timeout again
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
    page.fill("#new_password_input", "dana-own-pass")  # her name is claimed on the way in
    page.fill("#new_password2_input", "dana-own-pass")
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
