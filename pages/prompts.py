"""Prompts: two to four prompts side by side: their generations next to the nearest training
images, every detector's score, the generations' LID and their Hessian spectra overlaid."""

from memviz.ui.nav import app_root, frame

frame()  # a deep link to a fresh server runs this file alone: show it inside the app

import numpy as np
import pandas as pd
import streamlit as st

from memviz import glossary
from memviz.data.captions import example_prompts
from memviz.detect import DETECTORS, detectors
from memviz.figures.builders import image_grid, overlay, spectrum_figure
from memviz.ui.loaders import compare_prompts, workspace_picker
from memviz.ui.widgets import export_menu, figure_pack_button, query_value, set_query, table_downloads

MAX_PROMPTS = 4  # side by side


def dropped(k: int, one: str, many: str) -> None:
    """Say that ``k`` prompts past the first four were left out, and where a longer list goes."""
    st.warning(
        f"This page compares at most {MAX_PROMPTS} prompts side by side: the last {k} "
        f"{many + ' were' if k > 1 else one + ' was'} dropped. Score a longer list on the Scan page, then open "
        "any of its prompts here."
    )
    st.page_link(str(app_root() / "pages" / "scan.py"), label="Scan a prompt list", icon=":material/checklist:")


st.title("Prompts")
ws = workspace_picker()
if ws is None:
    st.stop()
model = ws.model
if model.is_class_conditional:
    listed = [p for p in query_value("prompts", "", str).split("|") if p]
    asked = [p for p in listed if p in model.class_names]
    if len(asked) < len(listed):
        unknown = ", ".join(repr(p[:40]) for p in listed if p not in asked)[:300]
        st.warning(
            f"The link names classes this model does not have ({unknown}); its classes are "
            f"{', '.join(model.class_names)}."
        )
    if len(asked) > MAX_PROMPTS:
        dropped(len(asked) - MAX_PROMPTS, "class in the link", "classes in the link")
        asked = asked[:MAX_PROMPTS]
    default = asked or [p for p in ("3", "memorized-00") if p in model.class_names] or model.class_names[:1]
    prompts = st.multiselect("Prompts (2 to 4)", model.class_names, default=default, max_selections=MAX_PROMPTS)
elif model.is_text_conditional:
    asked = query_value("prompts", "", str)
    text = st.text_area(
        "Prompts, one per line (2 to 4; any free text)",
        asked.replace("|", "\n") if asked else "\n".join(example_prompts(model.meta)),
        help="Encoded by the model's own text encoder.",
    )
    lines = [p.strip() for p in text.splitlines() if p.strip()]
    if len(lines) > MAX_PROMPTS:
        dropped(len(lines) - MAX_PROMPTS, "line", "lines")
    prompts = lines[:MAX_PROMPTS]
else:
    prompts = [None]
    st.caption("This model is unconditional.")
c1, c2, c3, c4 = st.columns(4)
n = c1.slider("Generations per prompt", 1, 32, 8)
steps = c2.slider("Sampling steps", 5, 100, 25)
guidance = c3.slider("Guidance scale", 1.0, 8.0, min(max(model.guidance_scale, 1.0), 8.0), 0.5)
seed = int(c4.number_input("Seed", 0, 2**31 - 1, query_value("seed", 0, int, 0, 2**31 - 1)))
set_query(prompts="|".join(map(str, prompts)) if prompts != [None] else None, seed=seed)
if ws.train is None or model.sample_shape[-1] == 1:
    st.info("Nearest-neighbour evidence needs the model's training images.")
    st.stop()
try:
    results = compare_prompts(ws.path, tuple(prompts), n, steps, guidance, seed, ws.data_path, ws.features)
except ValueError as exc:  # a prompt too long, say: one sentence, never a traceback
    st.error(str(exc))
    st.stop()
