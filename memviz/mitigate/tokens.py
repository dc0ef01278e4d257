"""``random-tokens`` (Somepalli et al., 2023): append ``knob`` random words of the tokenizer's
vocabulary to the prompt, so the text no longer matches the caption that was memorized: the
naive baseline every remedy must beat. Text models only. Zero extra model calls."""

from __future__ import annotations

import numpy as np

from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register


def random_words(tokenizer, k: int, seed: int) -> list[str]:
    """k readable vocabulary words (ASCII letters only: no special tokens or pieces), drawn with ``seed``."""
    words = (w.replace("</w>", "").replace("##", "") for w in sorted(tokenizer.get_vocab()))  # sorted: a fast
    vocab = sorted({w for w in words if w.isascii() and w.isalpha()})  # tokenizer's dict has no fixed order
    rng = np.random.default_rng(seed)
    return [vocab[i] for i in rng.choice(len(vocab), k, replace=False)]


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    edited = f"{cond} {' '.join(random_words(model.tokenizer, int(knob), seed))}"
    return Mitigated(
        model.sample(n, cond=edited, steps=steps, guidance_scale=guidance_scale, seed=seed), edited, {"prompt": edited}
    )


register(
    Mitigation(
        "random-tokens",
        "prompt",
        Knob("tokens", 4, 1, 32, integer=True, help="random words appended to the prompt"),
        "0 extra calls",
        "Somepalli et al., 2023 (random token addition)",
        needs=("text",),
        run=_run,
    )
)
