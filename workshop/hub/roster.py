"""The room's roster: accounts and running servers before the room arrives.

    sudo HUB_ROSTER=names.txt make hub

One name a line (blank lines and ``#`` comments are skipped). Before the hub starts, every
name is checked (a bad one is refused with one sentence), the room's memory is checked (N
idle servers of ``HUB_IDLE_SERVER_MEM`` each must fit in MemAvailable) and each name not yet
claimed gets a one-time code: hashed in ``$HUB_STATE/roster-codes.json``, readable on one
printable sheet ``$HUB_STATE/roster-<time>.html``. Once the hub answers, the accounts are
made and their servers started in the background, at most ``HUB_SPAWN_LIMIT`` at once (and
two per CPU core).

A participant claims their name with its code as the password (and their own password,
typed twice; workshop/hub/auth.py): the code then stops working, nobody else's code opens
the name, and the lab they land in is already running.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from workshop.hub.settings import USERNAME_PATTERN, HubSettings, SettingsError, parse_size

CODES = "roster-codes.json"
# Easy to read aloud and to type from paper: no 0/o, 1/l/i.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ITERATIONS = 20_000  # a random 10-character code needs no bcrypt; PBKDF2 keeps a login cheap


class RosterError(SettingsError):
    """A roster the hub cannot start with; one sentence per problem."""


def read_names(path: Path, settings: HubSettings) -> list[str]:
    """The roster's names in order; RosterError lists every bad line, one sentence each."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise RosterError(f"HUB_ROSTER={str(path)!r} cannot be read ({err.strerror})") from None
    names, problems = [], []
    for number, line in enumerate(lines, 1):
        name = line.split("#", 1)[0].strip().lower()
        if not name:
            continue
        if not re.match(USERNAME_PATTERN, name):
            problems.append(
                f"line {number}: {line.strip()!r} is not a name "
                "(2-20 of a-z 0-9 _ -, starting with a letter)."
            )
        elif name == settings.instructor:
            problems.append(f"line {number}: {name!r} is the instructor's name.")
        elif name in names:
            problems.append(f"line {number}: {name!r} is on the roster twice.")
        else:
            names.append(name)
    if problems:
        raise RosterError(f"HUB_ROSTER={str(path)!r} has bad names:\n  " + "\n  ".join(problems))
    if not names:
        raise RosterError(f"HUB_ROSTER={str(path)!r} holds no names (one a line)")
    return names


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Bytes the machine can still give without swapping (the kernel's MemAvailable)."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RosterError("/proc/meminfo has no MemAvailable: the roster's memory cannot be checked")


def check_memory(n: int, settings: HubSettings, available: int | None = None) -> None:
    """Refuse a roster whose idle servers do not fit in the machine's memory."""
    each = parse_size(settings.hub_idle_server_mem, "HUB_IDLE_SERVER_MEM")
    available = mem_available() if available is None else available
    if n * each > available:
        raise RosterError(
            f"HUB_ROSTER: {n} servers need {n * each / 2**30:.1f} GiB "
            f"({n} x HUB_IDLE_SERVER_MEM={settings.hub_idle_server_mem}) but only "
            f"{available / 2**30:.1f} GiB is available: shorten the roster or free memory"
        )


class Codes:
    """The roster's one-time codes, hashed: name -> 'pbkdf2_sha256$iterations$salt$hash'.

    The hub checks and uses them (one process); `make hub` issues them before it starts."""

    def __init__(self, state: Path):
        self.path = Path(state) / CODES

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, codes: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(codes, f, indent=0)
        os.replace(tmp, self.path)

    def names(self) -> set[str]:
        return set(self._load())

    def entry(self, name: str) -> str | None:
        """The hash of ``name``'s code, None when it has none (never had, or used)."""
        return self._load().get(name)

    def check(self, name: str, code: str) -> bool:
        stored = self.entry(name)
        return stored is not None and matches(code, stored)

    def consume(self, name: str, entry: str) -> bool:
        """Remove ``name``'s code if it is still ``entry`` (checked earlier, no hashing here);
        False when it was used meanwhile."""
        codes = self._load()
        if codes.get(name) != entry:
            return False
        del codes[name]
        self._save(codes)
        return True

    def use(self, name: str, code: str) -> bool:
        """True once for the right code, which is then gone."""
        stored = self.entry(name)
        return stored is not None and matches(code, stored) and self.consume(name, stored)

    def issue(self, names: list[str]) -> dict[str, str]:
        """A new code for each of ``names`` (kept only hashed); name -> code."""
        codes, new = self._load(), {}
        for name in names:
            new[name] = _code()
            codes[name] = _hash(new[name])
        self._save(codes)
        return new


def _code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _hash(code: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", code.strip().lower().encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def matches(code: str, stored: str) -> bool:
    """Whether ``code`` is the one hashed in ``stored``."""
    _, iterations, salt, _ = stored.split("$")
    return hmac.compare_digest(_hash(code, bytes.fromhex(salt), int(iterations)), stored)


def prepare(settings: HubSettings, names: list[str], claimed: set[str]) -> Path | None:
    """Codes for the roster's names that have neither a claim nor a code yet, and their sheet
    (None when every name already had one: the earlier sheet still holds)."""
    codes = Codes(settings.state)
    fresh = [n for n in names if n not in claimed and n not in codes.names()]
    if not fresh:
        return None
    return write_sheet(settings, codes.issue(fresh))


def room_url(settings: HubSettings) -> str:
    """The address the room types: the machine's name when the hub listens on every address."""
    if settings.hub_ip in ("0.0.0.0", "::", ""):
        return f"http://{socket.getfqdn()}:{settings.hub_port}/"
    return settings.url


def write_sheet(settings: HubSettings, codes: dict[str, str]) -> Path:
    """One printable page: a slip per name with its code and how to use it (root only)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = settings.state / f"roster-{stamp}.html"
    url = html.escape(room_url(settings))
    slips = "\n".join(
        SLIP.format(url=url, name=html.escape(n), code=html.escape(c)) for n, c in codes.items()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SHEET.format(count=len(codes), slips=slips))
    return path


SHEET = """<!doctype html><html><head><meta charset=utf-8><title>Workshop roster</title>
<style>body{{font-family:system-ui,sans-serif;margin:1cm}}
.slip{{border:1px dashed #888;padding:.4cm .6cm;margin:0 0 .3cm;break-inside:avoid}}
.name,.code{{font-family:ui-monospace,monospace;font-size:1.4em;font-weight:bold}}
@media print{{h1,.note{{display:none}}}}</style></head><body>
<h1>Workshop roster: {count} names</h1>
<p class=note>Cut along the dashed lines; each code works once, for its name only.</p>
{slips}
</body></html>"""

SLIP = """<div class=slip>Open <b>{url}</b> &middot; name <span class=name>{name}</span>
&middot; password <span class=code>{code}</span><br>then choose your own password (at least 8
characters) and type it twice; from then on log in with your name and your own password.</div>"""


# --- once the hub answers: the accounts and their servers -------------------------------
def _call(api: str, token: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        api + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, None


def start_one(api: str, token: str, name: str, timeout: float) -> str | None:
    """Start ``name``'s server and wait until it answers; None, or why it did not start."""
    deadline = time.monotonic() + timeout
    while True:
        status, _ = _call(api, token, "POST", f"users/{name}/server")
        if status in (201, 202, 400):  # started, starting, already running
            break
        if status != 429 or time.monotonic() > deadline:  # 429: the hub's spawn limit
            return f"the hub answered {status}"
        time.sleep(2)
    while time.monotonic() < deadline:
        status, user = _call(api, token, "GET", f"users/{name}")
        server = (user or {}).get("servers", {}).get("")
        if server and server.get("ready"):
            return None
        if status == 200 and not server:
            return "its server stopped while starting (see hub.log)"
        time.sleep(1)
    return f"not ready after {timeout:.0f} s"


def _say(line: str) -> None:
    print(line)


def prestart(
    api: str, token: str, names: list[str], limit: int, timeout: float = 600, log=_say
) -> dict:
    """Make the accounts and start their servers, at most ``limit`` at once and two per CPU
    core (a start is CPU-bound: more at once only makes each one wait longer, on a small
    machine past the hub's start timeout); what happened."""
    start = time.monotonic()
    status, _ = _call(api, token, "POST", "users", {"usernames": names})
    if status not in (201, 409):  # 409: every account exists already (a restarted hub)
        log(f"roster: the hub refused to make the accounts ({status}); see hub.log")
        return {"ready": [], "failed": dict.fromkeys(names, f"accounts: {status}")}
    workers = max(1, min(limit, len(names), 2 * (os.cpu_count() or 1)))
    with ThreadPoolExecutor(workers) as pool:
        why = dict(zip(names, pool.map(lambda n: start_one(api, token, n, timeout), names)))
    failed = {n: w for n, w in why.items() if w}
    seconds = time.monotonic() - start
    ready = [n for n in names if n not in failed]
    log(f"roster: {len(ready)} of {len(names)} servers running after {seconds:.0f} s")
    for name, reason in failed.items():
        log(f"roster: {name}'s server did not start: {reason}")
    return {"ready": ready, "failed": failed, "seconds": seconds}


def prestart_in_background(api: str, token: str, names: list[str], limit: int, timeout: float):
    thread = threading.Thread(
        target=prestart, args=(api, token, names, limit, timeout), daemon=True, name="roster"
    )
    thread.start()
    return thread
