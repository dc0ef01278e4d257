"""Scan: a whole prompt file scored by every prompt-level detector the model serves (``memviz.detect.
scan.scan``, as ``memviz scan`` does): a sortable table of scores, thresholds set on prompts trusted
as ordinary with the flags they give, ROC curves when the file says which prompts are memorized, and
a picked row opened on the Prompts page."""

from memviz.ui.nav import app_root, frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import hashlib

import numpy as np
import streamlit as st

from memviz.data.prompt_sets import SUFFIXES
from memviz.detect import DETECTORS
from memviz.detect.metrics import roc_points
from memviz.detect.registry import serving
from memviz.detect.scan import DEFAULT_FPR, REFERENCE_CAPTIONS, TRAINING_CAPTIONS, describe_thresholds
from memviz.figures.builders import roc_figure
from memviz.ui.examples import LABEL_COLUMN, example_lists
from memviz.ui.loaders import ORDINARY_PART, read_prompt_file, scan_prompts, workspace_picker
from memviz.ui.widgets import export_menu, query_value, set_query, table_downloads

NONE = "none"
FPRS = (0.001, 0.01, 0.05, 0.1)

st.title("Scan")
st.caption(
    "Score a whole prompt file with the detectors, the way `memviz scan` does: one row per prompt; thresholds "
    "set on prompts you trust as ordinary flag the rest; pick a row to see its generations on the Prompts page."
)
ws = workspace_picker()
if ws is None:
    st.stop()
model = ws.model
if not (model.is_class_conditional or model.is_text_conditional):
    st.info("This model is unconditional: it has no prompts to scan.")
    st.stop()

# ---- the prompt file ------------------------------------------------------------------------------
examples = example_lists(model.meta)
c1, c2 = st.columns(2)
upload = c1.file_uploader(
    "Prompt file",
    type=[s.lstrip(".") for s in SUFFIXES],
    key="scan_file",
    help="One prompt a line (.txt); a JSON object a line with prompt, caption or text (.jsonl); a table with "
    "a header row and a prompt, caption or text column (.csv, .tsv: the delimiter is sniffed; .parquet). "
    "Every other column is kept.",
)
example = c2.selectbox(
    "Or an example list",
    list(examples) or ["(none for this model)"],
    key="scan_example",
    disabled=upload is not None or not examples,
    help="Built from the bundled demo's planted truth, as eval-detection builds its prompts: each planted "
    "caption labelled memorized (1 in the memorized column), against ordinary ones (0). An uploaded file "
    "is used instead while there is one.",
)
if upload is not None:
    name, data = upload.name, upload.getvalue()
elif examples:
    name, data = examples[example]
else:
    st.info("Upload a prompt file to scan.")
    st.stop()
digest = hashlib.sha256(data).hexdigest()
try:
    columns = [c for c in read_prompt_file(name, digest, data).table.columns if c != "prompt"]
except ValueError as exc:  # a file that cannot be read: its one sentence, never a traceback
    st.error(str(exc))
    st.stop()

# ---- labels and reference -------------------------------------------------------------------------
c1, c2, c3 = st.columns(3)
guess = next((c for c in columns if str(c).lower() in (LABEL_COLUMN, "label", "is_memorized")), None)
label_column = c1.selectbox(
    "Label column (optional)",
    [NONE] + columns,
    index=1 + columns.index(guess) if guess is not None else 0,
    key=f"scan_label_{digest[:12]}",
    help="A column saying which prompts are memorized (1/0, true/false, yes/no, or named classes: then pick "
    "the memorized ones): it gives the ROC curves and offers the ordinary prompts as the reference.",
)
label_column = None if label_column == NONE else label_column
positive: list = []
if label_column is not None:
    values = sorted({str(v).strip() for v in read_prompt_file(name, digest, data).table[label_column]})
    positive = c2.multiselect(
        "Memorized values",
        values[:200],
        key=f"scan_positive_{digest[:12]}_{label_column}",
        help="The values of the label column that mean memorized; leave empty when it holds 1/0, true/false or yes/no.",
    )
