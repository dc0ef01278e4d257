"""Every detector against the planted ground truth of a model: AUROC and TPR at 1% FPR,
at prompt level (planted memorized prompts against ordinary prompts) and at sample level
(planted training images against the rest), for each (n, steps) as in Jeon et al.'s Table 1."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from memviz.data import PlantedTruth, training_data
from memviz.detect.metrics import auroc, tpr_at_fpr
from memviz.detect.prompts import PER_GENERATION, STEPWISE, prompt_scores
from memviz.detect.samples import sample_scores
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex

KEYS = ("detector", "level", "n", "steps", "auroc", "tpr_at_1pct_fpr", "n_pos", "n_neg", "seconds")


def eval_detection(model: DiffusionModel, n: Sequence[int] = (1, 4), steps: Sequence[int] = (1, 5, 50),
                   reps: int = 5, n_ordinary: int = 200, sample_steps: int = 50, seed: int = 0,
                   progress: bool = True, scores: list | None = None) -> list[dict]:
    """Rows of ``KEYS``, one per detector, level and (n, steps) (None where it does not apply).

    Args:
        reps: independent groups of n generations per prompt (each group is one scored query,
            so a model with few prompts still gives a usable ROC curve).
        n_ordinary: ordinary training images in the sample-level evaluation (all planted ones are in).
        scores: if a list is given, every query's score is appended to it as a dict (detector,
            level, n, steps, positive, score), for ROC curves.
    """
    truth = _truth(model)
    train, test = training_data(model.meta)
    prompts, planted = _prompts(model, truth)
    ps = prompt_scores(model, prompts, NeighborIndex(train.deduplicated().images), max(n), max(steps), reps,
                       sample_steps, seed=seed, progress=progress)
    rows = []
    for n_, s_ in ((a, b) for a in sorted(set(n)) for b in sorted(set(steps))):
        table = ps.table(n_, s_)
        positive = table.prompt.isin(planted).to_numpy()
        for det in STEPWISE + (PER_GENERATION if s_ == max(steps) else ()):
            rows.append(_row(det, "prompt", n_, s_ if det in STEPWISE else sample_steps, positive,
                             table[det].to_numpy(), ps.seconds_for(det, n_, s_), scores))
    rows += _sample_rows(model, train, test, truth, n_ordinary, seed, scores)
    return rows


def _prompts(model: DiffusionModel, truth: PlantedTruth) -> tuple[list, list]:
    """(every prompt evaluated, the planted ones). Class models: every label, the planted prompts
    after the ordinary digits. Text models: the unique captions of the planted images against
    one templated caption per digit seen in training and one never seen (free text)."""
    if model.is_text_conditional and "captions" in model.meta:
        from memviz.data.captions import ordinary_captions, planted_prompts

        table = model.meta["captions"]
        planted = planted_prompts(table)
        ordinary = [ordinary_captions(table, d, which)[0] for which in ("templates", "unseen_templates")
                    for d in range(truth.n_ordinary)]
        return planted + ordinary, planted
    prompts = list(range(len(truth.class_names)))
    return prompts, prompts[truth.n_ordinary:]


def _sample_rows(model, train, test, truth, n_ordinary, seed, keep=None) -> list[dict]:
    kind = np.asarray(truth.train_kind)
    first = train.first_rows()                      # each distinct training image once
    planted = first[kind[first] != "none"]
    rng = np.random.default_rng(seed)
    ordinary = rng.choice(first[kind[first] == "none"], min(n_ordinary, int((kind[first] == "none").sum())), False)
    frame, sec = sample_scores(model, train, np.r_[planted, ordinary], test.subset(np.arange(min(len(test), 200))))
    positive = frame.kind.to_numpy() != "none"
    scores = {name: -frame[name] for name in ("flipd_uncond", "flipd_cond", "nn_distance") if name in frame}
    scores |= {name: frame[name] for name in ("n_sharp_uncond", "n_sharp_cond", "jeon_sample") if name in frame}
    for name, col, flipd_col in (("mmh_verdict", "verdict", "flipd_uncond"),
                                 ("mmh_verdict_cond", "verdict_cond", "flipd_cond")):
        if col in frame:
            scores[name] = frame[col].isin(["OD-Mem", "DD-Mem"]).astype(float)
            sec[name] = sec.get(flipd_col, 0.0)
    sec["nn_distance"] = 0.0
    return [_row(name, "sample", None, None, positive, np.asarray(v, dtype=float), sec.get(name, 0.0), keep)
            for name, v in scores.items()]


def _row(detector, level, n, steps, positive, score, seconds, keep=None) -> dict:
    if keep is not None:
        keep += [{"detector": detector, "level": level, "n": n, "steps": steps, "positive": bool(p), "score": float(v)}
                 for p, v in zip(positive, score, strict=True)]
    return {"detector": detector, "level": level, "n": n, "steps": steps, "auroc": auroc(positive, score),
            "tpr_at_1pct_fpr": tpr_at_fpr(positive, score, 0.01), "n_pos": int(positive.sum()),
            "n_neg": int((~positive).sum()), "seconds": float(seconds)}


def _truth(model: DiffusionModel) -> PlantedTruth:
    if "planted" not in model.meta:
        raise ValueError("This model has no planted ground truth in its memviz.json; eval-detection needs a model "
                         "trained on planted data (a bundled demo, or `memviz train`).")
    return PlantedTruth.from_dict(model.meta["planted"])
