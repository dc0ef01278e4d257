"""Mitigations: remedies that stop a model from generating copies of its training images, each one
module registered in ``MITIGATIONS`` (``memviz.mitigate.registry``), run and judged together by
``memviz.mitigate.lab`` (copy rate against utility, with the cost of each)."""

from memviz.mitigate import plain  # noqa: F401, I001 - each registers itself; none first, then the rest
from memviz.mitigate import embedding, guidance, noise, noise_opt, prompt_edit, tokens, unconditional  # noqa: F401
from memviz.mitigate.registry import MITIGATIONS, Knob, Mitigated, Mitigation, mitigations, register

__all__ = ["MITIGATIONS", "Knob", "Mitigated", "Mitigation", "mitigations", "register"]
