"""The hosted workshop's settings: one dataclass, read from the environment by `make hub`.

Every field has an environment variable (the field's name in capitals, e.g. ``HUB_PORT``,
``WORKSHOP_PASSWORD``) so the Makefile, the hub's config file and its services read the
same values. A bad value is a `SettingsError` whose message is one sentence for the
instructor.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import secrets
import typing
from dataclasses import dataclass, field
from pathlib import Path

# Participants' names on the login page: short, lowercase, safe in paths and Unix names.
USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{1,19}$"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$", re.I)


class SettingsError(ValueError):
    """A setting the hub cannot start with; the message says which and why."""


@dataclass
class HubSettings:
    hub_ip: str = "127.0.0.1"  # address the hub listens on (0.0.0.0: the whole room)
    hub_port: int = 8000  # port of the hub's public proxy
    hub_state: str = ".hub"  # hub database, cookie secret, passwords, logs, progress (root only)
    hub_share: str = "/srv/dl-workshop"  # what participants read: environment, course, models
    instructor: str = "instructor"  # the instructor's login name (the hub's admin)
    workshop_password: str = ""  # participants' shared password; empty = generated once
    instructor_password: str = ""  # the instructor's password (>= 32 chars); empty = generated
    hub_user_prefix: str = "wsp-"  # Unix name = prefix + login name, so no login is a system user
    hub_group: str = "workshop"  # Unix group of every participant account
    hub_home: str = "/home"  # where participants' home folders are made
    hub_mem_limit: str = "3G"  # memory per participant (server + kernels), enforced by cgroups
    hub_cpu_limit: float = 1.0  # CPUs per participant, enforced by cgroups
    hub_instructor_mem_limit: str = "8G"  # the instructor's memory
    hub_instructor_cpu_limit: float = 2.0  # the instructor's CPUs
    hub_pids_limit: int = 512  # processes and threads per participant, enforced by cgroups
    hub_disk_limit: str = "5G"  # what each participant may write (home, /tmp): a disk image each
    hub_gpu_share: int = 4  # participants per GPU; each process may take 1/share of its memory
    hub_idle_timeout: int = 3600  # seconds without activity before a server is stopped
    hub_cull_every: int = 300  # seconds between the idle culler's checks
    hub_activity_interval: int = 300  # seconds between a server's activity reports to the hub
    hub_spawn_limit: int = 50  # servers starting at the same time (a room logging in at once)
    hub_roster: str = ""  # a file of names, one a line: accounts and servers ready beforehand
    hub_idle_server_mem: str = "200M"  # an idle server (~130 MB, ~195 with a kernel): roster check
    hub_start_timeout: int = 120  # seconds a server may take to start
    hub_demo: bool = True  # run the shared web demo at /services/demo/
    extra: dict = field(default_factory=dict)  # anything else, for tests (not from the env)

    # --- derived -----------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return Path(self.hub_state).resolve()

    @property
    def share(self) -> Path:
        return Path(self.hub_share)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.hub_ip in ("0.0.0.0", "::", "") else self.hub_ip
        return f"http://{host}:{self.hub_port}/"

    def unix_name(self, login: str) -> str:
        return f"{self.hub_user_prefix}{login}"

    def limits_for(self, login: str) -> tuple[int, float]:
        """(memory bytes, CPUs) for a login name."""
        if login == self.instructor:
            return parse_size(self.hub_instructor_mem_limit), self.hub_instructor_cpu_limit
        return parse_size(self.hub_mem_limit), self.hub_cpu_limit

    # --- loading -----------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None) -> HubSettings:
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or f.name == "extra":
                continue
            typ = hints[f.name]
            try:
                values[f.name] = (
                    raw.strip().lower() in ("1", "true", "yes", "on") if typ is bool else typ(raw)
                )
            except ValueError:
                raise SettingsError(
                    f"{f.name.upper()}={raw!r} is not a valid {typ.__name__}"
                ) from None
        if environ.get("HUB_EXTRA"):
            values["extra"] = json.loads(environ["HUB_EXTRA"])
        settings = cls(**values)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for the hub's config file and services."""
        env = {}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                env[f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        if self.extra:
            env["HUB_EXTRA"] = json.dumps(self.extra)
        return env

    def validate(self) -> None:
        try:
            ipaddress.ip_address(self.hub_ip)
        except ValueError:
            raise SettingsError(f"HUB_IP={self.hub_ip!r} is not an IP address") from None
        if not 1 <= self.hub_port <= 65535:
            raise SettingsError(f"HUB_PORT={self.hub_port} is not a port (1-65535)")
        if not re.match(USERNAME_PATTERN, self.instructor):
            raise SettingsError(
                f"INSTRUCTOR={self.instructor!r} must match {USERNAME_PATTERN} like participants"
            )
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,7}", self.hub_user_prefix):
            raise SettingsError(f"HUB_USER_PREFIX={self.hub_user_prefix!r}: 1-8 of a-z 0-9 _ -")
        for name in ("hub_mem_limit", "hub_instructor_mem_limit", "hub_idle_server_mem"):
            parse_size(getattr(self, name), name.upper())
        if self.hub_pids_limit < 16:
            raise SettingsError("HUB_PIDS_LIMIT must be at least 16 processes")
        if parse_size(self.hub_disk_limit, "HUB_DISK_LIMIT") < 32 * 2**20:
            raise SettingsError("HUB_DISK_LIMIT must be at least 32M")
        for name in ("hub_cpu_limit", "hub_instructor_cpu_limit"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be a positive number of CPUs")
        if self.workshop_password and len(self.workshop_password) < 8:
            raise SettingsError("WORKSHOP_PASSWORD must have at least 8 characters")
        if self.instructor_password and len(self.instructor_password) < 32:
            raise SettingsError("INSTRUCTOR_PASSWORD must have at least 32 characters")
        if self.workshop_password and self.workshop_password == self.instructor_password:
            raise SettingsError("WORKSHOP_PASSWORD and INSTRUCTOR_PASSWORD must differ")
        if self.hub_gpu_share < 1 or self.hub_spawn_limit < 1:
            raise SettingsError("HUB_GPU_SHARE and HUB_SPAWN_LIMIT must be at least 1")
        if not Path(self.hub_share).is_absolute():
            raise SettingsError(f"HUB_SHARE={self.hub_share!r} must be an absolute path")


def parse_size(text: str, name: str = "a memory limit") -> int:
    """'512M', '2G', '1.5G' or plain bytes -> bytes."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise SettingsError(f"{name}={text!r} is not a size like 512M or 2G")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def load_passwords(settings: HubSettings) -> tuple[str, str, bool]:
    """(workshop, instructor, generated): from the settings, else from the state folder,
    else generated now and written there 0600."""
    path = settings.state / "passwords.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    workshop = settings.workshop_password or stored.get("workshop") or _words(3)
    instructor = settings.instructor_password or stored.get("instructor") or secrets.token_hex(20)
    generated = (workshop, instructor) != (stored.get("workshop"), stored.get("instructor"))
    if generated:
        settings.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"workshop": workshop, "instructor": instructor}, f)
        os.chmod(path, 0o600)
    return workshop, instructor, generated


_WORDS = [
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "iris",
    "juniper",
    "kelp",
    "lumen",
    "maple",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "raven",
    "sable",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]


def _words(n: int) -> str:
    """A password a room can type from a slide: words and digits."""
    return "-".join(secrets.choice(_WORDS) for _ in range(n)) + f"-{secrets.randbelow(100):02d}"
