"""Every detector against the planted ground truth of a model: AUROC and TPR at 1% FPR,
at prompt level (planted memorized prompts against ordinary prompts) and at sample level
(planted training images against the rest), for each (n, steps) as in Jeon et al.'s Table 1."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from memviz.data import PlantedTruth
from memviz.detect.metrics import auroc, tpr_at_fpr
from memviz.detect.prompts import prompt_scores
from memviz.detect.registry import detectors
from memviz.lid.flipd import DEFAULT_T0
from memviz.models import DiffusionModel

KEYS = ("detector", "level", "n", "steps", "auroc", "tpr_at_1pct_fpr", "n_pos", "n_neg", "seconds")


def eval_detection(study, n: Sequence[int] = (1, 4), steps: Sequence[int] = (1, 5, 50), reps: int = 5,
                   n_ordinary: int = 200, sample_steps: int = 50, seed: int = 0, progress: bool = True,
                   scores: list | None = None, names: Sequence[str] | None = None, t0: float = DEFAULT_T0) -> list[dict]:
    """Rows of ``KEYS``, one per registered detector (or only ``names``), level and (n, steps)
    (None where it does not apply).

    Args:
        study: a ``Study`` (or a ``DiffusionModel``, opened on its own training data). Sample level
            scores its analysed rows: every planted training image and ``n_ordinary`` ordinary ones,
            read through the Study, so each row's values and verdict are the app's.
        reps: independent groups of n generations per prompt (each group is one scored query,
            so a model with few prompts still gives a usable ROC curve).
        scores: if a list is given, every query's score is appended to it as a dict (detector,
            level, n, steps, positive, score), for ROC curves.
    """
    from memviz.study import Study, open_study

    if isinstance(study, DiffusionModel):
        _truth(study)
        study = open_study(study)
    truth = _truth(study.model)
    rows = []
    prompt_dets = [d.name for d in detectors("prompt", names)]
    if prompt_dets:
        prompts, planted = _prompts(study.model, truth)
        ps = prompt_scores(study.model, prompts, study.reference, max(n), max(steps), reps, sample_steps, t0=t0,
                           seed=seed, progress=progress, names=prompt_dets, runner=study.runner, spec=study.spec)
        for n_, s_ in ((a, b) for a in sorted(set(n)) for b in sorted(set(steps))):
            table = ps.table(n_, s_)
            positive = table.prompt.isin(planted).to_numpy()
            for det in detectors("prompt", prompt_dets):
                if det.stepwise or s_ == max(steps):
                    rows.append(_row(det.name, "prompt", n_, s_ if det.stepwise else sample_steps, positive,
                                     table[det.name].to_numpy(), ps.seconds_for(det.name, n_, s_), scores,
                                     [{"row": -1, "prompt": str(p), "group": int(g)}
                                      for p, g in zip(table.prompt, table.group)]))
    sample_dets = detectors("sample", names)
    if sample_dets:
        planted = int((study.kind(study.train.first_rows()) != "none").sum())
        sample = Study(study.model, study.train, study.test, n=planted + n_ordinary, n_probes=study.n_probes,
                       trace=study.trace, seed=study.seed, path=study.path, data_path=study.data_path)
        sample.runner, sample.batch_size = study.runner, study.batch_size
        positive = sample.kind(sample.rows) != "none"
        for det in sample_dets:
            if "condition" in det.needs and not sample.conditional:
                continue
            start = time.perf_counter()
            score = det.sign * np.asarray(det.sample(sample, sample.rows, t0), dtype=float)
            rows.append(_row(det.name, "sample", None, None, positive, score,
                             (time.perf_counter() - start) / len(sample.rows), scores,
                             [{"row": int(r), "prompt": "", "group": -1} for r in sample.rows]))
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


def _row(detector, level, n, steps, positive, score, seconds, keep=None, ids=None) -> dict:
    """One evaluation row; with ``keep``, every query's score too, named by its identity (a training
    row at sample level; a prompt and a group of its generations at prompt level)."""
    if keep is not None:
        keep += [{"detector": detector, "level": level, "n": n, "steps": steps, **who, "positive": bool(p),
                  "score": float(v)} for p, v, who in zip(positive, score, ids, strict=True)]
    return {"detector": detector, "level": level, "n": n, "steps": steps, "auroc": auroc(positive, score),
            "tpr_at_1pct_fpr": tpr_at_fpr(positive, score, 0.01), "n_pos": int(positive.sum()),
            "n_neg": int((~positive).sum()), "seconds": float(seconds)}


def _truth(model: DiffusionModel) -> PlantedTruth:
    if "planted" not in model.meta:
        raise ValueError("This model has no planted ground truth in its memviz.json; eval-detection needs a model "
                         "trained on planted data (a bundled demo, or `memviz train`).")
    return PlantedTruth.from_dict(model.meta["planted"])


def report(rows: list[dict]):
    """eval-detection rows (``KEYS``) as a pandas.DataFrame ordered by the registry, with each
    detector's sign, cost and paper; rows of detectors no longer registered are left out."""
    import pandas as pd

    from memviz.detect.registry import DETECTORS

    frame = pd.DataFrame(rows, columns=list(KEYS))
    frame = frame[frame.detector.isin(list(DETECTORS))]
    order = {name: i for i, name in enumerate(DETECTORS)}
    frame = frame.assign(_order=frame.detector.map(order)).sort_values(["level", "_order", "n", "steps"], kind="stable")
    info = {name: (d.sign, d.cost, d.paper) for name, d in DETECTORS.items()}
    for i, col in enumerate(("sign", "model calls", "paper")):
        frame[col] = frame.detector.map(lambda name, i=i: info[name][i])
    return frame.drop(columns="_order").reset_index(drop=True)
