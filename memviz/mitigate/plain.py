"""``none``: the plain generation, the reference every remedy is measured against."""

from __future__ import annotations

from memviz.mitigate.registry import Mitigated, Mitigation, register


def _run(model, cond, n, seed, steps, guidance_scale, knob) -> Mitigated:
    return Mitigated(model.sample(n, cond=cond, steps=steps, guidance_scale=guidance_scale, seed=seed), cond)


register(Mitigation("none", "nothing", None, "0 extra calls", "the plain generation", run=_run))
