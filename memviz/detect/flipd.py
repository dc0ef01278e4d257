"""FLIPD as a detector (Ross, Kamkari et al., ICLR 2025): a memorized image sits where the model's
LID is about 0. Prompt level: FLIPD at t0 of each finished generation; sample level: the stored
FLIPD of the training image (``Study.flipd``). Conditional (under the prompt or the image's own
condition) and unconditional."""

from __future__ import annotations

from memviz.detect.registry import Detector, register
from memviz.lid.flipd import flipd


def _generation(conditional: bool):
    def score(g):
        return flipd(
            g.model,
            g.out.x0,
            g.t0,
            cond=g.prompt if conditional else None,
            trace="hutchinson",
            n_probes=g.n_probes,
            seed=g.seed,
        ).numpy()

    return score


def _sample(conditional: bool):
    def score(study, rows, t0: float):
        return study.flipd(t0, conditional=conditional, rows=rows)

    return score


for _name, _cond in (("flipd_cond", True), ("flipd_uncond", False)):
    register(
        Detector(
            _name,
            ("prompt", "sample"),
            ("generation",) + ("condition",) * _cond,
            -1,
            "1 forward + n_probes backward passes (Hutchinson)",
            lambda d, p: 1 + p,
            "Kamkari et al., NeurIPS 2024 (FLIPD); Ross, Kamkari et al., ICLR 2025 (MMH)",
            generation=_generation(_cond),
            sample=_sample(_cond),
        )
    )
