"""``embedding-opt`` (Wen, Liu, Chen and Lyu, ICLR 2024, section 4): a memorized condition makes
the conditional and unconditional predictions disagree strongly at the first steps. Starting
from the condition's embedding (a text model's encoder states (1, L, E), a class model's class
embedding (1, E)), take Adam steps on it to lower ||eps(x_T, t_1 | e) - eps(x_T, t_1 | null)||^2
over the n generations' own x_T at the first sampling time t_1, until that norm falls below
``knob`` times its starting value (or 50 steps), then sample from the optimized embedding.
Cost: about 3 model calls (conditional, unconditional, backward) per Adam step.
"""

from __future__ import annotations

import torch

from memviz.detect.wen import guidance_gap
from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register
from memviz.model.sampling import first_step

MAX_STEPS = 50
LEARNING_RATE = 0.05


def optimize_embedding(model, cond, x_T: torch.Tensor, t: float, target: float) -> tuple[torch.Tensor, dict]:
    """(the optimized embedding, {"steps", "norm_start", "norm_end"}): Adam on the embedding until the
    mean CFG norm at (x_T, t) falls below ``target`` times its start."""
    e0 = model.class_embedding_of(cond) if model.is_class_conditional else model.encode_cond(cond, 1).float()
    e = e0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([e], lr=LEARNING_RATE)
    x = x_T.to(model.device)
    with torch.no_grad():
        eps_u = model.eps(x, t, None)
    start = end = None
    steps = 0
    with torch.enable_grad():
        for steps in range(MAX_STEPS + 1):
            norm = guidance_gap(model, x, t, e, eps_u).flatten(1).norm(dim=1)
            end = float(norm.detach().mean())
            start = end if start is None else start
            if end < target * start or steps == MAX_STEPS:
                break
            opt.zero_grad()
            norm.pow(2).mean().backward()
            opt.step()
    return e.detach(), {"steps": steps, "norm_start": start, "norm_end": end}


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    e, info = optimize_embedding(model, cond, *first_step(model, n, seed, steps), knob)
    out = model.sample(n, cond=e, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return Mitigated(out, e, info)


register(
    Mitigation(
        "embedding-opt",
        "condition embedding",
        Knob(
            "target",
            0.5,
            0.0,
            1.0,
            help="stop once the first step's CFG norm falls below this fraction of its start "
            f"(0: always {MAX_STEPS} Adam steps)",
        ),
        f"about 3 calls per Adam step (at most {MAX_STEPS})",
        "Wen, Liu, Chen, Lyu, ICLR 2024 (section 4)",
        needs=("condition", "embedding"),
        run=_run,
    )
)
