"""The Manifold page's map on synthetic points, for bench/map_scale.py: ``?n=`` points in 12 blobs,
coloured by a verdict-like label, with the page's hover values, drawn by the same builder
(``memviz.figures.map_figure``) and widget (``memviz.ui.widgets.map_select``)."""

import time

import numpy as np
import streamlit as st

from memviz.figures import map_figure
from memviz.ui.widgets import map_select, query_value


@st.cache_data(max_entries=2)
def points(n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (12, 2))
    blob = rng.integers(0, 12, n)
    xy = (centres[blob] + rng.normal(0, 1, (n, 2))).astype(np.float32)
    label = np.where(rng.random(n) < 0.01, "DD-Mem", np.where(rng.random(n) < 0.02, "OD-Mem", "not memorized"))
    hover = {"label": blob, "FLIPD": rng.normal(40, 10, n), "LID*": rng.normal(12, 3, n), "copies": np.ones(n)}
    return xy, label.astype(object), hover


n = query_value("n", 5000, int, lo=1, hi=5_000_000)
xy, label, hover = points(n)
t = time.perf_counter()
fig = map_figure(xy, color=label, color_name="MMH verdict", hover=hover, title=f"{n:,} synthetic points")
st.caption(f"built in {time.perf_counter() - t:.3f} s")
chosen = map_select(fig, key="map")
st.write(f"selected: {len(chosen)}" if len(chosen) else "nothing selected")
