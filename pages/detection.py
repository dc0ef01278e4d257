"""Detection: every detector against the planted ground truth, from the model folder's
``eval_detection.json`` and ``eval_scores.parquet`` (written by ``memviz eval-detection --json ...
--scores ...``): AUROC against seconds per query, ROC curves, and the table with 95% intervals
and measured costs; a detector that ranks backwards on this model is named."""

from memviz.ui.nav import frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import json

import pandas as pd
import streamlit as st

from memviz.detect import DETECTORS
from memviz.detect.evaluate import backwards
from memviz.detect.evaluate import report as report_table
from memviz.detect.metrics import roc_points
from memviz.figures.builders import cost_figure, roc_figure
from memviz.ui.loaders import workspace_picker
from memviz.ui.widgets import export_menu, query_index, set_query, table_downloads

st.title("Detection")
ws = workspace_picker()
if ws is None:
    st.stop()
folder = ws.folder
report, scores_path = folder / "eval_detection.json", folder / "eval_scores.parquet"
if not report.exists():
    st.info(
        f"No evaluation in this model folder yet. Run `memviz eval-detection --model {folder} --json "
        f"{report} --scores {scores_path}` (it needs a model trained on planted data)."
    )
    st.stop()
rows = report_table(json.loads(report.read_text()))  # ordered by the detector registry
levels = sorted(rows.level.unique())
c1, c2, c3, c4 = st.columns(4)
level = c1.selectbox("Level", levels, index=query_index("level", levels))
splits = sorted(rows[rows.level == level].split.unique(), key=lambda s: (s != "exact", s))
split = c2.selectbox(
    "Split",
    splits,
    index=query_index("split", splits),
    help="exact: the planted prompts (or images) against ordinary ones; paraphrase: near copies of "
    "the planted captions the model never saw; '... held out': the prompts a calibration did "
    "not see.",
)
part = rows[(rows.level == level) & (rows.split == split)]
ns = sorted({int(v) for v in part.n.dropna()}) or [None]
n = c3.selectbox("Generations per prompt (n)", ns, disabled=ns == [None])
steps = sorted({int(v) for v in part.steps.dropna()}) or [None]
step = c4.selectbox(
    "Sampling steps scored",
    steps,
    disabled=steps == [None],
    help="Stepwise detectors average their score over the first steps; the others score once.",
)
set_query(level=level, split=split)
for line in backwards(part):
    st.warning(line)
w = part.guidance_scale.dropna().unique()
st.caption(
    f"{len(part.detector.unique())} detectors; {int(part.n_pos.max())} memorized against {int(part.n_neg.max())} "
    f"ordinary {'images' if level == 'sample' else 'prompts (each scored as several queries)'}"
    + (f"; guidance scale {w[0]:g} along the sampled trajectories" if len(w) else "")
    + ". Intervals: 95%, bootstrap over prompts (exact at a perfect ranking)."
)
cost = cost_figure(part, title=f"Accuracy against cost ({level} level, {split})")
st.plotly_chart(cost, key="cost")
export_menu(cost, f"cost-{level}", key="exp-cost")
st.caption(
    "Each point is one detector at one setting (n, steps); its bar is the AUROC's 95% interval. The cheapest "
    "good detector sits top left. Seconds are measured on this machine in the run that wrote the report."
)
if scores_path.exists():
    scores = pd.read_parquet(scores_path)
    if "split" not in scores:
        scores["split"] = "exact"
    chosen = scores[(scores.level == level) & (scores.split == split) & scores.detector.isin(list(DETECTORS))]
    if "setting" in chosen:
        chosen = chosen[~chosen.setting.fillna("").str.startswith("calibrated")]
    if n is not None:
        stepwise = chosen.detector.map(lambda d: DETECTORS[d].stepwise)
        chosen = chosen[(chosen.n == n) & ((chosen.steps == step) | ~stepwise)]
    curves = {
        det: roc_points(g.positive.to_numpy(), g.score.to_numpy())
        for det, g in chosen.groupby("detector")
        if g.positive.any() and not g.positive.all()
    }
    fig = roc_figure(curves, title=f"{level} level, {split}" + (f", n = {n}, steps = {step}" if n is not None else ""))
    st.plotly_chart(fig, key="roc")
    st.caption(
        "ROC curves: for every threshold on a detector's score, the share of memorized queries it flags "
        "(true positives) against the share of ordinary ones (false positives); the diagonal is chance, and "
        "an auditor reads the curve left of 1% false positives."
    )
    export_menu(fig, f"roc-{level}", key="exp-roc")
num = {c: st.column_config.NumberColumn(format="%.3f") for c in ("auroc", "auroc_low", "auroc_high", "tpr_at_1pct_fpr")}
st.dataframe(
    part,
    hide_index=True,
    column_config=num
    | {
        "seconds_per_query": st.column_config.NumberColumn(
            format="%.3g",
            help="wall seconds for one query (a prompt's n generations, or one training image), sampling included",
        ),
        "model_calls_per_query": st.column_config.NumberColumn(
            format="%.0f", help="UNet forward calls per query, a batched conditional + unconditional pair counted once"
        ),
        "peak_memory_mb": st.column_config.NumberColumn(
            format="%.0f", help="peak memory above the start of the work, MiB"
        ),
    },
)
st.caption(
    "One row per detector and setting: AUROC with its 95% interval, TPR at 1% FPR, and the measured cost; "
    "hover a header for its unit."
)
table_downloads(part, f"detection-{level}", key="detection-table")
