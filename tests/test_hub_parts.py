"""The hosted workshop's parts without a hub: settings, refusals, cgroups, the share,
fresh notebooks, recording results and runs, the participants' server config and their MLflow
UI, the GPU share."""

from __future__ import annotations

import http.client
import http.server
import json
import math
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from workshop import checks
from workshop.hub import __main__ as hub_cli
from workshop.hub import cgroups
from workshop.hub.environment import world_can, write_jupyter_config
from workshop.hub.progress import Store, table
from workshop.hub.record import record, report_run
from workshop.hub.settings import HubSettings, SettingsError, load_passwords, parse_size
from workshop.hub.solutions import fresh

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HUB_PORT": "eighty"}, "HUB_PORT='eighty' is not a valid int"),
        ({"HUB_PORT": "70000"}, "is not a port"),
        ({"HUB_IP": "my-laptop"}, "is not an IP address"),
        ({"HUB_MEM_LIMIT": "lots"}, "is not a size like 512M"),
        ({"WORKSHOP_PASSWORD": "short"}, "at least 8 characters"),
        ({"INSTRUCTOR_PASSWORD": "x" * 31}, "at least 32 characters"),
        ({"INSTRUCTOR": "Root!"}, "must match"),
        ({"HUB_SHARE": "relative/path"}, "absolute path"),
        ({"HUB_CPU_LIMIT": "0"}, "positive number of CPUs"),
        ({"HUB_PIDS_LIMIT": "8"}, "at least 16 processes"),
        ({"HUB_DISK_LIMIT": "lots"}, "is not a size like 512M"),
        ({"HUB_DISK_LIMIT": "16M"}, "at least 32M"),
    ],
)
def test_bad_settings_are_one_sentence(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        HubSettings.from_env(env)


def test_settings_round_trip_through_the_environment():
    s = HubSettings.from_env({"HUB_PORT": "9000", "HUB_DEMO": "false", "HUB_CPU_LIMIT": "0.5"})
    s.extra["ports"] = {"hub": 1}
    again = HubSettings.from_env(s.to_env())
    assert again == s and again.hub_demo is False and again.hub_cpu_limit == 0.5
    assert parse_size("1.5G") == 3 * 2**29 and parse_size("512M") == 2**29
    assert s.limits_for(s.instructor) == (parse_size("8G"), 2.0)
    assert s.limits_for("alice") == (parse_size("3G"), 0.5)


def test_passwords_are_generated_once_and_kept_private(tmp_path):
    s = HubSettings(hub_state=str(tmp_path / "state"))
    workshop, instructor, generated = load_passwords(s)
    assert generated and len(workshop) >= 8 and len(instructor) >= 32 and workshop != instructor
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "passwords.json").st_mode) == 0o600
    assert load_passwords(s) == (workshop, instructor, False)  # printed only the first time
    chosen = HubSettings(hub_state=str(tmp_path / "state"), workshop_password="room-1234")
    assert load_passwords(chosen)[0] == "room-1234"


def _serve(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workshop.hub", "serve"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_mistakes_end_with_one_sentence_and_exit_2(tmp_path):
    state = str(tmp_path / "state")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ({"HUB_PORT": "eighty"}, "HUB_PORT='eighty' is not a valid int"),
            ({"HUB_PORT": str(port)}, f"port {port} on 127.0.0.1 is taken"),
        ]
        if os.geteuid() == 0:
            cases.append(
                (
                    {"HUB_EXTRA": json.dumps({"proxy": str(tmp_path / "no-proxy")})},
                    "configurable-http-proxy is missing",
                )
            )
        for env, message in cases:
            done = _serve({"HUB_STATE": state, **env})
            assert done.returncode == 2, done.stderr
            assert message in done.stderr and "Traceback" not in done.stderr + done.stdout
            assert len(done.stderr.strip().splitlines()) == 1


def test_not_root_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HUB_STATE", str(tmp_path / "state"))
    assert hub_cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "must run as root" in err and "sudo make hub" in err
    assert not (tmp_path / "state").exists()  # nothing was made


