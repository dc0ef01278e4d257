"""Samples: training images sorted and filtered by any metric; pick one to see, side by side,
why it is or is not memorized (LID, spectrum, nearest training images, place on the map)."""

from memviz.ui.nav import frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import numpy as np
import streamlit as st

from memviz import glossary
from memviz.data import to_unit
from memviz.figures.builders import flipd_curve_figure, image_grid, map_figure, overlay, spectrum_figure
from memviz.hessian import affordable_method, default_tau, summarize
from memviz.lid import DEFAULT_T0
from memviz.lid.verdict import VERDICT_LID, verdict_reason
from memviz.ui.loaders import compare_prompts, heavy, sample_view, study_of, workspace_picker
from memviz.ui.widgets import (
    column_help,
    export_menu,
    figure_pack_button,
    images_analysed,
    query_index,
    query_t0,
    query_value,
    require_images,
    set_query,
    table_downloads,
    verdict_badge,
)

METRICS = {
    "FLIPD (LID_theta)": "flipd",
    "LID* (MLE)": "lid_mle",
    "LID* (lPCA)": "lid_lpca",
    "nearest-neighbour distance": "nn_distance",
    "copies in the training set (most first)": "minus_copies",
    "training row": "row",
}


def _neighbors_table(view):
    import pandas as pd

    return pd.DataFrame(
        {"training row": view.neighbors, "distance": view.distances, "rows holding this image": view.neighbor_copies}
    )


st.title("Samples")
ws = workspace_picker()
require_images(ws)
c1, c2, c3, c4, c5 = st.columns(5)
size = images_analysed(c4)
study = study_of(ws, size)
grid = tuple(study.ts)
t0 = c5.select_slider(
    "t0",
    grid,
    value=query_t0(grid, DEFAULT_T0),
    help="The diffusion time at which FLIPD and the spectrum are read; FLIPD is "
    "stored on this grid, so changing t0 computes nothing.",
)
VERDICT_OPTIONS, KIND_OPTIONS = ["all", "not memorized", "OD-Mem", "DD-Mem"], ["all", "none", "DD-Mem", "OD-Mem"]
verdict = c2.selectbox(
    "MMH verdict", VERDICT_OPTIONS, index=query_index("verdict", VERDICT_OPTIONS), help=glossary.VERDICT
)
kind = c3.selectbox(
    "Planted kind",
    KIND_OPTIONS,
    index=query_index("kind", KIND_OPTIONS),
    help="The ground truth the demo planted in its training set (none for real data).",
)
table = study.table(t0)
table = table.assign(minus_copies=-table.copies)  # a sort key: the most duplicated images first
sharp_key = ("n_sharp", ws.path, ws.data_path, size, t0)
if (
    affordable_method(ws.model) == "exact"
    and sharp_key not in st.session_state
    and st.button(
        "Add the sharpness count (n_sharp) of these images",
        icon=":material/bolt:",
        help="Exact Hessian spectra, about half a second per image on a CPU; stored on disk, shared with the picks.",
    )
):
    bar = st.progress(0.0, "Hessian spectra…")
    with heavy():
        eigenvalues = study.spectra(
            study.rows, t0, on_batch=lambda done, n: bar.progress(done / n, f"Hessian spectra: {done} of {n} images")
        )
    st.session_state[sharp_key] = summarize(eigenvalues, default_tau(ws.model, t0))["n_sharp"]
    st.rerun()  # redraw without the button, with the new column and sort option
if sharp_key in st.session_state:
    table = table.assign(n_sharp=st.session_state[sharp_key])
    METRICS["sharpness count (n_sharp, descending)"] = "minus_n_sharp"
    table = table.assign(minus_n_sharp=-table.n_sharp)
