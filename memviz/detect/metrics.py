"""Detection metrics against a ground truth: AUROC and the TPR at a fixed FPR."""

from __future__ import annotations

import numpy as np


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (higher = more memorized) for the boolean labels."""
    from sklearn.metrics import roc_auc_score

    positive, score = _check(positive, score)
    return float(roc_auc_score(positive, score))


def tpr_at_fpr(positive: np.ndarray, score: np.ndarray, fpr: float = 0.01) -> float:
    """The largest TPR whose FPR is at most ``fpr`` (with n negatives, FPR moves in steps of 1/n)."""
    from sklearn.metrics import roc_curve

    positive, score = _check(positive, score)
    f, t, _ = roc_curve(positive, score)
    return float(t[f <= fpr + 1e-12].max())


def _check(positive, score) -> tuple[np.ndarray, np.ndarray]:
    positive, score = np.asarray(positive, dtype=bool), np.asarray(score, dtype=float)
    if positive.shape != score.shape or positive.ndim != 1:
        raise ValueError(f"labels and scores must be two 1-D arrays of one length; got {positive.shape}, {score.shape}.")
    if positive.all() or not positive.any():
        raise ValueError("The ground truth needs both positives and negatives.")
    if not np.isfinite(score).all():
        raise ValueError("A detector returned NaN or infinite scores.")
    return positive, score


def roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(fpr, tpr, auroc) of a detector, for an ROC figure."""
    from sklearn.metrics import roc_curve

    positive, score = _check(positive, score)
    f, t, _ = roc_curve(positive, score)
    return f, t, auroc(positive, score)