scores = pd.DataFrame([r.scores for r in results])
for col, r in zip(st.columns(len(results) or 1), results):
    with col:
        shown_prompt = str(r.prompt).replace("`", "'")
        st.subheader(f"`{shown_prompt}`" if r.prompt is not None else "unconditional")
        st.metric(
            f"Copies ({glossary.COPY_RULE})", f"{int(r.evidence.is_copy.sum())} / {n}", help=glossary.CALIBRATED_L2
        )
        st.image(image_grid(r.evidence.images, nrow=n, scale=3), caption="generations")
        if r.mask is not None:
            st.image(
                image_grid(overlay(r.evidence.images, r.mask), nrow=n, scale=3),
                caption="where it is copied (Bright Ending: red = the end token's attention at the last step)",
            )
        st.image(image_grid(r.evidence.nearest_images, nrow=n, scale=3), caption="nearest training image of each")
        st.caption("calibrated l2: " + ", ".join(f"{c:.2f}" for c in r.evidence.calibrated))
if results and results[0].mask is None:
    st.caption(f"Where in the image: {DETECTORS['bright-ending'].unavailable(model)}")
st.subheader("Detectors")
st.dataframe(
    scores,
    hide_index=True,
    column_config={
        "copies": st.column_config.NumberColumn(
            help=f"Generations of the prompt that copy a training image ({glossary.COPY_RULE})."
        ),
        "seed": st.column_config.NumberColumn(help="Generation i of the prompt is (prompt, seed, i)."),
        **{
            d.name: st.column_config.NumberColumn(
                help=f"{d.paper}; {'higher' if d.sign > 0 else 'lower'} = more memorized; "
                f"cost: {d.cost}"
                + ("; at the first sampling step" if d.stepwise else "")
                + ("; on the initial noise" if d.noise else "")
            )
            for d in detectors("prompt")
        },
    },
)
st.caption(
    "Generation i of a prompt is (prompt, seed, i); each score is the mean over the prompt's generations. "
    "Stepwise and noise-level scores are taken at the first step of the papers' 50-step schedule, whatever "
    "the sampling steps above, so they compare with the Detection page."
)
table_downloads(scores, "prompt-scores", key="prompt-scores")
copied = [str(r.prompt) for r in results if r.prompt is not None and r.evidence.is_copy.any()]
if copied:
    st.page_link(
        str(app_root() / "pages" / "mitigation.py"),
        label="Mitigate the prompts that copy: " + ", ".join(copied)[:80],
        icon=":material/healing:",
        query_params={"prompts": "|".join(copied), "seed": str(seed)},
    )
with_spectra = [r for r in results if len(r.eigenvalues)]
figures = {}
if with_spectra:
    spec = spectrum_figure(
        {str(r.prompt): r.eigenvalues for r in with_spectra},
        tau=with_spectra[0].tau,
        title="Hessian spectra of the first generation of each prompt (t = 0.05)",
    )
    figures["spectra"] = spec
    st.plotly_chart(spec, key="spectra")
    export_menu(spec, "prompt-spectra", key="exp-spectra")
    st.caption(
        "n_sharp (eigenvalues below -tau) of the first generation: "
        + ", ".join(f"{r.prompt}: {int(np.sum(r.eigenvalues < -r.tau))}" for r in with_spectra)
        + ". "
        + glossary.SPECTRUM
    )
grids = {
    f"prompt-{k}-{part}": image_grid(getattr(r.evidence, attr), nrow=n, scale=3)
    for k, r in enumerate(results)
    for part, attr in (("generations", "images"), ("nearest", "nearest_images"))
}
grids |= {
    f"prompt-{k}-copied-where": image_grid(overlay(r.evidence.images, r.mask), nrow=n, scale=3)
    for k, r in enumerate(results)
    if r.mask is not None
}
figure_pack_button(
    figures,
    {"scores": scores},
    {
        "model": ws.path,
        "data": ws.data_path,
        "features": ws.features,
        "prompts": prompts,
        "n": n,
        "steps": steps,
        "guidance_scale": guidance,
        "seed": seed,
    },
    "memviz-prompts",
    key="pack",
    images=grids,
)
