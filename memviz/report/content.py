"""What an audit report says, as data: every number read from the Study's store (computed there only
where it is missing), every figure from ``memviz.figures.builders``. ``memviz.report.render`` turns a
``Report`` into HTML or PDF; a notebook can read its tables directly.

Sections, in the order a reader needs them: summary (headline numbers), model and data, the MMH
verdicts with the most memorized images, the prompt scan, detection, mitigation, methods and
reproducibility, glossary. A section whose input is missing (no prompts, no labels, no mitigation
run, no planted truth) says what is unknown and how to supply it, instead of vanishing.

Example:
    >>> study = memviz.open_study("demo-mnist-text")
    >>> rep = build_report(study, prompts=read_prompts("prompts.jsonl", label_column="memorized"))
    >>> rep.headline, rep.verdicts
"""

from __future__ import annotations

import json
import platform
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from memviz.lid.flipd import DEFAULT_T0

TOP_IMAGES = 8  # the most memorized training images shown, each beside its nearest training images
TOP_PROMPTS = 10  # the scan's top prompts listed
EXAMPLES = 4  # flagged prompts shown with their generations beside their nearest training images
NEIGHBOURS = 4
STAGES = ("model and data", "verdicts", "prompt scan", "copies", "detection", "mitigation", "methods")


@dataclass
class Report:
    """An audit report of one model on one data set.

    Attributes:
        headline (dict): the numbers of the summary (JSON-able; the HTML embeds them as ``memviz-numbers``):
            training_analysed, verdicts {verdict: count}, planted {kind: {verdict: count}} where the data
            plant memorization, prompts, prompts_scored, prompts_flagged, generations, generations_copying.
        summary (str): the summary paragraph.
        model, data (list[tuple[str, str]]): what was audited, as (field, value).
        verdicts (pandas.DataFrame): verdict, images, share; threshold (str): how the threshold was set.
        memorized (list[dict]): the most memorized training images: row, file, verdict, kind, flipd, lid_mle,
            copies, reason, image (C, H, W) in [0, 1], neighbours (k, C, H, W), neighbour_files, distances.
        scan (pandas.DataFrame | None): the top prompts (or None, with ``unknown["scan"]``); scan_table the whole.
        examples (list[dict]): prompt, copies, nearest_file, grid (2k, C, H, W): k generations, then their
            nearest training images.
        detection (pandas.DataFrame | None): eval-detection rows (``memviz.detect.evaluate.report``);
            detection_source (str).
        mitigation (pandas.DataFrame | None): one row per method (mean over prompts); mitigation_rows (all).
        figures (dict): name -> plotly Figure (map, spectra, roc, cost, pareto).
        methods (list[tuple[str, str]]), thresholds (pandas.DataFrame | None), commands (list[str]).
        unknown (dict): section -> the sentence saying what is not known and how to supply it.
        notes (list[str]); glossary (list[tuple[str, str]]); seconds (dict): stage -> seconds.
    """

    title: str
    created: str
    headline: dict
    summary: str = ""
    model: list = field(default_factory=list)
    data: list = field(default_factory=list)
    verdicts: object = None
    threshold: str = ""
    memorized: list = field(default_factory=list)
    scan: object = None
    scan_table: object = None
    scan_scores: object = None
    examples: list = field(default_factory=list)
    detection: object = None
    detection_source: str = ""
    detection_name: str = ""
    detection_table: object = None
    mitigation: object = None
    mitigation_rows: object = None
    figures: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    thresholds: object = None
    commands: list = field(default_factory=list)
    unknown: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    glossary: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    scan_settings: dict = field(default_factory=dict)
    mitigation_settings: dict = field(default_factory=dict)


