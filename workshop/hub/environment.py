"""What participants read, set up once by the hub: an environment, the course, the models.

Participants run as unprivileged Unix users. They can use neither a checkout under a
private folder (``/root``, a ``mktemp -d``) nor a Python that lives there (pyenv under
``/root``). So the hub builds a share they can read (``HUB_SHARE``, root-owned, 0755):

    share/env/      a virtual environment: a world-readable Python of the same version,
                    the project environment's packages hard-linked (no copy, no download)
    share/course/   the course's code (models, workshop, exporters, streamlit_app), no solutions
    share/artifacts/, share/data/   the instructor's `make demo` outputs, read-only

and says, in one sentence each, what it cannot do.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from models.artifacts import artifacts_root

ROOT = Path(__file__).resolve().parents[2]
COURSE_PACKAGES = ("models", "workshop", "exporters", "streamlit_app")
NOTEBOOKS = ("01_mlp_backprop.ipynb", "02_fcn_alexnet.ipynb", "03_detectnet.ipynb")
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

# The participants' JupyterLab: no news pop-up, no extension manager (the room is offline
# and shares one environment), busy kernels count as activity, and two apps of their own in
# the launcher, behind their login: their demo (every page of the web app, training as them)
# and MLflow's UI on their own store. MLflow listens on a Unix socket in a folder only the
# participant can enter (jupyter-server-proxy's mkdtemp, 0700), not on a loopback port that
# every account on the machine could connect to; Streamlit 1.67 (Starlette) has no Unix
# sockets, so the demo still listens on a loopback port: the proxy adds a key made at each
# start to every request it forwards, and the app answers only requests that carry it
# (streamlit_app.app.from_the_proxy), so another account reaching the port gets nothing.
SERVER_CONFIG = """\
# Written by the workshop hub (workshop/hub/environment.py); rewritten at every start.
import secrets

c = get_config()  # noqa
DEMO_KEY = secrets.token_urlsafe(32)  # only this server's proxy and its demo know it
c.LabApp.news_url = None
c.LabApp.extension_manager = "readonly"
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.ServerApp.jpserver_extensions.update({{"workshop.hub.activity": True}})
c.ServerProxy.servers = {{
    "demo": {{
        "command": [{python!r}, "-m", "streamlit", "run", {app!r},
                    "--server.address=127.0.0.1", "--server.port={{port}}",
                    "--server.baseUrlPath={{base_url}}demo",
                    "--server.headless=true", "--server.fileWatcherType=none",
                    "--browser.gatherUsageStats=false", "--server.enableCORS=false",
                    "--server.enableXsrfProtection=false", "--server.maxUploadSize=50"],
        "absolute_url": True,
        "timeout": 60,
        "environment": {{"WORKSHOP_PROXY_KEY": DEMO_KEY}},
        "request_headers_override": {{"X-Workshop-Key": DEMO_KEY}},
        "launcher_entry": {{"title": "Demo (my models)", "path_info": "demo/"}},
    }},
    "mlflow": {{
        "command": [{python!r}, "-m", "workshop.hub.runs_ui", "{{unix_socket}}",
                    "{{base_url}}mlflow"],
        "unix_socket": True,
        "absolute_url": True,
        "timeout": 90,
        "launcher_entry": {{"title": "Runs (MLflow)", "path_info": "mlflow/"}},
    }},
}}
"""
PAGE_CONFIG = """\
{
  "disabledExtensions": {
    "@jupyterlab/extensionmanager-extension": true,
    "@jupyterlab/apputils-extension:announcements": true
  }
}
"""


class ShareError(RuntimeError):
    """The share cannot be built; the message says why and what to do."""


def world_can(path: Path, execute: bool = False) -> bool:
    """Whether a user with no special rights can read (and run) ``path``: every folder on
    the way must be searchable by others and the file readable (executable) by others."""
    path = Path(os.path.realpath(path))
    try:
        for parent in reversed(path.parents):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        mode = os.stat(path).st_mode
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if execute or stat.S_ISDIR(mode) else 0)
    return mode & need == need


def readable_python() -> Path | None:
    """A Python of this version that every user can run: this one, or the system's."""
    candidates = [
        Path(sys.base_prefix) / "bin" / PY,
        Path("/usr/bin") / PY,
        Path("/usr/local/bin") / PY,
    ]
    for candidate in candidates:
        if candidate.is_file() and world_can(candidate, execute=True) and _libs_readable(candidate):
            return Path(os.path.realpath(candidate))
    return None


