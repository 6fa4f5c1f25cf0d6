"""A Jupyter server extension: a kernel busy training counts as activity.

Jupyter's idea of activity is a message or a request; a kernel that runs a long
training loop without printing sends none, and the idle culler would stop it. While
any kernel is busy this bumps a ``*_last_activity`` setting, which the server counts
(`ServerApp.web_app.last_activity`) and reports to the hub.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tornado.ioloop import PeriodicCallback

CHECK_EVERY_S = 5
KEY = "workshop_busy_kernels_last_activity"


def _jupyter_server_extension_points():
    return [{"module": "workshop.hub.activity"}]


def _load_jupyter_server_extension(serverapp) -> None:
    settings = serverapp.web_app.settings
    kernels = serverapp.kernel_manager

    def check() -> None:
        if any(getattr(k, "execution_state", "") == "busy" for k in kernels._kernels.values()):
            settings[KEY] = datetime.now(UTC)

    PeriodicCallback(check, CHECK_EVERY_S * 1000).start()
    serverapp.log.info("workshop: busy kernels count as activity")
