"""Bright Ending (Chen, Liu, Shah, Xu, ICLR 2025): where in the image a generation is copied,
and Wen's norm restricted to there.

The mask m of a generation is the end token's cross-attention at the final sampling step
(``memviz.model.attention``), upsampled to the model's H x W (bilinear; Stable Diffusion's 64 x 64
layer needs none). The score at each of the first steps (their code, ``local_sd_pipeline.py``;
Jeon et al. 2025, appendix D.1) is the masked norm

    BE_t = || m * (eps(x_t, t | c) - eps(x_t, t | null)) || / mean_{h,w}(m),

averaged over the first ``steps`` steps and the n generations as Wen's score is. The mask needs
the finished trajectory, so it reads the generations (one sampling run; the sampler's own
conditional and unconditional outputs give eps_c - eps_u, no extra call).
"""

from __future__ import annotations

import numpy as np
import torch

from memviz.detect.registry import Detector, register


def upsampled(attention: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(m, h, w) attention -> (m, H, W), bilinear."""
    if tuple(attention.shape[1:]) == tuple(shape):
        return attention
    return torch.nn.functional.interpolate(attention[:, None], size=shape, mode="bilinear", align_corners=False)[:, 0]


def mask(g) -> torch.Tensor:
    """(m, H, W) the Bright Ending mask of each generation, in the model's space. g: ``Generations``."""
    if g.attention is None:
        raise ValueError("bright-ending needs the cross-attention recorded while sampling (score_generations does it).")
    return upsampled(g.attention, g.model.sample_shape[1:])


def pixel_mask(g) -> np.ndarray:
    """(m, H, W) the mask at the images' resolution, scaled to [0, 1] per generation, for overlays."""
    m = upsampled(g.attention, g.model.pixel_shape[1:]).double()
    lo, hi = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
    return ((m - lo) / (hi - lo).clamp_min(1e-12)).numpy()


def masked_norm(g) -> np.ndarray:
    """(m, S) BE_t of each generation at each scored step."""
    m = mask(g).double()[None, :, None]  # (1, m, 1, H, W)
    d = g.diffs.double()  # (S, m, C, H, W)
    score = (m * d).flatten(2).norm(dim=2) / m.flatten(2).mean(2)  # (S, m)
    return score.T.numpy()


register(
    Detector(
        "bright-ending",
        ("prompt",),
        ("condition", "cross-attention", "first steps", "unconditional output", "generation"),
        +1,
        "2 forward passes per step (the sampler's own) and the sampling run",
        lambda d, p: 2,
        "Chen, Liu, Shah, Xu, ICLR 2025 (Bright Ending)",
        per_step=True,
        generation=masked_norm,
    )
)
