"""Overview: the model, its data and its planted memorization."""

from memviz.ui.nav import frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import json

import streamlit as st

# the first paint comes before torch and diffusers are imported (seconds, on a server's first visit)
st.title("memviz")
st.caption("Has this diffusion model memorized its training data, where, and why?")
with st.spinner("Starting: importing torch and diffusers (once per server)…"):
    import numpy as np
    import pandas as pd

    from memviz import glossary
    from memviz.data import to_unit
    from memviz.detect.evaluate import report
    from memviz.figures.builders import VERDICT_COLOURS, image_grid
    from memviz.lid import DEFAULT_T0
    from memviz.lid.verdict import VERDICTS
    from memviz.ui.loaders import audit_report, prepared, warm, workspace_picker
    from memviz.ui.widgets import query_t0
ws = workspace_picker()
if ws is None:
    st.stop()
t0 = query_t0(tuple(ws.ts), DEFAULT_T0)
model, meta = ws.model, ws.model.meta
training = meta.get("training", {})
cols = st.columns(4)
cols[0].metric("Model", meta.get("name", "custom"))
cols[1].metric("Shape (C, H, W)", " × ".join(map(str, model.sample_shape)), help=f"D = {model.dim}")
cols[2].metric("Prediction", model.prediction_type)
cols[3].metric("Training images seen", f"{training.get('images_seen', 0):,}" if training else "unknown")
if model.class_names:
    st.write("**Prompts (classes):** " + ", ".join(f"`{c}`" for c in model.class_names))
elif model.is_text_conditional:
    st.write("**Prompts:** free text, encoded by the model's text encoder (the Prompts page).")
with st.expander("Audit report (HTML and PDF)", icon=":material/description:"):
    in_view = st.session_state.get("report_scan")
    scan = in_view[2] if in_view and in_view[:2] == (ws.path, ws.data_path) else None
    st.caption(
        "One document to hand on: the verdicts with the most memorized images, "
        + ("the prompt scan of the Scan page and the copies of its flagged prompts, " if scan else "")
        + "detection, methods and the commands that remake each number (`memviz report` writes the same)."
        + ("" if scan else " Scan a prompt list on the Scan page first to add the prompt scan.")
    )
    key = ("report", ws.path, ws.data_path, ws.features, ws.n, id(scan), t0)
    if st.button("Build the report", key="report_go", icon=":material/build:"):
        bar = st.progress(0.0, "Building the report…")
        try:
            st.session_state["report_files"] = (key, *audit_report(ws, scan, t0, lambda f, what: bar.progress(f, what)))
        except ValueError as exc:
            st.error(str(exc))
        bar.empty()
    built = st.session_state.get("report_files")
    if built and built[0] == key:
        stem = f"memviz-report-{str(meta.get('name', 'model'))}"
        c1, c2 = st.columns(2)
        c1.download_button("Download report (HTML)", built[1], f"{stem}.html", "text/html", key="report_html")
        if built[2] is not None:
            c2.download_button("Download report (PDF)", built[2], f"{stem}.pdf", "application/pdf", key="report_pdf")
        else:
            c2.caption("PDF needs Chrome or Chromium on the server (`apt-get install chromium`).")
if ws.train is None:
    st.stop()
kind = ws.train.meta.get("kind")
st.subheader(f"Training data: {len(ws.train):,} images" + (f", {len(ws.test):,} held out" if ws.test else ""))
if kind is not None and ws.train.images.shape[-1] > 1:
    counts = pd.Series(kind).value_counts().rename_axis("planted kind").reset_index(name="training rows")
    st.dataframe(counts, hide_index=True)
    st.caption(
        "The ground truth this demo planted: DD-Mem rows are stored many times, OD-Mem rows are few images "
        "each tied to its own prompt; the detectors are scored against it (the Detection page)."
    )
    for k, what in (
        ("DD-Mem", "duplicated images (data-driven memorization)"),
        ("OD-Mem", "images tied to a planted prompt (overfitting-driven memorization)"),
    ):
        idx = [i for i in range(len(kind)) if kind[i] == k]
        first = sorted({int(ws.train.source_index[i]): i for i in idx}.values())
        if first:
            st.write(f"**{len(first)} {what}**")
            st.image(image_grid(to_unit(ws.train.images[first]), nrow=min(len(first), 16), scale=4))
            if ws.train.captions is not None:  # a text model: each planted image's unique caption
                st.dataframe(
                    pd.DataFrame({"caption": list(dict.fromkeys(ws.train.captions[i] for i in first))}), hide_index=True
                )

