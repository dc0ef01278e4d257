"""Dataset-wide Hessian spectra, cached on disk like the LID results.

The expensive artifact is every sample's spectrum at one t (plus, where the spectrum is
partial, its SLQ density); the threshold tau of the summaries is the cheap knob, applied
afterwards (``SpectraResult.summary``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from memviz.cache import cached, cached_rows, fingerprint, model_fingerprint
from memviz.data.base import ImageDataset
from memviz.hessian.density import SpectralDensity
from memviz.hessian.sharpness import jeon_score
from memviz.hessian.spectrum import Method, _resolve, density, spectrum
from memviz.hessian.summary import default_tau, summarize, summarize_density
from memviz.models import DiffusionModel


@dataclass(frozen=True)
class SpectraResult:
    """Per-sample Hessian spectra of a dataset at time t.

    Attributes:
        t (float), tau (float): the time, and the default threshold 1 / (2 sigma_t^2).
        method (str): "exact" (all D eigenvalues) or "lanczos" (the k at each end).
        eigenvalues (np.ndarray): (N, m) ascending.
        density (SpectralDensity | None): the SLQ density, where the spectrum is partial.
        jeon (np.ndarray | None): (N,) Jeon's score at each sample under its own label
            (conditional models, ``conditional=True``).
    """

    t: float
    tau: float
    method: str
    eigenvalues: np.ndarray
    density: SpectralDensity | None = None
    jeon: np.ndarray | None = None

    def summary(self, tau: float | None = None):
        """A pandas.DataFrame, one row per sample: n_sharp, n_flat, trace, lambda_min, lambda_max
        (from the density where the spectrum is partial), and jeon where computed."""
        import pandas as pd

        tau = self.tau if tau is None else tau
        cols = summarize(self.eigenvalues, tau) if self.density is None else summarize_density(self.density, tau)
        if self.jeon is not None:
            cols["jeon"] = self.jeon
        return pd.DataFrame(cols)


def compute_spectra(model: DiffusionModel, data: ImageDataset, t: float = 0.05, method: Method = "auto",
                    k: int | None = None, conditional: bool = False, noise: bool = False, n_probes: int = 8,
                    n_steps: int = 64, seed: int = 0, batch_size: int = 8, progress: bool = True,
                    refresh: bool = False) -> SpectraResult:
    """Spectra of every sample of ``data`` at t, from the cache when present.

    Args:
        method: "exact" / "lanczos" / "auto" (see ``spectrum``); Arnoldi's complex spectra are not
            summarized, call ``spectrum`` for them.
        conditional: condition on each sample's label (and compute Jeon's score).
        n_probes, n_steps: the SLQ density computed alongside partial spectra.
    """
    if tuple(data.shape) != model.sample_shape:
        raise ValueError(f"The data's images are {data.shape} but the model expects {model.sample_shape}.")
    method = _resolve(method, model.dim)
    if method == "arnoldi":
        raise ValueError("compute_spectra summarizes real spectra; use method 'exact' or 'lanczos'.")
    cond = model.conditions_of(data) if conditional else None
    key = fingerprint(model_fingerprint(model), data.images, float(t), method, k, cond is not None, noise,
                      n_probes, n_steps, seed)
    arrays = cached("spectra", key, lambda: _compute(model, data.images, t, method, k, cond, noise, n_probes,
                                                     n_steps, seed, batch_size, progress), refresh=refresh)
    dens = SpectralDensity(arrays["nodes"], arrays["weights"], model.dim) if "nodes" in arrays else None
    return SpectraResult(float(t), default_tau(model, t), method, arrays["eigenvalues"], dens, arrays.get("jeon"))


def _compute(model, images, t, method, k, cond, noise, n_probes, n_steps, seed, batch_size, progress) -> dict:
    """Steps per batch: 1. the spectrum; 2. the SLQ density if the spectrum is partial; 3. Jeon's score."""
    parts: dict[str, list[np.ndarray]] = {}
    for s in tqdm(range(0, len(images), batch_size), disable=not progress, desc=f"spectra ({method})"):
        x, c = images[s:s + batch_size], cond[s:s + batch_size] if cond is not None else None
        parts.setdefault("eigenvalues", []).append(
            spectrum(model, x, t, c, method, k, noise, seed + s, batch_size=batch_size).numpy())       # 1.
        if method != "exact":
            d = density(model, x, t, c, n_probes, n_steps, noise, seed + s, batch_size=batch_size)   # 2.
            parts.setdefault("nodes", []).append(d.nodes)
            parts.setdefault("weights", []).append(d.weights)
        if c is not None and (model.is_class_conditional or model.is_text_conditional):
            y = model.alpha(t) * x                                                                     # 3.
            parts.setdefault("jeon", []).append(jeon_score(model, c, x_t=y, t=t).numpy())
    return {name: np.concatenate(v) for name, v in parts.items()}


def image_spectra(model: DiffusionModel, data: ImageDataset, t: float = 0.05, cond: list | None = None,
                  batch: int = 32, on_batch=None, method: Method = "exact") -> np.ndarray:
    """(N, m) spectra at y = alpha(t) x ("exact": all D; "lanczos": the 20 at each end), each
    image's cached on its own (keyed by model, image, condition, t and method), so that a picked
    image reads back what a dataset-wide pass computed, and the reverse; missing ones are
    computed a batch at a time.

    Args:
        cond: (N,) one condition per image (labels or prompts), or None (unconditional).
        on_batch: ``on_batch(done, total)`` after each batch (a progress bar).
    """
    if tuple(data.shape) != model.sample_shape:
        raise ValueError(f"The data's images are {data.shape} but the model expects {model.sample_shape}.")
    if cond is not None and len(cond) != len(data):
        raise ValueError(f"Got {len(cond)} conditions for {len(data)} images; give one per image.")
    mfp, out, n = model_fingerprint(model), [], len(data)
    for s in range(0, n, batch):
        rows = np.arange(s, min(s + batch, n))
        c = None if cond is None else [cond[i] for i in rows]
        keys = [fingerprint(mfp, data.images[i], None if c is None else c[j], float(t), method)
                for j, i in enumerate(rows)]
        out.append(cached_rows("spectrum", keys, lambda miss: spectrum(
            model, data.images[rows[miss]], t, None if c is None else [c[j] for j in miss], method).numpy()))
        if on_batch is not None:
            on_batch(int(rows[-1]) + 1, n)
    return np.concatenate(out)


__all__ = ["SpectraResult", "compute_spectra", "image_spectra"]


def spectra_table(model: DiffusionModel, train: ImageDataset, test: ImageDataset | None = None,
                  tau: float | None = None, **kwargs):
    """One row per distinct training image (and per test image): the spectrum summaries at
    ``tau`` (default 1 / (2 sigma_t^2)), label and planted kind. kwargs go to ``compute_spectra``.

    Returns:
        pandas.DataFrame
    """
    import pandas as pd

    frames = []
    for split, data in (("train", train.deduplicated()), ("test", test)):
        if data is None:
            continue
        res = compute_spectra(model, data, **kwargs)
        frame = pd.DataFrame({"split": split, "index": np.arange(len(data)),
                              "label": data.labels if data.labels is not None else -1,
                              "kind": data.meta.get("kind", "none") if split == "train" else "none"})
        frames.append(pd.concat([frame, res.summary(tau)], axis=1))
    return pd.concat(frames, ignore_index=True)
