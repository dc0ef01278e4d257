"""``guidance-schedule`` (Jain et al., CVPR 2025, the attraction basin): a memorized prompt pulls
the trajectory into a basin around one training image during the first steps, while the
conditional and unconditional predictions disagree strongly (a large ||eps_c - eps_u||, Wen et
al.'s norm). Sample without guidance (w = 0, the unconditional model) until that norm, read off
the sampler's own two outputs at each step, falls below ``knob`` times its value at the first step
(the trajectory has left the basin's reach), then with the normal guidance: zero extra model calls.

Each generation has its own switch step (the rows are sampled one by one, so that each follows its
own CFG-norm curve); a generation whose norm never falls stays unconditional to the end.
"""

from __future__ import annotations

import torch

from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register
from memviz.sampling import SampleOutput, initial_noise


class _Switch:
    """The guidance schedule w(t) of one generation: ``early`` until the callback sees the CFG norm fall
    below ``fraction`` of its first value, then ``late``."""

    def __init__(self, early: float, late: float, fraction: float):
        self.early, self.late, self.fraction = early, late, fraction
        self.first, self.at = None, None

    def __call__(self, t: float) -> float:
        return self.late if self.at is not None else self.early

    def step(self, s) -> None:
        if self.at is not None or s.eps_cond is None or s.eps_uncond is None:
            return
        norm = float((s.eps_cond - s.eps_uncond).flatten(1).norm(dim=1).mean())
        if self.first is None:
            self.first = norm
        elif norm < self.fraction * self.first:
            self.at = s.index + 1  # from the next step on


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    late = model.guidance_scale if guidance_scale is None else float(guidance_scale)
    x_T = initial_noise(model, n, torch.Generator("cpu").manual_seed(seed))  # as the plain generation draws it
    outs, switches = [], []
    for i in range(n):
        switch = _Switch(0.0, late, knob)
        outs.append(model.sample(1, cond=cond, steps=steps, guidance_scale=switch, seed=seed, noise=x_T[i:i + 1],
                                 callback=switch.step))  # w = 0 early: both outputs, no extra call
        switches.append(steps if switch.at is None else switch.at)
    out = SampleOutput(torch.cat([o.images for o in outs]), torch.cat([o.x0 for o in outs]), x_T, seed, steps,
                       "switched", cond)
    return Mitigated(out, cond, {"switch_step": switches, "steps": steps})


register(Mitigation(
    "guidance-schedule", "guidance schedule",
    Knob("fraction", 0.5, 0.0, 1.0, help="switch to normal guidance once ||eps_c - eps_u|| falls below this "
         "fraction of its first value (0: never, the unconditional model; 1: after the first steps)"),
    "0 extra calls (the sampler's own two outputs)", "Jain et al., CVPR 2025 (attraction basin)",
    needs=("condition",), run=_run))