def build_report(
    study,
    prompts=None,
    reference: object = "auto",
    mitigation: str | Path | None = None,
    detection: str | Path | None = None,
    t0: float = DEFAULT_T0,
    n: int = 4,
    steps: int = 1,
    k: int = 4,
    seed: int = 0,
    detectors: list[str] | None = None,
    sample_steps: int = 50,
    progress: bool = True,
    on_progress: Callable[[float, str], None] | None = None,
) -> Report:
    """The report of ``study`` (``memviz.open_study``).

    Args:
        prompts: a ``PromptSet`` (scanned through the store: what a scan already scored is read back),
            a saved scan (``memviz.detect.scan.ScanResult``, as ``read_scan`` gives), or None.
        reference: prompts trusted as ordinary that set the scan's thresholds (a ``PromptSet``),
            ``"training-captions"``, None for no flags, or "auto": the prompt file's ordinary-labelled
            prompts when it has labels, else training captions where the data have conditions.
        mitigation: the folder ``memviz mitigate --out`` wrote (report.json, pareto.json with --sweep).
        detection: an eval-detection JSON (``--json``); default the model folder's ``eval_detection.json``.
        n, steps: generations per prompt and first steps of the scan; k: generations per flagged prompt
            judged for copies; detectors: the scan's (default every prompt-level one the model serves);
            sample_steps: the sampler's steps (of the generations judged for copies, and of the detectors
            that score finished generations).
        on_progress: ``on_progress(fraction, stage)`` before each stage (the app's progress bar).
    """
    from tqdm.auto import tqdm

    rep = Report(
        title=f"Memorization audit of {_model_name(study)}",
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        headline={},
    )
    bar = tqdm(total=len(STAGES), desc="report", disable=not progress, unit="section")
    clock = time.perf_counter()

    def stage(i: int, name: str) -> None:
        nonlocal clock
        if i:
            rep.seconds[STAGES[i - 1]] = time.perf_counter() - clock
            bar.update(1)
        clock = time.perf_counter()
        bar.set_postfix_str(name)
        if on_progress is not None:
            on_progress(i / len(STAGES), name)

    stage(0, STAGES[0])
    _model_and_data(study, rep)
    stage(1, STAGES[1])
    if study.train is not None:
        study.prepare()
        _verdicts(study, rep, t0)
    else:
        rep.unknown["verdicts"] = (
            f"No training images were given ({study.error or 'none'}), so no training image has a verdict; "
            "give them with --data."
        )
    stage(2, STAGES[2])
    scan_result = _scan(study, rep, prompts, reference, n, steps, seed, detectors, sample_steps)
    stage(3, STAGES[3])
    if scan_result is not None:
        _copies(study, rep, scan_result, k, seed, sample_steps)
    stage(4, STAGES[4])
    _detection(study, rep, prompts, detection, n, steps, seed, scan_result, sample_steps)
    stage(5, STAGES[5])
    _mitigation(rep, mitigation)
    stage(6, STAGES[6])
    _methods(study, rep, scan_result, t0, prompts, mitigation, n, steps, k, seed)
    _summary(rep)
    stage(len(STAGES), "done")
    bar.close()
    return rep


# ---- model and data --------------------------------------------------------------------------
def _model_name(study) -> str:
    return str(study.model.meta.get("name") or study.path or "a loaded model")