def test_world_can_sees_a_private_folder_on_the_way(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    (folder / "f").write_text("x")
    os.chmod(folder, 0o755)
    os.chmod(folder / "f", 0o644)
    for p in [tmp_path, *tmp_path.parents]:
        if not os.stat(p).st_mode & stat.S_IXOTH:  # pytest's tmp folders are 0700
            assert not world_can(folder / "f")
            break
    opened = Path("/tmp") / f"world-can-{os.getpid()}"
    opened.mkdir(mode=0o755, exist_ok=True)
    try:
        (opened / "f").write_text("x")
        os.chmod(opened / "f", 0o644)
        assert world_can(opened / "f") and not world_can(opened / "f", execute=True)
        os.chmod(opened, 0o700)
        assert not world_can(opened / "f")
    finally:
        (opened / "f").unlink()
        opened.rmdir()


def test_fresh_puts_the_course_copy_back_and_keeps_the_participants(tmp_path):
    course = tmp_path / "course" / "workshop" / "notebooks"
    course.mkdir(parents=True)
    for name in ("01_mlp_backprop", "02_fcn_alexnet"):
        (course / f"{name}.ipynb").write_text(f"fresh {name}")
    mine = tmp_path / "home"
    mine.mkdir()
    (mine / "02_fcn_alexnet.ipynb").write_text("my work")
    (mine / "01_mlp_backprop.ipynb").write_text("my other work")
    kept = fresh("02", mine, tmp_path / "course")
    assert kept.read_text() == "my work"
    assert (mine / "02_fcn_alexnet.ipynb").read_text() == "fresh 02_fcn_alexnet"
    assert (mine / "01_mlp_backprop.ipynb").read_text() == "my other work"
    with pytest.raises(SystemExit, match="matches 2"):
        fresh("0", mine, tmp_path / "course")


def test_cgroup_v2_layout_on_a_fake_tree(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    groups, why = cgroups.detect(tmp_path)
    assert groups is not None and groups.version == 2, why
    assert (tmp_path / "cgroup.subtree_control").read_text().strip() == "+memory +cpu +pids"
    groups.create("wsp-alice", parse_size("1G"), 0.5, 100)
    assert groups.limits("wsp-alice") == (2**30, 0.5)
    assert groups.pids_limit("wsp-alice") == 100
    assert (tmp_path / cgroups.PARENT / "wsp-alice" / "cpu.max").read_text() == "50000 100000\n"


def test_cgroup_limits_on_this_machine():
    groups, why = cgroups.detect()
    if groups is None:
        pytest.skip(f"no writable cgroups here: {why}")
    name = f"test-{os.getpid()}"
    try:
        groups.create(name, parse_size("300M"), 0.25)
        assert groups.limits(name) == (parse_size("300M"), 0.25)
        hog = subprocess.run(
            [sys.executable, "-c", "x = bytearray(600 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
            preexec_fn=lambda: groups.join(name),
            capture_output=True,
        )
        assert hog.returncode == -9  # the kernel's OOM killer, inside this group only
        small = subprocess.run(
            [sys.executable, "-c", "print(len(bytearray(50 * 2**20)))"],
            preexec_fn=lambda: groups.join(name),
            capture_output=True,
            text=True,
        )
        assert small.stdout.strip() == str(50 * 2**20)
    finally:
        groups.remove(name)
    assert not any(p.exists() for p in groups.group(name))
    groups.remove_parent()


def test_a_pids_group_refuses_the_fork_past_its_limit():
    groups, why = cgroups.detect()
    if groups is None or groups.pids is None:
        pytest.skip(f"no writable pids cgroup here: {why or 'no pids controller'}")
    name = f"test-{os.getpid()}"
    forks = (
        "import errno, os\nmade = 0\nfor _ in range(200):\n"
        "    try:\n        pid = os.fork()\n"
        "    except OSError as e:\n        print(made, errno.errorcode[e.errno]); break\n"
        "    if pid == 0:\n        os._exit(0)\n"  # a zombie until the end: it still counts
        "    made += 1\n"
        "while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        break\n"
    )
    try:
        groups.create(name, parse_size("300M"), 1.0, 20)
        assert groups.pids_limit(name) == 20
        out = subprocess.run(
            [sys.executable, "-c", forks],
            preexec_fn=lambda: groups.join(name),
            capture_output=True,
            text=True,
        )
        assert out.stdout.split() == ["19", "EAGAIN"], out  # 20 tasks: python and 19 children
    finally:
        groups.remove(name)
    assert not any(p.exists() for p in groups.group(name))
    groups.remove_parent()


class _Recorder(http.server.BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Recorder.got.append((self.headers["Authorization"], body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def progress_server(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.got = []
    monkeypatch.setenv(
        "WORKSHOP_PROGRESS_URL", f"http://127.0.0.1:{server.server_port}/api/results"
    )
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t0ken")
    yield _Recorder.got
    server.shutdown()


def test_record_does_nothing_outside_the_hub(monkeypatch):
    monkeypatch.delenv("WORKSHOP_PROGRESS_URL", raising=False)
    assert record("cost", True) is False


def test_checks_record_pass_and_the_named_mistake(progress_server):
    from models import mlp

    checks.check_sigmoid_gradient(mlp.sigmoid_gradient)
    with pytest.raises(checks.ExerciseFailed):
        checks.check_sigmoid_gradient(mlp.sigmoid)
    with pytest.raises(NotImplementedError):  # not written yet: nothing recorded
        checks.check_backprop(lambda *a: (_ for _ in ()).throw(NotImplementedError("todo")))
    with pytest.raises(ValueError):
        checks.check_backprop(lambda *a: (_ for _ in ()).throw(ValueError("bad shape")))
    checks.check_backprop(mlp.nn_cost_function)  # calls check_cost inside: one record
    got = [(auth, b["exercise"], b["passed"], b["mistake"]) for auth, b in progress_server]
    assert [g[:3] for g in got] == [
        ("token t0ken", "sigmoid_gradient", True),
        ("token t0ken", "sigmoid_gradient", False),
        ("token t0ken", "backprop", False),
        ("token t0ken", "backprop", True),
    ]
    assert "returned g(z) itself" in got[1][3]
    assert "ValueError: bad shape" in got[2][3]
    assert list(checks.EXERCISES)[:4] == [
        "sigmoid_gradient",
        "cost",
        "backprop",
        "provided_weights",
    ]


def test_record_failure_never_breaks_the_check(monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens
    monkeypatch.setenv("WORKSHOP_PROGRESS_URL", f"http://127.0.0.1:{port}/x")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    from models import mlp

    checks.check_sigmoid_gradient(mlp.sigmoid_gradient)
    assert "could not be reached" in capsys.readouterr().out


def test_store_keeps_the_latest_result_and_counts_attempts(tmp_path):
    store = Store(tmp_path / "p.sqlite")
    store.add("bob", "cost", False, "bias regularized", at=1)
    store.add("bob", "cost", True, "", at=2)
    store.add("amy", "cost", False, "not divided by m", at=3)
    rows = {(r["participant"], r["exercise"]): r for r in store.latest()}
    assert rows[("bob", "cost")]["passed"] == 1 and rows[("bob", "cost")]["attempts"] == 2
    assert rows[("amy", "cost")]["mistake"] == "not divided by m"


def test_notebooks_use_the_instructors_models_until_the_participant_trains(tmp_path, monkeypatch):
    from workshop.artifacts import trained_artifacts

    own, shared = tmp_path / "own", tmp_path / "shared"
    monkeypatch.setenv("ARTIFACTS", str(own))
    monkeypatch.delenv("WORKSHOP_SHARED_ARTIFACTS", raising=False)
    assert trained_artifacts("alexnet") == own / "alexnet"  # outside the hub: one's own
    monkeypatch.setenv("WORKSHOP_SHARED_ARTIFACTS", str(shared))
    assert trained_artifacts("alexnet") == own / "alexnet"  # nothing shared yet
    (shared / "alexnet").mkdir(parents=True)
    (shared / "alexnet" / "checkpoint.pt").write_bytes(b"x")
    assert trained_artifacts("alexnet") == shared / "alexnet"
    (own / "alexnet").mkdir(parents=True)
    (own / "alexnet" / "checkpoint.pt").write_bytes(b"x")
    assert trained_artifacts("alexnet") == own / "alexnet"  # once trained, one's own


def test_the_instructors_outputs_are_copied_once_and_again_only_when_changed(tmp_path):
    from workshop.hub.environment import copy_outputs

    root, share = tmp_path / "checkout", tmp_path / "share"
    (root / "data" / "synthetic").mkdir(parents=True)
    (root / "data" / "synthetic" / "a.jpg").write_bytes(b"a")
    (root / "artifacts" / "alexnet").mkdir(parents=True)
    (root / "artifacts" / "alexnet" / "checkpoint.pt").write_bytes(b"c")
    assert copy_outputs(share, root, root / "artifacts") == ["artifacts", "data"]
    copied = share / "data" / "synthetic" / "a.jpg"
    assert copied.read_bytes() == b"a" and stat.S_IMODE(copied.stat().st_mode) & 0o044 == 0o044
    inode = copied.stat().st_ino
    copy_outputs(share, root, root / "artifacts")
    assert copied.stat().st_ino == inode  # nothing changed: not copied again
    (root / "data" / "synthetic" / "b.jpg").write_bytes(b"b")
    copy_outputs(share, root, root / "artifacts")
    assert (share / "data" / "synthetic" / "b.jpg").read_bytes() == b"b"


def test_artifacts_has_one_reader(monkeypatch, tmp_path):
    """Every room asks models.artifacts: the exporter, the app, the trainers, the hub's share."""
    from models.artifacts import artifacts_root
    from workshop.artifacts import artifacts_dir
    from workshop.hub.environment import copy_outputs

    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "elsewhere"))
    assert artifacts_root() == tmp_path / "elsewhere"
    assert artifacts_dir("mlp") == tmp_path / "elsewhere" / "mlp"
    (tmp_path / "elsewhere" / "mlp").mkdir(parents=True)
    (tmp_path / "elsewhere" / "mlp" / "metrics.json").write_text("{}")
    copy_outputs(tmp_path / "share", root=tmp_path / "repo")
    assert (tmp_path / "share" / "artifacts" / "mlp" / "metrics.json").is_file()
    monkeypatch.setenv("ARTIFACTS", "")
    assert artifacts_root() == Path("artifacts")


def test_report_run_sends_the_headline_beside_the_results(progress_server):
    assert report_run("alexnet", "0123abcd", "val_accuracy", 0.875) is True
    assert report_run("mlp", "feed", "test_accuracy", math.nan) is False  # nothing to rank
    assert report_run("mlp", "feed", "test_accuracy", None) is False
    assert progress_server == [
        (
            "token t0ken",
            {"module": "alexnet", "run_id": "0123abcd", "metric": "val_accuracy", "value": 0.875},
        )
    ]


def test_report_run_is_silent_outside_the_hub(monkeypatch, capsys):
    monkeypatch.delenv("WORKSHOP_PROGRESS_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert report_run("mlp", "r", "test_accuracy", 0.9) is False
    assert capsys.readouterr() == ("", "")


def test_store_keeps_each_participants_best_run_per_module(tmp_path):
    store = Store(tmp_path / "p.sqlite")
    store.add_run("bob", "alexnet", "r1", "val_accuracy", 0.61, at=1)
    store.add_run("bob", "alexnet", "r2", "val_accuracy", 0.83, at=2)
    store.add_run("bob", "alexnet", "r3", "val_accuracy", 0.83, at=3)  # a tie: the first stays
    store.add_run("bob", "alexnet", "r4", "val_accuracy", 0.40, at=4)
    store.add_run("bob", "detectnet", "d1", "AP", 0.12, at=5)
    store.add_run("amy", "alexnet", "a1", "val_accuracy", 0.70, at=6)
    store.add_run("amy", "alexnet", "a1", "val_accuracy", 0.90, at=7)  # reported again: replaced
    best = {(r["participant"], r["module"]): r for r in store.best_runs()}
    assert set(best) == {("bob", "alexnet"), ("bob", "detectnet"), ("amy", "alexnet")}
    assert (best["bob", "alexnet"]["run_id"], best["bob", "alexnet"]["value"]) == ("r2", 0.83)
    assert best["bob", "alexnet"]["runs"] == 4 and best["bob", "alexnet"]["at"] == 2
    assert (best["amy", "alexnet"]["value"], best["amy", "alexnet"]["runs"]) == (0.90, 1)
    assert best["bob", "detectnet"]["metric"] == "AP"
    store.add("cleo", "cost", True, "")
    room = table(store, ["dana"])
    assert room.people == ["amy", "bob", "cleo", "dana"]  # checks, runs or only logged in
    assert room.modules == ["mlp", "alexnet", "detectnet"]
    assert room.best[("amy", "alexnet")]["run_id"] == "a1"


def _server_config(tmp_path) -> Config:
    env, venv = tmp_path / "share" / "env", tmp_path / "venv"
    (venv / "etc" / "jupyter").mkdir(parents=True)
    write_jupyter_config(env, venv)
    config = Config()
    text = (env / "etc" / "jupyter" / "jupyter_server_config.py").read_text()
    exec(compile(text, "jupyter_server_config.py", "exec"), {"get_config": lambda: config})
    return config


def test_the_launcher_has_the_participants_demo_and_their_runs(tmp_path):
    servers = _server_config(tmp_path).ServerProxy.servers
    python = str(tmp_path / "share" / "env" / "bin" / "python")
    titles = {name: s["launcher_entry"]["title"] for name, s in servers.items()}
    assert titles == {"demo": "Demo (my models)", "mlflow": "Runs (MLflow)"}
    render = {"unix_socket": "/tmp/private/socket", "base_url": "/user/alice/", "port": 8765}
    mlflow = [arg.format(**render) for arg in servers["mlflow"]["command"]]
    assert mlflow == [python, "-m", "workshop.hub.runs_ui"] + [
        "/tmp/private/socket",
        "/user/alice/mlflow",
    ]
    # a socket in a folder of the participant's own: no port others could reach
    assert servers["mlflow"]["unix_socket"] is True
    demo = [arg.format(**render) for arg in servers["demo"]["command"]]
    assert "--server.baseUrlPath=/user/alice/demo" in demo and "--server.port=8765" in demo
    for server in servers.values():
        # the whole path forwarded: the app serves its pages under /user/<name>/<entry>/
        assert server["absolute_url"] is True


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, host: str = "localhost"):
        super().__init__(host, timeout=60)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


def _ask(path: str, method: str, url: str, body=None, headers=None) -> tuple[int, str]:
    conn = _UnixConnection(path)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _runs_ui(tmp_path, artifacts: Path, prefix: str):
    """`python -m workshop.hub.runs_ui` as jupyter-server-proxy starts it: (process, socket)."""
    folder = Path(tempfile.mkdtemp(prefix="runs-ui-"))  # short: a socket path has 108 bytes
    sock = str(folder / "socket")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workshop.hub.runs_ui", sock, prefix],
        cwd=tmp_path,
        env={**os.environ, "ARTIFACTS": str(artifacts)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            _ask(sock, "GET", f"{prefix}/")
            break
        except OSError:
            time.sleep(0.3)
    return proc, sock, folder


def _stop(proc, folder):
    proc.terminate()
    try:
        out = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return out


@pytest.mark.slow
def test_the_runs_ui_serves_the_participants_store_under_their_prefix(tmp_path):
    from workshop import tracking

    artifacts = tmp_path / "artifacts"
    run_id = tracking.create_run("mlp", {"maxiter": "3"}, {}, status="FINISHED", root=artifacts)
    prefix = "/user/alice/mlflow"
    proc, sock, folder = _runs_ui(tmp_path, artifacts, prefix)
    try:
        status, page = _ask(sock, "GET", f"{prefix}/")
        assert status == 200 and "<title>MLflow</title>" in page, page[:500]
        # the page's scripts are relative: under the prefix they must be there
        scripts = re.findall(r'src="([^"]+\.js)"', page)
        assert scripts and all(not s.startswith("/") for s in scripts)
        assert _ask(sock, "GET", f"{prefix}/{scripts[0]}")[0] == 200
        # the UI's own API calls, as a browser in the room sends them (the room's host name)
        room = "workshop.example.org:8000"
        ids = [e.experiment_id for e in tracking.client(artifacts).search_experiments()]

        def api(call: str, body: dict, content_type="application/json") -> tuple[int, str]:
            headers = {"Host": room, "Origin": f"https://{room}", "Content-Type": content_type}
            url = f"{prefix}/ajax-api/2.0/mlflow/{call}"
            return _ask(sock, "POST", url, body=json.dumps(body), headers=headers)

        status, body = api("runs/search", {"experiment_ids": ids, "max_results": 10})
        assert status == 200, body[:500]
        assert [r["info"]["run_id"] for r in json.loads(body)["runs"]] == [run_id]
        # what a cross-site form can send (no JSON content type) writes nothing
        assert api("runs/delete", {"run_id": run_id}, "text/plain")[0] == 400
        status, body = api("runs/search", {"experiment_ids": ids, "max_results": 10})
        assert [r["info"]["run_id"] for r in json.loads(body)["runs"]] == [run_id]
    finally:
        out = _stop(proc, folder)
    assert "Traceback" not in out, out[-2000:]


@pytest.mark.slow
def test_a_broken_store_shows_one_sentence_instead_of_the_runs(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "mlflow.db").write_bytes(b"not a database at all" * 100)
    proc, sock, folder = _runs_ui(tmp_path, artifacts, "/user/bob/mlflow")
    try:
        status, page = _ask(sock, "GET", "/user/bob/mlflow/")
    finally:
        out = _stop(proc, folder)
    assert status == 503
    assert "is not an SQLite file" in page and "Traceback" not in page + out


def test_a_stopped_servers_proxy_sockets_are_removed_and_nothing_else(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("folders of another user need root")
    from workshop.hub.spawner import remove_proxy_sockets

    theirs, mine, other = (tmp_path / f"jupyter-server-proxy-{n}" for n in ("a", "b", "c"))
    for folder in (theirs, mine, other):
        folder.mkdir()
        (folder / "socket").write_text("")
    os.chown(theirs, 4242, 4242)
    os.chown(other, 4343, 4343)
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.chown(target, 4242, 4242)
    (tmp_path / "jupyter-server-proxy-link").symlink_to(target)
    remove_proxy_sockets(4242, tmp_path)
    assert not theirs.exists() and mine.is_dir() and other.is_dir() and target.is_dir()
