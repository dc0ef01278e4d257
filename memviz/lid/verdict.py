"""The Manifold Memorization Hypothesis verdict per sample (Ross, Kamkari et al., ICLR 2025).

A point is memorized when the model's LID there is about 0. The cause is read off the
data's LID* at the same point:

- ``DD-Mem`` (data-driven): LID* is itself about 0 (duplicates, templates): the model
  learned the data correctly and the data is the problem.
- ``OD-Mem`` (overfitting-driven): LID* is high but the model collapsed: LID_theta < LID*.
- ``not memorized`` otherwise.

FLIPD of an imperfect model is not an absolute dimension (it can be negative at small
t0), so ``model_threshold`` should be calibrated on points known not to be memorized,
for instance a low quantile of LID_theta over held-out images (``calibrate_threshold``).
"""

from __future__ import annotations

import numpy as np

VERDICTS = ("not memorized", "OD-Mem", "DD-Mem")
VERDICT_LID = "mle"  # LID* read by the verdict: MLE at k = 20, below the copies of a planted duplicate
FALSE_POSITIVE_RATE = 0.05  # the FLIPD threshold: 5% of held-out (not memorized) images fall below it
DATA_THRESHOLD = 1.0  # LID* below it: the data itself is a point there (DD-Mem)


def verdict_rule(lid_model, lid_data, reference_lid_model) -> tuple[np.ndarray, float]:
    """The one MMH decision of memviz: (verdicts (N,), threshold). LID_theta below the
    ``FALSE_POSITIVE_RATE`` quantile of ``reference_lid_model`` (held-out images, at the same t0
    and conditioning) is memorized; LID* (``VERDICT_LID``) below 1 makes it DD-Mem."""
    threshold = calibrate_threshold(reference_lid_model, FALSE_POSITIVE_RATE)
    return mmh_verdict(lid_model, lid_data, model_threshold=threshold), threshold


def mmh_verdict(
    lid_model, lid_data, model_threshold: float = 1.0, data_threshold: float = DATA_THRESHOLD
) -> np.ndarray:
    """Per sample, one of ``VERDICTS``.

    Args:
        lid_model: (N,) LID_theta (FLIPD or normal bundle).
        lid_data: (N,) LID* (lPCA, MLE, ...).
        model_threshold: LID_theta below this means memorized (about 0).
        data_threshold: LID* below this means the data itself is 0-dimensional there (DD-Mem).

    Returns:
        (N,) array of strings.
    """
    m, d = np.asarray(lid_model, dtype=float), np.asarray(lid_data, dtype=float)
    if m.shape != d.shape:
        raise ValueError(f"lid_model and lid_data must have the same shape; got {m.shape} and {d.shape}.")
    if np.isnan(m).any() or np.isnan(d).any():
        raise ValueError("LID values contain NaN; recompute them before asking for a verdict.")
    memorized = m < model_threshold
    out = np.full(m.shape, VERDICTS[0], dtype=object)
    out[memorized & (d < data_threshold)] = "DD-Mem"
    out[memorized & (d >= data_threshold)] = "OD-Mem"
    return out.astype(str)


def calibrate_threshold(lid_model_reference, false_positive_rate: float = 0.05) -> float:
    """The ``false_positive_rate`` quantile of LID_theta over points known not to be memorized."""
    ref = np.asarray(lid_model_reference, dtype=float)
    if ref.size == 0 or not np.isfinite(ref).all():
        raise ValueError("Give a non-empty set of finite reference LID values.")
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must lie in (0, 1); got {false_positive_rate}.")
    return float(np.quantile(ref, false_positive_rate))


def verdict_reason(lid_model: float, lid_data: float, threshold: float, copies: int = 1) -> str:
    """The MMH verdict of one sample in words: ``mmh_verdict`` (the one rule) on its numbers, with them.

    Args:
        lid_model: LID_theta (raw FLIPD at t0); lid_data: LID* (``VERDICT_LID``); threshold: the
            verdict's FLIPD threshold at t0; copies: training rows holding this image.
    """
    verdict = mmh_verdict([lid_model], [lid_data], model_threshold=threshold)[0]
    held = f", and the training set holds it {copies} times" if copies > 1 else ""
    low = (
        f"LID_theta {lid_model:.1f} is below the threshold {threshold:.1f} "
        f"({FALSE_POSITIVE_RATE:.0%} of held-out images fall below it)"
    )
    if verdict == "DD-Mem":
        return (
            f"{low} and LID* {lid_data:.1f} is below {DATA_THRESHOLD:g}{held}: data-driven memorization "
            "(the data is a point here)."
        )
    if verdict == "OD-Mem":
        return (
            f"{low}, but LID* {lid_data:.1f} is not{held}: overfitting-driven memorization (the model has "
            "collapsed a region the data spans)."
        )
    return f"LID_theta {lid_model:.1f} is not below the threshold {threshold:.1f}{held}: not memorized."
