"""``initial-noise`` (after Jeon, Kim and No, ICML 2025, SAIL): a memorized generation is decided
early, by an x_T that lies in the sharp region around a training image; choose, for each
generation, the x_T among ``knob`` Gaussian candidates whose sharpness at the first sampling step
(Jeon et al.'s score ||J_{s_Delta} s_Delta||, ``memviz.detect.jeon``) is lowest, then sample
normally from it. Candidates are drawn, not optimized, so x_T stays an exact draw from N(0, I)
conditioned on a choice: typical by construction (SAIL's gradient steps with a typicality term
are ``initial-noise-opt``, ``memviz.mitigate.noise_opt``). Cost: 6 passes per candidate at the first step.
"""

from __future__ import annotations

import torch

from memviz.detect.jeon import jeon_score
from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register
from memviz.model.sampling import first_step, initial_noise


def choose_noise(model, cond, n: int, seed: int, candidates: int, steps: int = 50) -> tuple[torch.Tensor, list]:
    """(n, C, H, W) x_T: for generation i, the least sharp of ``candidates`` draws (the first of which is
    the plain generation's own x_T); and each one's chosen candidate index."""
    plain, t = first_step(model, n, seed, steps)
    extra = initial_noise(model, n * (candidates - 1), torch.Generator("cpu").manual_seed(seed + 1_000_003))
    pool = torch.cat([plain[:, None], extra.view(n, candidates - 1, *plain.shape[1:])], dim=1)  # (n, K, C, H, W)
    flat = pool.flatten(0, 1)
    with torch.enable_grad():
        sharp = torch.cat([jeon_score(model, cond, x_t=flat[i : i + 64], t=t) for i in range(0, len(flat), 64)])
    best = sharp.view(n, candidates).argmin(dim=1)
    return pool[torch.arange(n), best], best.tolist()


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    x_T, chosen = choose_noise(model, cond, n, seed, int(knob), steps)
    out = model.sample(n, cond=cond, steps=steps, guidance_scale=guidance_scale, seed=seed, noise=x_T)
    return Mitigated(out, cond, {"chosen_candidate": chosen})


register(
    Mitigation(
        "initial-noise",
        "initial noise",
        Knob(
            "candidates",
            8,
            1,
            256,
            integer=True,
            help="Gaussian draws of x_T per generation; the least sharp is sampled from (1: the plain generation)",
        ),
        "6 passes per candidate (Jeon's score at the first step)",
        "Jeon, Kim, No, ICML 2025 (SAIL, by selection)",
        needs=("condition",),
        run=_run,
    )
)
