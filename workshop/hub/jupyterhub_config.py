"""JupyterHub's configuration for the hosted workshop; `make hub` starts the hub with it.

Every value comes from `HubSettings` (environment variables, see settings.py); the
internal ports were chosen by `python -m workshop.hub serve` and arrive in HUB_EXTRA.
"""

import sys

from workshop.hub import cgroups
from workshop.hub.auth import PASSWORDS_DBM, TEMPLATES, WorkshopAuthenticator, load_accounts
from workshop.hub.settings import USERNAME_PATTERN, HubSettings, load_passwords
from workshop.hub.spawner import WorkshopSpawner, gpu_count

c = get_config()  # noqa: F821  (JupyterHub provides it)
s = HubSettings.from_env()
ports = s.extra["ports"]
state, share = s.state, s.share
workshop_password, instructor_password, _ = load_passwords(s)

# --- where it listens, where it keeps its state -------------------------------------
c.JupyterHub.ip = s.hub_ip
c.JupyterHub.port = s.hub_port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = ports["hub"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports['proxy_api']}"
c.ConfigurableHTTPProxy.command = [s.extra["proxy"]]
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.template_paths = [s.extra["templates"], TEMPLATES]
c.JupyterHub.template_vars = {"username_rule": "2-20 of a-z 0-9 _ -, starting with a letter"}

# --- login: a name is claimed with the room's password (or a roster code) and then -----
# opens with its owner's own password only; the instructor has a long one (auth.py)
c.JupyterHub.authenticator_class = WorkshopAuthenticator
c.WorkshopAuthenticator.room_password = workshop_password
c.WorkshopAuthenticator.instructor_password = instructor_password
c.WorkshopAuthenticator.dbm_path = str(state / PASSWORDS_DBM)
c.WorkshopAuthenticator.roster_state = str(state)
c.Authenticator.admin_users = {s.instructor}
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = USERNAME_PATTERN

# --- one server per participant, as their own Unix user, with limits -----------------
WorkshopSpawner.hub_settings = s
WorkshopSpawner.cgroups, _ = cgroups.detect()
WorkshopSpawner.gpus = gpu_count()
c.JupyterHub.spawner_class = WorkshopSpawner
c.Spawner.cmd = [str(share / "env" / "bin" / "python"), "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab/tree/01_mlp_backprop.ipynb"
c.Spawner.start_timeout = s.hub_start_timeout
c.Spawner.http_timeout = s.hub_start_timeout
c.Spawner.mem_limit = s.hub_mem_limit
c.Spawner.cpu_limit = s.hub_cpu_limit
c.Spawner.server_token_scopes = [
    "access:servers!server",
    "users:activity!user",
    "access:services!service=progress",
]
c.JupyterHub.concurrent_spawn_limit = s.hub_spawn_limit
c.JupyterHub.last_activity_interval = min(300, max(5, s.hub_cull_every))
c.JupyterHub.cleanup_servers = True

# --- services: the idle culler, the progress view, the room's demo -------------------
services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={s.hub_idle_timeout}",
            f"--cull-every={s.hub_cull_every}",
        ],
    },
    {
        "name": "progress",
        "url": f"http://127.0.0.1:{ports['progress']}",
        "command": [sys.executable, "-m", "workshop.hub.progress"],
        "environment": s.to_env(),
        "oauth_no_confirm": True,
    },
]
if s.hub_demo:
    services.append(
        {
            "name": "demo",
            "url": f"http://127.0.0.1:{ports['demo']}",
            "command": [str(share / "env" / "bin" / "python"), "-m", "workshop.hub.demo"],
            "user": "nobody",
            "cwd": str(share / "course"),
            "environment": {
                "DEMO_PORT": str(ports["demo_streamlit"]),
                "ARTIFACTS": str(share / "artifacts"),
                "HOME": str(share / "run" / "demo"),
                "OMP_NUM_THREADS": "2",
            },
            "oauth_no_confirm": True,
        }
    )
access = [f"access:services!service={svc['name']}" for svc in services if "url" in svc]
# `make hub` itself: the roster's accounts and servers, password resets (a token per run)
services.append({"name": "accounts", "api_token": load_accounts(state)["token"]})
c.JupyterHub.services = services
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", *access]},
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
    {"name": "progress", "scopes": ["list:users", "read:users:name"], "services": ["progress"]},
    {"name": "accounts", "scopes": ["admin:users", "admin:servers"], "services": ["accounts"]},
]
