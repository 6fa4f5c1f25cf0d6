"""A real JupyterHub for the tests and the benchmark: `python -m workshop.hub serve` on
127.0.0.1, participants logging in over HTTP, code run in their kernels. The accounts,
cgroups and shared folder a `Hub` makes are removed by its `stop()`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from benchmarks.harness import free_port, run_cell, send_cell
from workshop.hub import cgroups

ROOT = Path(__file__).resolve().parents[1]


class Hub:
    def __init__(self, state: Path, **settings):
        self.prefix = f"t{uuid.uuid4().hex[:5]}-"
        self.share = Path(f"/tmp/dlw-share-{uuid.uuid4().hex[:8]}")
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HUB_STATE": str(state),
            "HUB_SHARE": str(self.share),
            "HUB_PORT": str(self.port),
            "HUB_USER_PREFIX": self.prefix,
            "HUB_GROUP": f"{self.prefix}room",  # its own: hubs may run side by side (xdist)
            **{k.upper(): str(v) for k, v in settings.items()},
        }
        self.proc = None
        self.own: dict[str, str] = {}  # name -> the own password the harness claimed it with

    def start(self, timeout: float = 180) -> Hub:
        self.log = (self.state.parent / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workshop.hub", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/hub/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start: {self.output()}")
            time.sleep(0.5)
        passwords = json.loads((self.state / "passwords.json").read_text())
        self.password, self.instructor_password = passwords["workshop"], passwords["instructor"]
        return self

    def output(self) -> str:
        log = (self.state.parent / "serve.log").read_text()
        hub = self.state / "hub.log"
        return log + ("\n--- hub.log ---\n" + hub.read_text()[-6000:] if hub.exists() else "")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(
            [sys.executable, "-m", "workshop.hub", "remove-users"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
        )
        groups, _ = cgroups.detect()
        if groups is not None:
            for name in {p.name for g in groups.group("") for p in g.glob(f"{self.prefix}*")}:
                groups.remove(name)
            groups.remove_parent()
        subprocess.run(["groupdel", self.env["HUB_GROUP"]], capture_output=True)  # if empty
        shutil.rmtree(self.share, ignore_errors=True)

    def unix(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # --- a participant's browser, over HTTP ---------------------------------------------
    def login(self, name: str, password: str | None = None) -> requests.Session:
        """Log in through the login form; the session holds the hub's cookies.

        Without ``password``, as a participant would: the first time the name is claimed with
        the room password and an own password (kept in ``self.own``), later that password."""
        if password is not None:
            return self.post_login(name, password)
        if name in self.own:
            return self.post_login(name, self.own[name])
        own = f"own-{uuid.uuid4().hex[:12]}"
        s = self.post_login(name, self.password, new_password=own, new_password2=own)
        if s.response.status_code == 302:
            self.own[name] = own
        return s

    def post_login(self, name: str, password: str, **fields) -> requests.Session:
        """One POST of the login form (``fields``: new_password, new_password2); the answer
        is ``session.response`` (302 logged in, 403 the login page with the reason)."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=30)
        s.response = s.post(
            f"{self.url}/hub/login?next=",
            data={
                "username": name,
                "password": password,
                **fields,
                "_xsrf": s.cookies.get("_xsrf", path="/hub/"),
            },
            timeout=60,
            allow_redirects=False,
        )
        s.name = name
        return s

    def roster_codes(self) -> dict[str, str]:
        """name -> code, read from the roster's printable sheets (as the instructor would)."""
        codes = {}
        for sheet in sorted(self.state.glob("roster-*.html")):
            found = re.findall(
                r"class=name>([^<]+)</span>.*?class=code>([^<]+)</span>", sheet.read_text(), re.S
            )
            codes.update(found)
        return codes

    def logged_in(self, s: requests.Session) -> bool:
        r = s.get(f"{self.url}/hub/home", timeout=30, allow_redirects=False)
        return r.status_code == 200

    def api(self, s: requests.Session, method: str, path: str, **kwargs):
        headers = {"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/") or ""}
        return s.request(
            method, f"{self.url}/hub/api/{path}", headers=headers, timeout=60, **kwargs
        )

    def token(self, s: requests.Session) -> str:
        r = self.api(s, "POST", f"users/{s.name}/tokens", json={"note": "test"})
        r.raise_for_status()
        return r.json()["token"]

    def spawn(self, s: requests.Session) -> None:
        r = self.api(s, "POST", f"users/{s.name}/server")
        if r.status_code not in (201, 202, 400):  # 400: already running
            r.raise_for_status()

    def wait_ready(self, name: str, token: str, timeout: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                r = requests.get(
                    f"{self.url}/user/{name}/api/status",
                    headers={"Authorization": f"token {token}"},
                    timeout=10,
                )
                if r.status_code == 200:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{name}'s server did not answer in {timeout} s:\n{self.output()}")

    def user_api(self, name: str, token: str, method: str, path: str, **kwargs):
        return requests.request(
            method,
            f"{self.url}/user/{name}/api/{path}",
            headers={"Authorization": f"token {token}"},
            timeout=60,
            **kwargs,
        )

    def run(self, name: str, token: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` in a new kernel of ``name``'s server; its output (errors as ERROR ...)."""
        kernel = self.user_api(name, token, "POST", "kernels").json()
        try:
            ws = f"ws://127.0.0.1:{self.port}/user/{name}/api/kernels/{kernel['id']}/channels"
            return asyncio.run(run_cell(ws, code, token, timeout))
        finally:
            self.user_api(name, token, "DELETE", f"kernels/{kernel['id']}")


async def _start_busy(ws_url: str, code: str, token: str) -> None:
    conn, msg_id = await send_cell(ws_url, code, token)
    while True:  # until the kernel says it is busy with our cell
        msg = json.loads(await asyncio.wait_for(conn.read_message(), 60))
        mine = msg.get("parent_header", {}).get("msg_id") == msg_id
        if mine and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
            conn.close()
            return


def start_busy(hub: Hub, name: str, token: str, code: str) -> str:
    """Start ``code`` in a new kernel and leave it running (no output); the kernel id."""
    kernel = hub.user_api(name, token, "POST", "kernels").json()
    ws = f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{kernel['id']}/channels"
    asyncio.run(_start_busy(ws, code, token))
    return kernel["id"]
