"""Detection: ROC curves and the AUROC / TPR@1%FPR table of every detector against the planted
ground truth, from the model folder's ``eval_detection.json`` and ``eval_scores.parquet``
(written by ``memviz eval-detection --json ... --scores ...``)."""

import json

import pandas as pd
import streamlit as st

from memviz.detect import DETECTORS
from memviz.detect.evaluate import report as report_table
from memviz.detect.metrics import roc_points
from memviz.figures import roc_figure
from memviz.ui.loaders import workspace_picker
from memviz.ui.widgets import export_menu, query_index, set_query, table_downloads

st.title("Detection")
ws = workspace_picker()
if ws is None:
    st.stop()
folder = ws.folder
report, scores_path = folder / "eval_detection.json", folder / "eval_scores.parquet"
if not report.exists():
    st.info(f"No evaluation in this model folder yet. Run `memviz eval-detection --model {folder} --json "
            f"{report} --scores {scores_path}` (it needs a model trained on planted data).")
    st.stop()
rows = report_table(json.loads(report.read_text()))  # ordered by the detector registry
levels = sorted(rows.level.unique())
c1, c2, c3 = st.columns(3)
level = c1.selectbox("Level", levels, index=query_index("level", levels))
part = rows[rows.level == level]
ns = sorted({int(v) for v in part.n.dropna()}) or [None]
n = c2.selectbox("Generations per prompt (n)", ns, disabled=ns == [None])
steps = sorted({int(v) for v in part.steps.dropna()}) or [None]
step = c3.selectbox("Sampling steps scored", steps, disabled=steps == [None])
set_query(level=level)
if scores_path.exists():
    scores = pd.read_parquet(scores_path)
    chosen = scores[(scores.level == level) & scores.detector.isin(list(DETECTORS))]
    if n is not None:
        chosen = chosen[(chosen.n == n) & ((chosen.steps == step) | ~chosen.detector.map(lambda d: DETECTORS[d].stepwise))]
    curves = {det: roc_points(g.positive.to_numpy(), g.score.to_numpy()) for det, g in chosen.groupby("detector")}
    fig = roc_figure(curves, title=f"{level} level" + (f", n = {n}, steps = {step}" if n is not None else ""))
    st.plotly_chart(fig, key="roc")
    export_menu(fig, f"roc-{level}", key="exp-roc")
st.dataframe(part, hide_index=True, column_config={"auroc": st.column_config.NumberColumn(format="%.3f"),
                                                   "tpr_at_1pct_fpr": st.column_config.NumberColumn(format="%.3f")})
table_downloads(part, f"detection-{level}", key="detection-table")
