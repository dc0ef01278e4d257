"""The normal-bundle LID estimator (Stanczuk, Batzolis, Deveney, Schönlieb; ICML 2024).

Near a d-dimensional manifold and at small t, the score of a noised copy of x points
along the normal space. Stack the scores of K noised copies (K = 4D by default) into a
K x D matrix; its singular values drop sharply after the normal dimension D - d.
LID = D minus the index of the largest drop (Algorithm 1 of the paper). A zero is
appended to the spectrum so that a point mass (every direction normal) reads LID 0;
the price is that a full-dimensional point (no normal direction) cannot be told apart.
"""

from __future__ import annotations

import torch

from memviz.model.adapter import Cond, DiffusionModel


def normal_bundle(
    model: DiffusionModel,
    x: torch.Tensor,
    t: float = 0.01,
    n_scores: int | None = None,
    cond: Cond = None,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """LID of each point from the spectrum of its noised scores.

    Args:
        x: (B, C, H, W) in the model's data space.
        t: the small diffusion time of the noised copies y_k = alpha x + sigma eps_k.
        n_scores: K, defaults to 4 D.
        batch_size: score evaluations per pass.

    Returns:
        (B,) int64 estimates in [0, D].
    """
    model.check_points(x)
    k = n_scores or 4 * model.dim
    if k < 2:
        raise ValueError(f"n_scores must be at least 2; got {k}.")
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([_lid_one(model, xi, t, k, cond, gen, batch_size) for xi in x])


@torch.no_grad()
def _lid_one(model, x, t, k, cond, gen, batch_size) -> torch.Tensor:
    """Steps: 1. K noised copies; 2. their scores (K, D); 3. singular values; 4. D - argmax gap."""
    noise = torch.randn((k, *x.shape), generator=gen)  # 1.
    y = (model.alpha(t) * x.unsqueeze(0) + model.sigma(t) * noise).to(model.device)
    scores = torch.cat(
        [
            model.score(y[i : i + batch_size], t, cond).flatten(1)  # 2.
            for i in range(0, k, batch_size)
        ]
    ).double()
    sv = torch.linalg.svdvals(scores)  # 3.
    sv = torch.cat([sv, sv.new_zeros(1)])  # a drop to 0 after all D: a point mass, LID 0
    normal_dim = int(torch.argmax(sv[:-1] - sv[1:])) + 1  # 4.
    return torch.tensor(max(model.dim - normal_dim, 0))
