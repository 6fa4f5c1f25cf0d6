"""`make lab`'s server for real: JupyterLab on 127.0.0.1 with a token, notebooks, a kernel."""

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from benchmarks.harness import free_port, run_cell
from workshop.lab import lab_command

TOKEN = uuid.uuid4().hex


def api(base, path, method="GET", token=TOKEN):
    req = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"} if token else {}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("lab") / "lab.log").open("w")
    proc = subprocess.Popen(lab_command(port, TOKEN), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            api(base, "/api/status")
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not start: see {log.name}")
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_lab_serves_the_notebooks_and_runs_a_cell(lab):
    names = {item["name"] for item in api(lab, "/api/contents/")["content"]}
    assert "01_mlp_backprop.ipynb" in names and "solutions" in names
    with pytest.raises(urllib.error.HTTPError) as err:
        api(lab, "/api/contents/", token=None)
    assert err.value.code == 403

    kernel = api(lab, "/api/kernels", method="POST")
    try:
        ws = f"{lab.replace('http', 'ws')}/api/kernels/{kernel['id']}/channels?token={TOKEN}"
        code = (
            "import sys; from models.mlp import sigmoid_gradient; "
            "print(sigmoid_gradient(0.0), sys.prefix)"
        )
        out = asyncio.run(run_cell(ws, code))
        assert out.startswith("0.25 ")
        assert out.split()[1] == sys.prefix  # the project's environment is the kernel
    finally:
        api(lab, f"/api/kernels/{kernel['id']}", method="DELETE")
