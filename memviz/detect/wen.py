"""Wen, Liu, Chen, Lyu (ICLR 2024): the magnitude of the text- (or class-) conditional noise
prediction, ||eps(x_t, c) - eps(x_t, null)||, is large along the sampling trajectory of a
memorized prompt: the condition alone pulls the sample towards one training image.
Averaged over the first ``steps`` sampling steps and n generations (their eq. 2)."""

from __future__ import annotations

import torch

from memviz.detect.registry import Detector, register
from memviz.model.adapter import Cond, DiffusionModel
from memviz.model.sampling import Step


def guidance_gap(
    model: DiffusionModel, x: torch.Tensor, t: float, cond: Cond, eps_uncond: torch.Tensor | None = None
) -> torch.Tensor:
    """eps(x, t | c) - eps(x, t | null): (B, C, H, W), differentiable in x and in ``cond`` (an embedding
    tensor too). Wen's score is its norm; SAIL's loss (``mitigate.noise_opt``), embedding-opt's objective
    and prompt-edit's attribution are norms of it. ``eps_uncond``: the unconditional output at (x, t),
    when already computed (it does not depend on the condition)."""
    return model.eps(x, t, cond) - (model.eps(x, t, None) if eps_uncond is None else eps_uncond)


@torch.no_grad()
def wen_score(model: DiffusionModel, cond: Cond, x_t: torch.Tensor, t: float) -> torch.Tensor:
    """||eps(x_t, t | c) - eps(x_t, t | null)|| of each point: x_t (B, C, H, W) -> (B,) float64, CPU."""
    if cond is None:
        raise ValueError("Wen's score compares a condition with the unconditional model; give a condition.")
    return guidance_gap(model, x_t.to(model.device, torch.float32), t, cond).flatten(1).double().norm(dim=1).cpu()


def step_norm(s: Step) -> torch.Tensor:
    """(b,) ||eps_c - eps_u|| of each row from the sampler's own two outputs at step ``s``: no extra call."""
    return (s.eps_cond - s.eps_uncond).flatten(1).double().norm(dim=1).cpu()


def _step(model: DiffusionModel, cond: Cond, s: Step) -> torch.Tensor:
    return step_norm(s)


register(
    Detector(
        "wen",
        ("prompt",),
        ("condition", "first steps", "unconditional output"),
        +1,
        "2 forward passes per step (the sampler's own, when guided)",
        lambda d, p: 2,
        "Wen, Liu, Chen, Lyu, ICLR 2024",
        step=_step,
    )
)
