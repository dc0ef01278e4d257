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
        raise ValueError(
            f"labels and scores must be two 1-D arrays of one length; got {positive.shape}, {score.shape}."
        )
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


def auroc_interval(
    positive: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """A ``level`` confidence interval of the AUROC.

    The percentile bootstrap, resampling whole groups (a prompt's queries share the prompt, so they
    are not independent; default: each query its own group) with replacement within each label
    (stratified, so every resample has both), ``n_boot`` times, seeded. At a perfect ranking the
    bootstrap cannot move (every resample of a separated sample is separated again), and [1, 1]
    would claim a certainty that a dozen prompts cannot give; there the lower end is the exact
    Clopper-Pearson bound of k = min(positive groups, negative groups) independent comparisons that
    all came out right, (alpha / 2)^(1 / k) (0.74 at k = 12); likewise at AUROC 0.

    Args:
        positive: (N,) bool; score: (N,) higher = more memorized; groups: (N,) a label per query.
    Returns:
        (low, high).
    """
    positive, score = _check(positive, score)
    groups = np.arange(len(score)) if groups is None else np.asarray(groups)
    if groups.shape != score.shape:
        raise ValueError(f"groups must have one entry per query; got {groups.shape} for {score.shape}.")
    alpha = 1 - level
    rng = np.random.default_rng(seed)
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])  # (n_pos, n_neg) pair outcomes
    weights = []
    for lab in (True, False):  # (n_boot, n_lab) how often each query is drawn: its group's count
        _, group_of = np.unique(groups[positive == lab], return_inverse=True)
        counts = rng.multinomial(group_of.max() + 1, np.full(group_of.max() + 1, 1 / (group_of.max() + 1)), n_boot)
        weights.append(counts[:, group_of].astype(float))
    w_pos, w_neg = weights
    draws = ((w_pos @ wins) * w_neg).sum(1) / (w_pos.sum(1) * w_neg.sum(1))
    low, high = (float(v) for v in np.quantile(draws, [alpha / 2, 1 - alpha / 2]))
    members = {lab: np.unique(groups[positive == lab]) for lab in (True, False)}
    k = min(len(members[True]), len(members[False]))
    value = auroc(positive, score)
    if value == 1.0:
        low = min(low, (alpha / 2) ** (1 / k))
    elif value == 0.0:
        high = max(high, 1 - (alpha / 2) ** (1 / k))
    return low, high
