"""What the app's panels show, as library calls on a ``Study`` (usable from a notebook too): one
training row's side-by-side view, and a comparison of prompts. Every number comes from the
Study's store or the detector registry; nothing here computes a quantity of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memviz.hessian.spectrum import affordable_method
from memviz.hessian.summary import default_tau
from memviz.lid.flipd import DEFAULT_T0, at_t0

NO_SPECTRUM = (
    "No spectrum on pick at D = {dim:,} on a CPU: Lanczos needs about 250 Hessian-vector products, each a "
    "double backward pass (hours at Stable Diffusion's size); use a GPU, or `memviz compute spectra` in "
    "the background."
)


@dataclass
class SampleView:
    """Everything the side-by-side panel shows for one training row.

    Attributes:
        row (int): the training row; values (dict): its row of ``Study.table`` (x, y NaN when the
            row is not analysed); image: (C, H, W) in [-1, 1].
        ts (np.ndarray), curves (dict): "uncond" / "cond" -> (T,) FLIPD against t; lid_star (dict).
        t0 (float); eigenvalues (np.ndarray): (m,) the Hessian spectrum at t0 (under its condition when
            the images have one); tau (float): the threshold of the counts.
        neighbors (np.ndarray): (k,) nearest other training rows, one per distinct image (duplicates
            grouped; the row's own image first when other rows hold it); distances (k,);
            neighbor_images (k, C, H, W); neighbor_copies (k,): how many training rows hold each.
        spectrum_note (str | None): why ``eigenvalues`` is empty, when the spectrum is out of reach here.
    """

    row: int
    values: dict
    image: object
    ts: np.ndarray
    curves: dict[str, np.ndarray]
    lid_star: dict[str, float]
    t0: float
    eigenvalues: np.ndarray
    tau: float
    neighbors: np.ndarray
    distances: np.ndarray
    neighbor_images: object
    neighbor_copies: np.ndarray
    spectrum_note: str | None = None


def sample_view(study, row: int, t0: float = DEFAULT_T0, k: int = 8, table=None) -> SampleView:
    """The side-by-side view of training row ``row`` (analysed or not: a row outside the analysed set
    has its values computed on demand, through the same store). ``table``: ``study.table(t0)``, if
    the caller has it."""
    row = study._check_row(row)
    table = study.table(t0) if table is None else table
    curves = {"uncond": study.flipd_grid(False, [row])[0]}
    if study.conditional:
        curves["cond"] = study.flipd_grid(True, [row])[0]
    hit = table[table["row"] == row]
    if len(hit):
        values = hit.iloc[0].to_dict()
    else:  # read off the curves just read, as the table reads its columns
        verdicts, _ = study.verdicts(t0, [row])
        flipd = {name: float(at_t0(study.ts, c[None], t0)[0]) for name, c in curves.items()}
        values = {
            "row": row,
            "kind": study.kind([row])[0],
            "flipd": flipd["cond" if study.conditional else "uncond"],
            "flipd_uncond": flipd["uncond"],
            **{f"lid_{m}": study.lid_data(m, [row])[0] for m in ("lpca", "mle")},
            "verdict": verdicts[0],
            "nn_distance": study.nn_distance([row])[0],
            "copies": int(study.copies([row])[0]),
            "x": np.nan,
            "y": np.nan,
            "label": study.train.labels[row] if study.train.labels is not None else -1,
        }
    eigenvalues, note = np.zeros(0), None
    if affordable_method(study.model) is None:
        note = NO_SPECTRUM.format(dim=study.model.dim)
    else:
        eigenvalues = study.spectrum(row, t0)
    nb, copies = study.neighbor_groups(row, k)
    return SampleView(
        row,
        values,
        study.image(row),
        np.asarray(study.ts),
        curves,
        {m: float(values[f"lid_{m}"]) for m in ("lpca", "mle")},
        float(t0),
        eigenvalues,
        default_tau(study.model, t0),
        nb.index,
        nb.distance,
        study.images(nb.index),
        copies,
        note,
    )


@dataclass
class PromptResult:
    """One prompt of a comparison: its generations with their evidence, every prompt-level detector's
    score (the mean over its generations, at the first sampling step for stepwise ones), and the
    Hessian spectrum of its first generation.

    Attributes:
        prompt; seed (int): generation i of the prompt is (prompt, seed, i); evidence (CopyEvidence);
        scores (dict): prompt, seed, copies, and one entry per detector (raw, see its sign);
        eigenvalues (np.ndarray): (m,); tau (float).
        mask (np.ndarray | None): (n, H, W) in [0, 1], where each generation is copied (Bright Ending:
            the end token's cross-attention at the final step); None for models without cross-attention.
    """

    prompt: object
    seed: int
    evidence: object
    scores: dict
    eigenvalues: np.ndarray
    tau: float
    mask: np.ndarray | None = None


def compare_prompts(
    study,
    prompts: list,
    n: int = 8,
    steps: int = 25,
    guidance_scale=None,
    seed: int = 0,
    t0: float = DEFAULT_T0,
    n_probes: int = 4,
) -> list[PromptResult]:
    """Generate n samples of each prompt (seeded) and score them with every registered prompt-level
    detector (``memviz.detect.prompts.score_generations``, the loop eval-detection runs).

    Steps per prompt: 1. generations, scored when finished and at the first step of the detection
    papers' 50-step schedule (the protocol's first time, whatever the sampler's ``steps``); 2. their nearest
    training images; 3. the spectrum of the first generation (``affordable_method``: none at Stable
    Diffusion's D on a CPU). Latent models are scored in latent space (their neighbours in pixels).
    """
    from memviz.detect.bright_ending import pixel_mask
    from memviz.detect.prompts import score_generations
    from memviz.hessian.spectrum import spectrum

    out, method = [], affordable_method(study.model)
    for p in prompts:
        scores, _, g = score_generations(
            study.model, p, study.reference, n, 1, steps, t0, n_probes, seed, guidance_scale=guidance_scale
        )  # 1.
        ev = g.copies  # 2.
        mask = None if g.attention is None else pixel_mask(g)
        row = {"prompt": p, "seed": seed, "copies": int(ev.is_copy.sum())}
        row |= {name: float(np.mean(v)) for name, v in scores.items()}
        ev_spec = (
            np.zeros(0) if method is None else spectrum(study.model, g.out.x0[:1], t0, cond=p, method=method).numpy()[0]
        )  # 3.
        out.append(PromptResult(p, seed, ev, row, ev_spec, default_tau(study.model, t0), mask))
    return out
