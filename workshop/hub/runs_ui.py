"""A participant's own MLflow UI: "Runs (MLflow)" in their JupyterLab launcher.

    python -m workshop.hub.runs_ui SOCKET PREFIX    # started by jupyter-server-proxy

jupyter-server-proxy starts it on first use, as the participant, on a Unix socket in a
folder only they can enter, and forwards the whole path (``absolute_url``), so MLflow
serves its pages, static files and API under ``PREFIX`` (``/user/<name>/mlflow``, through
``--static-prefix``). It reads the participant's own store ($ARTIFACTS/mlflow.db, named by
`workshop.tracking`); a store MLflow cannot open is answered with tracking's one sentence.
"""

from __future__ import annotations

import html
import os
import shlex
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from workshop import tracking

# MLflow's server starts a job runner and seven task consumers (about 200 MB each) for its
# GenAI jobs by default; a participant's 3 GB holds none of them.
ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_args(socket_path: str, prefix: str, store: Path) -> list[str]:
    """`mlflow server` for one participant's store, listening on ``socket_path`` only.

    Every Host and Origin is accepted: only the participant's authenticated proxy reaches
    the socket, and the room's address (a name, an IP, TLS in front) is not known here;
    MLflow's default (localhost and private IPs) refused the room's host name. Cross-site
    writes stay impossible: the API takes JSON bodies only, whose cross-origin preflight
    carries no hub cookie.
    """
    return [
        "server",
        "--backend-store-uri",
        f"sqlite:///{store}",
        "--default-artifact-root",
        (store.parent / "mlruns").as_uri(),
        "--no-serve-artifacts",
        "--static-prefix",
        prefix.rstrip("/"),
        "--workers",
        "1",
        "--allowed-hosts",
        "*",
        "--cors-allowed-origins",
        "*",
        "--uvicorn-opts",
        f"--uds {shlex.quote(socket_path)}",
    ]


PAGE = """<!doctype html><html><head><meta charset=utf-8><title>Runs</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em"><h1>Your runs cannot be shown</h1>
<p>{sentence}</p></body></html>"""


class _Sentence(BaseHTTPRequestHandler):
    sentence = ""

    def do_GET(self):  # noqa: N802
        body = PAGE.format(sentence=html.escape(self.sentence)).encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_GET

    def log_message(self, *args):
        pass  # a Unix socket's client has no address to log


def serve_sentence(socket_path: str, sentence: str) -> None:
    """Answer every request on ``socket_path`` with ``sentence`` (in place of MLflow)."""
    _Sentence.sentence = sentence
    with socketserver.ThreadingUnixStreamServer(socket_path, _Sentence) as server:
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m workshop.hub.runs_ui SOCKET PREFIX", file=sys.stderr)
        return 2
    socket_path, prefix = argv
    store = tracking.store_path()
    store.parent.mkdir(parents=True, exist_ok=True)
    os.chdir(store.parent)  # a new store's Default experiment keeps its files beside the others
    try:
        tracking.client()  # opens the store (or makes it), as the trainers will
    except tracking.TrackingError as err:
        print(err, file=sys.stderr)
        serve_sentence(socket_path, str(err))
        return 1
    os.environ.update(ENV)
    from mlflow.cli import cli

    return cli.main(server_args(socket_path, prefix, store), prog_name="mlflow")


if __name__ == "__main__":
    sys.exit(main())
