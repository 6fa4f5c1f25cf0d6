"""`make lab`: JupyterLab on 127.0.0.1 with token auth, opened on the workshop notebooks.

    python -m workshop.lab [--port=8888]

The kernel is this environment's Python (the project's .venv), so notebooks
import `models` and `workshop` directly.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from workshop.cli import parse_config

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


@dataclass
class LabConfig:
    port: int = 8888  # port on 127.0.0.1
    token: str = ""  # access token; empty = a fresh random one


def lab_command(port: int, token: str, root: Path = NOTEBOOKS) -> list[str]:
    """The argv that starts JupyterLab bound to loopback with token auth."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.extension_manager=readonly",  # the workshop network may be offline
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(LabConfig, argv)
    token = cfg.token or secrets.token_hex(24)
    print(f"JupyterLab: http://127.0.0.1:{cfg.port}/lab?token={token}", flush=True)
    try:
        return subprocess.call(lab_command(cfg.port, token))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
