"""What the app shows, computed by the library (usable from a notebook too): a browse table of
per-sample metrics for a dataset, built from cached artifacts (FLIPD curves over a grid of t,
LID* on the shared neighbour graph, the UMAP map), and the side-by-side view of one sample
(cheap slices of those, plus its Hessian spectrum, cached per image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memviz.data.base import ImageDataset
from memviz.embed import fit_map
from memviz.hessian.runner import image_spectra
from memviz.hessian.spectrum import EXACT_MAX_DIM
from memviz.hessian.summary import default_tau, summarize
from memviz.lid.runner import compute_data_lid, compute_lid
from memviz.lid.verdict import calibrate_threshold, mmh_verdict
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborGraph, neighbor_graph

BROWSE_TS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass
class Browse:
    """Per-sample metrics of a dataset and the artifacts behind them.

    Attributes:
        data (ImageDataset): the samples (N).
        table (pandas.DataFrame): one row per sample: index, label, kind, flipd (at t0, under the
            sample's label when the model is conditional), flipd_uncond, lid_lpca, lid_mle, verdict,
            nn_distance (to the nearest other sample), x, y (the UMAP map).
        ts (np.ndarray): (T,) the FLIPD grid; curves (dict): "uncond" / "cond" -> (N, T).
        graph (NeighborGraph): the shared neighbour graph; t0 (float); threshold (float): the
            FLIPD threshold of the verdict.
        pixels (torch.Tensor): (N, C, H, W) the images to show, in [-1, 1]: ``data.images`` for
            pixel models, the images before encoding for latent models.
    """

    data: ImageDataset
    table: object
    ts: np.ndarray
    curves: dict[str, np.ndarray]
    graph: NeighborGraph
    t0: float
    threshold: float
    pixels: object = None
    conditions: list | None = None  # each sample's own condition (model.conditions_of), when "cond" in curves

    def __post_init__(self):
        if self.pixels is None:
            self.pixels = self.data.images


def browse(model: DiffusionModel, data: ImageDataset, t0: float = 0.05, ts=BROWSE_TS, n_probes: int = 2,
           threshold: float | None = None, reference: ImageDataset | None = None,
           stored: tuple[ImageDataset, np.ndarray] | None = None, progress: bool = False,
           on_progress=None) -> Browse:
    """The browse table of ``data`` (cached artifacts; a second call only reads them back).

    Steps: 1. FLIPD curves over ``ts``, unconditional and (class models) under each label;
    2. LID* (lPCA, MLE) and the nearest-other distance from the shared graph; 3. the UMAP map;
    4. the MMH verdict, its FLIPD threshold the 5% quantile over ``reference`` (held-out
    images; over ``data`` itself without one) unless given. Latent models: ``data`` (and
    ``reference``, ``stored``) are pixel images, encoded first (``to_model_space``); every
    estimate, LID* and the map included, is then in latent space, as in the MMH paper's SD runs.

    Args:
        stored: (training set as stored, rows) when ``data`` is ``stored.subset(rows)`` (distinct
            images, say): LID* and the nearest-other distance then come from the stored set,
            duplicates included, which is what lets a duplicated image read LID* 0 (DD-Mem).
        on_progress: ``on_progress(fraction, what)`` through the pass (an ``st.progress`` bar);
            cached artifacts report nothing.
    """
    import pandas as pd

    if t0 not in ts:
        raise ValueError(f"t0 = {t0} must be one of the grid's times {tuple(ts)}.")
    pixels = data.images
    data = to_model_space(model, data)
    reference = None if reference is None else to_model_space(model, reference)
    stored = None if stored is None else (to_model_space(model, stored[0]), stored[1])
    conditional = model.conditions_of(data) is not None
    stages = ["uncond"] + ["cond"] * conditional + ["reference"] * (threshold is None and reference is not None)
    report = _stage_reporter(on_progress, stages)
    curves = {"uncond": compute_lid(model, data, ts, n_probes=n_probes, methods=(), progress=progress,   # 1.
                                    on_batch=report("uncond")).flipd}
    if conditional:
        curves["cond"] = compute_lid(model, data, ts, n_probes=n_probes, conditional=True, methods=(),
                                     progress=progress, on_batch=report("cond")).flipd
    j = list(ts).index(t0)
    flipd = curves["cond" if conditional else "uncond"][:, j]
    graph = neighbor_graph(data.images, min(20, len(data) - 1))                                               # 2.
    if stored is None:
        lid_star, nearest = compute_data_lid(data.images, ("lpca", "mle")), graph.distance[:, 0]
    else:
        full, rows = stored
        lid_star = {m: v[rows] for m, v in compute_data_lid(full.images, ("lpca", "mle")).items()}
        nearest = neighbor_graph(full.images, 20).distance[rows, 0]
    xy = fit_map(data.images.flatten(1).numpy(), n_neighbors=min(15, len(data) - 1)).xy                        # 3.
    if threshold is None:                                                                                       # 4.
        ref = flipd if reference is None else _reference_flipd(model, reference, ts, j, conditional, n_probes,
                                                                report("reference"))
        threshold = calibrate_threshold(ref, 0.05)
    table = pd.DataFrame({
        "index": np.arange(len(data)), "label": data.labels if data.labels is not None else -1,
        "kind": np.asarray(data.meta.get("kind", np.full(len(data), "none"))), "flipd": flipd,
        "flipd_uncond": curves["uncond"][:, j], **{f"lid_{m}": v for m, v in lid_star.items()},
        "verdict": mmh_verdict(flipd, lid_star["mle"], model_threshold=threshold),
        "nn_distance": nearest, "x": xy[:, 0], "y": xy[:, 1]})
    return Browse(data, table, np.asarray(ts, dtype=float), curves, graph, float(t0), float(threshold), pixels,
                  model.conditions_of(data) if conditional else None)


def to_model_space(model: DiffusionModel, data: ImageDataset) -> ImageDataset:
    """Pixel images to the model's space (the VAE's scaled posterior means), cached on disk;
    pixel models' data unchanged."""
    from dataclasses import replace

    from memviz.cache import cached, fingerprint, model_fingerprint

    if model.vae is None:
        return data
    key = fingerprint(model_fingerprint(model), data.images)
    latents = cached("latents", key, lambda: {"z": model.encode(data.images).numpy()})["z"]
    return replace(data, images=torch.from_numpy(latents))


