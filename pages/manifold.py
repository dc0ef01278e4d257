"""Manifold: the UMAP map of the analysed training images (or of every distinct one: a million points
draw as their density and a sample, every point once zoomed in), coloured by any metric; click, box
or lasso selection shows the selected images, and the selection exports as CSV."""

from memviz.ui.nav import frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import numpy as np
import streamlit as st

from memviz.data import to_unit
from memviz.figures.builders import image_grid, map_figure
from memviz.lid import DEFAULT_T0
from memviz.ui.loaders import map_table, study_of, workspace_picker
from memviz.ui.widgets import (
    MAX_LINKED,
    column_help,
    export_menu,
    images_analysed,
    map_select,
    query_index,
    query_region,
    query_rows,
    query_t0,
    require_images,
    set_query,
    table_downloads,
    zoom_controls,
)

COLOURS = {
    "FLIPD (LID_theta)": "flipd",
    "LID* (MLE)": "lid_mle",
    "LID* (lPCA)": "lid_lpca",
    "MMH verdict": "verdict",
    "planted kind": "kind",
    "label": "label",
    "nearest-neighbour distance": "nn_distance",
}

GRID = 128  # images shown of a selection
POINTS = {"analysed images": "analysed", "every training image": "all"}

st.title("Manifold")
ws = workspace_picker()
require_images(ws)
c1, c2, c3 = st.columns([2, 2, 1.4])
names = list(COLOURS)
colour = c1.selectbox("Colour by", names, index=query_index("colour", names))
size = images_analysed(c2)
kinds = list(POINTS)
points = c3.radio(
    "Points",
    kinds,
    index=query_index("points", kinds),
    help="Every training image: the map of all distinct images (FLIPD and the verdict only for the analysed ones).",
)
t0 = query_t0(tuple(ws.ts), DEFAULT_T0)
set_query(colour=colour, n=size, points=points if POINTS[points] == "all" else None)
study = study_of(ws, size)
table = study.table(t0) if POINTS[points] == "analysed" else map_table(study, t0)
column = COLOURS[colour]
colours = table[column].astype(str).to_numpy() if column == "label" else table[column].to_numpy()
rows = table["row"].to_numpy()
linked = query_rows("sel", rows)  # a shared link's selection, ringed until the reader draws another
xy = table[["x", "y"]].to_numpy()
fig = map_figure(
    xy,
    color=colours,
    color_name=colour,
    index=rows,
    hover={"label": table.label, "FLIPD": table.flipd, "LID*": table.lid_mle, "copies": table.copies},
    highlight=np.flatnonzero(np.isin(rows, linked)) if len(linked) else None,
    title=f"UMAP of {len(table):,} {'analysed' if POINTS[points] == 'analysed' else 'distinct'} training images, "
    f"coloured by {colour}",
    region=query_region(),  # a million points: the density and a sample, every point once zoomed in close
)
st.caption(
    "Each point is one training image; nearby points have similar pixels (UMAP of the images "
    "in the model's space, or of the chosen image features; the axes have no units). Colour shows the chosen metric; hover for its values. Click a "
    "point, or draw a box or a lasso, to open those images below; the selection goes into the URL."
)
chosen = map_select(fig, key="map", xy=xy)  # a box or lasso takes every point it encloses, drawn or not
zoom_controls(xy, chosen[chosen < len(table)], fig.layout.meta)
export_menu(fig, "map", key="exp-map")
if len(chosen):
    chosen = rows[chosen[chosen < len(table)]]
    set_query(sel=",".join(map(str, chosen)) if len(chosen) <= MAX_LINKED else None)
elif len(linked):
    chosen = linked
    if st.button("Clear the selection", icon=":material/close:"):
        set_query(sel=None)
        st.rerun()
if len(chosen) == 0:
    st.caption("Click a point, or draw a box or a lasso, to see the images.")
    st.stop()
picked = table[np.isin(rows, chosen)]
st.subheader(f"{len(picked):,} selected" + (f" (the first {GRID} shown)" if len(picked) > GRID else ""))
st.image(
    image_grid(to_unit(study.images(picked.row.to_numpy()[:GRID])), nrow=16, scale=3),
    caption="the selected images, in the table's order; open one on the Samples page from its link",
)
st.dataframe(
    picked.assign(open=[f"/samples?row={r}&n={size}" for r in picked.row]),
    hide_index=True,
    height=200,
    column_order=["open", *picked.columns],
    column_config=column_help(
        picked, open=st.column_config.LinkColumn("open", display_text="Samples ↗", help="This row on the Samples page")
    ),
)
table_downloads(picked, "selection", key="selection")
