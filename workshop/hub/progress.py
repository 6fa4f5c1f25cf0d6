"""The instructor's progress view: a JupyterHub service at /services/progress/.

    participants' kernels --POST api/results (their server token)--> this service
    participants' trainers --POST api/runs (a finished run's headline metric)--> this service
    instructor's browser  --hub login (OAuth)--> /services/progress/  (table, CSV, release)

Who sent a result is what the hub says the token belongs to, never a name in the
request. Only the instructor (the hub's admin) reads results, releases solutions or resets a
participant's forgotten password (a button per row; workshop/hub/auth.py).
Results and runs live in ``$HUB_STATE/progress.sqlite``.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpclient, ioloop, web

from workshop.hub import auth
from workshop.hub.settings import HubSettings

REFRESH_S = 10


class Store:
    """Every check a participant ran (who, which exercise, pass or fail, the mistake, when)
    and every run they finished (module, run id, headline metric and its value, when)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS results (user TEXT NOT NULL, exercise TEXT NOT NULL,"
            " passed INTEGER NOT NULL, mistake TEXT NOT NULL, at REAL NOT NULL)"
        )
        # a run reported again (resumed, finished again) replaces its earlier report
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS runs (user TEXT NOT NULL, module TEXT NOT NULL,"
            " run_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, at REAL NOT NULL,"
            " PRIMARY KEY (user, run_id))"
        )
        self.db.commit()

    def add(self, user: str, exercise: str, passed: bool, mistake: str, at: float | None = None):
        self.db.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?)",
            (user, exercise, int(passed), mistake, at or time.time()),
        )
        self.db.commit()

    def latest(self) -> list[dict]:
        """The latest result of each (participant, exercise), with the number of attempts."""
        rows = self.db.execute(
            "SELECT r.user, r.exercise, r.passed, r.mistake, r.at, c.n FROM results r"
            " JOIN (SELECT user, exercise, MAX(rowid) AS last, COUNT(*) AS n FROM results"
            "       GROUP BY user, exercise) c ON r.rowid = c.last ORDER BY r.user, r.exercise"
        ).fetchall()
        keys = ("participant", "exercise", "passed", "mistake", "at", "attempts")
        return [dict(zip(keys, row)) for row in rows]

    def add_run(self, user: str, module: str, run_id: str, metric: str, value: float, at=None):
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
            (user, module, run_id, metric, value, at or time.time()),
        )
        self.db.commit()

    def best_runs(self) -> list[dict]:
        """Each participant's best run per module, with the number of runs they finished.

        Headline metrics (accuracy, AP) are better when higher; the earlier run wins a tie."""
        rows = self.db.execute(
            "SELECT user, module, run_id, metric, value, at, n FROM ("
            "  SELECT *, ROW_NUMBER() OVER (PARTITION BY user, module ORDER BY value DESC, at)"
            "    AS rank, COUNT(*) OVER (PARTITION BY user, module) AS n FROM runs)"
            " WHERE rank = 1 ORDER BY user, module"
        ).fetchall()
        keys = ("participant", "module", "run_id", "metric", "value", "at", "runs")
        return [dict(zip(keys, row)) for row in rows]


def exercise_order() -> list[str]:
    """The exercises in notebook order (those the checks know), for the table's columns."""
    from workshop.checks import EXERCISES

    return list(EXERCISES)


def module_order() -> list[str]:
    """The training modules in course order, for the best-run columns."""
    from workshop.tracking import MODULES

    return list(MODULES)


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def settings_(self) -> HubSettings:
        return self.settings["hub_settings"]

    @property
    def store(self) -> Store:
        return self.settings["store"]

    def instructor_only(self) -> dict:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403)
        if user["name"] != self.settings_.instructor and not user.get("admin"):
            raise web.HTTPError(403, "only the instructor sees the room's progress")
        return user

    def write_error(self, status_code, **kwargs):
        reason = kwargs.get("exc_info", (None, None))[1]
        message = getattr(reason, "log_message", None) or self._reason
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {message}\n")


class ParticipantAPI(Base):
    """A POST from a participant's kernel: who sent it comes from their hub token, never from
    the body; ``parse(body)`` returns the values to record, ``record(name, *values)`` stores
    them and says what was recorded."""

    usage = ""  # what a bad body is told (HTTP 400)

    def check_xsrf_cookie(self):
        pass  # token-authenticated API calls only; the page's form has its own check

    async def post(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "a participant's hub token is required")
        try:
            values = self.parse(json.loads(self.request.body or b"{}"))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, self.usage) from None
        recorded = self.record(user["name"], *values)
        self.set_status(201)
        self.finish({"recorded": recorded, "participant": user["name"]})


