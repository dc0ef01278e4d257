"""``unconditional``: the refusal baseline. A flagged prompt is not followed at all: its n
generations come from the unconditional model (the same x_T as the plain ones). It avoids a copy
whenever the unconditional model does not copy, at the price of everything the prompt asked for:
the floor that a remedy which still follows the prompt should be compared with. Half the UNet work
of a guided generation (one output per step instead of a conditional and unconditional pair)."""

from __future__ import annotations

from memviz.mitigate.registry import Mitigated, Mitigation, register


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    out = model.sample(n, cond=None, steps=steps, seed=seed)
    return Mitigated(out, None, {"prompt": "no prompt (the unconditional model)"})


register(
    Mitigation(
        "unconditional",
        "condition (dropped)",
        None,
        "0 extra calls (one output per step instead of two)",
        "baseline: refuse the flagged prompt",
        needs=("condition",),
        run=_run,
    )
)
