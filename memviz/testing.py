"""Denoisers in closed form, for tests and benchmarks with exact answers.

``GaussianDenoiser`` is the exact eps-predictor of Gaussian data x_0 ~ N(mu, Sigma) in
R^D behind the diffusers UNet call signature, so it runs through ``DiffusionModel``
like any trained UNet. With C_t = alpha_t^2 Sigma + sigma_t^2 I, p_t = N(alpha_t mu, C_t):

    score(x, t) = -C_t^{-1} (x - alpha_t mu),    eps(x, t) = -sigma_t score(x, t),
    Hessian of log p_t = -C_t^{-1}.

A Gaussian on a d-dimensional affine subspace (tiny variance off it) has LID d.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from diffusers import DDPMScheduler


class GaussianDenoiser(torch.nn.Module):
    """Exact eps(x_t, tau) of N(mu, Sigma) data under ``scheduler``'s abar(tau).

    Args:
        mean: (D,); cov: (D, D) symmetric positive semi-definite.
        shape: (C, H, W) with C H W = D.
        scheduler: whose ``alphas_cumprod`` define abar at integer steps (interpolated
            log-linearly in between, as ``DiffusionModel`` does).
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, shape: tuple[int, int, int],
                 scheduler: DDPMScheduler | None = None):
        super().__init__()
        self.scheduler = scheduler or DDPMScheduler()
        self.register_buffer("mean", mean.double())
        self.register_buffer("cov", cov.double())
        self.config = SimpleNamespace(sample_size=shape[1:], in_channels=shape[0], num_class_embeds=None)
        self._log_abar = torch.log(self.scheduler.alphas_cumprod.double())

    def abar(self, tau: torch.Tensor) -> torch.Tensor:
        """abar at (fractional) steps tau, log-linear between integers: (B,) float64."""
        tau = tau.double().clamp(0, len(self._log_abar) - 1)
        lo = tau.floor().long()
        hi = (lo + 1).clamp(max=len(self._log_abar) - 1)
        w = tau - lo
        return torch.exp((1 - w) * self._log_abar[lo] + w * self._log_abar[hi])

    def covariance_t(self, tau: torch.Tensor) -> torch.Tensor:
        """C_t = abar Sigma + (1 - abar) I: (B, D, D)."""
        a2 = self.abar(tau).view(-1, 1, 1)
        eye = torch.eye(len(self.mean), dtype=torch.float64)
        return a2 * self.cov + (1 - a2) * eye

    def forward(self, x: torch.Tensor, timestep, class_labels=None, **_) -> SimpleNamespace:
        tau = torch.as_tensor(timestep, dtype=torch.float64).expand(len(x))
        a = self.abar(tau).sqrt().view(-1, 1)
        s = (1 - a**2).sqrt()
        r = x.flatten(1).double() - a * self.mean
        eps = s * torch.linalg.solve(self.covariance_t(tau), r.unsqueeze(-1)).squeeze(-1)
        return SimpleNamespace(sample=eps.to(x.dtype).view_as(x))


def subspace_gaussian(D: int, d: int, off_variance: float = 1e-6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """mean (D,) and covariance (D, D) of a Gaussian on a random d-dim affine subspace of R^D."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    scales = torch.linspace(0.5, 1.0, d, dtype=torch.float64)
    cov = basis @ torch.diag(scales**2) @ basis.T + off_variance * torch.eye(D, dtype=torch.float64)
    mean = 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    return mean, cov


def gaussian_flipd(mean: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """FLIPD of N(mean, cov) in closed form at y = alpha x, x: (B, D). Returns (B,) float64.

    With C = alpha^2 cov + sigma^2 I and r = y - alpha mean, grad s = -C^{-1} and s = -C^{-1} r, so
    FLIPD = D + sigma^2 (-tr C^{-1} + ||C^{-1} r||^2).
    """
    D = len(mean)
    c = alpha**2 * cov.double() + sigma**2 * torch.eye(D, dtype=torch.float64)
    c_inv = torch.linalg.inv(c)
    r = alpha * (x.double() - mean.double())
    s = r @ c_inv  # C^{-1} is symmetric
    return D + sigma**2 * (-torch.trace(c_inv) + s.pow(2).sum(1))


def gaussian_hessian_eigenvalues(cov: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """Eigenvalues of the Hessian of log p_t, -(alpha^2 cov + sigma^2 I)^{-1}, ascending: (D,)."""
    lam = torch.linalg.eigvalsh(cov.double())
    return torch.sort(-1.0 / (alpha**2 * lam + sigma**2)).values
