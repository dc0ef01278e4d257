"""Widgets shared by the pages: export menus and URL query-parameter state."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy

import streamlit as st

from memviz.figures.export import figure_bytes, figure_pack, static_export_status, table_bytes

MIME = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
    "csv": "text/csv",
    "parquet": "application/octet-stream",
    "zip": "application/zip",
}


def export_menu(fig, name: str, key: str) -> None:
    """A popover with the figure as PNG, SVG, PDF (generated on click) and self-contained HTML."""
    ok, message = static_export_status()
    with st.popover("Export", icon=":material/download:"):
        for fmt in ("png", "svg", "pdf", "html"):
            st.download_button(
                fmt.upper(),
                data=partial(figure_bytes, fig, fmt),
                file_name=f"{name}.{fmt}",
                mime=MIME[fmt],
                key=f"{key}-{fmt}",
                disabled=fmt != "html" and not ok,
                help=None if ok or fmt == "html" else message,
                on_click="ignore",
            )
        if not ok:
            st.caption(message)


def table_downloads(frame, name: str, key: str) -> None:
    """CSV and Parquet download buttons for a table."""
    c1, c2 = st.columns(2)
    for col, fmt in ((c1, "csv"), (c2, "parquet")):
        col.download_button(
            fmt.upper(),
            data=partial(table_bytes, frame, fmt),
            file_name=f"{name}.{fmt}",
            mime=MIME[fmt],
            key=f"{key}-{fmt}",
            on_click="ignore",
        )


def figure_pack_button(
    figures: dict, tables: dict, settings: dict, name: str, key: str, images: dict | None = None
) -> None:
    """One zip of the current view: every figure in every format, the tables, the image grids (PNG)
    and the settings (JSON)."""
    st.download_button(
        "Figure pack (zip)",
        data=partial(figure_pack, figures, tables, settings, images=images),
        file_name=f"{name}.zip",
        mime=MIME["zip"],
        key=key,
        on_click="ignore",
        icon=":material/folder_zip:",
        help="PNG, SVG, PDF and HTML of every figure, CSV and "
        "Parquet of the tables, and settings.json with what made this view.",
    )


MAX_QUERY_CHARS = 4000  # longer URL values are ignored (a prompt is at most 1,000 characters)


def query_value(
    name: str, default: Any, cast: Callable[[str], Any] = str, lo: float | None = None, hi: float | None = None
) -> Any:
    """A page setting from the URL (``?name=value``), or ``default`` when absent, unreadable, too long,
    not finite or outside [``lo``, ``hi``]: a link can never put a page into a state it cannot draw."""
    raw = st.query_params.get(name)
    if raw is None or len(raw) > MAX_QUERY_CHARS:
        return default
    try:
        value = cast(raw)
    except (TypeError, ValueError, OverflowError):
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return default
    return value


def column_help(frame, **extra) -> dict:
    """``st.dataframe`` column configs with each known column's meaning (``memviz.glossary.COLUMNS``) as
    its header's help, numbers to 3 significant digits; ``extra`` overrides."""
    from memviz.glossary import COLUMNS

    numeric = set(frame.select_dtypes("number").columns)
    return {
        c: (
            st.column_config.NumberColumn(help=COLUMNS[c], format="%.3g")
            if c in numeric and c not in ("row", "label", "copies")
            else st.column_config.Column(help=COLUMNS[c])
        )
        for c in frame.columns
        if c in COLUMNS
    } | extra


def verdict_badge(verdict: str) -> str:
    """Streamlit markdown for a verdict (or planted kind) in its one colour (``figures.VERDICT_COLOURS``)."""
    from memviz.figures.builders import VERDICT_COLOURS

    return f":{VERDICT_COLOURS.get(verdict, ('', 'blue'))[1]}-badge[{verdict}]"


def query_index(name: str, options: list) -> int:
    """The place in ``options`` of the option named by ``?name``; 0 when absent or not an option."""
    wanted = query_value(name, None)
    return options.index(wanted) if wanted in options else 0


def query_t0(grid, default: float) -> float:
    """``?t0`` snapped to the nearest point of the model's t grid (in log t); ``default`` when absent
    or not a positive finite number."""
    import math

    wanted = query_value("t0", default, float, lo=1e-12, hi=1e12)
    return min(grid, key=lambda t: abs(math.log(t) - math.log(wanted)))


