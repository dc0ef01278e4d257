"""Prompts: generate for a few prompts, side by side with their nearest training images."""

import streamlit as st

from memviz.figures import image_grid
from memviz.memorization import copy_evidence
from memviz.ui.loaders import workspace_picker

st.title("Prompts")
ws = workspace_picker()
if ws is None:
    st.stop()
model = ws.model
if model.is_class_conditional:
    default = [p for p in ("3", "memorized-00") if p in model.class_names] or model.class_names[:1]
    prompts = st.multiselect("Prompts (2 to 4)", model.class_names, default=default, max_selections=4)
elif model.is_text_conditional:
    prompts = [p for p in st.text_area("Prompts, one per line", "a photo").splitlines() if p.strip()][:4]
else:
    prompts = [None]
    st.caption("This model is unconditional.")
c1, c2, c3, c4 = st.columns(4)
n = c1.slider("Generations per prompt", 1, 32, 8)
steps = c2.slider("Sampling steps", 5, 100, 25)
guidance = c3.slider("Guidance scale", 1.0, 8.0, float(model.meta.get("guidance_scale", 1.0)), 0.5)
seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
if ws.reference is None or model.sample_shape[-1] == 1:
    st.info("Nearest-neighbour evidence needs the model's training images.")
    st.stop()
for col, prompt in zip(st.columns(len(prompts) or 1), prompts):
    with col, st.spinner(f"Generating for {prompt!r}…"):
        ev = copy_evidence(model, ws.reference, cond=prompt, n=n, steps=steps, guidance_scale=guidance, seed=int(seed))
        st.subheader(f"`{prompt}`" if prompt is not None else "unconditional")
        st.metric("Copies (calibrated l2 < 0.5)", f"{int(ev.is_copy.sum())} / {n}",
                  help="Carlini et al. 2023: nearest-training l2 over 0.5 x the mean l2 to the 50 nearest.")
        st.image(image_grid(ev.images, nrow=n, scale=3), caption="generations")
        st.image(image_grid(ev.nearest_images, nrow=n, scale=3), caption="nearest training image of each")
        st.caption("calibrated l2: " + ", ".join(f"{c:.2f}" for c in ev.calibrated))