class ResultsAPI(ParticipantAPI):
    """POST: a participant's kernel records a result. GET: the instructor reads them (JSON)."""

    usage = "expected JSON with exercise and passed"

    def parse(self, body):
        exercise, passed = str(body["exercise"])[:100], bool(body["passed"])
        return exercise, passed, str(body.get("mistake", ""))[:500]

    def record(self, name, exercise, passed, mistake):
        self.store.add(name, exercise, passed, mistake)
        return exercise

    def get(self):
        self.instructor_only()
        self.finish({"results": self.store.latest(), "exercises": exercise_order()})


class RunsAPI(ParticipantAPI):
    """POST: a participant's finished run (module, run id, headline metric and value).
    GET: the instructor reads each participant's best run per module (JSON)."""

    usage = "expected JSON: module, run_id, metric, value"

    def parse(self, body):
        module, run_id = str(body["module"])[:50], str(body["run_id"])[:64]
        metric, value = str(body["metric"])[:50], float(body["value"])
        if not (module and run_id and metric and math.isfinite(value)):
            raise web.HTTPError(400, "module, run_id and metric must be named, value finite")
        return module, run_id, metric, value

    def record(self, name, module, run_id, metric, value):
        self.store.add_run(name, module, run_id, metric, value)
        return run_id

    def get(self):
        self.instructor_only()
        self.finish({"runs": self.store.best_runs(), "modules": module_order()})


async def hub_participants(settings: HubSettings) -> list[str]:
    """The hub's users other than the instructor (participants who have not run a check yet
    still get a row)."""
    api = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api:
        return []
    try:
        response = await httpclient.AsyncHTTPClient().fetch(
            url_path_join(api, "users"), headers={"Authorization": f"token {token}"}
        )
    except (httpclient.HTTPError, OSError):
        return []
    return sorted(u["name"] for u in json.loads(response.body) if u["name"] != settings.instructor)


@dataclass
class Room:
    """The instructor's table: a row per participant, a column per exercise and per module."""

    people: list[str]
    exercises: list[str]
    cells: dict  # (participant, exercise) -> latest result
    modules: list[str]
    best: dict  # (participant, module) -> best run


def table(store: Store, people: list[str]) -> Room:
    latest, runs = store.latest(), store.best_runs()
    order, course = exercise_order(), module_order()
    return Room(
        people=sorted(set(people) | {r["participant"] for r in latest + runs}),
        exercises=order + sorted({r["exercise"] for r in latest} - set(order)),
        cells={(r["participant"], r["exercise"]): r for r in latest},
        modules=course + sorted({r["module"] for r in runs} - set(course)),
        best={(r["participant"], r["module"]): r for r in runs},
    )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).astimezone().strftime("%H:%M:%S")


class Page(Base):
    """The room at a glance: participants x exercises, the latest result in each cell."""

    @web.authenticated
    async def get(self):
        self.instructor_only()
        await self.show()

    async def show(self, notice: str = "") -> None:
        room = table(self.store, await hub_participants(self.settings_))
        people, exercises, cells = room.people, room.exercises, room.cells
        head = "".join(f"<th>{html.escape(e)}</th>" for e in exercises)
        head += "<th>passed</th>" + "".join(
            f"<th class=run>best run: {html.escape(m)}</th>" for m in room.modules
        )
        rows = []
        for person in people:
            tds = []
            for e in exercises:
                r = cells.get((person, e))
                if r is None:
                    tds.append("<td class=none>·</td>")
                elif r["passed"]:
                    tds.append(
                        f"<td class=pass title='{_when(r['at'])}, {r['attempts']} tries'>✓</td>"
                    )
                else:
                    tip = html.escape(r["mistake"], quote=True)
                    tds.append(
                        f"<td class=fail title='{tip}'>✗ {html.escape(r['mistake'][:60])}</td>"
                    )
            passed = sum(bool(cells.get((person, e), {}).get("passed")) for e in exercises)
            tds.append(f"<td>{passed}/{len(exercises)}</td>")
            tds.extend(_run_cell(room.best.get((person, m))) for m in room.modules)
            tds.append(self._reset_cell(person))
            rows.append(f"<tr><th>{html.escape(person)}</th>{''.join(tds)}</tr>")
        released = (self.settings_.share / "solutions").is_dir()
        button = (
            "<p>Solutions are released.</p>"
            if released
            else f"<form method=post action='release'>{self.xsrf_form_html()}"
            "<button>Release the solutions to everyone</button></form>"
        )
        self.finish(
            PAGE.format(
                refresh=REFRESH_S,
                head=head,
                rows="\n".join(rows) or "<tr><td>nobody yet</td></tr>",
                count=len(people),
                button=button,
                notice=f"<p class=notice>{html.escape(notice)}</p>" if notice else "",
                now=datetime.now().strftime("%H:%M:%S"),
            )
        )

    def _reset_cell(self, person: str) -> str:
        who = html.escape(person, quote=True)
        ask = f"Forget the password of {who}? They claim the name again with the room password."
        return (
            f"<td><form method=post action='reset' onsubmit=\"return confirm('{ask}')\">"
            f"{self.xsrf_form_html()}<input type=hidden name=name value='{who}'>"
            "<button>reset password</button></form></td>"
        )


