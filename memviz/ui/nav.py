"""The app's frame: its navigation over the pages in ``pages/``, in one place.

``app.py`` calls ``run_app()``. A deep link to a freshly started server (``/samples`` before any
session has called ``st.navigation``) makes Streamlit run ``pages/samples.py`` on its own, as its
legacy multipage discovery of ``pages/`` would; each page therefore starts with ``frame()``, which,
when the page runs outside the navigation, runs the whole app around it (the navigation then
picks the same page from the URL) and stops, so the page shows inside the app's frame.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

_PACKAGE = Path(__file__).resolve().parents[1]
_local = threading.local()  # each session's script runs in its own thread

PAGES = [
    ("overview", "Overview", ":material/home:"),
    ("samples", "Samples", ":material/grid_view:"),
    ("prompts", "Prompts", ":material/chat:"),
    ("scan", "Scan", ":material/checklist:"),
    ("manifold", "Manifold", ":material/scatter_plot:"),
    ("detection", "Detection", ":material/monitoring:"),
    ("mitigation", "Mitigation", ":material/healing:"),
]


def app_root() -> Path:
    """The folder holding ``app.py`` and ``pages/``: the checkout's top level, or the copy the wheel
    carries inside the package (``memviz/app/``)."""
    installed = _PACKAGE / "app"
    return installed if (installed / "app.py").is_file() else _PACKAGE.parent


def run_app() -> None:
    """The page config and the navigation over every page; runs the page the URL names."""
    st.set_page_config(page_title="memviz", page_icon=":material/search:", layout="wide")
    root = app_root() / "pages"
    nav = st.navigation(
        [
            st.Page(str(root / f"{name}.py"), title=title, icon=icon, url_path=name, default=name == "overview")
            for name, title, icon in PAGES
        ]
    )
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        nav.run()
    finally:
        _local.depth -= 1


def frame() -> None:
    """First line of every page: outside the navigation (a deep link to a fresh server), run the app
    around this page, then stop this run."""
    if getattr(_local, "depth", 0) == 0:
        run_app()
        st.stop()
