"""Samples: training images sorted and filtered by any metric; pick one to see, side by side,
why it is or is not memorized (LID, spectrum, nearest training images, place on the map)."""

import numpy as np
import streamlit as st

from memviz.analysis import BROWSE_TS, sample_view, sharpness_counts
from memviz.figures import flipd_curve_figure, image_grid, map_figure, spectrum_figure
from memviz.hessian.spectrum import EXACT_MAX_DIM
from memviz.ui.loaders import load_browse, to_display, workspace_picker
from memviz.ui.widgets import (
    export_menu,
    figure_pack_button,
    images_analysed,
    query_value,
    require_images,
    set_query,
    table_downloads,
)

METRICS = {"FLIPD (LID_theta)": "flipd", "LID* (MLE)": "lid_mle", "LID* (lPCA)": "lid_lpca",
           "nearest-neighbour distance": "nn_distance", "index": "index"}



def _neighbors_table(view):
    import pandas as pd

    return pd.DataFrame({"neighbor": view.neighbors, "distance": view.distances})


st.title("Samples")
ws = workspace_picker()
require_images(ws)
c1, c2, c3, c4, c5 = st.columns(5)
t0 = c5.select_slider("t0", BROWSE_TS, value=query_value("t0", 0.05, lambda v: min(BROWSE_TS, key=lambda t: abs(
    t - float(v)))), help="The diffusion time at which FLIPD and the spectrum are read (cached for every t0).")
verdict = c2.selectbox("MMH verdict", ["all", "not memorized", "OD-Mem", "DD-Mem"])
kind = c3.selectbox("Planted kind", ["all", "none", "DD-Mem", "OD-Mem"])
size = images_analysed(c4)
b = load_browse(ws.path, size, t0, ws.data_path)
table = b.table
sharp_key = ("n_sharp", ws.path, ws.data_path, size, t0)
if ws.model.dim <= EXACT_MAX_DIM and sharp_key not in st.session_state and st.button(
        "Add the sharpness count (n_sharp) of these images", icon=":material/bolt:",
        help="Exact Hessian spectra, about half a second per image on a CPU; cached on disk."):
    bar = st.progress(0.0, "Hessian spectra…")
    st.session_state[sharp_key] = sharpness_counts(
        ws.model, b, on_batch=lambda done, n: bar.progress(done / n, f"Hessian spectra: {done} of {n} images"))
    st.rerun()  # redraw without the button, with the new column and sort option
if sharp_key in st.session_state:
    table = table.assign(n_sharp=st.session_state[sharp_key])
    METRICS["sharpness count (n_sharp, descending)"] = "minus_n_sharp"
    table = table.assign(minus_n_sharp=-table.n_sharp)
sort = c1.selectbox("Sort by", list(METRICS), help="Low FLIPD or LID*, many sharp directions: candidates for "
                    "memorization.")
shown = table[((table.verdict == verdict) | (verdict == "all")) & ((table.kind == kind) | (kind == "all"))]
shown = shown.sort_values(METRICS[sort], kind="stable")
st.caption(f"{len(shown):,} of {len(table):,} analysed images; FLIPD at t0 = {b.t0} "
           f"(verdict threshold {b.threshold:.1f}: 5% of held-out images below).")
if len(shown):
    st.image(image_grid(to_display(b.pixels[shown["index"].to_numpy()[:64].copy()]), nrow=16, scale=3),
             caption=f"the first {min(64, len(shown))} by {sort}")
event = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="table",
                     height=220)
table_downloads(shown, "samples", key="samples-table")
picked = event.selection.rows if event and event.selection else []
default = int(shown["index"].iloc[picked[0]]) if picked else query_value("sample", int(shown["index"].iloc[0])
                                                                         if len(shown) else 0, int)