if ws.train.images.shape[-1] == 1:
    st.stop()  # points, not images: the Manifold page shows them
st.subheader("What the model memorized")
table = prepared(ws).table(t0)
verdicts = table.verdict.value_counts().reindex(list(VERDICTS), fill_value=0)
st.caption(
    f"How many of the {len(table):,} analysed training images each verdict of the Manifold Memorization "
    "Hypothesis (Ross, Kamkari et al., ICLR 2025) gives, at t0 = " + f"{t0}."
)
cols = st.columns(len(verdicts))
for col, (name, count) in zip(cols, verdicts.items()):
    col.metric(
        f"MMH verdict: :{VERDICT_COLOURS[name][1]}[{name}]",
        f"{count:,}",
        border=True,
        help=glossary.VERDICTS[name] + f" LID_theta: FLIPD at t0 = {t0}; LID*: MLE (k = 20) on the training set.",
    )
per_class = (
    model.class_names is not None
    and ws.train.labels is not None
    and st.toggle("Per class", key="per_class", help="The lowest-LID_theta images of each class, one row per class.")
)
if per_class:
    labels = ws.train.labels[table["row"].to_numpy()]
    classes = sorted(set(labels.tolist()))
    rows = [table[labels == c].sort_values("flipd").head(8)["row"].to_numpy() for c in classes]
    tiles = to_unit(ws.images(np.concatenate(rows)))
    blank = tiles.new_zeros(
        (8 * len(rows),) + tiles.shape[1:]
    )  # a class with fewer than 8 analysed images: blank tiles
    blank[np.concatenate([8 * k + np.arange(len(r)) for k, r in enumerate(rows)])] = tiles
    st.image(
        image_grid(blank, nrow=8, scale=3),
        caption="per class, its (up to) 8 analysed images with the lowest LID_theta, most memorized first; one "
        "row per class: " + ", ".join(model.class_names[c] for c in classes),
    )
if not per_class:
    low = table.sort_values("flipd").head(32)
    st.image(
        image_grid(to_unit(ws.images(low["row"].to_numpy())), nrow=16, scale=3),
        caption=f"the 32 of {len(table):,} analysed training images with the lowest LID_theta (most memorized first)",
    )
st.caption(
    "Why simple images dominate: a plain digit such as a 1 lies on a low-dimensional piece of the data "
    "manifold, so its LID is low with or without memorization (the simplicity bias the MMH paper discusses). "
    "Low LID_theta alone is not memorization; the verdict compares it with held-out images and with LID*. "
    "Read the grid per class to compare like with like."
)
evaluation = ws.folder / "eval_detection.json" if ws.folder else None
if evaluation is not None and evaluation.exists():
    st.subheader("Detectors against the planted ground truth")
    rows = report(json.loads(evaluation.read_text()))
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "auroc": st.column_config.NumberColumn(format="%.3f"),
            "tpr_at_1pct_fpr": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    st.caption(
        "Each registered detector scored on the planted ground truth, from `memviz eval-detection` (see the "
        "model card): AUROC (0.5 is chance, 1 is perfect) and the true-positive rate at 1% false positives; "
        "the Detection page draws the ROC curves and the cost of each."
    )
warm(model)  # the UNet, built in the background once the page is complete: the first pick need not wait
