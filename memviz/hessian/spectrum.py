"""Hessian spectra of the learned log density at data points, noised points and along sampling
trajectories: the public entry points, which choose the method and batch the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from memviz.hessian.arnoldi import arnoldi_eigenvalues
from memviz.hessian.density import SpectralDensity, slq
from memviz.hessian.exact import check_exact_fits, exact_eigenvalues
from memviz.hessian.lanczos import _check_k, lanczos_eigenvalues
from memviz.hessian.operator import ScoreJacobian
from memviz.model.adapter import DiffusionModel
from memviz.model.autodiff import check_dense_affordable, is_dense
from memviz.model.conditioning import Cond, rows_of

Method = Literal["auto", "exact", "lanczos", "arnoldi"]
METHODS = ("auto", "exact", "lanczos", "arnoldi")
DEFAULT_K = 20


def spectrum(
    model: DiffusionModel,
    x: torch.Tensor,
    t: float,
    cond: Cond = None,
    method: Method = "auto",
    k: int | None = None,
    noise: bool = False,
    seed: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Eigenvalues of H = d score(y, t) / dy, the Hessian of log p_t, at y = alpha(t) x.

    Args:
        x: (B, C, H, W) clean points in the model's space ([-1, 1] images, or latents).
        t: diffusion time in [0, 1].
        method: "exact" (all D eigenvalues of (H + H^T) / 2), "lanczos" (its k smallest and
            k largest), "arnoldi" (the k of smallest and k of largest real part of H itself,
            complex), or "auto" (exact up to D = 4,096, else Lanczos).
        k: eigenvalues per end for Lanczos and Arnoldi (default 20); with "exact", keep
            only the k at each end (None keeps all D).
        noise: evaluate at y = alpha x + sigma eps, eps seeded by ``seed``, instead.

    Returns:
        (B, m) ascending (by real part), float64 or complex128, on the CPU.
    """
    model.check_points(x)
    y = model.alpha(t) * x
    if noise:
        y = y + model.sigma(t) * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
    return spectrum_at(model, y, t, cond, method, k, seed, guidance_scale, batch_size)


def spectrum_at(
    model: DiffusionModel,
    y: torch.Tensor,
    t: float,
    cond: Cond = None,
    method: Method = "auto",
    k: int | None = None,
    seed: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """As ``spectrum``, at given noised points y: (B, C, H, W) (for instance x_t of a trajectory)."""
    model.check_points(y)
    method = _resolve(method, model.dim)
    if method == "exact":
        if k is not None:
            _check_k(k, model.dim, ends=2)
        check_dense_affordable(
            model.dim,
            model.device,
            "An exact spectrum",
            "method='lanczos' (the k extreme eigenvalues) or density() (the histogram)",
        )
        check_exact_fits(model.dim, min(batch_size, len(y)), model.device)  # before any allocation
        parts = [
            exact_eigenvalues(
                ScoreJacobian(
                    model, y[i : i + batch_size], t, rows_of(cond, i, batch_size), guidance_scale, need_matvec=False
                )
            )
            for i in range(0, len(y), batch_size)
        ]
        ev = torch.cat(parts)
        return ev if k is None else torch.cat([ev[:, :k], ev[:, -k:]], dim=1)
    k = DEFAULT_K if k is None else k
    _check_k(k, model.dim, ends=2)
    solve = lanczos_eigenvalues if method == "lanczos" else arnoldi_eigenvalues
    return torch.stack(
        [
            solve(
                ScoreJacobian(
                    model, y[b : b + 1], t, rows_of(cond, b, 1), guidance_scale, need_matvec=method == "lanczos"
                ),
                k,
                seed=seed,
            )
            for b in range(len(y))
        ]
    )


def density(
    model: DiffusionModel,
    x: torch.Tensor,
    t: float,
    cond: Cond = None,
    n_probes: int = 8,
    n_steps: int = 64,
    noise: bool = False,
    seed: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 8,
) -> SpectralDensity:
    """The spectral density of (H + H^T) / 2 at y = alpha(t) x by stochastic Lanczos quadrature,
    for histograms and eigenvalue counts when D is too large for the exact spectrum.

    Args:
        x: (B, C, H, W); n_probes: Rademacher probes per point; n_steps: Lanczos steps per probe.
    """
    model.check_points(x)
    gen = torch.Generator().manual_seed(seed)
    y = model.alpha(t) * x
    if noise:
        y = y + model.sigma(t) * torch.randn(x.shape, generator=gen).to(x)
    parts = [
        slq(
            ScoreJacobian(model, y[i : i + batch_size], t, rows_of(cond, i, batch_size), guidance_scale),
            n_probes,
            n_steps,
            gen,
        )
        for i in range(0, len(y), batch_size)
    ]
    return SpectralDensity(
        *(torch.cat([torch.from_numpy(getattr(p, f)) for p in parts]).numpy() for f in ("nodes", "weights")), model.dim
    )


@dataclass(frozen=True)
class TrajectorySpectra:
    """Spectra along sampling trajectories.

    Attributes:
        ts (torch.Tensor): (S,) the diffusion times of the chosen steps.
        steps (torch.Tensor): (S,) their indices in the sampler's loop (0 is x_T).
        eigenvalues (torch.Tensor): (S, n, m) the spectrum at x_t of each generation.
        images (torch.Tensor): (n, C, H, W) the final generations in [0, 1].
    """

    ts: torch.Tensor
    steps: torch.Tensor
    eigenvalues: torch.Tensor
    images: torch.Tensor


def trajectory_spectra(
    model: DiffusionModel,
    n: int = 1,
    cond: Cond = None,
    steps: int = 50,
    at: tuple[int, ...] | None = None,
    method: Method = "auto",
    k: int | None = None,
    seed: int = 0,
    guidance_scale: float | None = None,
) -> TrajectorySpectra:
    """Generate n samples (seeded, as ``model.sample``) and take the spectrum at x_t of the
    chosen sampler steps ``at`` (indices into the loop; default five, from x_T to the last)."""
    out = model.sample(n, cond, steps, guidance_scale, seed, return_trajectory=True)
    at = tuple(sorted({round(i * (steps - 1) / 4) for i in range(5)})) if at is None else tuple(at)
    if not at or min(at) < 0 or max(at) >= steps:
        raise ValueError(f"Steps in `at` must lie in 0..{steps - 1}; got {at}.")
    ev = torch.stack(
        [spectrum_at(model, out.trajectory[i], float(out.ts[i]), cond, method, k, seed, out.guidance_scale) for i in at]
    )
    return TrajectorySpectra(out.ts[list(at)], torch.tensor(at), ev, out.images)


def _resolve(method: str, dim: int) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    return ("exact" if is_dense(dim) else "lanczos") if method == "auto" else method


def affordable_method(model: DiffusionModel) -> str | None:
    """The spectrum a pick, a comparison or a dataset pass can afford: "exact" where ``is_dense``,
    "lanczos" (the 20 at each end) above on a GPU, None on a CPU above (hours at Stable Diffusion's D)."""
    if is_dense(model.dim):
        return "exact"
    return "lanczos" if model.device.type == "cuda" else None