try:
    prompts = read_prompt_file(name, digest, data, label_column, tuple(positive))
except ValueError as exc:
    st.error(str(exc))
    if label_column is not None and not positive:
        st.caption("Pick the values that mean memorized under Memorized values, or choose another label column.")
    st.stop()
st.caption(prompts.describe())
references = {NONE: None, f"training captions ({REFERENCE_CAPTIONS} training rows)": TRAINING_CAPTIONS}
if prompts.labels is not None and not prompts.labels.all():
    references = {"the ordinary prompts of this file": ORDINARY_PART} | references
if ws.train is None:
    references = {k: v for k, v in references.items() if v != TRAINING_CAPTIONS}
ref_title = c3.selectbox(
    "Reference (sets the thresholds)",
    list(references),
    key="scan_reference",
    help="Prompts trusted as ordinary: each detector's threshold is the score beyond which only the chosen "
    "false-positive rate of them lie, on its memorized side; every prompt is then flagged or not. "
    "Training captions: the distinct captions (or classes) of training rows drawn at random.",
)
reference = references[ref_title]

# ---- detectors and settings -----------------------------------------------------------------------
notes: list = []
offered = [d for d in serving(model, "prompt", notes=notes) if ws.train is not None or "training images" not in d.needs]
names = [d.name for d in offered]
fast = [d.name for d in offered if "generation" not in d.needs]  # no sampling run: seconds for a list
asked = [d for d in query_value("detectors", "", str).split("|") if d in names]
chosen = st.multiselect(
    "Detectors",
    names,
    default=asked or fast or names,
    key="scan_detectors",
    help="The prompt-level detectors this model serves; by default those that need no finished generation "
    "(they score the initial noise or the first steps, in seconds). "
    + "; ".join(f"{d.name}: {d.cost}" for d in offered),
)
c1, c2, c3, c4 = st.columns(4)
n = c1.slider("Generations per prompt", 1, 16, query_value("n", 4, int, 1, 16), key="scan_n")
steps = c2.slider(
    "First steps scored",
    1,
    10,
    query_value("steps", 1, int, 1, 10),
    key="scan_steps",
    help="The stepwise detectors (wen, jeon) average their score over the first steps; 1 is the papers' protocol.",
)
fpr = c3.select_slider(
    "False-positive rate on the reference",
    FPRS,
    value=DEFAULT_FPR,
    key="scan_fpr",
    disabled=reference is None,
    format_func=lambda v: f"{v:.1%}",
)
seed = int(c4.number_input("Seed", 0, 2**31 - 1, query_value("seed", 0, int, 0, 2**31 - 1), key="scan_seed"))
set_query(detectors="|".join(chosen) or None, n=n, steps=steps, seed=seed)
for note in notes:
    st.caption(f"Not offered here: {note}")
settings = (
    ws.path,
    ws.data_path,
    name,
    digest,
    label_column,
    tuple(positive),
    tuple(chosen),
    n,
    steps,
    seed,
    reference,
    fpr,
    ws.features,
)
if st.button("Scan", type="primary", icon=":material/play_arrow:", disabled=not chosen, key="scan_go"):
    st.session_state["scan_settings"] = settings
if not chosen:
    st.info("Choose at least one detector.")
    st.stop()
if st.session_state.get("scan_settings") != settings:
    if "scan_settings" in st.session_state:
        st.info("The file or the settings changed since the last scan: press Scan to score them.")
    else:
        st.caption(f"Press Scan to score the {len(prompts):,} prompts.")
    st.stop()
try:
    result = scan_prompts(
        ws.path,
        ws.data_path,
        name,
        digest,
        data,
        label_column,
        tuple(positive),
        tuple(chosen),
        n,
        steps,
        seed,
        reference,
        fpr,
        ws.features,
    )
except ValueError as exc:  # a reference too small, a detector the data cannot serve: one sentence
    st.error(str(exc))
    st.stop()

