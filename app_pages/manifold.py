"""Manifold: the UMAP map of the analysed training images, coloured by any metric; click, box or
lasso selection shows the selected images, and the selection exports as CSV."""

import numpy as np
import streamlit as st

from memviz.data import to_unit
from memviz.figures import image_grid, map_figure, selected_indices
from memviz.lid import DEFAULT_T0
from memviz.ui.loaders import study_of, workspace_picker
from memviz.ui.widgets import (
    export_menu,
    images_analysed,
    query_index,
    query_t0,
    require_images,
    set_query,
    table_downloads,
)

COLOURS = {"FLIPD (LID_theta)": "flipd", "LID* (MLE)": "lid_mle", "LID* (lPCA)": "lid_lpca",
           "MMH verdict": "verdict", "planted kind": "kind", "label": "label",
           "nearest-neighbour distance": "nn_distance"}

st.title("Manifold")
ws = workspace_picker()
require_images(ws)
c1, c2 = st.columns(2)
names = list(COLOURS)
colour = c1.selectbox("Colour by", names, index=query_index("colour", names))
size = images_analysed(c2)
t0 = query_t0(tuple(ws.ts), DEFAULT_T0)
set_query(colour=colour, n=size)
study = study_of(ws, size)
table = study.table(t0)
column = COLOURS[colour]
fig = map_figure(table[["x", "y"]].to_numpy(), color=table[column].to_numpy(), color_name=colour,
                 hover=[f"row {r.row} label {r.label} · {r.verdict} · FLIPD {r.flipd:.1f}" for r in table.itertuples()],
                 title=f"UMAP of {len(table):,} training images, coloured by {colour}")
event = st.plotly_chart(fig, key="map", on_select="rerun", selection_mode=("points", "box", "lasso"))
export_menu(fig, "map", key="exp-map")
chosen = selected_indices(event.selection if event else None)
chosen = chosen[chosen < len(table)]
if len(chosen) == 0:
    st.caption("Click a point, or draw a box or a lasso, to see the images.")
    st.stop()
st.subheader(f"{len(chosen)} selected")
st.image(image_grid(to_unit(study.images(table.row.to_numpy()[np.asarray(chosen)[:128]])), nrow=16, scale=3))
picked = table.iloc[chosen]
st.dataframe(picked, hide_index=True, height=200)
table_downloads(picked, "selection", key="selection")