def _model_and_data(study, rep: Report) -> None:
    from memviz.io.cache import fingerprint, model_fingerprint

    model, meta = study.model, study.model.meta
    folder = study.folder
    unet = model._unet  # built, or lazy (memviz.model.loading.LazyUNet): its weights are read, not built
    params = sum(int(np.prod(t.shape)) for t in unet.state_dict().values())
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors")) if folder is not None else 0
    cond = "text" if model.is_text_conditional else "class" if model.is_class_conditional else "unconditional"
    scheduler = model.scheduler.config
    rep.model = [
        ("name", _model_name(study)),
        ("folder", str(folder) if folder is not None else "a loaded model"),
        ("fingerprint (SHA-256 of weights and schedule)", model_fingerprint(model)),
        (
            "UNet",
            f"{getattr(unet, 'class_name', type(unet).__name__)}, {params:,} parameters",
        ),
        ("weights on disk", f"{weights / 2**20:,.1f} MiB (safetensors)" if weights else "unknown"),
        ("sample shape (C, H, W)", " x ".join(map(str, model.sample_shape)) + f" (D = {model.dim:,})"),
        ("latent", "yes (a VAE; every estimate is in latent space)" if model.vae is not None else "no (pixels)"),
        ("prediction", model.prediction_type),
        ("schedule", f"{type(model.scheduler).__name__}, {scheduler.get('num_train_timesteps', '?')} steps"),
        ("conditioning", cond + (f" ({len(model.class_names)} classes)" if model.class_names else "")),
        ("guidance scale", f"{float(model.guidance_scale):g}"),
        (
            "training images seen",
            f"{meta['training']['images_seen']:,}"
            if "images_seen" in meta.get("training", {})
            else "unknown (not recorded in memviz.json)",
        ),
    ]
    train = study.train
    if train is None:
        rep.data = [("training data", study.error or "none given")]
        return
    copies = train.copies()
    rep.data = [
        ("source", study.data_path or "the model's own training data (memviz.json)"),
        ("fingerprint (SHA-256 of the images)", fingerprint(train.images)),
        ("images", f"{len(train):,} at " + " x ".join(map(str, train.shape)) + " (C, H, W)"),
        ("distinct images", f"{len(train.first_rows()):,}"),
        (
            "rows whose image is stored more than once",
            f"{int((copies > 1).sum()):,} (largest group {int(copies.max()):,})",
        ),
        (
            "conditions",
            "captions" if train.captions is not None else "class labels" if train.labels is not None else "none",
        ),
        (
            "held-out images",
            f"{len(study.test):,}" + (f" ({study.holdout_path})" if study.holdout_path else "")
            if study.test is not None
            else "none",
        ),
        ("analysed", f"{len(study.rows):,} training images (every planted one first, then a seeded sample)"),
    ]
    rep.notes += [f"data: {note}" for d in (train, study.test) if d is not None for note in d.meta.get("notes", [])]