# ---- the table ------------------------------------------------------------------------------------
st.session_state["report_scan"] = (ws.path, ws.data_path, result)  # the Overview's report reads the scan in view
table = result.table
dets = result.detectors
skipped = table.note.str.startswith("not scored")
summary = (
    f"Scored {int((~skipped).sum()):,} of {len(table):,} prompts with {', '.join(dets)} "
    f"(n = {n}, first {steps} step{'s' if steps > 1 else ''}) in {result.settings['seconds']:.1f} s"
)
if result.thresholds:
    summary += f"; {int(table.flagged.sum()):,} flagged by at least one detector"
st.subheader("Scores")
st.caption(summary + "." + (f" {int(skipped.sum())} not scored: see the note column." if skipped.any() else ""))
for note in result.notes:
    st.caption(f"Note: {note}")
flags = [f"flag_{d}" for d in dets if f"flag_{d}" in table]
order = ["prompt"] + (["flagged"] if "flagged" in table else []) + dets + flags + ["note"]
order += [c for c in table.columns if c not in order]
config = {
    d: st.column_config.NumberColumn(
        help=f"{DETECTORS[d].paper}; {'higher' if DETECTORS[d].sign > 0 else 'lower'} = more memorized; "
        f"the mean over the prompt's {n} generations",
        format="%.4g",
    )
    for d in dets
} | {
    f"flag_{d}": st.column_config.CheckboxColumn(help=f"{d} is past its threshold, on its memorized side") for d in dets
}
config |= {
    "flagged": st.column_config.CheckboxColumn(help="Flagged by at least one detector."),
    "note": st.column_config.TextColumn(help="Why a prompt was not scored, or that it was read cut."),
}
event = st.dataframe(
    table,
    hide_index=True,
    column_order=order,
    column_config=config,
    key="scan_table",
    on_select="rerun",
    selection_mode="single-row",
)
picked = list(event.selection.rows) if event else []
if picked:
    prompt = str(table.prompt.iloc[picked[0]])
    query = {"prompts": prompt, "model": ws.path} | {
        name: value for name, value in (("data", ws.data_path), ("features", ws.features)) if value
    }
    st.page_link(
        str(app_root() / "pages" / "prompts.py"),
        label=f"Compare on the Prompts page: {prompt[:80]}",
        icon=":material/chat:",
        query_params=query,
    )
else:
    st.caption(
        "Click a header to sort; select a row (the box at its left) to open the prompt on the Prompts page, "
        "its generations beside their nearest training images."
    )
table_downloads(table, f"scan-{name.rsplit('.', 1)[0]}", key="scan-download")

# ---- thresholds -----------------------------------------------------------------------------------
if result.thresholds:
    st.subheader("Thresholds")
    st.markdown("\n".join(f"- {line}" for line in describe_thresholds(result)))
    st.caption(
        "Each threshold is the score beyond which at most the chosen false-positive rate of the reference "
        "prompts lie, on the side the detector's sign calls memorized; a prompt is flagged past it."
    )

# ---- ROC curves -----------------------------------------------------------------------------------
if prompts.labels is not None:
    labels = prompts.labels
    curves = {}
    for d in dets:
        score = DETECTORS[d].sign * table[d].to_numpy(dtype=float)  # higher = more memorized
        ok = np.isfinite(score)
        if labels[ok].any() and not labels[ok].all():
            curves[d] = roc_points(labels[ok], score[ok])
    if curves:
        st.subheader("ROC curves")
        fig = roc_figure(curves, title=f"{int(labels.sum())} memorized against {int((~labels).sum())} ordinary prompts")
        st.plotly_chart(fig, key="scan_roc")
        export_menu(fig, "scan-roc", key="exp-scan-roc")
        st.caption(
            f"From the label column {prompts.label_column!r}: for every threshold on a detector's score, the share "
            "of memorized prompts it flags against the share of ordinary ones; the diagonal is chance."
        )
    else:
        st.caption("ROC curves need both memorized and ordinary prompts among the scored ones.")
