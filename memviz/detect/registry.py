"""The detector registry: every memorization detector declares itself here, and everything that
lists, scores or evaluates detectors (eval-detection, the app's tables and Prompts page, the
CLI's ``memviz detectors``) iterates ``DETECTORS``. Adding a detector is one module in
``memviz.detect`` that calls ``register`` (modules there are imported by ``memviz.detect``).

A detector scores at one or both levels:
- prompt level, per step (``step``): ``step(model, cond, s: Step) -> (b,)`` at each of the first
  sampling steps, called from the sampler's callback (``memviz.sampling.Step``);
- prompt level, per generation (``generation``): ``generation(g: Generations) -> (m,)`` on the
  finished generations;
- sample level (``sample``): ``sample(study, rows, t0) -> (N,)`` on training rows, read through
  the ``Study`` (so its artifacts are shared with the app and the CLI).
``sign``: +1 when a larger raw score means more memorized, -1 when a smaller one does; tables
and ROC curves use sign * score, so higher is more memorized everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

LEVELS = ("prompt", "sample")


@dataclass(frozen=True)
class Detector:
    """One detector: what it is, what it needs, what it costs, and how it scores.

    Attributes:
        name (str): its registry name (also its name in tables, JSON and ROC curves).
        levels (tuple[str, ...]): "prompt" and/or "sample".
        needs (tuple[str, ...]): what it reads: "condition", "first steps", "unconditional output",
            "generation", "training images", "spectrum", "training image".
        sign (int): +1 (larger = more memorized) or -1 (smaller = more memorized).
        cost (str): model calls per query (forward or backward passes through the UNet), as a formula.
        calls (Callable[[int, int], int]): the same, evaluated at (D, n_probes).
        paper (str): where it comes from.
        step, generation, sample: the scoring functions (see the module docstring).
    """

    name: str
    levels: tuple[str, ...]
    needs: tuple[str, ...]
    sign: int
    cost: str
    calls: Callable[[int, int], int]
    paper: str
    step: Callable | None = field(default=None, repr=False)
    generation: Callable | None = field(default=None, repr=False)
    sample: Callable | None = field(default=None, repr=False)

    @property
    def stepwise(self) -> bool:
        """Scored at each of the first sampling steps (averaged over the first ``steps``)."""
        return self.step is not None

    def describe(self, dim: int | None = None, n_probes: int = 8) -> dict:
        """A JSON-able description (``memviz detectors --json``)."""
        out = {"name": self.name, "levels": list(self.levels), "needs": list(self.needs), "sign": self.sign,
               "cost": self.cost, "stepwise": self.stepwise, "paper": self.paper}
        if dim is not None:
            out["model_calls"] = int(self.calls(dim, n_probes))
        return out


DETECTORS: dict[str, Detector] = {}


def register(detector: Detector) -> Detector:
    """Add a detector to ``DETECTORS`` (its name must be new, its levels known, its scorers given)."""
    if detector.name in DETECTORS:
        raise ValueError(f"A detector named {detector.name!r} is already registered.")
    if not detector.levels or not set(detector.levels) <= set(LEVELS) or detector.sign not in (1, -1):
        raise ValueError(f"Detector {detector.name!r}: levels must be among {LEVELS} and sign +1 or -1.")
    if ("prompt" in detector.levels) != (detector.step is not None or detector.generation is not None) or \
            ("sample" in detector.levels) != (detector.sample is not None):
        raise ValueError(f"Detector {detector.name!r}: give a scoring function for each of its levels.")
    DETECTORS[detector.name] = detector
    return detector


def detectors(level: str | None = None, names=None) -> list[Detector]:
    """The registered detectors (of one level), optionally only ``names``; an unknown name gets one sentence."""
    if names:
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise ValueError(f"Unknown detector {unknown[0]!r}; the registered ones are {', '.join(DETECTORS)}.")
    return [d for d in DETECTORS.values() if (level is None or level in d.levels) and (not names or d.name in names)]
