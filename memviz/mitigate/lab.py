"""The mitigation lab: run remedies on prompts and judge each by what it buys (the copy rate it
removes) and what it costs (utility, seconds, model calls), against the plain generation.

Steps, for a ``Study`` (its model, training images and their one copy rule):
1. the gate: each prompt scored by a registered prompt-level detector (default ``wen``) and
   flagged when its score passes a threshold calibrated on the conditions of ordinary training
   rows (their 95th percentile), or given; ``gate="none"`` flags every prompt;
2. for each prompt and method: n generations (seeded: generation i of a prompt is (prompt, seed,
   i) whatever the method changes), the method applied only to flagged prompts (the others get the
   plain generations), under a ``Meter`` (seconds, UNet calls);
3. each generation judged by the Prompts page's rule (calibrated l2 below 0.5 to its nearest
   training image: a copy; ``memviz.neighbors.copies.evidence_of``) and by the utility rule
   (``memviz.mitigate.utility``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memviz.mitigate.registry import mitigations
from memviz.mitigate.utility import expected_labels, label_accuracy

GATE_QUANTILE = 0.95  # the gate flags a prompt scoring above 95% of ordinary training conditions
CALIBRATION_ROWS = 16  # ordinary training rows whose conditions calibrate the gate


@dataclass
class LabResult:
    """What ``run_lab`` measured.

    Attributes:
        rows (pandas.DataFrame): one per prompt and method: prompt, memorization (the kind its training
            rows plant, ``prompt_memorization``), method, knob, flagged, applied,
            gate_score, copy_rate, own_copy_rate (copies of a training image whose condition is this
            prompt: the memorization the prompt itself carries), median_nn_distance, utility, utility_note (why
            utility is NaN, "" where it is not), seconds, model_calls (of the method's generations), gate_seconds, gate_model_calls (of scoring the
            prompt for the gate, when it was computed: once per prompt and memo, repeated on each of its
            rows; 0 without a gate), n, seed.
        images (np.ndarray): (K, C, H, W) float32 in [0, 1], pixel space; nearest (np.ndarray): the
            nearest training image of each, the same shape; prompt, method: (K,) str.
        gate (dict): detector, threshold, calibration (the conditions it was fitted on, their scores, and
            the seconds and UNet calls of scoring them, once per memo).
        notes (list[str]): methods left out and why.
    """

    rows: object
    images: np.ndarray
    nearest: np.ndarray
    prompt: np.ndarray
    method: np.ndarray
    gate: dict
    notes: list = field(default_factory=list)


def check_prompts(model, prompts) -> list:
    """The prompts as conditions, or ValueError in one sentence (a class the model lacks, an empty list)."""
    if not prompts:
        raise ValueError("Give at least one prompt.")
    if model.is_class_conditional:
        unknown = [p for p in prompts if str(p) not in model.class_names]
        if unknown:
            raise ValueError(f"The model has no class {unknown[0]!r}; its classes are {', '.join(model.class_names)}.")
        return [str(p) for p in prompts]
    if model.is_text_conditional:
        return [str(p) for p in prompts]
    raise ValueError("This model is unconditional: there is no prompt to mitigate.")


def prompt_sets(model) -> tuple[list, list]:
    """(planted, ordinary) prompts of a bundled demo (its ``memviz.json``): class models, the classes
    after the ``n_ordinary`` digits and the digits; text models, the planted captions and one templated
    caption per digit. Empty lists for a model that plants nothing."""
    if model.is_text_conditional:
        from memviz.data.captions import ordinary_captions, planted_prompts

        table = model.meta.get("captions")
        if not table:
            return [], []
        planted = planted_prompts(table)
        return planted, [ordinary_captions(table, d)[0] for d in range(10)][: max(len(planted), 1)]
    n_ordinary = model.meta.get("planted", {}).get("n_ordinary")
    if n_ordinary is None:
        return [], model.class_names
    return model.class_names[n_ordinary:], model.class_names[:n_ordinary]


def reference_conditions(study) -> np.ndarray:
    """(U,) the condition (class name or caption) of each image of ``study.reference`` (the first
    training row holding it), as str; "" where the data carry none."""
    rows = study.train.first_rows()
    if study.model.conditions_of(study.train) is None:
        return np.full(len(rows), "", dtype=object)
    return np.asarray([str(c) for c in row_prompts(study, rows)], dtype=object)


def row_prompts(study, rows) -> list:
    """The prompt of each training row in ``rows``: its class name (class models) or its caption."""
    conds, names = study.model.conditions_of(study.train), study.model.class_names
    return [names[conds[r]] if names else conds[r] for r in rows]


# what a prompt's training rows plant (``prompt_memorization``), and how the lab names it
MEMORIZATION = {
    "OD-Mem": "a prompt trained on a few images (OD-Mem)",
    "DD-Mem": "a duplicated image's own prompt (DD-Mem)",
    "DD-Mem among ordinary": "a duplicated image among the prompt's ordinary images",
    "none": "nothing planted",
    "unseen": "a prompt no training row carries",
    "mixed": "several planted kinds at once",
    "unknown": "no training conditions to look in",
    "not planted": "a prompt of data without planted truth (its copies say what it carries)",
}


_KIND_OF_ROWS = {
    frozenset({"OD-Mem"}): "OD-Mem",
    frozenset({"DD-Mem"}): "DD-Mem",
    frozenset({"none", "DD-Mem"}): "DD-Mem among ordinary",
    frozenset({"none"}): "none",
}


def prompt_memorization(study, prompts) -> list[str]:
    """The kind of memorization each prompt carries in the training data (a key of ``MEMORIZATION``),
    from the planted kinds of the training rows whose prompt it is: only OD-Mem rows, "OD-Mem"; only
    DD-Mem rows, "DD-Mem"; DD-Mem rows among unplanted ones, "DD-Mem among ordinary" (a prompt with
    content beyond its copy, as Stable Diffusion's template-memorized prompts); no planted row, "none";
    any other combination, "mixed"; no row, "unseen". The kind decides which remedies can work: only a
    prompt whose training rows hold ordinary images besides its copy gives a remedy that keeps following
    it something else to generate.
    Without planted ground truth (a user's data) every seen prompt is "not planted"; without training
    conditions, "unknown"."""
    if study.train is None or study.model.conditions_of(study.train) is None:
        return ["unknown"] * len(prompts)
    planted = "kind" in study.train.meta
    every = np.arange(len(study.train))
    by_prompt: dict = {}
    for prompt, kind in zip(row_prompts(study, every), study.kind(every)):  # a few thousand rows: milliseconds
        by_prompt.setdefault(str(prompt), set()).add(str(kind))
    out = []
    for p in prompts:
        kinds = frozenset(by_prompt.get(str(p), ()))
        out.append(
            _KIND_OF_ROWS.get(kinds, "unseen" if not kinds else "mixed") if planted or not kinds else "not planted"
        )
    return out


def gate_scores(study, prompts: list, detector: str, n: int, seed: int, steps: int) -> np.ndarray:
    """(P, 3): each prompt's sign-corrected prompt-level score of ``detector`` (higher = more memorized),
    the mean over its n generations at the first step (``memviz.detect.prompts.score_generations``),
    and the seconds and UNet calls that scoring took (what the gate costs, before any remedy)."""
    from memviz.detect import DETECTORS
    from memviz.detect.cost import Meter
    from memviz.detect.prompts import score_generations
    from memviz.detect.registry import serving

    d = serving(study.model, "prompt", [detector])[0]
    study.model.unet  # a lazy UNet is built here, not inside the first prompt's meter
    out = []
    for p in prompts:
        with Meter(study.model) as meter:
            values, _, _ = score_generations(study.model, p, study.reference, n, 1, steps, seed=seed, dets=[d])
        out.append((DETECTORS[detector].sign * float(np.mean(values[detector])), meter.seconds, meter.calls))
    return np.asarray(out, dtype=float).reshape(-1, 3)


def calibration_prompts(study, k: int = CALIBRATION_ROWS, seed: int = 0) -> list:
    """The distinct conditions of k random ordinary training rows (held once, nothing planted): ordinary
    prompts, as often as the data hold them."""
    conds = study.model.conditions_of(study.train)
    if conds is None:
        raise ValueError("The training data have no conditions (labels or captions) to calibrate the gate on.")
    every = np.arange(len(conds))
    ordinary = every[(study.train.copies() == 1) & (study.kind(every) == "none")]  # no duplicate, nothing planted
    rows = np.random.default_rng(seed).choice(ordinary, min(k, len(ordinary)), replace=False)
    return list(dict.fromkeys(row_prompts(study, rows)))


def run_lab(
    study,
    prompts,
    methods=("all",),
    n: int = 16,
    seed: int = 0,
    steps: int = 50,
    guidance_scale=None,
    gate: str = "wen",
    threshold: float | None = None,
    knobs: dict | None = None,
    memo: dict | None = None,
) -> LabResult:
    """Steps 1-3 of the module docstring. ``knobs``: method name -> its knob's value (default: its default).
    ``memo``: a dict shared by calls with the same study, n, seed, steps, guidance scale and gate (a
    sweep): each prompt's gate score and judged plain generation are then computed once."""
    import pandas as pd

    from memviz.detect.cost import Meter

    if n < 1 or steps < 1:
        raise ValueError(f"n and steps must be positive; got n={n}, steps={steps}.")
    model, notes = study.model, []
    prompts = check_prompts(model, list(prompts))
    chosen = mitigations(list(methods), model, notes)
    chosen = mitigations(["none"]) + [m for m in chosen if m.name != "none"]  # first: the reference of every row
    knobs = dict(knobs or {})
    for name, value in knobs.items():
        method = mitigations([name])[0]
        if method.knob is None:
            raise ValueError(f"{name} has no knob to set.")
        method.knob.check(value)
    gate_info: dict = {"detector": gate}
    memo = {} if memo is None else memo

    def scored(ps: list) -> np.ndarray:  # (P, 3) gate scores and costs, each prompt's computed once per memo
        new = list(dict.fromkeys(p for p in ps if ("gate", p) not in memo))
        memo.update({("gate", p): v for p, v in zip(new, gate_scores(study, new, gate, n, seed, steps) if new else [])})
        return np.asarray([memo["gate", p] for p in ps]).reshape(-1, 3)

    if gate == "none":
        flagged, scores = np.ones(len(prompts), bool), np.full(len(prompts), np.nan)
        gate_cost = np.zeros((len(prompts), 2))
    else:
        every = scored(prompts)
        scores, gate_cost = every[:, 0], every[:, 1:]
        if threshold is None:
            calib = calibration_prompts(study, seed=seed)
            calib_scored = scored(calib)
            calib_scores = calib_scored[:, 0]
            threshold = float(np.quantile(calib_scores, GATE_QUANTILE))
            gate_info |= {
                "calibration_prompts": calib,
                "calibration_scores": calib_scores.tolist(),
                "calibration_seconds": float(calib_scored[:, 1].sum()),
                "calibration_model_calls": int(calib_scored[:, 2].sum()),
            }
        flagged = scores > threshold
        gate_info["threshold"] = float(threshold)
    why: list[str] = []
    labels, kinds = expected_labels(study, prompts, why), prompt_memorization(study, prompts)
    rows, images, nearest, prompt_of, method_of = [], [], [], [], []
    for p, prompt in enumerate(prompts):
        for method in chosen:
            applied = method.name == "none" or bool(flagged[p])
            if method.name == "none" and ("none", prompt) in memo or not applied:
                judged = memo["none", prompt]  # the plain generation, judged once: unflagged prompts get it
            else:
                with Meter(model) as meter:
                    result = method(model, prompt, n, seed, steps, guidance_scale, knobs.get(method.name))
                judged = _judge(study, result, prompt, labels[p], memo) | {
                    "seconds": meter.seconds,
                    "model_calls": meter.calls,
                    "info": result.info,
                }
                if method.name == "none":
                    memo["none", prompt] = judged
            images.append(judged["images"])
            nearest.append(judged["nearest"])
            prompt_of += [str(prompt)] * n
            method_of += [method.name] * n
            rows.append(
                {
                    "prompt": str(prompt),
                    "memorization": kinds[p],
                    "method": method.name,
                    "knob": None if method.knob is None else knobs.get(method.name, method.knob.default),
                    "flagged": bool(flagged[p]),
                    "applied": applied,
                    "gate_score": float(scores[p]),
                    **{k: judged[k] for k in ("copy_rate", "own_copy_rate", "median_nn_distance", "utility")},
                    "utility_note": why[p],
                    "seconds": judged["seconds"] if applied else 0.0,
                    "model_calls": judged["model_calls"] if applied else 0,
                    "gate_seconds": float(gate_cost[p, 0]),
                    "gate_model_calls": int(gate_cost[p, 1]),
                    "n": n,
                    "seed": seed,
                    "info": judged["info"] if applied else {},
                }
            )
    return LabResult(
        pd.DataFrame(rows),
        np.concatenate(images).astype(np.float32),
        np.concatenate(nearest).astype(np.float32),
        np.asarray(prompt_of),
        np.asarray(method_of),
        gate_info,
        notes,
    )


def _judge(study, result, prompt, label, memo: dict) -> dict:
    """One method's n generations judged: images, nearest training images, copy_rate, own_copy_rate,
    median_nn_distance and utility (step 3 of the module docstring)."""
    from memviz.neighbors.copies import evidence_of

    ev = evidence_of(result.out, study.reference)
    if "conditions" not in memo:
        memo["conditions"] = reference_conditions(study)
    own = ev.is_copy & (memo["conditions"][ev.neighbors[:, 0]] == str(prompt))
    return {
        "images": result.out.images.float().numpy(),
        "nearest": ev.nearest_images.float().numpy(),
        "copy_rate": float(np.mean(ev.is_copy)),
        "own_copy_rate": float(np.mean(own)),
        "median_nn_distance": float(np.median(ev.distance[:, 0])),
        "utility": label_accuracy(study, result.out.images, label),
    }


def sweep(
    study,
    prompts,
    methods=("all",),
    n: int = 16,
    seed: int = 0,
    steps: int = 50,
    guidance_scale=None,
    gate: str = "wen",
    threshold: float | None = None,
    k: int = 5,
    memo: dict | None = None,
):
    """Each method's knob traced over ``Knob.sweep(k)`` settings: one row per (method, setting) with the
    copy rate and utility averaged over ``prompts`` (utility over those with a label), seconds and model
    calls, and ``front``: no other row copies less and keeps more (the Pareto front). The plain
    generation is one row (its setting None). ``memo``: as ``run_lab``'s (shared with a lab run of the
    same settings, the plain generations and gate scores are reused)."""
    import pandas as pd

    chosen = [m for m in mitigations(list(methods), study.model) if m.name != "none"]
    if not chosen:
        raise ValueError("A sweep traces a method's knob; name a method besides none.")
    out, memo = [], {} if memo is None else memo
    plain_done = False
    for m in chosen:
        for value in m.knob.sweep(k) if m.knob is not None else [None]:
            lab = run_lab(
                study,
                prompts,
                [m.name],
                n=n,
                seed=seed,
                steps=steps,
                guidance_scale=guidance_scale,
                gate=gate,
                threshold=threshold,
                knobs={} if value is None else {m.name: value},
                memo=memo,
            )
            threshold = lab.gate.get("threshold", threshold)  # calibrated once, then reused
            for name, g in lab.rows.groupby("method", sort=False):
                if name == "none" and plain_done:
                    continue
                plain_done = plain_done or name == "none"
                out.append(
                    {
                        "method": name,
                        "knob": None if name == "none" else value,
                        "copy_rate": float(g.copy_rate.mean()),
                        "utility": float(g.utility.mean()),
                        "seconds": float(g.seconds.sum()),
                        "model_calls": int(g.model_calls.sum()),
                    }
                )
    table = pd.DataFrame(out)
    table["front"] = pareto_front(table.copy_rate.to_numpy(), table.utility.to_numpy())
    return table


def pareto_front(copy_rate, utility) -> np.ndarray:
    """(M,) True where no other point copies less and keeps at least as much utility, or keeps more and
    copies at most as much (the Pareto front of copy rate against utility); NaN utility: never."""
    c, u = np.asarray(copy_rate, dtype=float), np.asarray(utility, dtype=float)
    ok = ~np.isnan(u)
    dominated = [
        bool(((c[ok] <= c[i]) & (u[ok] >= u[i]) & ((c[ok] < c[i]) | (u[ok] > u[i]))).any()) for i in range(len(c))
    ]
    return ok & ~np.asarray(dominated, dtype=bool)