def set_query(**values: Any) -> None:
    """Write page settings into the URL so that the view can be shared and reloaded."""
    for name, value in values.items():
        if value is None:
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


MAX_LINKED = 500  # selections up to this many rows travel in the URL (?sel=); larger ones export as CSV


def query_rows(name: str, allowed) -> "numpy.ndarray":
    """Training rows listed in ``?name=3,17,42`` that are among ``allowed`` (others are dropped): (k,)."""
    import numpy as np

    raw = query_value(name, "")
    rows = [int(v) for v in raw.split(",")[:MAX_LINKED] if v.strip().isdigit()] if raw else []
    return np.asarray(rows, dtype=np.int64)[np.isin(rows, allowed)] if rows else np.zeros(0, dtype=np.int64)


def query_region(name: str = "zoom") -> tuple[float, float, float, float] | None:
    """A map region from the URL (``?zoom=x0,x1,y0,y1``, four finite numbers), or None."""
    import math

    parts = query_value(name, "").split(",")
    try:
        region = tuple(float(v) for v in parts)
    except ValueError:
        return None
    return region if len(region) == 4 and all(math.isfinite(v) for v in region) else None


def zoom_controls(xy, chosen, meta: dict, name: str = "zoom") -> None:
    """Under a map drawn as an overview (``meta``: ``map_figure``'s {"total", "shown", "drawn"}): a button
    that zooms to the selected points' bounding box (every point in it drawn once few enough) and one
    back to the whole map; the region travels in the URL (``?zoom=``)."""
    import numpy as np

    zoomed = query_region(name) is not None
    if meta["drawn"] == meta["total"] and not zoomed:
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.caption(
        f"Drawn: {meta['drawn']:,} of the {meta['shown']:,} points "
        + ("in this region" if zoomed else "on the map")
        + (", over the density of all of them (grey). " if meta["drawn"] < meta["shown"] else ". ")
        + "Zoom to a selection to draw its points one by one."
    )
    if len(chosen) and c2.button("Zoom to the selection", icon=":material/zoom_in:", key=f"{name}-in"):
        box = np.asarray(xy)[np.asarray(chosen)]
        pad = 0.02 * max(float(np.ptp(box[:, 0])), float(np.ptp(box[:, 1])), 1e-3)
        x0, y0 = box.min(0) - pad
        x1, y1 = box.max(0) + pad
        set_query(**{name: ",".join(f"{v:.6g}" for v in (x0, x1, y0, y1))})
        st.rerun()
    if zoomed and c3.button("Whole map", icon=":material/zoom_out_map:", key=f"{name}-out"):
        set_query(**{name: None})
        st.rerun()


def map_select(fig, key: str, xy=None) -> "numpy.ndarray":
    """Draw a map (``memviz.figures.builders.map_figure``) with click, box and lasso selection; the global indices
    of the points selected (its ``customdata``), (k,), empty when nothing is. Given the map's training
    coordinates ``xy`` (N, 2), a box or lasso selects every training point it encloses, drawn or not
    (``points_in_selection``: a map of a million points draws a sample)."""
    import numpy as np

    from memviz.figures.builders import points_in_selection, selected_indices

    event = st.plotly_chart(
        fig,
        key=key,
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"scrollZoom": True, "displaylogo": False},
    )
    selection = event.selection if event else None
    picked = selected_indices(selection)
    if xy is not None and isinstance(selection, dict) and (selection.get("box") or selection.get("lasso")):
        picked = np.union1d(points_in_selection(xy, selection), picked[picked >= len(xy)])  # generated ones kept
    return picked


SIZES = (300, 600, 1000, 2000, 5000)


def images_analysed(container) -> int:
    """How many training images a page analyses (every planted one, then a seeded sample), from the
    URL (``?n``, snapped to the nearest offered size) or 600."""
    wanted = min(SIZES, key=lambda s: abs(s - query_value("n", 600, int, lo=1, hi=10**9)))
    return container.select_slider(
        "Images analysed",
        SIZES,
        value=wanted,
        help="Every planted image, then ordinary ones; computed once, cached on disk.",
    )


def require_images(ws) -> None:
    """Stop the page, with a sentence, when the workspace has no training images to show."""
    if ws is None or ws.train is None:
        st.stop()
    if ws.train.images.shape[-1] == 1:
        st.info("This dataset holds points, not images; there is nothing to show here for it.")
        st.stop()
