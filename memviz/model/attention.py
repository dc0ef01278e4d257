"""Cross-attention maps of a text-conditional UNet: where in the image each token is read.

Bright Ending (Chen, Liu, Shah, Xu, ICLR 2025; their code, BE-PRSS ``controller.py`` and
``detect_mem.py``) reads the attention probabilities of the prompt's end token (the first
end-of-text token, index len(tokens) - 1) at the final sampling step, from the down blocks'
cross-attention layers at their highest resolution (64 x 64 in Stable Diffusion v1), averaged
over heads and layers, conditional rows only, with no normalisation. For memorized prompts it is
bright where the image is copied.

Written by hand because diffusers exposes no attention probabilities: ``capture_cross_attention``
wraps each such layer's processor, recomputes softmax(Q K^T / sqrt(d)) with the layer's own
``get_attention_scores`` (a query and key projection more per call), and hands the unchanged
inputs to the original processor, so the model's outputs are exactly what they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class _Recorder:
    """An attention processor that keeps the last call's head-averaged probabilities (B, HW, L)."""

    def __init__(self, inner, store: dict, name: str):
        self.inner, self.store, self.name = inner, store, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kw):
        if encoder_hidden_states is not None and hidden_states.ndim == 3:
            context = (
                attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
            )
            q = attn.head_to_batch_dim(attn.to_q(hidden_states))
            k = attn.head_to_batch_dim(attn.to_k(context))
            probs = attn.get_attention_scores(q, k, None)  # (B * heads, HW, L)
            self.store[self.name] = probs.view(len(hidden_states), attn.heads, *probs.shape[1:]).mean(1).detach()
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kw)


def _layers(unet) -> dict:
    """The down blocks' cross-attention modules (attn2) at the highest resolution that has any."""
    found: dict[int, dict] = {}
    for level, block in enumerate(getattr(unet, "down_blocks", [])):
        for name, module in block.named_modules():
            if name.endswith("attn2") and getattr(module, "is_cross_attention", False):
                found.setdefault(level, {})[f"down_blocks.{level}.{name}"] = module
    if not found:
        raise ValueError(
            "This model has no cross-attention in its down blocks, so there is no attention map to read "
            "(Bright Ending needs a text-conditional UNet2DConditionModel)."
        )
    return found[min(found)]


def has_cross_attention(model) -> bool:
    """Whether ``capture_cross_attention`` can read this model (a text-conditional UNet with
    cross-attention in its down blocks)."""
    try:
        return model.is_text_conditional and bool(_layers(model.unet))
    except ValueError:
        return False


@contextmanager
def capture_cross_attention(model) -> Iterator[dict]:
    """Inside, every call of the model records its cross-attention probabilities into the yielded
    dict, layer name -> (B, HW, L), head-averaged, overwritten call after call (read it in a
    sampler callback to get a given step's). Both UNet copies (float32 and float16) are wrapped."""
    store: dict[str, torch.Tensor] = {}
    saved = []
    try:
        for unet in model.unets():
            for name, module in _layers(unet).items():
                saved.append((module, module.processor))
                module.set_processor(_Recorder(module.processor, store, name))
        yield store
    finally:
        for module, processor in saved:
            module.set_processor(processor)


def end_token_map(model, store: dict, prompt: str, rows: int) -> torch.Tensor:
    """(rows, h, w) the end token's attention, averaged over the recorded layers, of the first
    ``rows`` batch rows (memviz runs the conditional rows first in a guided batch)."""
    if not store:
        raise ValueError("No cross-attention was recorded; call the model inside capture_cross_attention.")
    n_tokens = len(model.tokenizer(prompt, truncation=True, max_length=model.tokenizer.model_max_length).input_ids)
    maps = torch.stack([p[:rows, :, n_tokens - 1] for p in store.values()]).mean(0).float()  # (rows, HW)
    side = int(round(maps.shape[1] ** 0.5))
    return maps.view(rows, side, maps.shape[1] // side).cpu()
