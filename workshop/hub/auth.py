"""Who may use a name: the room's login for `make hub`.

    first login with a name:  username + password (the room's, or the name's roster code)
                              + new_password and new_password2 (their own, typed twice)
    every later login:        username + their own password
    the instructor:           INSTRUCTOR + the instructor's password (never claimed)

One form (templates/login.html) and, for scripts, one POST to /hub/login with those fields
(and the _xsrf token every login needs) claims the name and logs in. A refused login is the
login page with one sentence (wrong password, name taken, passwords differ, too short).

Built on jupyterhub-firstuseauthenticator (The Littlest JupyterHub's): its dbm of bcrypt
hashes holds who claimed which name, its `delete_user` forgets a deleted user's password and
its /hub/auth/change-password page lets a participant change theirs. Added for a room: a
credential to claim with (the room password, or a one-time roster code: roster.py), the own
password typed twice and never the room's, the instructor apart, and forgetting a password
(`reset`: the progress page's button, `sudo make hub-reset NAME=...`) so its owner claims the
name again with the room password, their server and files untouched. A claim logs in at once
and its bcrypt hash is stored a moment later, made at nice 19 (a room claiming together would
otherwise wait for every hash before its labs open); the name is taken meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dbm
import hmac
import json
import os
import re
import secrets
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
from firstuseauthenticator import FirstUseAuthenticator
from firstuseauthenticator.firstuseauthenticator import TEMPLATE_DIR
from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web
from traitlets import Integer, Unicode, default

from workshop.hub.roster import Codes, matches
from workshop.hub.settings import USERNAME_PATTERN, HubSettings

PASSWORDS_DBM = "participant-passwords.dbm"  # the authenticator's bcrypt hashes (root only)
ACCOUNTS = "accounts.json"  # the hub's API and the token for accounts, written by `make hub`
MIN_LENGTH = 8
# the change-password page's template: firstuse adds it to the hub's templates on a GET only,
# so a POST first (a script, a restarted hub) failed with a 500; the config names it instead
TEMPLATES = TEMPLATE_DIR

REFUSALS = {  # why a login was refused: one sentence on the login page
    "choose": "To claim {name}, also choose your own password (at least {n} characters) "
    "and type it twice.",
    "differ": "The two new passwords differ: type the same password twice.",
    "short": "Your own password needs at least {n} characters.",
    "room": "Your own password must differ from the room's password.",
    "taken": "The name {name} is taken: log in with its own password, or choose another name.",
    "roster": "The name {name} is on the roster: claim it with the code on your slip.",
}


class AccountError(ValueError):
    """A reset that cannot be done, as one sentence for the instructor."""


class WorkshopAuthenticator(FirstUseAuthenticator):
    """FirstUseAuthenticator with a credential to claim a name and an instructor apart."""

    room_password = Unicode(config=True, help="the room's password: claims a new name")
    instructor_password = Unicode(config=True, help="the admin's password (never claimed)")
    roster_state = Unicode("", config=True, help="the folder of the roster's codes (roster.py)")
    bcrypt_rounds = Integer(12, config=True, help="bcrypt's cost for participants' passwords")

    @default("min_password_length")
    def _min_length(self):
        return MIN_LENGTH

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # name -> the task storing its claim's hash: a claim logs in at once and its bcrypt
        # hash (0.3 CPU-s) is made at the lowest priority, so a room claiming together does
        # not wait for 30 hashes before its labs open; the name is taken meanwhile
        self._claims: dict[str, asyncio.Task] = {}
        self._hasher = ThreadPoolExecutor(
            max(1, os.cpu_count() or 1), "claim-hash", initializer=_lowest_priority
        )

    def _is_room(self, password: str) -> bool:
        return bool(self.room_password) and hmac.compare_digest(
            password.encode(), self.room_password.encode()
        )

    def _refuse(self, handler, why: str, name: str) -> None:
        message = REFUSALS[why].format(name=name, n=self.min_password_length)
        if hasattr(handler, "custom_login_error"):  # firstuse's login handler shows it
            handler.custom_login_error = message
        self.log.info("login refused for %s: %s", name, why)
        return None

    def _stored(self, name: str) -> bytes | None:
        with dbm.open(self.dbm_path, "c", 0o600) as db:
            return db.get(name.encode())

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        new, again = data.get("new_password", ""), data.get("new_password2", "")
        if not self.validate_username(name):
            return None  # JupyterHub refuses it after authenticate: never store it first
        if name in self.admin_users:
            mine = self.instructor_password
            return name if mine and hmac.compare_digest(password.encode(), mine.encode()) else None
        # the hashing runs in threads: the hub's loop keeps answering while a room logs in
        if name in self._claims:  # claimed a moment ago: its hash first, then as usual
            await asyncio.wait([self._claims[name]])
        stored = self._stored(name)
        if stored is not None:
            if await asyncio.to_thread(bcrypt.checkpw, password.encode(), stored):
                return name
            claiming = self._is_room(password) or new or again  # tries to claim what is taken
            return self._refuse(handler, "taken", name) if claiming else None
        codes = Codes(Path(self.roster_state)) if self.roster_state else None
        slip = codes.entry(name) if codes else None  # the hash of the name's roster code
        if slip is not None and not await asyncio.to_thread(matches, password, slip):
            return self._refuse(handler, "roster", name) if self._is_room(password) else None
        if slip is None and not self._is_room(password):
            return None
        why = self.new_password_problem(new, again)
        if why:
            return self._refuse(handler, why, name)
        # no await since the checks above: of two claims at once the first wins
        if name in self._claims or self._stored(name) is not None:
            return self._refuse(handler, "taken", name)
        task = asyncio.ensure_future(self._store_claim(name, new, codes, slip))
        self._claims[name] = task
        self.log.info("%s claimed %s", "a roster code" if slip else "the room password", name)
        return name

    async def _store_claim(self, name: str, new: str, codes: Codes | None, slip: str | None):
        """The claim's bcrypt hash into the store, and its roster code used up (only now: a
        hub stopped before this leaves the slip valid for its owner to claim again)."""
        try:
            salt = bcrypt.gensalt(self.bcrypt_rounds)
            loop = asyncio.get_running_loop()
            hashed = await loop.run_in_executor(self._hasher, bcrypt.hashpw, new.encode(), salt)
            with dbm.open(self.dbm_path, "c", 0o600) as db:
                if slip is not None and not codes.consume(name, slip):
                    self.log.error("%s's roster code was used meanwhile: claim dropped", name)
                    return
                db[name] = hashed
        except asyncio.CancelledError:
            self.log.info("%s's claim was reset before its hash was stored", name)
        except Exception:
            self.log.exception("%s's claim could not be stored", name)
        finally:
            if self._claims.get(name) is asyncio.current_task():
                del self._claims[name]

    def new_password_problem(self, new: str, again: str) -> str | None:
        """Why ``new`` (typed twice) cannot be a participant's own password, or None."""
        if not new and not again:
            return "choose"
        if new != again:
            return "differ"
        if not self._validate_password(new):
            return "short"
        if self._is_room(new):
            return "room"
        return None

    def reset_password(self, username, new_password):
        """The change-password page (firstuse's): never the room's password, nor the admin."""
        if username in self.admin_users:
            return "The instructor's password is INSTRUCTOR_PASSWORD (make hub), not set here."
        if self._is_room(new_password):
            return REFUSALS["room"]
        if username in self._claims:
            return "Your name is still being claimed: try again in a moment."
        return super().reset_password(username, new_password)

    def forget(self, name: str) -> bool:
        pending = self._claims.pop(name, None)
        if pending is not None:
            pending.cancel()
        return forget(self.dbm_path, name) or pending is not None

    def delete_user(self, user):
        self.forget(user.name)

    def get_handlers(self, app):
        return [*super().get_handlers(app), (r"/api/forget-password/([^/]+)", ForgetHandler)]