class ResetPassword(Page):
    """A participant forgot their password: forget it (the hub's accounts API, or its store
    when the hub is down); they claim their name again, their server and files untouched."""

    @web.authenticated
    async def post(self):
        self.instructor_only()
        name = self.get_body_argument("name", "")
        try:
            done = await asyncio.to_thread(auth.reset, self.settings_, name)
        except auth.AccountError as err:
            done = str(err)
        await self.show(done[:1].upper() + done[1:] + ".")


def _run_cell(run: dict | None) -> str:
    if run is None:
        return "<td class=none>·</td>"
    tip = f"run {run['run_id'][:8]}, {run['runs']} finished, {_when(run['at'])}"
    value = f"{html.escape(run['metric'])} {run['value']:.3f}"
    return f"<td class=run title='{html.escape(tip, quote=True)}'>{value}</td>"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class CsvExport(Base):
    """One row per participant and exercise check, then one per participant and module
    (``run:<module>``: their best run's metric, value and id; attempts = runs finished)."""

    @web.authenticated
    async def get(self):
        self.instructor_only()
        room = table(self.store, await hub_participants(self.settings_))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["participant", "exercise", "result", "mistake", "time_utc", "attempts"]
            + ["metric", "value", "run_id"]
        )
        for person in room.people:
            for e in room.exercises:
                r = room.cells.get((person, e))
                if r is None:
                    writer.writerow([person, e, "not run", "", "", 0, "", "", ""])
                else:
                    result = "pass" if r["passed"] else "fail"
                    writer.writerow(
                        [person, e, result, r["mistake"], _utc(r["at"]), r["attempts"], "", "", ""]
                    )
            for m in room.modules:
                r = room.best.get((person, m))
                if r is None:
                    writer.writerow([person, f"run:{m}", "not run", "", "", 0, "", "", ""])
                else:
                    writer.writerow(
                        [person, f"run:{m}", "finished", "", _utc(r["at"]), r["runs"]]
                        + [r["metric"], r["value"], r["run_id"]]
                    )
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", "attachment; filename=workshop-progress.csv")
        self.finish(out.getvalue())


class Release(Base):
    @web.authenticated
    def post(self):
        self.instructor_only()
        from workshop.hub.solutions import release

        release(self.settings_)
        self.redirect(self.settings["prefix"])


PAGE = """<!doctype html><html><head><meta charset=utf-8>
<meta http-equiv=refresh content={refresh}><title>Workshop progress</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:14px}}
.pass{{background:#d9f2d9}}.fail{{background:#f8d7d7}}.none{{color:#aaa}}
.run{{background:#eef3fb}}.notice{{background:#fff3cd;padding:.5em}}
form{{margin:0}}</style></head><body>
<h1>Workshop progress</h1>
<p>{count} participants · latest result of each exercise check and best finished run per
module · refreshes every {refresh} s (last {now}) · <a href="results.csv">download CSV</a></p>
{notice}
<table><tr><th>participant</th>{head}<th>password</th></tr>
{rows}</table>
{button}
</body></html>"""


def make_app(settings: HubSettings, store: Store) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    return web.Application(
        [
            (prefix, Page),
            (prefix + "results.csv", CsvExport),
            (prefix + "release", Release),
            (prefix + "reset", ResetPassword),
            (prefix + "api/results", ResultsAPI),
            (prefix + "api/runs", RunsAPI),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
        ],
        hub_settings=settings,
        store=store,
        prefix=prefix,
        cookie_secret=os.urandom(32),
        xsrf_cookies=True,
    )


def main() -> None:
    settings = HubSettings.from_env()
    store = Store(settings.state / "progress.sqlite")
    url = os.environ["JUPYTERHUB_SERVICE_URL"]
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    make_app(settings, store).listen(int(port), host)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
