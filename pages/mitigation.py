"""Mitigation: the plain and mitigated generations of a prompt side by side, with their nearest
training images, each remedy's copy rate against utility (a Pareto plot) and its cost."""

from memviz.ui.nav import frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import streamlit as st

from memviz import glossary
from memviz.data.captions import example_prompts
from memviz.detect import detectors
from memviz.figures.builders import attribution_figure, image_grid, pareto_figure
from memviz.mitigate import MITIGATIONS, mitigations
from memviz.mitigate.lab import GATE_QUANTILE, MEMORIZATION, prompt_sets
from memviz.ui.loaders import mitigate, mitigation_sweep, workspace_picker
from memviz.ui.widgets import export_menu, figure_pack_button, query_value, set_query, table_downloads

st.title("Mitigation")
st.caption(
    "What to do about a memorized prompt: each remedy generates the same n samples (same seeds) changing "
    "one thing, and is judged by the copies it prevents against the utility it keeps, at its cost."
)
ws = workspace_picker()
if ws is None:
    st.stop()
model = ws.model
if not (model.is_class_conditional or model.is_text_conditional):
    st.info("This model is unconditional: there is no prompt to mitigate.")
    st.stop()
if ws.train is None or model.sample_shape[-1] == 1:
    st.info("Judging copies needs the model's training images.")
    st.stop()
notes: list = []
offered = [m.name for m in mitigations(["all"], model, notes)]
listed = [p for p in query_value("prompts", "", str).split("|") if p]
with st.form("lab"):
    if model.is_class_conditional:
        planted, ordinary = prompt_sets(model)
        default = [p for p in listed if p in model.class_names] or planted[:1] + ordinary[3:4]
        prompts = st.multiselect(
            "Prompts",
            model.class_names,
            default=default,
            max_selections=4,
            help="A planted (memorized) prompt by default, and an ordinary one to measure utility.",
        )
    else:
        text = st.text_area(
            "Prompts, one per line (1 to 4)", "\n".join(listed) if listed else "\n".join(example_prompts(model.meta))
        )
        prompts = [p.strip() for p in text.splitlines() if p.strip()][:4]
    asked = [m for m in query_value("methods", "", str).split("|") if m in offered]
    methods = st.multiselect(
        "Methods",
        offered,
        default=asked or offered,
        help="; ".join(
            f"{m.name}: changes the {m.changes} ({m.paper})" for m in MITIGATIONS.values() if m.name in offered
        ),
    )
    c1, c2, c3, c4 = st.columns(4)
    n = c1.slider("Generations per prompt", 2, 32, query_value("n", 8, int, 2, 32))
    steps = c2.slider("Sampling steps", 10, 100, query_value("steps", 25, int, 10, 100))
    seed = int(c3.number_input("Seed", 0, 2**31 - 1, query_value("seed", 0, int, 0, 2**31 - 1)))
    gates = ["none"] + [d.name for d in detectors("prompt") if d.unavailable(model) is None]
    asked_gate = query_value("gate", "wen" if "wen" in gates else "none", str)
    gate = c4.selectbox(
        "Gate",
        gates,
        index=gates.index(asked_gate) if asked_gate in gates else 0,
        help=f"Apply a method only where this detector flags the prompt (threshold: {GATE_QUANTILE:.0%} of "
        "ordinary training conditions score below it); none: apply it always.",
    )
    st.form_submit_button("Run", icon=":material/play_arrow:")
for note in notes:
    st.caption(f"Not offered here: {note}")
if not prompts:
    st.stop()
set_query(prompts="|".join(prompts), seed=seed, methods="|".join(methods), n=n, steps=steps, gate=gate)
try:
    lab = mitigate(
        ws.path,
        tuple(prompts),
        tuple(["none"] + [m for m in methods if m != "none"]),
        n,
        steps,
        seed,
        gate,
        ws.data_path,
        ws.features,
    )
except ValueError as exc:
    st.error(str(exc))
    st.stop()
rows = lab.rows.drop(columns=["info"])
if gate != "none":
    st.caption(
        f"Gate {gate}: threshold {lab.gate['threshold']:.3g}; flagged: "
        + ", ".join(
            f"{p} ({'yes' if f else 'no'})" for p, f in rows.groupby("prompt", sort=False).flagged.first().items()
        )
        + ". Unflagged prompts get the plain generations. Scoring the prompts took "
        f"{rows.groupby('prompt').gate_seconds.first().sum():.1f} s "
        f"({rows.groupby('prompt').gate_model_calls.first().sum()} UNet calls)"
        + (f", calibrating it {lab.gate['calibration_seconds']:.1f} s" if "calibration_seconds" in lab.gate else "")
        + "."
    )