SORT_KEYS = {column: name for name, column in METRICS.items()}
sort = c1.selectbox(
    "Sort by",
    list(METRICS),
    index=list(METRICS).index(SORT_KEYS.get(query_value("sort", "flipd"), "FLIPD (LID_theta)")),
    help="Low FLIPD or LID*, many sharp directions: candidates for memorization.",
)
set_query(
    sort=None if METRICS[sort] == "flipd" else METRICS[sort],
    verdict=None if verdict == "all" else verdict,
    kind=None if kind == "all" else kind,
)  # the filters travel with the link
shown = table[((table.verdict == verdict) | (verdict == "all")) & ((table.kind == kind) | (kind == "all"))]
shown = shown.sort_values(METRICS[sort], kind="stable").drop(columns=["minus_copies", "minus_n_sharp"], errors="ignore")
st.caption(f"{len(shown):,} of {len(table):,} analysed images; FLIPD at t0 = {t0}. {study.threshold_source(t0)}")
if len(shown):
    st.image(
        image_grid(to_unit(study.images(shown["row"].to_numpy()[:64])), nrow=16, scale=3),
        caption=f"the first {min(64, len(shown))} by {sort}",
    )
event = st.dataframe(
    shown,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="table",
    height=220,
    column_config=column_help(shown),
)
st.caption("One row per analysed image; hover a header for what it means. Click a row to open it below.")
table_downloads(shown, "samples", key="samples-table")
picked = event.selection.rows if event and event.selection else []
old = query_value(
    "sample", None, int, lo=0, hi=10**9
)  # links before training rows: ?sample= was a place in the analysed set
if old is not None and "row" not in st.query_params:
    if 0 <= old < len(study.rows):
        st.query_params["row"] = str(int(study.rows[old]))
    else:
        st.warning(
            f"?sample={old} (a place among the analysed images, in older links) does not exist here; "
            "links now name the training row (?row=)."
        )
    st.query_params.pop("sample", None)
default = (
    int(shown["row"].iloc[picked[0]])
    if picked
    else query_value("row", int(shown["row"].iloc[0]) if len(shown) else 0, int, 0, len(ws.train) - 1)
)


def _step(order: np.ndarray, delta: int) -> None:
    """Move the picked row one place along ``order`` (the sorted, filtered rows)."""
    where = np.flatnonzero(order == st.session_state.get("row", -1))
    st.session_state["row"] = int(order[(where[0] + delta) % len(order)] if len(where) else order[0])


