"""Jeon, Kim and No's detection score (ICML 2025, section 5): the sharpness of the
conditional density relative to the unconditional one, along the guidance direction.

With s_Delta(x) = s(x, t | c) - s(x, t | null) and H_c, H_u the Jacobians of the two scores,

    score(x, t, c) = || H_c s_Delta - H_u s_Delta || = || J_{s_Delta}(x) s_Delta(x) ||,

one Jacobian-vector product, at the first sampling step (x = x_T, t = T) by default;
averaged over n generations, large for memorized prompts.
"""

from __future__ import annotations

import torch
from torch.func import vjp

from memviz.detect.registry import Detector, register
from memviz.model.adapter import Cond, DiffusionModel
from memviz.model.autodiff import jvp_from_vjp, math_attention
from memviz.model.sampling import Step, initial_noise, sampling_times


def jeon_score(
    model: DiffusionModel,
    cond: Cond,
    n: int = 1,
    seed: int = 0,
    steps: int = 50,
    x_t: torch.Tensor | None = None,
    t: float | None = None,
) -> torch.Tensor:
    """||H_c s_Delta - H_u s_Delta|| of each of n generations of ``cond``.

    Args:
        cond: the condition (class, prompt, or one per row); "null" is the model's unconditional.
        n, seed: the generations' initial noise x_T, drawn as ``model.sample(n, seed=seed)`` draws it.
        steps: the sampler's number of steps, which sets the first step's time t.
        x_t, t: evaluate at these points (B, C, H, W) and time instead.

    Returns:
        (n,) float64 scores on the CPU (average them for a prompt-level score).
    """
    if cond is None:
        raise ValueError("Jeon's score compares a condition with the unconditional model; give a condition.")
    if x_t is None:
        x_t = initial_noise(model, n, torch.Generator().manual_seed(seed))  # 1. x_T
        t = float(sampling_times(model, steps)[0]) if t is None else t
    elif t is None:
        raise ValueError("Give the time t of the points x_t.")
    y = x_t.to(model.device, torch.float32)
    with math_attention():  # the double backward of J v needs the math attention kernel
        s_delta, vjp_fn = vjp(lambda z: model.score(z, t, cond) - model.score(z, t, None), y)  # 2. s_Delta
    h_s = jvp_from_vjp(vjp_fn, y)(s_delta.detach())  # 3. J s_Delta
    return h_s.flatten(1).double().norm(dim=1).detach().cpu()  # 4.


def _step(model: DiffusionModel, cond: Cond, s: Step) -> torch.Tensor:
    with torch.enable_grad():  # the sampler runs under no_grad; this is a vjp and a double backward
        return jeon_score(model, cond, x_t=s.x_t, t=s.t)


def _sample(study, rows, t0: float):
    """At the training image itself, y = alpha(t0) x, under its own condition (stored per image)."""
    model = study.model
    fn = lambda x, cond, keys: {"jeon": jeon_score(model, cond, x_t=model.alpha(t0) * x, t=t0).numpy()}  # noqa: E731
    return study.per_row("jeon", (float(t0),), rows, fn, conditional=True)["jeon"]


register(
    Detector(
        "jeon",
        ("prompt", "sample"),
        ("condition", "first steps"),
        +1,
        "2 forward, 2 backward and 2 double-backward passes per step",
        lambda d, p: 6,
        "Jeon, Kim, No, ICML 2025, section 5 (scored at the first step, as in their Table 1)",
        max_steps=1,
        step=_step,
        sample=_sample,
    )
)