def _reference_flipd(model, reference, ts, j, conditional, n_probes, on_batch=None) -> np.ndarray:
    return compute_lid(model, reference, ts, n_probes=n_probes, conditional=conditional, methods=(),
                       progress=False, on_batch=on_batch).flipd[:, j]


STAGE_TEXT = {"uncond": "FLIPD curves, unconditional", "cond": "FLIPD curves under each label",
              "reference": "FLIPD of held-out images (the verdict's threshold)"}


def _stage_reporter(on_progress, stages: list[str]):
    """stage -> on_batch(done, total) callbacks mapping each stage's batches onto one overall
    fraction (equal shares; LID*, neighbours and the map take seconds and report nothing)."""
    def report(stage: str):
        if on_progress is None:
            return None
        k = stages.index(stage)
        return lambda done, total: on_progress((k + done / total) / len(stages),
                                               f"{STAGE_TEXT[stage]}: {done:,} of {total:,} images")
    return report


@dataclass
class SampleView:
    """Everything the side-by-side panel shows for one sample.

    Attributes:
        index (int); row (dict): its row of the browse table; image: (C, H, W) in [-1, 1].
        ts (np.ndarray), curves (dict): name -> (T,) FLIPD against t; lid_star (dict): method -> value.
        eigenvalues (np.ndarray): (D,) the Hessian spectrum at t0 (under its label when conditional);
        tau (float): the threshold of the counts.
        neighbors (np.ndarray): (k,) nearest other samples; distances (k,); neighbor_images (k, C, H, W).
        xy (np.ndarray): (2,) its place on the map.
        spectrum_note (str | None): why ``eigenvalues`` is empty, when the spectrum is out of reach here.
    """

    index: int
    row: dict
    image: object
    ts: np.ndarray
    curves: dict[str, np.ndarray]
    lid_star: dict[str, float]
    eigenvalues: np.ndarray
    tau: float
    neighbors: np.ndarray
    distances: np.ndarray
    neighbor_images: object
    xy: np.ndarray
    spectrum_note: str | None = None


def sample_view(model: DiffusionModel, b: Browse, i: int, k: int = 8) -> SampleView:
    """The side-by-side view of sample ``i`` of a ``Browse``: slices of its artifacts, plus the
    Hessian spectrum of that one image (cached; exact up to D = 4,096, the 20 at each end by
    Lanczos above, on a GPU only: on a CPU it takes hours at Stable Diffusion's D)."""
    if not 0 <= i < len(b.data):
        raise ValueError(f"Sample {i} does not exist; pick one of 0..{len(b.data) - 1}.")
    row = b.table.iloc[i].to_dict()
    one = b.data.subset([i])
    eigenvalues, note, method = np.zeros(0), None, spectrum_method(model)
    if method is not None:
        eigenvalues = image_spectra(model, one, b.t0, _conditions(b, [i]), method=method)[0]
    else:
        note = (f"No spectrum on pick at D = {model.dim:,} on a CPU: Lanczos needs about 250 Hessian-vector "
                "products, each a double backward pass (hours at Stable Diffusion's size); use a GPU, or "
                "`memviz compute spectra` in the background.")
    g = b.graph.first(min(k, b.graph.k))
    return SampleView(i, row, b.pixels[i], b.ts, {name: c[i] for name, c in b.curves.items()},
                      {m: float(row[f"lid_{m}"]) for m in ("lpca", "mle")}, eigenvalues, default_tau(model, b.t0),
                      g.index[i], g.distance[i], b.pixels[g.index[i]], np.array([row["x"], row["y"]]), note)


