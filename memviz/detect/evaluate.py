"""Every detector against the planted ground truth of a model: AUROC and TPR at 1% FPR,
at prompt level (planted memorized prompts against ordinary prompts) and at sample level
(planted training images against the rest), for each (n, steps) as in Jeon et al.'s Table 1."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from memviz.data import PlantedTruth
from memviz.detect.cost import Meter
from memviz.detect.metrics import auroc, auroc_interval, tpr_at_fpr
from memviz.detect.prompts import NoTrainingImages, prompt_scores
from memviz.detect.registry import detectors, serving
from memviz.lid.flipd import DEFAULT_T0
from memviz.model.adapter import DiffusionModel

KEYS = (
    "detector",
    "level",
    "split",
    "n",
    "steps",
    "guidance_scale",
    "auroc",
    "auroc_low",
    "auroc_high",
    "tpr_at_1pct_fpr",
    "n_pos",
    "n_neg",
    "seconds_per_query",
    "model_calls_per_query",
    "peak_memory_mb",
    "setting",
)


def eval_detection(
    study,
    n: Sequence[int] = (1, 4),
    steps: Sequence[int] = (1, 5, 50),
    reps: int = 5,
    n_ordinary: int = 200,
    sample_steps: int = 50,
    seed: int = 0,
    progress: bool = True,
    scores: list | None = None,
    names: Sequence[str] | None = None,
    t0: float = DEFAULT_T0,
    calibrate: float | None = None,
    guidance_scale: float | None = None,
    notes: list | None = None,
    labelled=None,
    batch_size: int | None = None,
) -> list[dict]:
    """Rows of ``KEYS``, one per registered detector (or only ``names``), level, split and (n, steps)
    (None where it does not apply), with a 95% bootstrap interval of the AUROC and the costs
    measured in this run (``memviz.detect.cost``).

    Args:
        study: a ``Study`` (``memviz.open_study``). Sample level
            scores its analysed rows: every planted training image and ``n_ordinary`` ordinary ones,
            read through the Study, so each row's values and verdict are the app's.
        reps: independent groups of n generations per prompt (each group is one scored query,
            so a model with few prompts still gives a usable ROC curve; the interval resamples prompts).
        guidance_scale: w along the sampled trajectories (default: the model's; 7.5 for Stable Diffusion).
        calibrate: a fraction of the prompts (per label, seeded) on which the weights of the combined
            anisotropy score are fitted; it is then reported, beside the paper's weights, on the other
            prompts only (split "... held out"), never on the prompts it was fitted on.
        scores: if a list is given, every query's score is appended to it as a dict (detector,
            level, split, n, steps, positive, score), for ROC curves.
        notes: if a list is given, a sentence for each detector left out because the model cannot serve it.
        labelled: a ``PromptSet`` with labels (``memviz.data.prompt_sets``: the user's own memorized and
            ordinary prompts, ``labelled_prompts``): prompt level on these instead of planted truth, one
            evaluation row per split of its split column ("all" without one); sample level then needs
            planted truth and is left out.

    Splits: "exact" (the planted prompts, or planted training images, against ordinary ones) and, for
    text models, "paraphrase" (near copies of the planted captions the model never saw, against the
    same ordinary prompts).
    """
    if isinstance(study, DiffusionModel):
        if labelled is None:
            _truth(study)
        raise ValueError("eval_detection reads a Study: pass memviz.open_study(model).")
    truth = _truth(study.model) if labelled is None else None
    if calibrate is not None and not 0 < calibrate < 1:
        raise ValueError(f"calibrate is the fraction of prompts to fit on, strictly between 0 and 1; got {calibrate}.")
    rows = []
    sample_dets = serving(study.model, "sample", names, notes) if labelled is None else []
    prompt_dets = [d.name for d in serving(study.model, "prompt", names, notes)]
    if labelled is not None and study.train is None:
        left = [name for name in prompt_dets if "training images" in detectors(names=[name])[0].needs]
        if left and notes is not None:
            notes.append(f"{', '.join(left)} left out: they read the training images, and no data was given.")
        prompt_dets = [name for name in prompt_dets if name not in left]
    if prompt_dets:
        if labelled is None:
            prompts, splits, ordinary = _prompts(study.model, truth)
            masks = _planted_masks(prompts, splits, ordinary)
        else:
            prompts, masks, splits, ordinary = _labelled(study.model, labelled, notes)
        ps = prompt_scores(
            study.model,
            prompts,
            study.reference if study.train is not None else NoTrainingImages(),
            max(n),
            max(steps),
            reps,
            sample_steps,
            t0=t0,
            seed=seed,
            progress=progress,
            names=prompt_dets,
            runner=study.runner,
            spec=study.spec,
            guidance_scale=guidance_scale,
            batch_size=batch_size,
        )
        for split, (mask, label) in masks.items():
            for n_, s_ in ((a, b) for a in sorted(set(n)) for b in sorted(set(steps))):
                table = ps.table(n_, s_)
                table = table[np.repeat(mask, reps)]
                positive = np.repeat(label, reps)[np.repeat(mask, reps)]
                for det in detectors("prompt", prompt_dets):
                    if (not det.stepwise and s_ != max(steps)) or (det.stepwise and det.steps_for(s_) < s_):
                        continue  # scored once; or past its protocol's steps
                    at = s_ if det.stepwise else (None if det.noise is not None else sample_steps)
                    cost = (ps.seconds_for(det.name, n_, s_), ps.calls_for(det.name, s_), ps.peak_mb[det.name])
                    rows.append(
                        _row(
                            det.name,
                            "prompt",
                            split,
                            n_,
                            at,
                            positive,
                            table[det.name].to_numpy(),
                            table.prompt.map(str).to_numpy(),
                            cost,
                            ps.guidance_scale,
                            _setting(det, study),
                            scores,
                            [{"row": -1, "prompt": str(p), "group": int(g)} for p, g in zip(table.prompt, table.group)],
                            reps,
                        )
                    )
        if calibrate is not None and {"asthana-norm", "asthana-cos"} <= set(prompt_dets):
            rows += _calibrated(ps, splits, ordinary, sorted(set(n)), calibrate, seed, study.model, scores)
        elif calibrate is not None and notes is not None:
            notes.append("--calibrate fits the anisotropy weights and needs asthana-norm and asthana-cos.")
    if sample_dets:
        planted = int((study.kind(study.train.first_rows()) != "none").sum())
        sample = study.with_n(planted + n_ordinary)
        positive = sample.kind(sample.rows) != "none"
        for det in sample_dets:
            if "condition" in det.needs and not sample.conditional:
                continue
            with Meter(study.model) as m:
                score = det.sign * np.asarray(det.sample(sample, sample.rows, t0), dtype=float)
            k = len(sample.rows)
            rows.append(
                _row(
                    det.name,
                    "sample",
                    "exact",
                    None,
                    None,
                    positive,
                    score,
                    np.arange(k),
                    (m.seconds / k, m.calls / k, m.peak_mb),
                    None,
                    "",
                    scores,
                    [{"row": int(r), "prompt": "", "group": -1} for r in sample.rows],
                )
            )
    return rows


def _planted_masks(prompts: list, splits: dict, ordinary: list) -> dict:
    """split -> ((P,) which prompts it evaluates, (P,) which of them are memorized), from the planted lists."""
    out = {}
    for split, planted in splits.items():
        keep, pos = set(planted) | set(ordinary), set(planted)
        out[split] = (np.array([p in keep for p in prompts]), np.array([p in pos for p in prompts]))
    return out


def _labelled(model, labelled, notes) -> tuple[list, dict, dict, list]:
    """(the scoreable prompts, split -> (mask, label) over them, split -> memorized prompts, ordinary
    prompts) of a labelled ``PromptSet``; a class with fewer than 2 prompts is an error, fewer than 20 a note."""
    from memviz.detect.scan import conditions

    if labelled.labels is None:
        raise ValueError(f"{labelled.source} has no labels; give a label column (--label-column).")
    conds, why = conditions(model, labelled.prompts)
    ok = np.array([c is not None for c in conds])
    if not ok.all() and notes is not None:
        bad = [f"{p[:40]!r} ({w})" for p, w, c in zip(labelled.prompts, why, conds) if c is None]
        notes.append(f"{len(bad)} prompts left out, as they cannot be scored: {'; '.join(bad[:5])}.")
    prompts = [c for c in conds if c is not None]
    label = labelled.labels[ok]
    split = labelled.splits[ok] if labelled.splits is not None else np.full(len(prompts), "all")
    masks, pos_lists = {}, {}
    for s in dict.fromkeys(split):
        mask = split == s
        n_pos, n_neg = int((label & mask).sum()), int((~label & mask).sum())
        if min(n_pos, n_neg) < 2:
            raise ValueError(
                f"Split {s!r} of {labelled.source} has {n_pos} memorized and {n_neg} ordinary prompts that can be "
                "scored; each needs at least 2."
            )
        if min(n_pos, n_neg) < 20 and notes is not None:
            notes.append(
                f"split {s!r} has {n_pos} memorized and {n_neg} ordinary prompts: with fewer than 20 in a "
                "class the AUROC's 95% interval is wide; read it, not the point."
            )
        masks[s] = (mask, label)
        pos_lists[s] = [p for p, m, lab in zip(prompts, mask, label) if m and lab]
    return prompts, masks, pos_lists, [p for p, lab in zip(prompts, label) if not lab]


def _setting(det, study) -> str:
    return _paper_weights(study.model)[0] if det.name == "asthana" else ""


def _paper_weights(model) -> tuple[str, tuple[float, float]]:
    """(the row's setting, (g1, g2)): the anisotropy paper's weights for this model's family."""
    from memviz.detect.asthana import weights

    g = weights(model)
    return "paper weights g1 = {:g}, g2 = {:g}".format(*g), g


def _calibrated(ps, splits: dict, ordinary: list, ns: list, fraction: float, seed: int, model, keep) -> list[dict]:
    """The combined anisotropy score with weights fitted (logistic regression on the two parts) on
    ``fraction`` of the prompts of each label, reported on the others beside the paper's weights."""
    from sklearn.linear_model import LogisticRegression

    paper = _paper_weights(model)
    rng = np.random.default_rng(seed)
    planted = next(iter(splits.values()))  # the first split's (planted: "exact"); near copies follow their source
    fit_on = set()
    for group in (planted, ordinary):
        order = rng.permutation(len(group))
        fit_on |= {group[i] for i in order[: max(1, int(round(fraction * len(group))))]}
    fit_on |= {
        p
        for split, items in splits.items()
        if split != "exact"  # a near copy goes where its source went
        for p, source in zip(items, planted)
        if source in fit_on
    }
    rows = []
    for n_ in ns:
        table = ps.table(n_, 1)
        feats = table[["asthana-norm", "asthana-cos"]].to_numpy()
        fit = table.prompt.isin(fit_on).to_numpy()
        label = table.prompt.isin(sum(splits.values(), [])).to_numpy()
        scale = feats[fit].std(0) + 1e-12
        coef = LogisticRegression(C=1e4).fit(feats[fit] / scale, label[fit]).coef_[0] / scale
        g = coef / abs(coef[0]) if coef[0] != 0 else coef
        cost = (ps.seconds_for("asthana", n_, 1), ps.calls_for("asthana", 1), ps.peak_mb["asthana"])
        for split, items in splits.items():
            held = (~fit) & table.prompt.isin(items + ordinary).to_numpy()
            positive = table.prompt[held].isin(items).to_numpy()
            groups = table.prompt[held].map(str).to_numpy()
            who = [
                {"row": -1, "prompt": str(p), "group": int(r)} for p, r in zip(table.prompt[held], table.group[held])
            ]
            for setting, (g1, g2) in (
                paper,
                (f"calibrated g1 = {g[0]:.3g}, g2 = {g[1]:.3g} on {len(fit_on)} prompts", g),
            ):
                rows.append(
                    _row(
                        "asthana",
                        "prompt",
                        f"{split}, held out",
                        n_,
                        None,
                        positive,
                        g1 * feats[held, 0] + g2 * feats[held, 1],
                        groups,
                        cost,
                        ps.guidance_scale,
                        setting,
                        keep,
                        who,
                        table.group.nunique(),
                    )
                )
    return rows


def _prompts(model: DiffusionModel, truth: PlantedTruth) -> tuple[list, dict, list]:
    """(every prompt evaluated, split name -> its planted prompts, the ordinary prompts).
    Class models: every label, the planted prompts after the ordinary digits ("exact" only). Text
    models: the unique captions of the planted images ("exact") and a near copy of each that the model
    never saw ("paraphrase", ``memviz.data.captions.paraphrased_prompts``), against one templated
    caption per digit seen in training and one never seen (free text)."""
    if model.is_text_conditional and "captions" in model.meta:
        from memviz.data.captions import ordinary_captions, paraphrased_prompts, planted_prompts

        table = model.meta["captions"]
        planted, near = planted_prompts(table), paraphrased_prompts(table)
        ordinary = [
            ordinary_captions(table, d, which)[0]
            for which in ("templates", "unseen_templates")
            for d in range(truth.n_ordinary)
        ]
        return planted + near + ordinary, {"exact": planted, "paraphrase": near}, ordinary
    prompts = list(range(len(truth.class_names)))
    return prompts, {"exact": prompts[truth.n_ordinary :]}, prompts[: truth.n_ordinary]


def _row(
    detector,
    level,
    split,
    n,
    steps,
    positive,
    score,
    groups,
    cost,
    guidance_scale,
    setting,
    keep=None,
    ids=None,
    reps=1,
) -> dict:
    """One evaluation row; with ``keep``, every query's score too, named by its identity (a training
    row at sample level; a prompt and a group of its generations at prompt level). n_pos and n_neg
    count prompts (sample level: images), each scored as ``reps`` queries."""
    if keep is not None:
        keep += [
            {
                "detector": detector,
                "level": level,
                "split": split,
                "n": n,
                "steps": steps,
                "setting": setting,
                **who,
                "positive": bool(p),
                "score": float(v),
            }
            for p, v, who in zip(positive, score, ids, strict=True)
        ]
    low, high = auroc_interval(positive, score, groups)
    seconds, calls, peak = cost
    return {
        "detector": detector,
        "level": level,
        "split": split,
        "n": n,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "auroc": auroc(positive, score),
        "auroc_low": low,
        "auroc_high": high,
        "tpr_at_1pct_fpr": tpr_at_fpr(positive, score, 0.01),
        "n_pos": int(positive.sum()) // reps,
        "n_neg": int((~positive).sum()) // reps,
        "seconds_per_query": float(seconds),
        "model_calls_per_query": float(calls),
        "peak_memory_mb": float(peak),
        "setting": setting,
    }


def _truth(model: DiffusionModel) -> PlantedTruth:
    if "planted" not in model.meta:
        raise ValueError(
            "This model has no planted ground truth in its memviz.json; eval-detection needs a model "
            "trained on planted data (a bundled demo, or `memviz train`)."
        )
    return PlantedTruth.from_dict(model.meta["planted"])


def report(rows: list[dict]):
    """eval-detection rows (``KEYS``) as a pandas.DataFrame ordered by the registry, with each
    detector's sign, cost and paper; rows of detectors no longer registered are left out."""
    import pandas as pd

    from memviz.detect.registry import DETECTORS

    rows = [{"split": "exact", "seconds_per_query": r.get("seconds"), **r} for r in rows]  # reports before the splits
    frame = pd.DataFrame(rows, columns=list(KEYS))
    frame = frame[frame.detector.isin(list(DETECTORS))]
    order = {name: i for i, name in enumerate(DETECTORS)}
    frame = frame.assign(_order=frame.detector.map(order)).sort_values(
        ["level", "split", "_order", "n", "steps"], kind="stable"
    )
    info = {name: (d.sign, d.cost, d.paper) for name, d in DETECTORS.items()}
    for i, col in enumerate(("sign", "cost", "paper")):
        frame[col] = frame.detector.map(lambda name, i=i: info[name][i])
    return frame.drop(columns="_order").reset_index(drop=True)


def backwards(rows) -> list[str]:
    """One sentence per detector whose whole 95% interval lies below 0.5 in ``rows`` (a DataFrame of
    eval-detection rows): on this model it ranks the memorized queries last, against its paper's sign."""
    out = []
    for name, part in rows[rows.auroc_high < 0.5].groupby("detector", sort=False):
        worst = part.sort_values("auroc").iloc[0]
        where = ", ".join(
            f"{k} = {worst[k]:g}" for k in ("n", "steps") if worst[k] == worst[k] and worst[k] is not None
        )
        setting = f" with {worst.setting}" if isinstance(worst.setting, str) and worst.setting else ""
        out.append(
            f"{name}{setting} ranks the memorized queries backwards on this model: AUROC {worst.auroc:.2f} "
            f"(95% interval {worst.auroc_low:.2f} to {worst.auroc_high:.2f}{', ' + where if where else ''}). "
            f"Its sign comes from its paper's models; here a higher score means less memorized, so do not "
            f"read it as the paper does (a calibration, --calibrate, fits the sign where it combines parts)."
        )
    return out