@st.fragment
def sample_panel(default: int) -> None:
    """The side-by-side panel; a fragment, so that picking another sample redraws only this."""
    order = shown["row"].to_numpy()
    back, box, ahead = st.columns([1, 3, 1], vertical_alignment="bottom")
    back.button(
        "Previous",
        icon=":material/arrow_back:",
        on_click=_step,
        args=(order, -1),
        key="prev",
        help="The previous sample in the sorted, filtered list (key: left arrow).",
        disabled=not len(order),
        shortcut="Left",
    )
    ahead.button(
        "Next",
        icon=":material/arrow_forward:",
        on_click=_step,
        args=(order, 1),
        key="next",
        help="The next sample in the sorted, filtered list (key: right arrow).",
        disabled=not len(order),
        shortcut="Right",
    )
    last = len(ws.train) - 1
    i = int(
        box.number_input(
            "Training row",
            0,
            last,
            min(max(default, 0), last),
            key="row",
            help="Any row of the training set; rows outside the analysed ones are computed on demand.",
        )
    )
    set_query(row=i, n=size, t0=t0)

    view = sample_view(study, i, t0, table=table)
    row = view.values
    st.subheader(
        f"Row {i}: {verdict_badge(row['verdict'])}"
        + (f" (planted: {verdict_badge(row['kind'])})" if row["kind"] != "none" else "")
    )
    copies = int(row["copies"])
    st.caption(verdict_reason(row["flipd"], view.lid_star[VERDICT_LID], study.threshold(t0), copies))
    left, right = st.columns(2)
    with left:
        a, m = st.columns([1, 2])
        a.image(image_grid(to_unit(view.image[None]), scale=8), caption=f"label {row['label']}")
        m.metric("LID_theta (FLIPD)", f"{row['flipd']:.1f}", help=glossary.FLIPD)
        if row["flipd"] < 0:
            m.caption(f"Raw FLIPD is negative here; as a dimension it reads 0 (clipped to [0, {ws.model.dim}]).")
        m.metric(
            "LID* (MLE / lPCA)", f"{view.lid_star['mle']:.1f} / {view.lid_star['lpca']:.1f}", help=glossary.LID_STAR
        )
        curve = flipd_curve_figure(
            view.ts, view.curves, t0=t0, lid_star={"MLE": view.lid_star["mle"]}, title="LID_theta against t, with LID*"
        )
        st.plotly_chart(curve, key="curve")
        st.caption(
            "LID_theta (FLIPD) of this image read at every t of the grid: the model's dimension at growing "
            "noise. The dotted line is t0, the dashed one LID*; a memorized image stays far below LID* at small t."
        )
        export_menu(curve, f"flipd-{i}", key="exp-curve")
    figures = {"flipd-curve": curve}
    with right:
        if view.spectrum_note:
            st.info(view.spectrum_note)
        else:
            spec = figures["spectrum"] = spectrum_figure(
                {f"row {i}": view.eigenvalues}, tau=view.tau, title="Hessian spectrum at t0"
            )
            st.plotly_chart(spec, key="spectrum")
            n_sharp = int((view.eigenvalues < -view.tau).sum())
            st.caption(
                f"{n_sharp} of {len(view.eigenvalues)} eigenvalues below -tau = {-view.tau:.1f} (the sharpness "
                f"count); largest {view.eigenvalues[-1]:.1f}. " + glossary.SPECTRUM
            )
            export_menu(spec, f"spectrum-{i}", key="exp-spectrum")
    left, right = st.columns(2)
    with left:
        if copies > 1:
            st.markdown(
                f"**×{copies} in the training set**: {copies} training rows hold this image "
                "(duplicates: what drives data-driven memorization)."
            )
        st.image(
            image_grid(to_unit(view.neighbor_images), nrow=len(view.neighbors), scale=4),
            caption="nearest training images, one per distinct image (duplicates grouped, ×N: N rows hold "
            "it): "
            + ", ".join(
                f"row {r} at {d:.2f}" + (f" ×{c}" if c > 1 else "")
                for r, d, c in zip(view.neighbors, view.distances, view.neighbor_copies)
            ),
        )
        caption = study.train.captions[i] if study.train.captions is not None else None
        if caption is not None and study.model.is_text_conditional:
            with st.expander(f"Where is it copied? Generate from its caption: '{caption[:80]}'"):
                if st.button("Generate 4 and show where they copy (Bright Ending)", key=f"be-{i}"):
                    r = compare_prompts(
                        ws.path, (caption,), 4, 25, study.model.guidance_scale, 0, ws.data_path, ws.features
                    )[0]
                    st.image(
                        image_grid(overlay(r.evidence.images, r.mask), nrow=4, scale=4)
                        if r.mask is not None
                        else image_grid(r.evidence.images, nrow=4, scale=4),
                        caption="generations; red = the end token's cross-attention at the last step",
                    )
                    st.image(
                        image_grid(r.evidence.nearest_images, nrow=4, scale=4),
                        caption="nearest training image of each: "
                        + ", ".join(f"{c:.2f}" for c in r.evidence.calibrated)
                        + f" (copy: {glossary.COPY_RULE})",
                    )
    with right:
        fig = map_figure(
            table[["x", "y"]].to_numpy(),
            color=table.flipd.to_numpy(),
            color_name="FLIPD",
            highlight=np.flatnonzero(table["row"].to_numpy() == i),
            title="UMAP of the analysed images (ringed: this row)",
        )
        st.plotly_chart(fig, key="map")
        st.caption(
            "Where this image lies among the analysed ones (UMAP; ringed), coloured by LID_theta: memorized "
            "images often form their own tight clusters. The Manifold page explores the map."
        )
        export_menu(fig, f"map-{i}", key="exp-map")
    figure_pack_button(
        figures | {"map": fig},
        {"sample": shown[shown["row"] == i], "neighbors": _neighbors_table(view)},
        {
            "model": ws.path,
            "data": ws.data_path,
            "features": ws.features,
            "row": i,
            "t0": t0,
            "tau": view.tau,
            "images_analysed": size,
            "sort": sort,
            "verdict_filter": verdict,
            "kind_filter": kind,
        },
        f"memviz-row-{i}",
        key="pack",
        images={
            "image": image_grid(to_unit(view.image[None]), scale=8),
            "neighbors": image_grid(to_unit(view.neighbor_images), nrow=len(view.neighbors), scale=4),
        },
    )


sample_panel(default)
