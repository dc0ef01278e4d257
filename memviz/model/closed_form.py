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


class GaussianMixtureDenoiser(torch.nn.Module):
    """Exact eps(x_t, tau) of a Gaussian mixture sum_k w_k N(mu_k, Sigma_k) under ``scheduler``'s abar(tau).

    With C_k = alpha^2 Sigma_k + sigma^2 I, p_t = sum_k w_k N(alpha mu_k, C_k) and
    score = sum_k gamma_k(x) (-C_k^{-1} (x - alpha mu_k)), gamma_k the posterior weights.

    Args:
        means: (K, D); covs: (K, D, D) symmetric positive definite; weights: (K,), defaults to uniform.
        shape: (C, H, W) with C H W = D.
        scheduler: whose ``alphas_cumprod`` define abar at integer steps (interpolated
            log-linearly in between, as ``DiffusionModel`` does).
    """

    def __init__(
        self,
        means: torch.Tensor,
        covs: torch.Tensor,
        shape: tuple[int, int, int],
        weights: torch.Tensor | None = None,
        scheduler: DDPMScheduler | None = None,
    ):
        super().__init__()
        self.scheduler = scheduler or DDPMScheduler()
        k = len(means)
        self.register_buffer("means", means.double())
        self.register_buffer("covs", covs.double())
        self.register_buffer(
            "log_weights",
            torch.log(weights.double() / weights.sum())
            if weights is not None
            else torch.full((k,), -float(torch.log(torch.tensor(float(k))))),
        )
        self.config = SimpleNamespace(sample_size=shape[1:], in_channels=shape[0], num_class_embeds=None)
        self._log_abar = torch.log(self.scheduler.alphas_cumprod.double())

    def abar(self, tau: torch.Tensor) -> torch.Tensor:
        """abar at (fractional) steps tau, log-linear between integers: (B,) float64."""
        tau = tau.double().clamp(0, len(self._log_abar) - 1)
        lo = tau.floor().long()
        hi = (lo + 1).clamp(max=len(self._log_abar) - 1)
        w = tau - lo
        return torch.exp((1 - w) * self._log_abar[lo] + w * self._log_abar[hi])

    def forward(self, x: torch.Tensor, timestep, class_labels=None, **_) -> SimpleNamespace:
        tau = torch.as_tensor(timestep, dtype=torch.float64).expand(len(x))
        a2 = self.abar(tau).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        eye = torch.eye(self.means.shape[1], dtype=torch.float64)
        same_t = bool((tau == tau[0]).all())  # one factorization for the whole batch
        c = (a2[:1] if same_t else a2) * self.covs.unsqueeze(0) + (1 - (a2[:1] if same_t else a2)) * eye
        r = x.flatten(1).double().unsqueeze(1) - a2.view(-1, 1, 1).sqrt() * self.means  # (B, K, D)
        chol = torch.linalg.cholesky(c).expand(len(x), -1, -1, -1)  # (B, K, D, D)
        c_inv_r = torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)  # (B, K, D)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_post = self.log_weights - 0.5 * (log_det + (r * c_inv_r).sum(-1))  # (B, K), up to a constant
        gamma = torch.softmax(log_post, dim=1).unsqueeze(-1)
        score = -(gamma * c_inv_r).sum(1)
        eps = -(1 - a2.view(-1, 1)).sqrt() * score
        return SimpleNamespace(sample=eps.to(x.dtype).view_as(x))


class GaussianDenoiser(GaussianMixtureDenoiser):
    """Exact eps of a single Gaussian N(mean (D,), cov (D, D)): score = -C_t^{-1} (x - alpha mean)."""

    def __init__(
        self, mean: torch.Tensor, cov: torch.Tensor, shape: tuple[int, int, int], scheduler: DDPMScheduler | None = None
    ):
        super().__init__(mean.unsqueeze(0), cov.unsqueeze(0), shape, scheduler=scheduler)


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


class ClassGaussianDenoiser(torch.nn.Module):
    """Exact eps of a class-conditional model whose class k is N(means[k], covs[k]) and whose
    null class (index K, the last) is N(means[K], covs[K]): Hessians -C_k^{-1} in closed form.

    Args:
        means: (K + 1, D); covs: (K + 1, D, D); shape: (C, H, W).
    """

    def __init__(
        self,
        means: torch.Tensor,
        covs: torch.Tensor,
        shape: tuple[int, int, int],
        scheduler: DDPMScheduler | None = None,
    ):
        super().__init__()
        self.parts = torch.nn.ModuleList(GaussianDenoiser(m, c, shape, scheduler) for m, c in zip(means, covs))
        self.config = SimpleNamespace(sample_size=shape[1:], in_channels=shape[0], num_class_embeds=len(means))

    def forward(self, x: torch.Tensor, timestep, class_labels=None, **_) -> SimpleNamespace:
        labels = torch.full((len(x),), len(self.parts) - 1) if class_labels is None else class_labels
        tau = torch.as_tensor(timestep, dtype=torch.float64).expand(len(x))
        picks = [(labels == k).view(-1, 1, 1, 1).to(x) for k in range(len(self.parts))]
        return SimpleNamespace(sample=sum(p * part(x, tau).sample for p, part in zip(picks, self.parts)))


def class_gaussian_model(D: int = 64, shape: tuple[int, int, int] = (1, 8, 8)):
    """A ``DiffusionModel`` whose class "c" is a 4-dim subspace Gaussian and whose null class a
    12-dim one, with its closed-form scores: returns (model, score) where
    score(x (B, D), t, conditional) = -C^{-1} (x - alpha mean), float64."""
    from memviz.model.adapter import DiffusionModel

    (m0, c0), (mu, cu) = subspace_gaussian(D, 4, seed=1), subspace_gaussian(D, 12, seed=2)
    model = DiffusionModel(
        ClassGaussianDenoiser(torch.stack([m0, mu]), torch.stack([c0, cu]), shape),
        DDPMScheduler(),
        meta={"class_names": ["c"]},
        device="cpu",
    )

    def score(x: torch.Tensor, t: float, conditional: bool) -> torch.Tensor:
        mean, cov = (m0, c0) if conditional else (mu, cu)
        a, s = model.alpha(t), model.sigma(t)
        c = a**2 * cov + s**2 * torch.eye(D, dtype=torch.float64)
        return -(x.flatten(1).double() - a * mean) @ torch.linalg.inv(c)

    return model, score


def char_clip_tokenizer(folder, max_length: int = 16):
    """A CLIPTokenizer over single letters (no merges), written to ``folder``: enough to tell
    prompts apart in tests and benchmarks of text-to-image pipelines, with no download."""
    import json
    from pathlib import Path

    from transformers import CLIPTokenizer

    folder = Path(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length, pad_token="!"
    )
