"""The MMH verdict as a detector (Ross, Kamkari et al., ICLR 2025): 1 for OD-Mem or DD-Mem, 0 for
not memorized, by the one verdict rule of the Study (``memviz.lid.verdict_rule``), so the
evaluation scores exactly the verdict the app shows."""

from __future__ import annotations

import numpy as np

from memviz.detect.registry import Detector, register


def _sample(study, rows, t0: float) -> np.ndarray:
    verdicts, _ = study.verdicts(t0, rows)
    return np.isin(verdicts, ["OD-Mem", "DD-Mem"]).astype(float)


register(
    Detector(
        "mmh_verdict",
        ("sample",),
        ("training image", "training images"),
        +1,
        "as FLIPD (1 forward + n_probes backward passes per t of the grid)",
        lambda d, p: 1 + p,
        "Ross, Kamkari et al., ICLR 2025",
        sample=_sample,
    )
)
