"""Sharpness counts as a detector (Jeon, Kim, No, ICML 2025, section 4): a memorized training image
sits in a sharp peak, with more Hessian eigenvalues below -tau = -1 / (2 sigma_t^2). Read from
the Study's per-image spectra (the same store a pick on the Samples page reads)."""

from __future__ import annotations

from memviz.detect.registry import Detector, register
from memviz.hessian.summary import default_tau, summarize


def _sample(conditional: bool):
    def score(study, rows, t0: float):
        eigenvalues = study.spectra(rows, t0, conditional=conditional)
        return summarize(eigenvalues, default_tau(study.model, t0))["n_sharp"].astype(float)

    return score


for _name, _cond in (("n_sharp_uncond", False), ("n_sharp_cond", True)):
    register(
        Detector(
            _name,
            ("sample",),
            ("training image", "spectrum") + ("condition",) * _cond,
            +1,
            "1 forward + D backward passes (exact spectrum)",
            lambda d, p: 1 + d,
            "Jeon, Kim, No, ICML 2025, section 4",
            sample=_sample(_cond),
        )
    )
