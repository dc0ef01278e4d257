"""``initial-noise-opt`` (Jeon, Kim and No, ICML 2025, SAIL, Algorithm 2): move each generation's
initial noise x_T by gradient steps out of the sharp region of the conditional density, keeping it
Gaussian-typical, then sample normally from it. The prompt is untouched.

With Delta(x) = eps(x, t_1 | c) - eps(x, t_1 | null) at the first sampling time t_1 and its unit
direction u(x) = Delta(x) / ||Delta(x)||, the loss of one generation is SAIL's

    L(x) = ||Delta(x + delta u(x))||,

a finite-difference stand-in for the sharpness ||J_Delta Delta|| (how fast the guidance grows a step
along itself; ``memviz.detect.jeon``). Adam (lr 0.05, SAIL's) on the n generations' own x_T for
``knob`` steps; each generation keeps the iterate of its lowest loss (the start included, so 0 steps
give the plain generation).

Typicality: SAIL adds alpha ||x|| (alpha = 0.05) to L. Its balance depends on the model's scale: on
demo-mnist ||Delta|| at t_1 is 0.05-0.18 against alpha ||x_T|| = 0.81, so 10 Adam steps lowered the
loss mostly by shrinking x_T to 0.6-0.75 sqrt(D), 6 to 9 standard deviations inside the Gaussian's
typical shell (measured). Here each step is followed by rescaling every row back to its starting
norm instead: x_T stays on the shell it was drawn on, for any model, and only its direction moves.
SAIL stops at an absolute loss threshold tuned on Stable Diffusion (8.2); the step budget is the
model-free knob here. ``info`` gives each generation's loss before and after and the step kept.
Cost: per Adam step 4 UNet passes (conditional and unconditional at x and at x + delta u) and
their backward.
"""

from __future__ import annotations

import torch

from memviz.detect.wen import guidance_gap
from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register
from memviz.model.sampling import first_step

LEARNING_RATE = 0.05  # SAIL's Adam learning rate (their Appendix D and code)
DELTA = 1.0  # the step along the unit guidance direction: SAIL's unit step, in the model's units
# (6% of ||x_T|| on the 16 x 16 demos, under 1% on Stable Diffusion's 4 x 64 x 64 latents; kept as published)


def sail_loss(model, cond, x: torch.Tensor, t: float) -> torch.Tensor:
    """(n,) L(x) of the module docstring, differentiable in x.  x: (n, C, H, W) at time t."""
    d = guidance_gap(model, x, t, cond)
    u = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return guidance_gap(model, x + DELTA * u, t, cond).flatten(1).norm(dim=1)


def optimize_noise(model, cond, x_T: torch.Tensor, t: float, steps: int) -> tuple[torch.Tensor, dict]:
    """(x_T after SAIL's Adam steps (n, C, H, W) on the CPU, {"loss_start", "loss_end", "step_kept",
    "moved"} per generation): each row the iterate of its lowest ``sail_loss``, at its starting norm;
    moved is ||x_T' - x_T|| / ||x_T|| (0: the plain generation's)."""
    if steps == 0:
        zero = [0.0] * len(x_T)
        return x_T.clone(), {"loss_start": [], "loss_end": [], "step_kept": [0] * len(x_T), "moved": zero}
    x = x_T.to(model.device, torch.float32).clone().requires_grad_(True)
    radius = x.detach().flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    best, kept = x_T.to(model.device, torch.float32).clone(), torch.zeros(len(x_T), dtype=torch.long)
    opt = torch.optim.Adam([x], lr=LEARNING_RATE)
    for k in range(steps + 1):
        with torch.set_grad_enabled(k < steps):  # the last iterate is only evaluated (methods run under no_grad)
            loss = sail_loss(model, cond, x, t)
            total = loss.sum()  # rows are independent: each row's gradient is its own loss's
        value = loss.detach().cpu()
        if k == 0:
            start = low = value.clone()
        better = value < low
        low = torch.where(better, value, low)
        kept[better] = k
        best[better.to(best.device)] = x.detach()[better.to(best.device)]
        if k == steps:
            break
        opt.zero_grad()
        total.backward()
        opt.step()
        with torch.no_grad():  # back onto the sphere x_T was drawn on (see the module docstring)
            x.mul_(radius / x.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    best = best.cpu()
    moved = (best - x_T).flatten(1).norm(dim=1) / x_T.flatten(1).norm(dim=1)
    return best, {
        "loss_start": start.tolist(),
        "loss_end": low.tolist(),
        "step_kept": kept.tolist(),
        "moved": moved.tolist(),
    }


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    x_T, t = first_step(model, n, seed, steps)
    moved, info = optimize_noise(model, cond, x_T, t, int(knob))
    out = model.sample(n, cond=cond, steps=steps, guidance_scale=guidance_scale, seed=seed, noise=moved)
    return Mitigated(out, cond, info)


register(
    Mitigation(
        "initial-noise-opt",
        "initial noise",
        Knob(
            "steps", 10, 0, 100, integer=True, help="Adam steps on x_T (SAIL's budget is 10; 0: the plain generation)"
        ),
        "4 passes and their backward per Adam step",
        "Jeon, Kim, No, ICML 2025 (SAIL, Algorithm 2: gradient steps on x_T)",
        needs=("condition",),
        run=_run,
    )
)
