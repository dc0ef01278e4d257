"""``prompt-edit`` (Ross, Kamkari et al., ICLR 2025, the Manifold Memorization Hypothesis paper,
after Wen et al.'s token attribution, ICLR 2024): attribute the memorization score to the prompt's
words, then drop the ``knob`` most responsible ones and sample from what is left.

The score is the CFG norm at the first sampling time t_1 over the n generations' own x_T,
    S(e) = mean_i ||eps(x_T^i, t_1 | e) - eps(x_T^i, t_1 | null)||^2,
and token j's attribution is ||dS / dv_j||, the gradient's norm with respect to its input
embedding v_j (the text encoder's token-embedding layer, before the transformer), so context is
accounted for. A word's attribution is the sum over its word pieces; special and padding tokens
are never dropped, and at least one word is kept. Text models only (a class label has no words).
Cost: 1 conditional and 1 unconditional pass and 1 backward through the UNet and the text encoder.
"""

from __future__ import annotations

import torch

from memviz.detect.wen import guidance_gap
from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register
from memviz.model.sampling import first_step


def _token_embedding(text_encoder, vocab_size: int) -> torch.nn.Embedding:
    """The encoder's input token-embedding layer: the first ``nn.Embedding`` over the whole vocabulary
    (CLIP's ``token_embedding``, BERT's ``word_embeddings``), found without knowing the architecture."""
    for m in text_encoder.modules():
        if isinstance(m, torch.nn.Embedding) and m.num_embeddings >= vocab_size:
            return m
    raise ValueError("This model's text encoder has no token-embedding layer over its tokenizer's vocabulary.")


def token_attribution(model, prompt: str, x_T: torch.Tensor, t: float) -> list[tuple[str, float]]:
    """[(word, attribution)] for each whitespace-separated word of ``prompt``, in order: the summed
    norms ||dS / dv_j|| of its tokens (S: the mean squared CFG norm at (x_T, t)).

    x_T: (n, C, H, W) initial noise; t: the first sampling time."""
    from memviz.io.guard import check_prompt

    prompt = check_prompt(prompt)
    tok = model.tokenizer
    ids = tok(
        [prompt], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids  # the padding encode_text uses, so S is the sampler's score
    layer = _token_embedding(model.text_encoder, len(tok))
    held = []

    def keep(_module, _inputs, out):
        out = out.detach().requires_grad_(True)
        held.append(out)
        return out

    x = x_T.to(model.device)
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            e = model.text_encoder(ids.to(model.device))[0].float()
            with torch.no_grad():
                eps_u = model.eps(x, t, None)
            score = guidance_gap(model, x, t, e, eps_u).flatten(1).pow(2).sum(1).mean()
            (grad,) = torch.autograd.grad(score, held[0])
    finally:
        handle.remove()
    per_token = grad[0].norm(dim=-1).tolist()  # (L,)
    # each word's pieces, in order, among the non-special tokens (words tokenize alone as in context for
    # BERT's WordPiece and CLIP's BPE, which both split on whitespace first; offsets need a fast tokenizer)
    special = set(tok.all_special_ids) - {tok.unk_token_id}  # an unknown word is still a word
    slots = [g for i, g in zip(ids[0].tolist(), per_token) if i not in special]
    words = []
    for w in prompt.split():
        k = len(tok(w, add_special_tokens=False).input_ids)
        words.append((w, float(sum(slots[:k]))))
        slots = slots[k:]
    return words


def drop_words(attribution: list[tuple[str, float]], k: int) -> tuple[str, list[int]]:
    """(the prompt without its k most attributed words, keeping at least one; the dropped words' positions)."""
    k = min(int(k), len(attribution) - 1)
    gone = sorted(sorted(range(len(attribution)), key=lambda i: -attribution[i][1])[:k])
    return " ".join(w for i, (w, _) in enumerate(attribution) if i not in gone), gone


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    scores = token_attribution(model, cond, *first_step(model, n, seed, steps))
    edited, gone = drop_words(scores, int(knob))
    out = model.sample(n, cond=edited, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return Mitigated(
        out,
        edited,
        {
            "prompt": edited,
            "dropped": [scores[i][0] for i in gone],
            "dropped_at": gone,
            "attribution": [[w, round(a, 6)] for w, a in scores],
        },
    )


register(
    Mitigation(
        "prompt-edit",
        "prompt",
        Knob(
            "words",
            2,
            1,
            16,
            integer=True,
            help="the most attributed words dropped from the prompt (at least one word is kept)",
        ),
        "3 passes (CFG-norm gradient to the token embeddings)",
        "Ross, Kamkari et al., ICLR 2025 (token attribution)",
        needs=("text",),
        run=_run,
    )
)
