"""Scan a prompt list: one row per prompt with every prompt-level detector's score, thresholds set
on prompts the user trusts, and the copies a flagged prompt generates in the user's own data.

The scores are ``memviz.detect.prompts.prompt_scores`` (the store eval-detection reads: a prompt
scanned once is never scored again, whichever list it comes in, and an interrupted scan resumes);
each prompt's generations are seeded by its text. A threshold is the (1 - fpr) quantile of the
reference prompts' scores, oriented by the detector's sign in the registry (``Detector.sign``).

Example:
    >>> study = memviz.open_study("demo-mnist-text")
    >>> result = scan(study, read_prompts("prompts.txt"), reference=read_prompts("ordinary.txt"))
    >>> result.table.sort_values("wen", ascending=False).head()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from memviz.data.prompt_sets import PromptSet, from_list
from memviz.detect.prompts import NoTrainingImages, prompt_scores, prompt_seed
from memviz.detect.registry import DETECTORS, serving
from memviz.io.cache import RowStore, fingerprint, model_fingerprint
from memviz.io.guard import check_prompt
from memviz.runner.local import run

DEFAULT_FPR = 0.01
COPY_COLUMNS = ["copies", "copy_rate", "calibrated_l2", "nearest_row", "nearest_file"]
REFERENCE_CAPTIONS = 200  # training rows drawn for --reference training-captions
TRAINING_CAPTIONS = "training-captions"


@dataclass
class ScanResult:
    """A scanned prompt list.

    Attributes:
        table (pandas.DataFrame): one row per prompt, in file order: ``prompt``, every column of the
            file, ``note`` (why a prompt was not scored, or was read cut), one raw score per detector,
            and with a reference a boolean ``flag_<detector>`` each and ``flagged`` (any flag);
            with copies, ``copies``, ``copy_rate``, ``nearest_file``, ``nearest_row``, ``calibrated_l2``.
        thresholds (dict): detector -> {threshold, direction ("above" or "below": which side is
            memorized, from the registry's sign), fpr, reference_fpr (what it gives on the reference),
            n_reference, reference}.
        settings (dict): n, steps, sample_steps, seed, guidance_scale, model, prompts, detectors,
            seconds, prompts_per_second.
        notes (list[str]): sentences about the run (detectors left out, a small reference).
    """

    table: object
    thresholds: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def detectors(self) -> list[str]:
        return list(self.settings.get("detectors", []))

    def metadata(self) -> dict:
        """What the file keeps beside the table: settings, thresholds and notes (JSON-able)."""
        return {"memviz_scan": {"settings": self.settings, "thresholds": self.thresholds, "notes": self.notes}}


def scan(
    study,
    prompts: PromptSet | Sequence[str],
    names: Sequence[str] | None = None,
    n: int = 4,
    steps: int = 1,
    sample_steps: int = 50,
    seed: int = 0,
    reference: PromptSet | Sequence[str] | str | None = None,
    fpr: float = DEFAULT_FPR,
    guidance_scale: float | None = None,
    progress: bool = True,
    on_batch=None,
    batch_size: int | None = None,
) -> ScanResult:
    """Score every prompt of ``prompts`` with every prompt-level detector the model serves (or ``names``).

    Args:
        study: a ``Study`` (``memviz.open_study``): its model, and its training images where a detector
            reads them (the nearest-neighbour scores; left out, with a note, without data).
        n: generations per prompt; steps: the first sampling steps the stepwise detectors average
            (1: Wen's and Jeon's first-step protocol, no generation needed).
        reference: prompts trusted as ordinary (a ``PromptSet``, a list, or ``"training-captions"``,
            ``REFERENCE_CAPTIONS`` training rows' captions): each detector's threshold is set at
            ``fpr`` on them, and every prompt gets ``flag_<detector>``.
        on_batch: ``on_batch(done, total)`` after each batch of prompts.

    A prompt that cannot be scored (empty, over ``MAX_PROMPT_CHARS``, control characters, an unknown
    class) keeps its row with NaN scores and the reason in ``note``; the scan goes on.
    """
    import time

    model = study.model
    if not (model.is_text_conditional or model.is_class_conditional):
        raise ValueError("This model is unconditional: it has no prompts to scan.")
    if not 0 < fpr < 1:
        raise ValueError(f"fpr is a false-positive rate strictly between 0 and 1; got {fpr}.")
    ps = prompts if isinstance(prompts, PromptSet) else from_list(prompts)
    notes: list[str] = []
    has_index = study.train is not None
    dets = serving(model, "prompt", names, notes)
    if not has_index:
        left = [d.name for d in dets if "training images" in d.needs]
        if left and names:
            raise ValueError(f"{', '.join(left)} compare generations with training images; give --data.")
        if left:
            notes.append(f"{', '.join(left)} left out: they read the training images, and no data was given.")
        dets = [d for d in dets if "training images" not in d.needs]
    if not dets:
        raise ValueError("No prompt-level detector this model can serve was chosen.")
    conds, note = conditions(model, ps.prompts)
    ok = np.array([c is not None for c in conds])
    start = time.perf_counter()
    kw = dict(
        n=n,
        steps=steps,
        reps=1,
        sample_steps=sample_steps,
        seed=seed,
        names=[d.name for d in dets],
        guidance_scale=guidance_scale,
        progress=progress,
        runner=study.runner,
        spec=study.spec,
        batch_size=batch_size,
    )
    index = study.reference if has_index else NoTrainingImages()
    scored = (
        prompt_scores(model, [c for c in conds if c is not None], index, on_batch=on_batch, **kw) if ok.any() else None
    )
    seconds = time.perf_counter() - start
    ours = ["note"] + [d.name for d in dets] + [f"flag_{d.name}" for d in dets] + ["flagged"] + COPY_COLUMNS
    table = ps.table.rename(columns={c: f"{c}_in_file" for c in ps.table.columns if c in ours})  # the file's own
    table.insert(1, "note", note)
    for d in dets:
        col = np.full(len(table), np.nan)
        if scored is not None:
            col[ok] = _per_prompt(scored.scores[d.name], n, steps, d.stepwise)
        table[d.name] = col
    settings = {
        "model": str(study.path or "<loaded>"),
        "prompts": ps.source,
        "n": n,
        "steps": steps,
        "sample_steps": sample_steps,
        "seed": seed,
        "guidance_scale": float(model.guidance_scale if guidance_scale is None else guidance_scale),
        "detectors": [d.name for d in dets],
        "scored": int(ok.sum()),
        "seconds": seconds,
        "prompts_per_second": float(ok.sum() / seconds) if seconds > 0 else float("nan"),
    }
    result = ScanResult(table, {}, settings, notes)
    if reference is not None:
        ref = _reference(study, reference, seed)
        ref_conds, _ = conditions(model, ref.prompts)
        ref_conds = [c for c in ref_conds if c is not None]
        if len(ref_conds) < 2:
            raise ValueError(f"The reference {ref.source} has {len(ref_conds)} scoreable prompts; give at least 2.")
        ref_scores = prompt_scores(model, ref_conds, index, **{**kw, "progress": False})
        if len(ref_conds) < 1 / fpr:
            notes.append(
                f"With {len(ref_conds)} reference prompts a threshold at {fpr:.1%} FPR is their highest score; "
                f"give at least {int(np.ceil(1 / fpr))} for the rate to mean what it says."
            )
        for d in dets:
            ref_values = _per_prompt(ref_scores.scores[d.name], n, steps, d.stepwise)
            result.thresholds[d.name] = threshold_at(ref_values, d.sign, fpr) | {
                "n_reference": len(ref_conds),
                "reference": ref.source,
            }
        flag(result)
    return result


def threshold_at(reference: np.ndarray, sign: int, fpr: float) -> dict:
    """The one threshold rule: the score beyond which at most ``fpr`` of the ``reference`` (ordinary)
    prompts lie, on the memorized side of the detector's ``sign`` (+1: higher is memorized).

    Returns:
        {threshold, direction ("above" / "below"), fpr, reference_fpr (the rate on the reference itself)}.
    """
    oriented = sign * np.asarray(reference, dtype=float)
    oriented = oriented[np.isfinite(oriented)]
    cut = float(np.quantile(oriented, 1 - fpr, method="higher"))
    return {
        "threshold": sign * cut,
        "direction": "above" if sign > 0 else "below",
        "fpr": fpr,
        "reference_fpr": float((oriented > cut).mean()),
    }


def flag(result: ScanResult) -> None:
    """``flag_<detector>`` (memorized side of its threshold) and ``flagged`` (any) in ``result.table``."""
    table = result.table
    for name, t in result.thresholds.items():
        sign = 1 if t["direction"] == "above" else -1
        table[f"flag_{name}"] = (sign * table[name].to_numpy() > sign * t["threshold"]) & table[name].notna()
    table["flagged"] = table[[f"flag_{k}" for k in result.thresholds]].any(axis=1)


def conditions(model, prompts: Sequence[str]) -> tuple[list, list[str]]:
    """(each prompt as the model's condition, or None when it cannot be scored; the note of each):
    text models read the prompt (cut to the encoder's tokens, said in the note); class models a
    class name or index."""
    conds, notes = [], []
    max_tokens = getattr(model.tokenizer, "model_max_length", None) if model.is_text_conditional else None
    for p in prompts:
        try:
            c = _condition(model, p)
        except ValueError as exc:
            conds.append(None)
            notes.append(f"not scored: {str(exc).rstrip('.')}")
            continue
        conds.append(c)
        note = ""
        if max_tokens and model.tokenizer is not None:
            length = len(model.tokenizer(c, truncation=False).input_ids)
            if length > max_tokens:
                note = f"read as its first {max_tokens} tokens (of {length}), as the text encoder reads it"
        notes.append(note)
    return conds, notes


def _condition(model, prompt):
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("an empty prompt")
    if model.is_text_conditional:
        return check_prompt(prompt)
    names = model.class_names
    if prompt in names:
        return names.index(prompt)
    if prompt.strip().isdigit() and int(prompt) < len(names):
        return int(prompt)
    raise ValueError(f"{prompt[:40]!r} is not a class of this model ({', '.join(names[:12])})")


def _per_prompt(scores: np.ndarray, n: int, steps: int, stepwise: bool) -> np.ndarray:
    """(P,) a prompt's score: the mean over its n generations (and the first ``steps`` steps)."""
    return scores[:, 0, :n, :steps].mean((1, 2)) if stepwise else scores[:, 0, :n].mean(1)


def _reference(study, reference, seed: int) -> PromptSet:
    if isinstance(reference, PromptSet):
        return reference
    if isinstance(reference, str):
        if reference != TRAINING_CAPTIONS:
            raise ValueError(f"reference is a prompt list or {TRAINING_CAPTIONS!r}; got {reference!r}.")
        return training_captions(study, REFERENCE_CAPTIONS, seed)
    return from_list(list(reference), source="<reference>")


def training_captions(study, k: int = REFERENCE_CAPTIONS, seed: int = 0) -> PromptSet:
    """The distinct conditions of ``k`` training rows drawn at random (seeded): captions, or class names."""
    train = study.train
    if train is None:
        raise ValueError(f"--reference {TRAINING_CAPTIONS} draws from the training data; give --data.")
    conds = study.model.conditions_of(train)
    if conds is None:
        raise ValueError("The training data have no captions or labels to use as a reference.")
    rows = np.random.default_rng(seed).permutation(len(train))[:k]
    names = study.model.class_names if study.model.is_class_conditional else None
    picked = dict.fromkeys(names[conds[r]] if names else conds[r] for r in rows)
    return from_list(list(picked), source=f"{TRAINING_CAPTIONS} ({len(picked)} distinct of {len(rows)} rows)")


# ---- copies in the user's data ------------------------------------------------------------------
def scan_copies(
    study,
    result: ScanResult,
    k: int = 4,
    which: str = "flagged",
    steps: int = 50,
    seed: int = 0,
    guidance_scale: float | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Generate ``k`` images of each flagged prompt (``which="all"``: each scored prompt), find their
    nearest training images in the Study's data, and add the copy verdict to ``result.table``:
    ``copies`` (of k), ``copy_rate``, ``calibrated_l2`` (the smallest), ``nearest_row`` and
    ``nearest_file`` (the training file of the closest copy, or of the closest generation).

    Stored per prompt (model, data, k, steps, seed, w): a rerun reads them back.

    Returns:
        (P', 2k, C, H, W) in [0, 1]: for each judged prompt its k generations, then each one's nearest
        training image (``memviz.figures.builders.save_grid(grid, path, nrow=2 * k)``).
    """
    from memviz.neighbors.copies import evidence_of
    from memviz.neighbors.index import COPY_THRESHOLD

    if study.train is None:
        raise ValueError("Copies are judged against training images; give --data.")
    table = result.table
    if which == "flagged" and "flagged" not in table:
        raise ValueError("Only a scan with a reference flags prompts; give a reference, or judge all prompts.")
    pick = ~table["note"].str.startswith("not scored").to_numpy(dtype=bool)
    if which == "flagged":
        pick = pick & table["flagged"].to_numpy(dtype=bool)
    where = np.flatnonzero(pick)
    for col, empty in (("copies", np.nan), ("copy_rate", np.nan), ("calibrated_l2", np.nan), ("nearest_row", -1)):
        table[col] = empty
    table["nearest_file"] = ""
    if len(where) == 0:
        return torch.zeros((0, 2 * k, *study.model.pixel_shape))
    conds, _ = conditions(study.model, table.prompt.iloc[where].tolist())
    reference = study.reference
    rows_of = study.train.first_rows()  # reference index -> training row
    files = study.train.meta.get("files")
    w = float(study.model.guidance_scale if guidance_scale is None else guidance_scale)
    store = RowStore(
        "prompt_copies",
        fingerprint(model_fingerprint(study.model), fingerprint(reference.reference), k, steps, seed, w),
    )

    def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
        i = int(ids[0])
        out = study.model.sample(k, conds[i], steps, w, prompt_seed(conds[i], seed))
        ev = evidence_of(out, reference)
        return {
            "images": out.images[None].numpy(),
            "nearest": ev.nearest_images[None].numpy(),
            "calibrated": ev.calibrated[None],
            "neighbor": ev.neighbors[None, :, 0],
        }

    got = run(batch, np.arange(len(where)), [fingerprint(c) for c in conds], store, 1, "copies", progress)
    is_copy = got["calibrated"] < COPY_THRESHOLD
    best = got["calibrated"].argmin(1)
    nearest = rows_of[got["neighbor"][np.arange(len(where)), best]]
    table.loc[table.index[where], "copies"] = is_copy.sum(1)
    table.loc[table.index[where], "copy_rate"] = is_copy.mean(1)
    table.loc[table.index[where], "calibrated_l2"] = got["calibrated"].min(1)
    table.loc[table.index[where], "nearest_row"] = nearest
    table.loc[table.index[where], "nearest_file"] = [files[r] if files is not None else f"row {r}" for r in nearest]
    table["nearest_row"] = table["nearest_row"].astype(int)
    result.settings["copies"] = {
        "k": k,
        "which": which,
        "steps": steps,
        "threshold": COPY_THRESHOLD,
        "guidance_scale": w,
    }
    return torch.cat([torch.from_numpy(got["images"]), torch.from_numpy(got["nearest"])], 1)


def save_scan(result: ScanResult, path) -> list:
    """Write the table to ``path``: Parquet (settings and thresholds in the file's metadata, key
    ``memviz_scan``) or CSV (they go beside it in ``<path>.json``). Atomic. Returns the paths written."""
    import json
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from memviz.io.files import atomic_path, write_json

    path = Path(path)
    meta = result.metadata()
    if path.suffix == ".parquet":
        arrow = pa.Table.from_pandas(result.table, preserve_index=False)
        arrow = arrow.replace_schema_metadata(
            {**(arrow.schema.metadata or {}), b"memviz_scan": json.dumps(meta["memviz_scan"], default=float).encode()}
        )
        with atomic_path(path, ".parquet") as tmp:
            pq.write_table(arrow, tmp)
        return [path]
    with atomic_path(path, path.suffix or ".csv") as tmp:
        result.table.to_csv(tmp, index=False)
    side = path.with_name(path.name + ".json")
    write_json(side, meta)
    return [path, side]


def read_scan(path) -> ScanResult:
    """A scan written by ``save_scan`` (its table, settings and thresholds)."""
    import json
    from pathlib import Path

    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix == ".parquet":
        arrow = pq.read_table(path)
        meta = json.loads((arrow.schema.metadata or {}).get(b"memviz_scan", b"{}"))
        table = arrow.to_pandas()
    else:
        table = pd.read_csv(path, dtype={"prompt": str, "note": str}, keep_default_na=False, na_values=[""])
        side = path.with_name(path.name + ".json")
        meta = json.loads(side.read_text()).get("memviz_scan", {}) if side.exists() else {}
    return ScanResult(table, meta.get("thresholds", {}), meta.get("settings", {}), meta.get("notes", []))


def describe_thresholds(result: ScanResult) -> list[str]:
    """One line per detector: its threshold, its direction (from the registry) and how it was set."""
    out = []
    for name, t in result.thresholds.items():
        out.append(
            f"{name}: flag {t['direction']} {t['threshold']:.4g} ({'higher' if t['direction'] == 'above' else 'lower'}"
            f" = memorized; {t['fpr']:.1%} FPR on {t['n_reference']} reference prompts from {t['reference']})"
        )
    return out


def registry_direction(name: str) -> str:
    """'higher' or 'lower': which way a detector's score points to memorization (its registered sign)."""
    return "higher" if DETECTORS[name].sign > 0 else "lower"
