"""``guidance-schedule`` (Jain et al., CVPR 2025, the attraction basin): a memorized prompt pulls
the trajectory into a basin around one training image during the first steps, while the
conditional and unconditional predictions disagree strongly (a large ||eps_c - eps_u||, Wen et
al.'s norm). Sample without guidance (w = 0, the unconditional model) until that norm, read off
the sampler's own two outputs at each step, falls below ``knob`` times its value at the first step
(the trajectory has left the basin's reach), then with the normal guidance: zero extra model calls.

Each generation has its own switch step (the schedule returns one w per row of the batch, each
following its own CFG-norm curve); a generation whose norm never falls stays unconditional.
"""

from __future__ import annotations

import torch

from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register


class _Switch:
    """The guidance schedule of n generations sampled as one batch: w(t) per row, ``early`` until the
    callback sees that row's CFG norm fall below ``fraction`` of its first value, then ``late``."""

    def __init__(self, n: int, early: float, late: float, fraction: float):
        self.early, self.late, self.fraction = early, late, fraction
        self.first: torch.Tensor | None = None
        self.at = torch.full((n,), -1)  # the step from which each row is guided (-1: not yet)

    def __call__(self, t: float):
        if bool((self.at < 0).all()):
            return self.early
        return torch.where(self.at >= 0, self.late, self.early).float()

    def step(self, s) -> None:
        if s.eps_cond is None or s.eps_uncond is None:
            return
        norm = (s.eps_cond - s.eps_uncond).flatten(1).double().norm(dim=1).cpu()
        if self.first is None:
            self.first = norm
            return
        self.at[(self.at < 0) & (norm < self.fraction * self.first)] = s.index + 1


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    late = model.guidance_scale if guidance_scale is None else float(guidance_scale)
    switch = _Switch(n, 0.0, late, knob)
    # one batch (its rows are the schedule's rows); w = 0 early: both outputs, no extra call
    out = model.sample(n, cond=cond, steps=steps, guidance_scale=switch, seed=seed, callback=switch.step, batch_size=n)
    return Mitigated(out, cond, {"switch_step": [steps if int(a) < 0 else int(a) for a in switch.at], "steps": steps})


register(Mitigation(
    "guidance-schedule", "guidance schedule",
    Knob("fraction", 0.5, 0.0, 1.0, help="switch to normal guidance once ||eps_c - eps_u|| falls below this "
         "fraction of its first value (0: never, the unconditional model; 1: after the first steps)"),
    "0 extra calls: the unguided steps read the sampler's own conditional and unconditional outputs (one "
    "batched pair per step, twice the compute of an unguided w = 1 step)", "Jain et al., CVPR 2025 (attraction basin)",
    needs=("condition",), run=_run))