def _lowest_priority() -> None:
    """Nice 19 for this thread (Linux: a thread's id is a pid for setpriority)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class ForgetHandler(APIHandler):
    """POST /hub/api/forget-password/<name> (admin:users): forget a participant's own
    password; they claim the name again with the room password."""

    @needs_scope("admin:users")
    def post(self, user_name):
        if user_name in self.authenticator.admin_users:
            raise web.HTTPError(400, "the instructor's password is INSTRUCTOR_PASSWORD")
        if self.find_user(user_name) is None:
            raise web.HTTPError(404, f"no participant is named {user_name}")
        forgotten = self.authenticator.forget(user_name)
        self.log.info("%s's password forgotten by %s", user_name, self.current_user.name)
        self.finish(json.dumps({"name": user_name, "forgotten": forgotten}))


def forget(dbm_path: str | Path, name: str) -> bool:
    """Remove ``name``'s password hash; False when they had none."""
    with dbm.open(str(dbm_path), "c", 0o600) as db:
        if name.encode() not in db:
            return False
        del db[name]
    return True


def claimed(settings: HubSettings) -> set[str]:
    """The names someone has claimed (a password is stored for them)."""
    path = str(settings.state / PASSWORDS_DBM)
    with dbm.open(path, "c", 0o600) as db:
        return {key.decode() for key in db}


# --- the hub's API for accounts: the roster's servers, resets ----------------------------
def write_accounts(settings: HubSettings, api: str) -> dict:
    """A fresh token for this run of the hub (the `accounts` service), 0600 in the state."""
    accounts = {"api": api, "token": secrets.token_hex(32)}
    path = settings.state / ACCOUNTS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(accounts, f)
    return accounts


def load_accounts(state: Path) -> dict:
    return json.loads((Path(state) / ACCOUNTS).read_text())


def reset(settings: HubSettings, name: str) -> str:
    """Forget ``name``'s own password (through the running hub, else in its store): what was
    done, one sentence; AccountError when nothing can be."""
    if not re.match(USERNAME_PATTERN, name or ""):
        raise AccountError(f"{name!r} is not a participant's name")
    if name == settings.instructor:
        raise AccountError("the instructor's password is INSTRUCTOR_PASSWORD, not reset here")
    done = (
        f"{name}'s password is forgotten: they claim the name again with the room password "
        "(their own password twice), and their server and files are kept"
    )
    try:
        accounts = load_accounts(settings.state)
        request = urllib.request.Request(
            accounts["api"] + f"forget-password/{name}",
            method="POST",
            data=b"",
            headers={"Authorization": f"token {accounts['token']}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            forgotten = json.loads(response.read())["forgotten"]
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise AccountError(f"no participant is named {name}") from None
        raise AccountError(f"the hub refused the reset ({err.code}): see hub.log") from None
    except (FileNotFoundError, urllib.error.URLError) as err:
        if isinstance(err, urllib.error.URLError) and not isinstance(
            err.reason, ConnectionRefusedError
        ):
            raise AccountError(f"the hub did not answer the reset ({err.reason})") from None
        # no hub running (or never started): the store is the authenticator's alone
        forgotten = forget(settings.state / PASSWORDS_DBM, name)
        done += " (the hub is not running: changed in its store)"
    if not forgotten:
        return f"{name} has not claimed the name yet: nothing to reset"
    return done