def _libs_readable(python: Path) -> bool:
    """A Python whose shared libpython sits in a private folder cannot start for others."""
    try:
        out = subprocess.run(
            ["ldd", str(python)], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return True
    libs = [line.split("=>")[1].split("(")[0].strip() for line in out.splitlines() if "=>" in line]
    return all(world_can(Path(lib)) for lib in libs if lib.startswith("/"))


def access_problems(share: Path) -> list[str]:
    """What participants could not use, each with the fix; empty when all is well."""
    problems = []
    env_python = share / "env" / "bin" / "python"
    if not world_can(env_python, execute=True):
        problems.append(
            f"participants cannot run {env_python}: make {share} and the folders above it "
            "readable by all (chmod o+rx), or choose another HUB_SHARE"
        )
    for name in ("course", "env"):
        if (share / name).exists() and not world_can(share / name):
            problems.append(f"participants cannot read {share / name}: chmod -R o+rX it")
    return problems


def _fresh_dir(path: Path) -> Path:
    tmp = path.with_name(path.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.chmod(tmp, 0o755)
    return tmp


def _replace(tmp: Path, path: Path) -> None:
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link ``src`` into ``dst`` (same file system), else copy; folders get 0755."""
    try:
        shutil.copytree(src, dst, copy_function=os.link, symlinks=True)
    except (OSError, shutil.Error):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)
    _open_up(dst)


def _open_up(root: Path) -> None:
    """o+rX on folders and files (a hard link shares its mode with the original)."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for name in files:
            p = os.path.join(folder, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISREG(mode) and (mode & 0o044) != 0o044:
                os.chmod(p, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def build_env(share: Path, python: Path, venv: Path | None = None) -> Path:
    """share/env: a venv on ``python`` with this environment's packages hard-linked in.

    Skipped when it was built from the same environment at the same install time."""
    venv = Path(venv or sys.prefix)
    site = venv / "lib" / PY / "site-packages"
    env = share / "env"
    stamp_src = venv / ".installed"
    source = f"{venv} {python} {stamp_src.stat().st_mtime if stamp_src.exists() else 0}\n"
    if (env / ".source").is_file() and (env / ".source").read_text() == source:
        write_jupyter_config(env, venv)
        return env
    tmp = _fresh_dir(env)
    (tmp / "bin").mkdir(mode=0o755)
    for name in ("python", "python3", PY):
        (tmp / "bin" / name).symlink_to(python)
    (tmp / "pyvenv.cfg").write_text(
        f"home = {python.parent}\ninclude-system-site-packages = false\n"
        f"version = {sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}\n"
    )
    target = tmp / "lib" / PY / "site-packages"
    target.parent.mkdir(parents=True)
    _link_tree(site, target)
    # The editable install points into the checkout: participants import the share's copy.
    for p in target.glob("__editable__*"):
        p.unlink()
    for p in target.glob("dl_workshop-*.dist-info"):
        shutil.rmtree(p)
    (target / "workshop-course.pth").write_text(f"{share / 'course'}\n")
    if (venv / "share").is_dir():
        _link_tree(venv / "share", tmp / "share")
    (tmp / ".source").write_text(source)
    os.chmod(tmp / ".source", 0o644)
    _replace(tmp, env)
    write_jupyter_config(env, venv)
    return env


def write_jupyter_config(env: Path, venv: Path) -> None:
    """The environment's Jupyter settings (which server extensions load) plus the
    participants' own, as copies (never edited through a hard link)."""
    etc = env / "etc" / "jupyter"
    if etc.exists():
        shutil.rmtree(etc)
    if (venv / "etc" / "jupyter").is_dir():
        shutil.copytree(venv / "etc" / "jupyter", etc)
    (etc / "labconfig").mkdir(parents=True, exist_ok=True)
    python = str(env / "bin" / "python")
    app = str(env.parent / "course" / "streamlit_app" / "app.py")
    (etc / "jupyter_server_config.py").write_text(SERVER_CONFIG.format(python=python, app=app))
    (etc / "labconfig" / "page_config.json").write_text(PAGE_CONFIG)
    _open_up(env / "etc")


def copy_course(share: Path, root: Path = ROOT) -> Path:
    """share/course: the packages, the exercise notebooks and the demo's settings."""
    tmp = _fresh_dir(share / "course")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "solutions", ".ipynb_checkpoints")
    for name in COURSE_PACKAGES:
        shutil.copytree(root / name, tmp / name, ignore=ignore)
    if (root / ".streamlit").is_dir():
        shutil.copytree(root / ".streamlit", tmp / ".streamlit")
    shutil.copy(root / "README.md", tmp / "README.md")
    _open_up(tmp)
    _replace(tmp, share / "course")
    return share / "course"


def copy_outputs(share: Path, root: Path = ROOT, artifacts: Path | None = None) -> list[str]:
    """share/artifacts and share/data from the instructor's `make demo` (copied once, then
    only when the instructor's files change). Returns what is there."""
    artifacts = root / (artifacts or artifacts_root())  # absolute paths stay as they are
    found = []
    for name, src in (("artifacts", artifacts), ("data", root / "data")):
        dst, stamp = share / name, share / f".{name}.source"
        if not src.is_dir():
            continue
        # what was copied: the newest modification time and the file count of the source
        files = [p.stat().st_mtime for p in src.rglob("*")]
        source = f"{src} {max(files, default=0)} {len(files)}\n"
        if dst.is_dir() and stamp.is_file() and stamp.read_text() == source:
            found.append(name)
            continue
        tmp = dst.with_name(name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        ignore = shutil.ignore_patterns("downloads", "raw", "*.partial", "*.tmp")
        shutil.copytree(src, tmp, ignore=ignore)  # a copy: the instructor's files keep their modes
        _open_up(tmp)
        _replace(tmp, dst)
        stamp.write_text(source)
        found.append(name)
    return found


def prepare_share(share: Path, root: Path = ROOT) -> dict:
    """Build everything participants read; raises ShareError with the fix when it cannot."""
    python = readable_python()
    if python is None:
        raise ShareError(
            f"no Python {sys.version_info.major}.{sys.version_info.minor} that participants "
            f"can run: {sys.base_prefix} is private; install Debian's {PY} "
            f"(apt-get install {PY}) or a Python in a folder readable by all"
        )
    try:
        share.mkdir(parents=True, exist_ok=True)
        os.chmod(share, 0o755)
        copy_course(share, root)
        env = build_env(share, python)
        outputs = copy_outputs(share, root)
    except OSError as err:
        raise ShareError(f"cannot write the share {share}: {err.strerror or err}") from None
    problems = access_problems(share)
    if problems:
        raise ShareError("; ".join(problems))
    return {"python": str(python), "env": str(env), "outputs": outputs}