@dataclass
class PromptResult:
    """One prompt of a comparison: its generations with their evidence, its detector scores,
    and the Hessian spectrum of its first generation.

    Attributes:
        prompt; evidence (CopyEvidence); scores (dict): prompt, copies, mean calibrated l2,
        Wen and Jeon at the first step, mean FLIPD (conditional, unconditional) of the generations;
        eigenvalues (np.ndarray): (D,); tau (float).
    """

    prompt: object
    evidence: object
    scores: dict
    eigenvalues: np.ndarray
    tau: float


def compare_prompts(model: DiffusionModel, reference, prompts: list, n: int = 8, steps: int = 25,
                    guidance_scale: float | None = None, seed: int = 0, t0: float = 0.05) -> list[PromptResult]:
    """Generate n samples of each prompt (seeded) and score them with every detector.

    Steps per prompt: 1. generations and their nearest training images; 2. Wen's and Jeon's
    scores at the first sampling step (the same noise); 3. FLIPD of the generations; 4. the
    spectrum of the first generation (under its prompt; ``spectrum_method``: none at Stable
    Diffusion's D on a CPU). Latent models are scored in latent space (their neighbours in pixels).
    """
    from memviz.detect.wen import wen_score
    from memviz.hessian.sharpness import jeon_score
    from memviz.hessian.spectrum import spectrum
    from memviz.lid.flipd import flipd
    from memviz.memorization import copy_evidence

    out = []
    for p in prompts:
        ev = copy_evidence(model, reference, cond=p, n=n, steps=steps, guidance_scale=guidance_scale, seed=seed)  # 1.
        x0 = ev.x0
        t1 = float(model.sampling_times(steps)[0])
        scores = {"prompt": p, "copies": int(ev.is_copy.sum()), "calibrated_l2": float(ev.calibrated.mean())}
        if p is not None:                                                                                       # 2.
            scores["wen_step1"] = float(wen_score(model, p, ev.noise, t1).mean())
            scores["jeon_step1"] = float(jeon_score(model, p, x_t=ev.noise, t=t1).mean())
        scores["flipd_cond"] = float(flipd(model, x0, t0, cond=p, n_probes=4).mean())                       # 3.
        scores["flipd_uncond"] = float(flipd(model, x0, t0, n_probes=4).mean())
        method = spectrum_method(model)                                                                         # 4.
        ev_spec = np.zeros(0) if method is None else spectrum(model, x0[:1], t0, cond=p, method=method).numpy()[0]
        out.append(PromptResult(p, ev, scores, ev_spec, default_tau(model, t0)))
    return out


def sharpness_counts(model: DiffusionModel, b: Browse, batch: int = 32, on_batch=None) -> np.ndarray:
    """(N,) n_sharp of every sample of a ``Browse``: eigenvalues of the exact Hessian spectrum at t0
    below -1 / (2 sigma^2), under each label for class models. Each image's spectrum is cached on
    its own (``image_spectra``), shared with ``sample_view``; ``on_batch(done, total)`` reports
    progress (an ``st.progress`` bar, say)."""
    eigenvalues = image_spectra(model, b.data, b.t0, _conditions(b, range(len(b.data))), batch, on_batch)
    return summarize(eigenvalues, default_tau(model, b.t0))["n_sharp"]


def _conditions(b: Browse, rows) -> list | None:
    """Each row's condition in the browse's conditional curves (its label or caption), or None."""
    return None if b.conditions is None else [b.conditions[i] for i in rows]


def spectrum_method(model: DiffusionModel) -> str | None:
    """The spectrum a pick or a comparison can afford: "exact" up to D = 4,096, "lanczos" (the 20
    at each end) above on a GPU, None on a CPU above (hours at Stable Diffusion's D)."""
    if model.dim <= EXACT_MAX_DIM:
        return "exact"
    return "lanczos" if model.device.type == "cuda" else None
