"""Exercise results and finished runs from a participant to the instructor's progress view.

Inside the hosted workshop the spawner sets ``WORKSHOP_PROGRESS_URL`` (the service's
``api/results``; finished runs go to ``api/runs`` beside it) and JupyterHub sets
``JUPYTERHUB_API_TOKEN`` (the participant's own server token, which their kernels, their
demo and the jobs it starts inherit). The progress service asks the hub whose token it is,
so nobody can record in another's name. Outside the hub (``make lab``, the tests) nothing
is recorded. A failure to record never breaks the exercise or the run: the participant's
own answer and their own run store are what stands.
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request


def _post(endpoint: str, body: dict, stands: str) -> bool:
    """POST ``body`` to the progress service's ``endpoint``; True when it stored it."""
    url = os.environ.get("WORKSHOP_PROGRESS_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not (url and token):
        return False
    request = urllib.request.Request(
        urllib.parse.urljoin(url, endpoint),
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 201
    except (urllib.error.URLError, OSError):
        print(f"(the instructor's progress view could not be reached; {stands})")
        return False


def record(exercise: str, passed: bool, mistake: str = "") -> bool:
    """Send one exercise check's result; True when the progress service stored it."""
    body = {"exercise": exercise, "passed": bool(passed), "mistake": mistake[:500]}
    return _post("results", body, "your result stands")


def report_run(module: str, run_id: str, metric: str, value: float) -> bool:
    """Send a finished run's headline metric (e.g. val_accuracy, AP); True when stored.

    Called by `workshop.tracking.Tracker` when a run ends FINISHED; the service keeps
    each participant's best run per module for the instructor's page."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(value):
        return False
    body = {"module": module, "run_id": run_id, "metric": metric, "value": value}
    return _post("runs", body, "your run is in your own store")
