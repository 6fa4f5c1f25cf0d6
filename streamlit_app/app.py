"""The workshop's web app, DIGITS in the browser: Test | Data sets | Runs | New run | Job | Compare.

    make app        # streamlit run streamlit_app/app.py on http://127.0.0.1:8501

Each page is one file in ``streamlit_app/pages/`` that only wires widgets to the
predictor, the data catalog, the run records (``workshop.tracking``) and the jobs
(``workshop.jobs``). Test (today's demo) is the default page, at ``/``; the others
sit at ``/<url path>`` of ``PAGES``, e.g. ``/job?run=<run_id>``. A page whose file is
not there is left out. ``WORKSHOP_PAGES=test`` (the room's shared demo at
``/services/demo/``, run as user nobody) shows only those pages (comma-separated url
paths): no training and no data preparation there.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
# (file in pages/, title, icon, url path), in the navigation's order; the first is the default
PAGES = [
    ("test.py", "Test", ":material/image_search:", "test"),
    ("datasets.py", "Data sets", ":material/photo_library:", "datasets"),
    ("runs.py", "Runs", ":material/table_rows:", "runs"),
    ("new_run.py", "New run", ":material/add_circle:", "new_run"),
    ("job.py", "Job", ":material/monitoring:", "job"),
    ("compare.py", "Compare", ":material/compare_arrows:", "compare"),
]


def shown_pages(environ=os.environ) -> list[tuple[str, str, str, str]]:
    """The PAGES whose file exists, limited to $WORKSHOP_PAGES's url paths when it is set
    (Test alone when none of them is known)."""
    wanted = {w.strip() for w in environ.get("WORKSHOP_PAGES", "").split(",") if w.strip()}
    found = [
        page
        for page in PAGES
        if (HERE / "pages" / page[0]).is_file() and (not wanted or page[3] in wanted)
    ]
    return found or PAGES[:1]


def through_navigation() -> None:
    """Call first in every page: a page must run through ``main``'s st.navigation.

    Streamlit treats a ``pages/`` folder beside the main script as its legacy multipage
    mode until a script calls st.navigation, so the first request of a fresh server to a
    page's URL (``/job``) would run that file alone: outside ``PAGES`` and past
    ``$WORKSHOP_PAGES``. Such a run is handed to ``main`` here (in the same run, so a
    click it carries still counts), and the file's own run stops.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        main()  # st.navigation ends the legacy mode, then runs the page it allows
        st.stop()


def from_the_proxy(key: str | None = None) -> bool:
    """True unless $WORKSHOP_PROXY_KEY is set and this request lacks it.

    In the room a participant's own app (every page: their runs, training as them) listens
    on a loopback port that every account on the machine can reach; their JupyterLab's
    proxy, behind their login, adds the key to each request it forwards (the hub's
    SERVER_CONFIG), and only the proxy and this process know it.
    """
    key = os.environ.get("WORKSHOP_PROXY_KEY", "") if key is None else key
    sent = st.context.headers.get("X-Workshop-Key", "") or ""
    return not key or hmac.compare_digest(sent.encode(), key.encode())


def main() -> None:
    st.set_page_config(page_title="Workshop: DIGITS in the browser", page_icon="🔎", layout="wide")
    if not from_the_proxy():
        st.error("This app answers through its owner's JupyterLab only (Demo in their launcher).")
        st.stop()
    pages = [
        st.Page(f"pages/{file}", title=title, icon=icon, url_path=url, default=k == 0)
        for k, (file, title, icon, url) in enumerate(shown_pages())
    ]
    st.navigation(pages, position="top" if len(pages) > 1 else "hidden").run()


if __name__ == "__main__":  # streamlit runs it so; a test imports shown_pages
    main()
