"""Widgets shared by the pages: export menus and URL query-parameter state."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import streamlit as st

from memviz.export import figure_bytes, figure_pack, static_export_status, table_bytes

MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html",
        "csv": "text/csv", "parquet": "application/octet-stream", "zip": "application/zip"}


def export_menu(fig, name: str, key: str) -> None:
    """A popover with the figure as PNG, SVG, PDF (generated on click) and self-contained HTML."""
    ok, message = static_export_status()
    with st.popover("Export", icon=":material/download:"):
        for fmt in ("png", "svg", "pdf", "html"):
            st.download_button(fmt.upper(), data=partial(figure_bytes, fig, fmt), file_name=f"{name}.{fmt}",
                               mime=MIME[fmt], key=f"{key}-{fmt}", disabled=fmt != "html" and not ok,
                               help=None if ok or fmt == "html" else message, on_click="ignore")
        if not ok:
            st.caption(message)


def table_downloads(frame, name: str, key: str) -> None:
    """CSV and Parquet download buttons for a table."""
    c1, c2 = st.columns(2)
    for col, fmt in ((c1, "csv"), (c2, "parquet")):
        col.download_button(fmt.upper(), data=partial(table_bytes, frame, fmt), file_name=f"{name}.{fmt}",
                            mime=MIME[fmt], key=f"{key}-{fmt}", on_click="ignore")


def figure_pack_button(figures: dict, tables: dict, settings: dict, name: str, key: str,
                       images: dict | None = None) -> None:
    """One zip of the current view: every figure in every format, the tables, the image grids (PNG)
    and the settings (JSON)."""
    st.download_button("Figure pack (zip)", data=partial(figure_pack, figures, tables, settings, images=images),
                       file_name=f"{name}.zip", mime=MIME["zip"], key=key, on_click="ignore",
                       icon=":material/folder_zip:", help="PNG, SVG, PDF and HTML of every figure, CSV and "
                       "Parquet of the tables, and settings.json with what made this view.")


def query_value(name: str, default: Any, cast: Callable[[str], Any] = str) -> Any:
    """A page setting from the URL (``?name=value``), or ``default`` when absent or unreadable."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except (TypeError, ValueError):
        return default


def set_query(**values: Any) -> None:
    """Write page settings into the URL so that the view can be shared and reloaded."""
    for name, value in values.items():
        if value is None:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


SIZES = (300, 600, 1000, 2000, 5000)


def images_analysed(container) -> int:
    """How many training images a page analyses (every planted one, then a seeded sample), from the
    URL (``?n``, snapped to the nearest offered size) or 600."""
    wanted = query_value("n", 600, lambda v: min(SIZES, key=lambda s: abs(s - int(v))))
    return container.select_slider("Images analysed", SIZES, value=wanted,
                                   help="Every planted image, then ordinary ones; computed once, cached on disk.")


def require_images(ws) -> None:
    """Stop the page, with a sentence, when the workspace has no training images to show."""
    if ws is None or ws.train is None:
        st.stop()
    if ws.train.images.shape[-1] == 1:
        st.info("This dataset holds points, not images; there is nothing to show here for it.")
        st.stop()
