"""Mitigations: remedies that stop a model from generating copies of its training images, each one
module registered in ``MITIGATIONS`` (``memviz.mitigate.registry``), run and judged together by
``memviz.mitigate.lab`` (copy rate against utility, with the cost of each).

May import ``memviz.detect`` (gates, the guidance gap) and the layers below; the Study, figures,
the UI and the CLI import it."""

import importlib
import pkgutil

from memviz.mitigate import plain  # noqa: F401 - "none" registers first: the baseline every table starts with

for _module in pkgutil.iter_modules(__path__):  # every other module registers its remedy: one file adds one
    if _module.name not in ("lab", "utility", "registry", "plain"):
        importlib.import_module(f"{__name__}.{_module.name}")

from memviz.mitigate.registry import MITIGATIONS, Knob, Mitigated, Mitigation, mitigations, register  # noqa: E402

__all__ = ["MITIGATIONS", "Knob", "Mitigated", "Mitigation", "mitigations", "register"]
