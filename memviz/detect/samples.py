"""Sample-level memorization scores of training images: the model's LID, the data's LID*, the
MMH verdict, the Hessian spectrum, Jeon's score at the image, and the distance to the
nearest other training image (which only sees duplicates)."""

from __future__ import annotations

import time

import numpy as np

from memviz.data.base import ImageDataset
from memviz.hessian.runner import compute_spectra
from memviz.hessian.sharpness import jeon_score
from memviz.lid.data_lid import data_lid
from memviz.lid.flipd import flipd
from memviz.lid.verdict import calibrate_threshold, mmh_verdict
from memviz.models import DiffusionModel
from memviz.neighbors import neighbor_graph


def sample_scores(model: DiffusionModel, train: ImageDataset, rows: np.ndarray, test: ImageDataset | None = None,
                  t0: float = 0.05, n_probes: int = 8, seed: int = 0) -> tuple:
    """Scores of the training images ``rows`` (indices into ``train`` as stored, duplicates included).

    Steps: 1. FLIPD at t0, unconditional and under each image's label; 2. LID* (MLE, k = 20) and
    the distance to the nearest other training image, from the shared neighbour graph; 3. the MMH
    verdict from unconditional and (class models) conditional FLIPD, each threshold calibrated on
    ``test`` (5% below); 4. exact Hessian spectra
    (n_sharp, n_flat) and Jeon's score at y = alpha(t0) x.

    Returns:
        (pandas.DataFrame one row per image, dict of seconds per image per detector)
    """
    import pandas as pd

    data, sec = train.subset(rows), {}
    labels = model.conditions_of(data)
    frame = pd.DataFrame({"row": rows, "kind": np.asarray(data.meta.get("kind", ["none"] * len(data)))})
    for name, cond in (("flipd_uncond", None), ("flipd_cond", labels)):                              # 1.
        if name == "flipd_cond" and cond is None:
            continue
        frame[name], sec[name] = _timed(lambda c=cond: flipd(model, data.images, t0, cond=c, trace="hutchinson",
                                                             n_probes=n_probes, seed=seed).numpy(), len(data))
    graph = neighbor_graph(train.images, 20)                                                           # 2.
    frame["lid_mle"], frame["nn_distance"] = data_lid(train.images, method="mle", k=20, graph=graph)[rows], \
        graph.distance[rows, 0]
    for tag in ("uncond", "cond") if labels is not None else ("uncond",):                              # 3.
        frame["verdict" if tag == "uncond" else "verdict_cond"] = mmh_verdict(
            frame[f"flipd_{tag}"], frame["lid_mle"], model_threshold=_threshold(model, test, tag, t0, n_probes, seed,
                                                                                frame[f"flipd_{tag}"]))
    for tag, conditional in (("uncond", False), ("cond", labels is not None)):                         # 4.
        if tag == "cond" and not conditional:
            continue
        res, sec[f"n_sharp_{tag}"] = _timed(lambda c=conditional: compute_spectra(
            model, data, t=t0, conditional=c, progress=False), len(data))
        summary = res.summary()
        frame[f"n_sharp_{tag}"], frame[f"n_flat_{tag}"] = summary.n_sharp.to_numpy(), summary.n_flat.to_numpy()
    if labels is not None:
        frame["jeon_sample"], sec["jeon_sample"] = _timed(lambda: jeon_score(
            model, labels, x_t=model.alpha(t0) * data.images, t=t0).numpy(), len(data))
    return frame, sec


def _threshold(model, test, tag, t0, n_probes, seed, fallback) -> float:
    """The FLIPD below which 5% of held-out images fall (of the scored images themselves without a test set)."""
    if test is None:
        return calibrate_threshold(fallback, 0.05)
    cond = model.conditions_of(test) if tag == "cond" else None
    return calibrate_threshold(flipd(model, test.images, t0, cond=cond, trace="hutchinson", n_probes=n_probes,
                                     seed=seed).numpy(), 0.05)


def _timed(fn, n: int):
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) / n
