"""The Manifold page's map on synthetic points, for bench/map_scale.py: ``?n=`` points in 12 blobs,
coloured by a verdict-like label, with the page's hover values, drawn by the same builder
(``memviz.figures.builders.map_figure``) and widget (``memviz.ui.widgets.map_select``)."""

import time

import numpy as np
import streamlit as st

import memviz.figures.builders as figures
from memviz.figures.builders import map_figure
from memviz.ui.widgets import map_select, query_value

_library_selected_indices = figures.selected_indices


def _first(custom):
    """A point's global index from its customdata: a list, or (a typed-array row, as Streamlit
    returns it when the figure sent customdata as a typed array) a dict {"0": ..., "1": ...}."""
    if isinstance(custom, dict):
        return custom.get("0", custom.get(0))
    return custom[0] if isinstance(custom, (list, tuple)) else custom


def _selected_indices(selection: dict) -> np.ndarray:
    """The library's ``selected_indices``; where it cannot read the event (its customdata rows come
    back as dicts), the same reading through ``_first``, and the page says so."""
    try:
        return _library_selected_indices(selection)
    except TypeError:
        st.session_state["workaround"] = True
        points = (selection or {}).get("points", []) if isinstance(selection, dict) else []
        out = [_first(p.get("customdata")) for p in points]
        return np.unique(np.asarray([int(v) for v in out if v is not None], dtype=np.int64))


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(n, 2) coordinates, (n,) labels and the hover columns; the bench builds the same figure to size its JSON."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (12, 2))
    blob = rng.integers(0, 12, n)
    xy = (centres[blob] + rng.normal(0, 1, (n, 2))).astype(np.float32)
    label = np.where(rng.random(n) < 0.01, "DD-Mem", np.where(rng.random(n) < 0.02, "OD-Mem", "not memorized"))
    hover = {"label": blob, "FLIPD": rng.normal(40, 10, n), "LID*": rng.normal(12, 3, n), "copies": np.ones(n)}
    return xy, label.astype(object), hover


def figure(n: int, data=synthetic):
    """The page's figure of ``data(n)``, and the seconds it took to build (not counting the data)."""
    xy, label, hover = data(n)
    t = time.perf_counter()
    fig = map_figure(xy, color=label, color_name="MMH verdict", hover=hover, title=f"{n:,} synthetic points")
    return fig, time.perf_counter() - t


def page() -> None:
    figures.selected_indices = _selected_indices  # map_select imports it from memviz.figures.builders at call time
    n = query_value("n", 5000, int, lo=1, hi=5_000_000)
    data = st.cache_data(max_entries=2)(synthetic)  # data cached, as on the page; figure not
    fig, built = figure(n, data)
    st.caption(f"built in {built:.3f} s; drawn {fig.layout.meta['drawn']:,} of {n:,}")
    chosen = map_select(fig, key="map", xy=data(n)[0])  # as the page: a lasso takes every point it encloses
    # a marker of its own, in plain text, for the bench to find in document.body.innerText
    st.text(
        f"BENCH-SELECTED {len(chosen)}" + (" (workaround)" if st.session_state.get("workaround") else "")
        if len(chosen)
        else "BENCH-NOTHING-SELECTED"
    )


if __name__ == "__main__":  # as `streamlit run` runs it; bench/map_scale.py imports figure()
    page()
