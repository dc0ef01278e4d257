"""Samples: browse the training data, filtered by label and planted kind."""

import numpy as np
import streamlit as st

from memviz.figures import image_grid
from memviz.ui.loaders import to_display, workspace_picker

st.title("Samples")
ws = workspace_picker()
if ws is None or ws.train is None:
    st.stop()
train = ws.train
if train.images.shape[-1] == 1:
    st.info("This dataset holds points, not images; its map view comes with the Manifold page.")
    st.stop()
kinds = np.asarray(train.meta.get("kind", np.full(len(train), "none")))
names = train.class_names or []
c1, c2, c3 = st.columns(3)
kind = c1.selectbox("Planted kind", ["all", "none", "DD-Mem", "OD-Mem"])
label = c2.selectbox("Label", ["all"] + names) if names else "all"
per_page = c3.select_slider("Per page", [32, 64, 128, 256], value=64)
mask = np.ones(len(train), bool)
if kind != "all":
    mask &= kinds == kind
if label != "all":
    mask &= train.labels == names.index(label)
index = np.flatnonzero(mask)
pages = max(1, int(np.ceil(len(index) / per_page)))
page = st.number_input(f"Page (of {pages})", 1, pages, 1) - 1
shown = index[page * per_page:(page + 1) * per_page]
st.caption(f"{len(index):,} images match; showing {len(shown)}.")
if len(shown):
    st.image(image_grid(to_display(train.images[shown]), nrow=16, scale=4))
