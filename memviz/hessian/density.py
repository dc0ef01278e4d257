"""The spectral density of the symmetrized Hessian by stochastic Lanczos quadrature (SLQ;
Lin, Saad, Yang 2016; Ghorbani, Krishnan, Xiao 2019, as PyHessian computes it).

For a unit probe v, m Lanczos steps give a tridiagonal T_m = U diag(theta) U^T; the
quadrature nodes theta_j with weights w_j = U_{1j}^2 satisfy
v^T f(H) v ~ sum_j w_j f(theta_j), and with Rademacher probes E[v^T f(H) v] = tr f(H) / D.
So the density is phi(lambda) ~ mean over probes of sum_j w_j delta(lambda - theta_j), and the
number of eigenvalues in an interval is D times its quadrature mass.

Written here because no maintained library runs SLQ on an arbitrary operator (PyHessian
is tied to a loss's parameter Hessian); the P probes of B points run in lockstep, so every
Lanczos step is one batched Hessian-vector product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from memviz.hessian.operator import ScoreJacobian
from memviz.model.autodiff import rademacher


@dataclass(frozen=True)
class SpectralDensity:
    """Quadrature nodes and weights of each point's spectrum.

    Attributes:
        nodes (np.ndarray): (B, P, m) Ritz values theta_j per point and probe.
        weights (np.ndarray): (B, P, m) their weights; each probe's sum to 1.
        dim (int): D, the number of eigenvalues.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int

    def count(self, lo: float = -math.inf, hi: float = math.inf) -> np.ndarray:
        """(B,) estimated number of eigenvalues in (lo, hi]."""
        inside = (self.nodes > lo) & (self.nodes <= hi)
        return self.dim * (self.weights * inside).sum(-1).mean(-1)

    def trace(self) -> np.ndarray:
        """(B,) estimated tr(H) (Hutchinson's estimate, with these probes)."""
        return self.dim * (self.weights * self.nodes).sum(-1).mean(-1)

    def pdf(self, grid: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
        """(B, G) the density on ``grid`` (G,), smoothed by a Gaussian of width ``bandwidth``
        (defaults to 1% of the nodes' range); each row integrates to about 1."""
        grid = np.asarray(grid, dtype=float)
        bw = bandwidth or max(float(np.ptp(self.nodes)) / 100, 1e-12)
        z = (grid[None, None, None, :] - self.nodes[..., None]) / bw  # (B, P, m, G)
        kernel = np.exp(-0.5 * z**2) / (bw * math.sqrt(2 * math.pi))
        return (self.weights[..., None] * kernel).sum(2).mean(1)


def slq(
    op: ScoreJacobian, n_probes: int = 8, n_steps: int = 64, generator: torch.Generator | None = None
) -> SpectralDensity:
    """SLQ of (H + H^T) / 2 at each row of ``op`` (built with ``need_matvec=True``).

    Steps: 1. unit Rademacher probes; 2. m Lanczos steps with full reorthogonalization;
    3. nodes and weights from the eigendecomposition of each tridiagonal T_m.
    """
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be positive; got {n_probes} and {n_steps}.")
    gen = generator or torch.Generator().manual_seed(0)
    (b, d), m = (op.shape[0], op.dim), min(n_steps, op.dim)
    q = torch.zeros(m, n_probes, b, d, dtype=torch.float64)
    q[0] = rademacher((n_probes, b, d), gen).double() / math.sqrt(d)  # 1.
    a, beta = torch.zeros(m, n_probes, b, dtype=torch.float64), torch.zeros(m, n_probes, b, dtype=torch.float64)
    for j in range(m):  # 2.
        w = op.sym(q[j].float().view(n_probes, *op.shape)).double().flatten(2).cpu()
        a[j] = (w * q[j]).sum(-1)
        if j + 1 == m:
            break
        w = _orthogonalize(w, q[: j + 1])
        norm = w.norm(dim=-1)
        ok = norm > 1e-6 * a[: j + 1].abs().amax(0).clamp(min=1)  # else the Krylov space is exhausted
        beta[j] = torch.where(ok, norm, 0.0)
        q[j + 1] = _next_vector(w, norm, ok, q[: j + 1], gen)
    t = (
        torch.diag_embed(a.permute(1, 2, 0))
        + torch.diag_embed(beta[:-1].permute(1, 2, 0), 1)
        + torch.diag_embed(beta[:-1].permute(1, 2, 0), -1)
    )  # (P, B, m, m)
    theta, u = torch.linalg.eigh(t)  # 3.
    return SpectralDensity(theta.transpose(0, 1).numpy(), (u[..., 0, :] ** 2).transpose(0, 1).numpy(), d)


def _orthogonalize(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """w minus its projection on the Lanczos vectors q (j, P, B, D), twice (Parlett's "twice is enough")."""
    for _ in range(2):
        w = w - torch.einsum("jpb,jpbd->pbd", torch.einsum("jpbd,pbd->jpb", q, w), q)
    return w


def _next_vector(w, norm, ok, q, gen) -> torch.Tensor:
    """w / ||w|| where ``ok``; elsewhere (the Krylov space is exhausted) a fresh unit vector
    orthogonal to q: its beta is 0, so it decouples and carries no weight from the probe."""
    fresh = _orthogonalize(torch.randn(w.shape, generator=gen, dtype=torch.float64), q)
    fresh = fresh / fresh.norm(dim=-1, keepdim=True)
    return torch.where(ok.unsqueeze(-1), w / norm.clamp(min=1e-300).unsqueeze(-1), fresh)
