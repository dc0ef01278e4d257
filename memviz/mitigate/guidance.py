"""``guidance-schedule`` (Jain et al., CVPR 2025, the attraction basin, their dynamic transition
point): a memorized prompt pulls the trajectory into a basin around one training image during the
first steps, and classifier-free guidance inside the basin is what copies. Sample with the early
guidance scale ``knob`` until the transition, then with the model's normal guidance: 1 is no guidance
(the conditional model alone, the authors' setting, the default), 0 the unconditional model, below 0
opposite guidance. A model that samples without guidance (w = 1, as the bundled demos do) has no
guidance to withhold: at the default the schedule is then the plain generation, sampled as such. The transition
is read off each generation's own CFG-norm curve ||eps_c - eps_u|| (Wen et al.'s norm, from the
sampler's two outputs at every step): its first local minimum, n_{k-1} < n_{k-2} and n_{k-1} < n_k;
guidance is on from step k + 1 (the paper's code switches at step k itself; a callback sees step k's
outputs after they were used). Zero extra model calls: the norm is read from the sampler's own
two outputs, computed together in one batched call while any generation waits for its transition.

Each generation has its own switch step (the schedule returns one w per row of the batch); a
generation whose curve has no local minimum keeps the early scale to the end.
"""

from __future__ import annotations

import torch

from memviz.detect.wen import step_norm
from memviz.mitigate.registry import Knob, Mitigated, Mitigation, register


class _Switch:
    """The guidance schedule of n generations sampled as one batch: w(t) per row, ``early`` until the
    callback sees the first local minimum of that row's CFG norm, then ``late``."""

    def __init__(self, n: int, early: float, late: float):
        self.early, self.late = early, late
        self.last: list[torch.Tensor] = []  # the norms of the last two steps
        self.at = torch.full((n,), -1)  # the step from which each row is guided (-1: not yet)

    def __call__(self, t: float):
        if bool((self.at < 0).all()):
            return self.early
        return torch.where(self.at >= 0, self.late, self.early).float()

    def pending(self) -> bool:
        """Whether a row still waits for its transition (the sampler then computes both outputs)."""
        return bool((self.at < 0).any())

    def step(self, s) -> None:
        if s.eps_uncond is None:  # every row guided and w = 1: the sampler computed the conditional output alone
            return
        norm = step_norm(s)
        if len(self.last) == 2:
            before, low = self.last
            self.at[(self.at < 0) & (low < before) & (low < norm)] = s.index + 1
        self.last = [*self.last, norm][-2:]


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    late = model.guidance_scale if guidance_scale is None else float(guidance_scale)
    if float(knob) == late:  # nothing to withhold before the transition: the plain generation, without reading it
        out = model.sample(n, cond=cond, steps=steps, guidance_scale=late, seed=seed)
        return Mitigated(out, cond, {"switch_step": [steps] * n, "steps": steps, "early": late, "late": late})
    switch = _Switch(n, float(knob), late)
    # one batch (its rows are the schedule's rows); both outputs (one batched call) until every row has
    # switched, then only what the late scale needs (the conditional one alone at w = 1)
    out = model.sample(
        n,
        cond=cond,
        steps=steps,
        guidance_scale=switch,
        seed=seed,
        callback=switch.step,
        batch_size=n,
        uncond=switch.pending,
    )
    return Mitigated(
        out,
        cond,
        {
            "switch_step": [steps if int(a) < 0 else int(a) for a in switch.at],
            "steps": steps,
            "early": float(knob),
            "late": late,
        },
    )


register(
    Mitigation(
        "guidance-schedule",
        "guidance schedule",
        Knob(
            "early",
            1.0,
            -4.0,
            1.0,
            help="the guidance scale before the transition (the first local minimum of the "
            "CFG norm): 1, no guidance (the conditional model alone, the authors' setting); 0, the unconditional model; "
            "below 0, opposite guidance",
        ),
        "0 extra calls: the early steps read the sampler's own conditional and unconditional outputs (one batched "
        "pair per step)",
        "Jain et al., CVPR 2025 (attraction basin, dynamic transition point)",
        needs=("condition",),
        run=_run,
    )
)