# ---- verdicts --------------------------------------------------------------------------------
def _verdicts(study, rep: Report, t0: float) -> None:
    import pandas as pd

    from memviz.figures.builders import map_figure, spectrum_figure
    from memviz.hessian.spectrum import affordable_method
    from memviz.hessian.summary import default_tau
    from memviz.lid.verdict import DATA_THRESHOLD, VERDICTS

    table = study.table(t0)
    threshold = study.threshold(t0)
    counts = table.verdict.value_counts().reindex(list(VERDICTS), fill_value=0)
    rep.verdicts = pd.DataFrame(
        {"verdict": counts.index, "images": counts.to_numpy(), "share": counts.to_numpy() / max(len(table), 1)}
    )
    rep.threshold = study.threshold_source(t0)
    rep.headline["training_analysed"] = int(len(table))
    rep.headline["verdicts"] = {k: int(v) for k, v in counts.items()}
    rep.headline["threshold"] = float(threshold)
    rep.headline["held_out_images"] = 0 if study.test is None else int(len(study._default_rows(None, held_out=True)))
    if (table.kind != "none").any():
        cross = pd.crosstab(table.kind, table.verdict).reindex(columns=list(VERDICTS), fill_value=0)
        rep.headline["planted"] = {kind: {v: int(c) for v, c in row.items()} for kind, row in cross.iterrows()}
    memorized = table[table.verdict != "not memorized"].sort_values("flipd")
    per = max(TOP_IMAGES // max(memorized.verdict.nunique(), 1), 1)  # each kind shown, the lowest LID_theta first
    shown = memorized.groupby("verdict", sort=False).head(per).head(TOP_IMAGES)
    if len(shown) == 0:
        rep.unknown["memorized"] = (
            "No analysed training image is memorized by the MMH rule at this threshold; the images with the lowest "
            "LID_theta are shown instead, for comparison."
        )
        shown = table.sort_values("flipd").head(NEIGHBOURS)
    files = study.train.meta.get("files")
    pictures = study.train.images.shape[-1] > 1  # images, not points (the toy demo's 2-D points)
    for r in shown.itertuples(index=False):
        nb, nb_copies = study.neighbor_groups(int(r.row), NEIGHBOURS + 1)
        keep = nb.index != r.row
        idx, dist = nb.index[keep][:NEIGHBOURS], nb.distance[keep][:NEIGHBOURS]
        below = r.lid_mle < DATA_THRESHOLD
        reason = (
            f"LID_theta {r.flipd:.1f} {'<' if r.flipd < threshold else '>='} threshold {threshold:.1f}; "
            f"LID* {r.lid_mle:.1f} {'<' if below else '>='} {DATA_THRESHOLD:g}"
            + (f"; its image is stored {int(r.copies)} times" if r.copies > 1 else "")
        )
        rep.memorized.append(
            {
                "row": int(r.row),
                "file": files[int(r.row)] if files is not None else f"row {int(r.row)}",
                "verdict": r.verdict,
                "kind": r.kind,
                "flipd": float(r.flipd),
                "lid_mle": float(r.lid_mle),
                "copies": int(r.copies),
                "reason": reason,
                "image": _unit(study.image(int(r.row))[None])[0] if pictures else None,
                "neighbours": _unit(study.images(idx)) if pictures else None,
                "neighbour_files": [files[int(i)] if files is not None else f"row {int(i)}" for i in idx],
                "distances": [float(d) for d in dist],
            }
        )
    # the map of images or of points alike
    rep.figures["map"] = map_figure(
        table[["x", "y"]].to_numpy(),
        color=table.verdict.to_numpy(),
        title="UMAP map of the analysed images, by MMH verdict",
    )
    if affordable_method(study.model) is not None and len(memorized):
        pick = {
            f"most memorized (row {int(memorized.row.iloc[0])})": int(memorized.row.iloc[0]),
            f"most ordinary (row {int(table.sort_values('flipd').row.iloc[-1])})": int(
                table.sort_values("flipd").row.iloc[-1]
            ),
        }
        rep.figures["spectra"] = spectrum_figure(
            {name: study.spectrum(row, t0) for name, row in pick.items()},
            tau=default_tau(study.model, t0),
            title=f"Hessian spectra at t0 = {t0:g}",
        )
    elif affordable_method(study.model) is None:
        rep.unknown["spectra"] = f"No Hessian spectrum at D = {study.model.dim:,} on a CPU; run on a GPU."


def _unit(images):
    from memviz.data.base import to_unit

    return to_unit(images).numpy()


# ---- the prompt scan and its copies -----------------------------------------------------------
def _scan(study, rep: Report, prompts, reference, n: int, steps: int, seed: int, names, sample_steps: int):
    from memviz.detect.registry import DETECTORS
    from memviz.detect.scan import ScanResult, scan

    if prompts is None:
        rep.unknown["scan"] = (
            "No prompt list was given, so no prompt was scored and no generation judged for copies; give one "
            "with --prompts FILE (a .txt, a .jsonl such as Wen et al.'s, a .csv or a .parquet)."
        )
        return None
    if isinstance(prompts, ScanResult):  # a copy: judging copies adds columns, and the caller's stays as it was
        result = ScanResult(prompts.table.copy(), dict(prompts.thresholds), dict(prompts.settings), list(prompts.notes))
    else:
        if not (study.model.is_text_conditional or study.model.is_class_conditional):
            rep.unknown["scan"] = "This model is unconditional: it has no prompts to scan."
            return None
        if reference == "auto":
            reference = _auto_reference(study, prompts)
            if getattr(reference, "source", "").startswith("the prompts"):
                rep.notes.append(
                    "The thresholds are set on the file's own ordinary-labelled prompts, so at most the chosen "
                    "false-positive rate of them is flagged by construction; give prompts the model never saw "
                    "labelled (--reference FILE) for a flag rate that estimates the false-positive rate."
                )
        result = scan(
            study,
            prompts,
            names=names,
            n=n,
            steps=steps,
            sample_steps=sample_steps,
            seed=seed,
            reference=reference,
            progress=False,
        )
    rep.notes += [f"scan: {note}" for note in result.notes]
    table = result.table
    dets = [d for d in result.detectors if d in table]
    scored = table[dets].notna().any(axis=1) if dets else table.prompt.notna() & False
    rep.headline["prompts"] = int(len(table))
    rep.headline["prompts_scored"] = int(scored.sum())
    rep.scan_table = table
    rep.thresholds = None
    if result.thresholds:
        import pandas as pd

        rep.thresholds = pd.DataFrame(
            [
                {
                    "detector": d,
                    **{k: t[k] for k in ("direction", "threshold", "fpr", "reference_fpr", "n_reference")},
                    "reference": _short(t.get("reference", "")),
                    "flagged": int(table[f"flag_{d}"].sum()),
                }
                for d, t in result.thresholds.items()
            ]
        )
        rep.headline["prompts_flagged"] = int(table["flagged"].sum())
    else:
        rep.unknown["flags"] = (
            "No reference prompts set thresholds, so prompts are ranked by score but none is flagged; give "
            "prompts you trust as ordinary (--reference FILE) or --reference training-captions."
        )
    # ranked by the first detector in registry order (oriented by its sign), flagged prompts first
    first = dets[0] if dets else None
    order = table.assign(
        _flag=table["flagged"] if "flagged" in table else False,
        _score=DETECTORS[first].sign * table[first] if first else 0.0,
    ).sort_values(["_flag", "_score"], ascending=False, na_position="last")
    top = order.head(TOP_PROMPTS)
    rep.scan = top[["prompt"]].copy()
    if result.thresholds:
        rep.scan["flagged by"] = [
            ", ".join(d for d in result.thresholds if bool(r[f"flag_{d}"])) or "none" for _, r in top.iterrows()
        ]
    rep.scan["note"] = top["note"]
    rep.scan_scores = (
        top[dets].rename(index=dict(zip(top.index, range(1, len(top) + 1)))).T.reset_index(names="detector")
    )
    rep.scan.insert(0, "#", range(1, len(top) + 1))
    rep.scan_settings = result.settings
    return result


def _short(text: str, k: int = 48) -> str:
    return text if len(text) <= k else text[: k - 1] + "…"


def _auto_reference(study, prompts):
    """The ordinary-labelled prompts of a labelled file; else training captions where the data have conditions."""
    from memviz.data.prompt_sets import from_list
    from memviz.detect.scan import TRAINING_CAPTIONS

    if getattr(prompts, "labels", None) is not None and (~prompts.labels).sum() >= 2:
        ordinary = [p for p, lab in zip(prompts.prompts, prompts.labels) if not lab]
        return from_list(ordinary, source=f"the prompts {prompts.source} labels ordinary")
    if study.train is not None and study.model.conditions_of(study.train) is not None:
        return TRAINING_CAPTIONS
    return None


def _copies(study, rep: Report, result, k: int, seed: int, sample_steps: int) -> None:
    from memviz.detect.scan import scan_copies

    table = result.table
    if study.train is None:
        rep.unknown["copies"] = "No training images were given, so no generation could be judged a copy; give --data."
        return
    if "flagged" not in table:
        rep.unknown["copies"] = "No prompt is flagged (no reference), so no generation was judged for copies."
        return
    if "copies" in table and table["copies"].notna().any():  # a saved scan judged already
        judged = table[table["copies"].notna()]
        k = int(result.settings.get("copies", {}).get("k", k))
        grids = None
    else:
        grids = scan_copies(study, result, k=k, steps=sample_steps, seed=seed, progress=False)
        judged = table[table["copies"].notna()]
    rep.headline["generations"] = int(len(judged) * k)
    rep.headline["generations_copying"] = int(judged["copies"].sum())
    if rep.scan is not None:  # the top prompts' table gains the copy columns
        cols = [c for c in ("copies", "nearest_file") if c in table]
        rep.scan = rep.scan.drop(columns=[c for c in cols if c in rep.scan]).join(table[cols])
    if grids is None:
        return
    where = np.flatnonzero(table["copies"].notna().to_numpy())
    best = np.argsort(-table["copies"].to_numpy()[where], kind="stable")[:EXAMPLES]
    for j in best:
        row = table.iloc[where[j]]
        rep.examples.append(
            {
                "prompt": row.prompt,
                "copies": int(row.copies),
                "k": k,
                "nearest_file": row.nearest_file,
                "grid": grids[j].numpy(),
            }
        )


# ---- detection and mitigation ------------------------------------------------------------------
def _detection(study, rep: Report, prompts, detection, n, steps, seed, result, sample_steps) -> None:
    import pandas as pd

    from memviz.detect.evaluate import eval_detection, report
    from memviz.detect.metrics import roc_points
    from memviz.figures.builders import cost_figure, roc_figure

    labelled = getattr(prompts, "labels", None) is not None
    scores = []
    if labelled:
        notes: list = []
        rows = eval_detection(
            study,
            n=[n],
            steps=[steps],
            reps=1,
            sample_steps=sample_steps,
            labelled=prompts,
            seed=seed,
            progress=False,
            scores=scores,
            notes=notes,
            names=result.detectors if result is not None else None,
        )
        rep.notes += [f"detection: {note}" for note in notes]
        rep.detection_name = f"the labels of {prompts.source}"
        rep.detection_source = (
            f"{rep.detection_name} ({int(prompts.labels.sum()):,} memorized, "
            f"{int((~prompts.labels).sum()):,} ordinary), scored as the scan scores them (n = {n}, steps = {steps})"
        )
        scores = pd.DataFrame(scores)
    else:
        path = Path(detection) if detection else (study.folder / "eval_detection.json" if study.folder else None)
        if path is None or not path.exists():
            rep.unknown["detection"] = (
                "No labelled prompts, so how well each detector separates memorized from ordinary prompts on this "
                "model is unknown; give --prompts with a label column (--label-column), or an eval-detection "
                "JSON (--detection FILE, from `memviz eval-detection --memorized A --ordinary B --json FILE`)."
            )
            return
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError(f"{path} is not an eval-detection JSON (a list of rows).")
        rep.detection_name = path.name
        rep.detection_source = f"{path.name}, stored beside the model" if not detection else str(path)
        parquet = path.with_name("eval_scores.parquet")
        scores = pd.read_parquet(parquet) if parquet.exists() else pd.DataFrame()
    frame = report(rows)
    rep.detection = frame
    rep.detection_table = detection_table(frame)
    if len(frame) == 0:
        return
    level = "prompt" if (frame.level == "prompt").any() else "sample"
    part = frame[(frame.level == level) & (frame.split == frame[frame.level == level].split.iloc[0])]
    rep.figures["cost"] = cost_figure(part, title=f"AUROC against cost ({level} level, split {part.split.iloc[0]})")
    if len(scores):
        best = part.sort_values("auroc", ascending=False).drop_duplicates("detector")
        curves = {}
        for r in best.itertuples(index=False):
            g = scores[(scores.detector == r.detector) & (scores.level == level) & (scores.split == r.split)]
            if r.n == r.n and r.n is not None and "n" in g:
                g = g[g.n == r.n]
            if r.steps == r.steps and r.steps is not None and "steps" in g:
                g = g[(g.steps == r.steps) | g.steps.isna()]
            if len(g) and g.positive.nunique() == 2:
                curves[r.detector] = roc_points(g.positive.to_numpy(bool), g.score.to_numpy(float))
        if curves:
            rep.figures["roc"] = roc_figure(curves, title=f"ROC curves ({level} level, each detector's best setting)")


def detection_table(frame):
    """eval-detection rows as the report prints them: one compact row each (AUROC with its interval in
    one cell, counts as memorized / ordinary, whole numbers as such), narrow enough for A4."""
    import pandas as pd

    def whole(v):
        return "" if v is None or v != v else f"{int(v)}"

    return pd.DataFrame(
        {
            "detector": frame.detector,
            "level, split": [f"{lv},\u00a0{sp}" for lv, sp in zip(frame.level, frame.split)],
            "n, steps": [", ".join(x for x in (whole(a), whole(b)) if x) or "-" for a, b in zip(frame.n, frame.steps)],
            "AUROC [95% interval]": [
                f"{a:.3f}\u00a0[{lo:.3f},\u00a0{hi:.3f}]"
                for a, lo, hi in zip(frame.auroc, frame.auroc_low, frame.auroc_high)
            ],
            "TPR @ 1% FPR": frame.tpr_at_1pct_fpr.map(lambda v: f"{v:.3f}"),
            "memorized / ordinary": [f"{int(p)} / {int(q)}" for p, q in zip(frame.n_pos, frame.n_neg)],
            "s / query": frame.seconds_per_query.map(lambda v: f"{v:.3g}"),
            "calls / query": frame.model_calls_per_query.map(lambda v: f"{v:g}"),
            "sign": frame.sign.map(lambda v: "higher" if v > 0 else "lower"),
        }
    )


def _mitigation(rep: Report, mitigation) -> None:
    import pandas as pd

    from memviz.figures.builders import pareto_figure

    if mitigation is None:
        rep.unknown["mitigation"] = (
            "No mitigation run was given, so what stopping the copies costs is unknown; run `memviz mitigate "
            "--model M --prompts FILE --out DIR` and give --mitigation DIR."
        )
        return
    folder = Path(mitigation)
    file = folder / "report.json" if folder.is_dir() else folder
    if not file.exists():
        raise ValueError(f"{mitigation} holds no report.json of `memviz mitigate --out`.")
    got = json.loads(file.read_text())
    rows = pd.DataFrame(got.get("rows", []))
    if rows.empty:
        raise ValueError(f"{file} has no rows.")
    rep.mitigation_rows = rows
    rep.mitigation = (
        rows.groupby("method", sort=False)
        .agg(
            prompts=("prompt", "nunique"),
            copy_rate=("copy_rate", "mean"),
            utility=("utility", "mean"),
            seconds=("seconds", "sum"),
            model_calls=("model_calls", "sum"),
        )
        .reset_index()
    )
    rep.mitigation_settings = {k: got.get(k) for k in ("model", "n", "seed", "steps", "gate")}
    sweep = folder / "pareto.json" if folder.is_dir() else None
    front = pd.DataFrame(json.loads(sweep.read_text())) if sweep is not None and sweep.exists() else rows
    rep.figures["pareto"] = pareto_figure(
        front, title="Copy rate against utility, per method" + (" and knob setting" if front is not rows else "")
    )
    why = rows.drop_duplicates("prompt")
    why = why[why.get("utility_note", pd.Series("", index=why.index)).fillna("") != ""]
    rep.notes += [f"mitigation: utility of {str(p)[:60]!r} is NaN: {w}" for p, w in zip(why.prompt, why.utility_note)]


# ---- methods, summary ----------------------------------------------------------------------------
def _methods(study, rep: Report, result, t0, prompts, mitigation, n, steps, k, seed) -> None:
    import diffusers
    import torch

    import memviz
    from memviz import glossary
    from memviz.lid.verdict import DATA_THRESHOLD, FALSE_POSITIVE_RATE, VERDICT_LID
    from memviz.neighbors.index import COPY_THRESHOLD

    rep.methods = [
        ("memviz", getattr(memviz, "__version__", "unknown")),
        ("torch", torch.__version__),
        ("diffusers", diffusers.__version__),
        ("python", platform.python_version()),
        ("machine", f"{platform.system()} {platform.machine()}"),
        ("t0 and t grid", f"t0 = {t0:g}; FLIPD on {len(study.ts)} times from {study.ts[0]:.3g} to {study.ts[-1]:.3g}"),
        ("FLIPD trace", f"{study.trace} ({study.n_probes} probes), seed {study.seed}"),
        (
            "verdict rule",
            f"memorized when LID_theta is below the {FALSE_POSITIVE_RATE:.0%} quantile of the reference "
            f"images' (held-out, else the analysed ones); DD-Mem when LID* ({VERDICT_LID}) < {DATA_THRESHOLD:g}",
        ),
        ("verdict threshold", rep.threshold or "none (no training data)"),
        ("copy rule", f"calibrated l2 < {COPY_THRESHOLD:g} (Carlini et al. 2023)"),
        (
            "feature space (copies, map)",
            "pixels" if study.features is None else f"the image embedder in {study.features} (unit vectors)",
        ),
        ("neighbour index", _index_line(study) if study.train is not None else "none (no training data)"),
    ]
    if result is not None:
        s = result.settings
        rep.methods.append(
            (
                "scan",
                f"n = {s.get('n')} generations a prompt, first {s.get('steps')} steps of "
                f"{s.get('sample_steps')}, w = {s.get('guidance_scale')}, base seed {s.get('seed')} "
                "(each prompt's seed from its text)",
            )
        )
    model = shlex.quote(str(study.path or "MODEL"))
    data = f" --data {shlex.quote(study.data_path)}" if study.data_path else ""
    hold = f" --holdout {shlex.quote(study.holdout_path)}" if study.holdout_path else ""
    nn = f" --n {study.n}" if study.n is not None else ""
    rep.commands = [f"memviz compute lid --model {model}{data}{hold}{nn} --t0 {t0:g} --out lid.parquet"]
    source = getattr(prompts, "source", None) or (result.settings.get("prompts") if result is not None else None)
    if result is not None and source:
        ref = result.thresholds and next(iter(result.thresholds.values())).get("reference", "")
        ref_arg = (
            " --reference training-captions"
            if str(ref).startswith("training-captions")
            else " --reference ORDINARY_PROMPTS"
            if ref
            else ""
        )
        rep.commands.append(
            f"memviz scan --model {model}{data} --prompts {shlex.quote(str(source))} --n {n} --steps {steps} "
            f"--seed {seed}{ref_arg}" + (f" --generate {k}" if ref else "") + " --out scan.parquet"
        )
    if getattr(prompts, "labels", None) is not None:
        rep.commands.append(
            f"memviz eval-detection --model {model}{data} --prompts {shlex.quote(str(prompts.source))} "
            f"--label-column {shlex.quote(str(prompts.label_column))} --n {n} --steps {steps} --reps 1 --seed {seed}"
        )
    elif rep.detection is not None:
        rep.commands.append(
            f"memviz eval-detection --model {model} --json eval_detection.json --scores eval_scores.parquet"
        )
    if mitigation is not None:
        m = rep.mitigation_settings
        rep.commands.append(
            f"memviz mitigate --model {model}{data} --prompts PROMPTS --n {m.get('n')} "
            f"--seed {m.get('seed')} --steps {m.get('steps')} --out {shlex.quote(str(mitigation))}"
        )
    rep.glossary = list(glossary.TERMS.items())


def _summary(rep: Report) -> None:
    h, parts = rep.headline, []
    if "prompts" in h:
        flagged = (
            f"{h['prompts_flagged']:,} of {h['prompts_scored']:,} scored prompts are flagged by at least one detector"
            if "prompts_flagged" in h
            else f"{h['prompts_scored']:,} of {h['prompts']:,} prompts were scored (none flagged: no reference)"
        )
        parts.append(flagged)
        if "generations" in h:
            parts.append(
                f"{h['generations_copying']:,} of their {h['generations']:,} generations copy a training image"
            )
    else:
        parts.append("no prompt list was scanned")
    if "verdicts" in h:
        v = h["verdicts"]
        mem = v.get("OD-Mem", 0) + v.get("DD-Mem", 0)
        parts.append(
            f"{mem:,} of {h['training_analysed']:,} analysed training images are memorized by the MMH rule "
            f"({v.get('OD-Mem', 0):,} OD-Mem, overfitting-driven; {v.get('DD-Mem', 0):,} DD-Mem, data-driven)"
        )
    rep.summary = "; ".join(parts) + "."
    if rep.detection is not None and len(rep.detection):
        best = rep.detection.sort_values("auroc", ascending=False).iloc[0]
        rep.summary += (
            f" The best detector on {rep.detection_name} is {best.detector} "
            f"(AUROC {best.auroc:.3f}, 95% interval {best.auroc_low:.3f} to {best.auroc_high:.3f})."
        )
    if rep.mitigation is not None:
        plain = rep.mitigation[rep.mitigation.method == "none"]
        best = rep.mitigation.sort_values("copy_rate").iloc[0]
        base = f" from {plain.copy_rate.iloc[0]:.0%} without mitigation" if len(plain) else ""
        rep.summary += f" The mitigation {best.method} brings the copy rate to {best.copy_rate:.0%}{base}."
    if "verdicts" in h and h.get("held_out_images") == 0:
        rep.summary += (
            " No held-out images were given, so the verdict's threshold comes from the analysed images themselves "
            "and about 5% of them are flagged whatever the model (give --holdout DIR)."
        )


def _index_line(study) -> str:
    """The reference index in one line: its kind, size and measured recall (``memviz.neighbors.index``)."""
    from memviz.neighbors.index import search_depth

    nn = study.reference
    if nn.kind == "flat":
        return f"exact (flat) over {len(nn):,} distinct training images"
    return f"{nn.kind} over {len(nn):,} images, recall@10 {nn.recall:.3f} on {nn.recall_sample:,} (depth {search_depth(nn)})"