grids, figures = {}, {}
for prompt in prompts:
    st.subheader(f"`{str(prompt).replace('`', chr(39))}`")
    kind = rows[rows.prompt == str(prompt)].memorization.iloc[0]
    st.caption(
        f"What its training rows plant: {MEMORIZATION[kind]}."
        + (
            " Only where a prompt has images besides its copy can a remedy that keeps following it avoid the copy; "
            "otherwise the prompt itself must change."
            if kind in ("OD-Mem", "DD-Mem", "DD-Mem among ordinary")
            else ""
        )
    )
    cols = st.columns(len(rows.method.unique()))
    for col, method in zip(cols, rows.method.unique()):
        keep = (lab.prompt == str(prompt)) & (lab.method == method)
        r = rows[(rows.prompt == str(prompt)) & (rows.method == method)].iloc[0]
        info = lab.rows["info"][r.name]
        with col:
            st.markdown(f"**{method}**" + ("" if r.applied else " (not applied: plain)"))
            if info.get("prompt"):
                st.caption(f"sampled: {info['prompt']}")
            if "switch_step" in info and info["early"] == info["late"]:
                st.caption(
                    f"early and late guidance are both w = {info['late']:g}: nothing to withhold before the "
                    "transition, so this is the plain generation (lower the early scale to change it)"
                )
            elif "switch_step" in info:
                on = sorted(k for k in info["switch_step"] if k < info["steps"])
                st.caption(
                    f"guided from step {on[len(on) // 2]} of {info['steps']} (median), in {len(on)} of "
                    f"{len(info['switch_step'])} generations"
                    if on
                    else "never guided: no generation's CFG norm had a local minimum"
                )
            if "moved" in info:
                moved = sorted(info["moved"])
                st.caption(f"x_T moved {moved[len(moved) // 2]:.0%} of its norm (median), on its own sphere")
            st.metric("Copies", f"{r.copy_rate:.0%}", help=glossary.CALIBRATED_L2)
            st.caption(f"of this prompt's own training images: {r.own_copy_rate:.0%}")
            grids[f"{prompt}-{method}"] = image_grid(lab.images[keep], nrow=4, scale=3)
            grids[f"{prompt}-{method}-nearest"] = image_grid(lab.nearest[keep], nrow=4, scale=3)
            st.image(grids[f"{prompt}-{method}"], caption="generations")
            st.image(grids[f"{prompt}-{method}-nearest"], caption="nearest training image of each")
    edit = rows[(rows.prompt == str(prompt)) & (rows.method == "prompt-edit") & rows.applied]
    if len(edit):
        info = lab.rows["info"][edit.index[0]]
        fig = attribution_figure(info["attribution"], info["dropped_at"], title="Which words the copy hangs on")
        st.plotly_chart(fig, key=f"attribution-{prompt}")
        st.caption(
            "Each word's share of the gradient of the first step's CFG norm with respect to its token "
            "embeddings (the MMH paper's attribution); prompt-edit dropped the red ones."
        )
        export_menu(fig, "mitigation-attribution", key=f"exp-attribution-{prompt}")
        figures[f"attribution-{prompt}"] = fig
fig = pareto_figure(rows, title="Copy rate against utility, per method")
st.plotly_chart(fig, key="pareto")
st.caption(
    "Each point is one method, averaged over the prompts above (utility over those with a label to keep: the "
    "share of generations a classifier trained on the training data assigns to the prompt's label). Bottom "
    "right is best; the dotted line joins the methods no other beats on both."
)
export_menu(fig, "mitigation-pareto", key="exp-pareto")
figures["pareto"] = fig
tables = {"mitigation": rows}
st.dataframe(
    rows,
    hide_index=True,
    column_config={
        "copy_rate": st.column_config.NumberColumn(format="percent", help="share of generations that copy"),
        "own_copy_rate": st.column_config.NumberColumn(
            format="percent",
            help="share that copy a training image of this very prompt (other copies: images the data duplicate)",
        ),
        "utility": st.column_config.NumberColumn(format="percent", help="share showing the prompt's label"),
        "seconds": st.column_config.NumberColumn(format="%.3g", help="wall seconds of this method's generations"),
        "model_calls": st.column_config.NumberColumn(
            help="UNet calls (a batched conditional + unconditional pair once)"
        ),
    },
)
table_downloads(rows, "mitigation", key="mitigation-table")
swept = [m for m in methods if m != "none" and MITIGATIONS[m].knob is not None]
with st.expander("Trace each method's knob (a Pareto sweep)"):
    st.caption(
        "Runs each method at 5 settings of its knob on the prompts above, with the settings of the form: "
        "one generation per setting and prompt, so expect minutes. Each line is one method, its settings "
        "labelled; the dotted line is the front no setting beats on both."
    )
    if swept and st.toggle("Run the sweep", key="sweep"):
        table = mitigation_sweep(ws.path, tuple(prompts), tuple(swept), n, steps, seed, gate, ws.data_path, ws.features)
        sweep_fig = pareto_figure(table, title="Copy rate against utility, over each method's knob")
        st.plotly_chart(sweep_fig, key="pareto-sweep")
        export_menu(sweep_fig, "mitigation-sweep", key="exp-sweep")
        st.dataframe(table, hide_index=True)
        figures["sweep"], tables["sweep"] = sweep_fig, table
figure_pack_button(
    figures,
    tables,
    {"model": ws.path, "prompts": prompts, "methods": methods, "n": n, "steps": steps, "seed": seed, "gate": gate},
    "memviz-mitigation",
    key="pack",
    images=grids,
)
