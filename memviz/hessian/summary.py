"""Per-point summaries of a Hessian spectrum (Jeon, Kim, No; ICML 2025, section 4).

Near a d-dimensional data manifold the Hessian of log p_t has about D - d eigenvalues
near -1 / sigma_t^2 (normal, sharp directions) and about d near zero (tangent, flat
directions); a memorized point sits in a sharp peak where all D are sharp. For a perfect
model a direction of data variance v has eigenvalue -1 / (alpha_t^2 v + sigma_t^2), which
crosses -1 / (2 sigma_t^2) exactly when alpha_t^2 v = sigma_t^2: that is the default tau,
so n_flat counts the directions in which the data varies more than the noise, a local
dimension at scale sigma_t, to read next to FLIPD.
"""

from __future__ import annotations

import numpy as np
import torch

from memviz.hessian.density import SpectralDensity
from memviz.model.adapter import DiffusionModel


def default_tau(model: DiffusionModel, t: float) -> float:
    """tau = 1 / (2 sigma_t^2), halfway between a flat (0) and a sharp (-1 / sigma_t^2) eigenvalue."""
    return 0.5 / model.sigma(float(t)) ** 2


def summarize(eigenvalues: torch.Tensor | np.ndarray, tau: float) -> dict[str, np.ndarray]:
    """Summaries of complete spectra: eigenvalues (B, D) real.

    Returns:
        dict of (B,) arrays: n_sharp (#{lambda < -tau}, about the codimension), n_flat
        (#{|lambda| <= tau}, about the LID), trace, lambda_min and lambda_max.
    """
    ev = _real(eigenvalues)
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}.")
    return {
        "n_sharp": (ev < -tau).sum(1),
        "n_flat": (np.abs(ev) <= tau).sum(1),
        "trace": ev.sum(1),
        "lambda_min": ev.min(1),
        "lambda_max": ev.max(1),
    }


def summarize_density(density: SpectralDensity, tau: float) -> dict[str, np.ndarray]:
    """The same summaries estimated from a spectral density (large D): counts and trace from the
    quadrature, extremes from the extreme Ritz values (which Lanczos finds first)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}.")
    sharp = density.count(-np.inf, np.nextafter(-tau, -np.inf))  # lambda < -tau
    return {
        "n_sharp": sharp,
        "n_flat": density.count(-np.inf, tau) - sharp,
        "trace": density.trace(),
        "lambda_min": density.nodes.min((1, 2)),
        "lambda_max": density.nodes.max((1, 2)),
    }


def _real(eigenvalues) -> np.ndarray:
    ev = eigenvalues.numpy() if torch.is_tensor(eigenvalues) else np.asarray(eigenvalues)
    if np.iscomplexobj(ev):
        raise ValueError(
            "Summaries need the real spectrum of the symmetrized Hessian (method 'exact' or "
            "'lanczos'), not Arnoldi's complex one."
        )
    if ev.ndim != 2:
        raise ValueError(f"eigenvalues must be (B, D); got shape {ev.shape}.")
    return ev