def _step(order: np.ndarray, delta: int) -> None:
    """Move the picked sample one place along ``order`` (the sorted, filtered indices)."""
    where = np.flatnonzero(order == st.session_state.get("sample", -1))
    st.session_state["sample"] = int(order[(where[0] + delta) % len(order)] if len(where) else order[0])


@st.fragment
def sample_panel(default: int) -> None:
    """The side-by-side panel; a fragment, so that picking another sample redraws only this."""
    order = shown["index"].to_numpy()
    back, box, ahead = st.columns([1, 3, 1], vertical_alignment="bottom")
    back.button("Previous", icon=":material/arrow_back:", on_click=_step, args=(order, -1), key="prev",
                help="The previous sample in the sorted, filtered list.", disabled=not len(order))
    ahead.button("Next", icon=":material/arrow_forward:", on_click=_step, args=(order, 1), key="next",
                 help="The next sample in the sorted, filtered list.", disabled=not len(order))
    i = int(box.number_input("Sample", 0, len(table) - 1, min(max(default, 0), len(table) - 1), key="sample"))
    set_query(sample=i, n=size, t0=t0)

    view = sample_view(ws.model, b, i)
    row = view.row
    st.subheader(f"Sample {i}: verdict {row['verdict']}" + (f" (planted: {row['kind']})" if row["kind"] != "none" else ""))
    left, right = st.columns(2)
    with left:
        a, m = st.columns([1, 2])
        a.image(image_grid(to_display(view.image[None]), scale=8), caption=f"label {row['label']}")
        m.metric("LID_theta (FLIPD)", f"{row['flipd']:.1f}")
        m.metric("LID* (MLE / lPCA)", f"{view.lid_star['mle']:.1f} / {view.lid_star['lpca']:.1f}")
        curve = flipd_curve_figure(view.ts, view.curves, t0=b.t0, lid_star={"MLE": view.lid_star["mle"]},
                                   title="LID_theta against t, with LID*")
        st.plotly_chart(curve, key="curve")
        export_menu(curve, f"flipd-{i}", key="exp-curve")
    figures = {"flipd-curve": curve}
    with right:
        if view.spectrum_note:
            st.info(view.spectrum_note)
        else:
            spec = figures["spectrum"] = spectrum_figure({f"sample {i}": view.eigenvalues}, tau=view.tau,
                                                         title="Hessian spectrum at t0")
            st.plotly_chart(spec, key="spectrum")
            n_sharp = int((view.eigenvalues < -view.tau).sum())
            st.caption(f"{n_sharp} of {len(view.eigenvalues)} eigenvalues below -tau = {-view.tau:.1f}; "
                       f"largest {view.eigenvalues[-1]:.1f}.")
            export_menu(spec, f"spectrum-{i}", key="exp-spectrum")
    left, right = st.columns(2)
    with left:
        st.image(image_grid(to_display(view.neighbor_images), nrow=len(view.neighbors), scale=4),
                 caption="nearest other training images: " + ", ".join(f"{d:.2f}" for d in view.distances))
    with right:
        fig = map_figure(table[["x", "y"]].to_numpy(), color=table.flipd.to_numpy(), color_name="FLIPD",
                         highlight=np.array([i]), title="UMAP of the analysed images (ringed: this sample)")
        st.plotly_chart(fig, key="map")
        export_menu(fig, f"map-{i}", key="exp-map")
    figure_pack_button(figures | {"map": fig},
                       {"sample": shown[shown["index"] == i], "neighbors": _neighbors_table(view)},
                       {"model": ws.path, "data": ws.data_path, "sample": i, "t0": b.t0, "tau": view.tau,
                        "images_analysed": size, "sort": sort, "verdict_filter": verdict, "kind_filter": kind},
                       f"memviz-sample-{i}", key="pack",
                       images={"image": image_grid(to_display(view.image[None]), scale=8),
                               "neighbors": image_grid(to_display(view.neighbor_images), nrow=len(view.neighbors),
                                                       scale=4)})


sample_panel(default)
