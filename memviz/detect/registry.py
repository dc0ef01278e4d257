"""The detector registry: every memorization detector declares itself here, and everything that
lists, scores or evaluates detectors (eval-detection, the app's tables and Prompts page, the
CLI's ``memviz detectors``) iterates ``DETECTORS``. Adding a detector is one module in
``memviz.detect`` that calls ``register`` (modules there are imported by ``memviz.detect``).

A detector scores at one or both levels:
- prompt level, on pure noise (``noise``): ``noise(p: Noise) -> (m,)`` from the model's outputs at
  the generations' initial noise x_T, before any sampling step (``memviz.detect.prompts.Noise``,
  whose outputs are computed once and shared by every such detector);
- prompt level, per step (``step``): ``step(model, cond, s: Step) -> (b,)`` at each of the first
  sampling steps, called from the sampler's callback (``memviz.model.sampling.Step``);
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
        needs (tuple[str, ...]): what it reads: "condition", "pure noise", "first steps",
            "unconditional output", "generation", "cross-attention", "training images", "spectrum",
            "training image".
        sign (int): +1 (larger = more memorized) or -1 (smaller = more memorized).
        cost (str): model calls per query (forward or backward passes through the UNet), as a formula.
        calls (Callable[[int, int], int]): the same, evaluated at (D, n_probes).
        paper (str): where it comes from.
        per_step (bool): its per-generation scorer returns (m, S), one score per scored step.
        max_steps (int | None): a stepwise detector's protocol scores at most this many first steps
            (Jeon et al.: the first step only); None: as many as asked.
        noise, step, generation, sample: the scoring functions (see the module docstring).
    """

    name: str
    levels: tuple[str, ...]
    needs: tuple[str, ...]
    sign: int
    cost: str
    calls: Callable[[int, int], int]
    paper: str
    per_step: bool = False
    max_steps: int | None = None
    noise: Callable | None = field(default=None, repr=False)
    step: Callable | None = field(default=None, repr=False)
    generation: Callable | None = field(default=None, repr=False)
    sample: Callable | None = field(default=None, repr=False)

    @property
    def stepwise(self) -> bool:
        """Scored at each of the first sampling steps (averaged over the first ``steps``)."""
        return self.step is not None or self.per_step

    def steps_for(self, steps: int) -> int:
        """How many first steps it is scored at when ``steps`` are asked for (its protocol's bound)."""
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def unavailable(self, model) -> str | None:
        """None if this detector can score ``model``; else one sentence saying why not."""
        if "condition" in self.needs and not (model.is_class_conditional or model.is_text_conditional):
            return f"{self.name} compares a condition with the unconditional model, and this model is unconditional."
        if "cross-attention" in self.needs:
            from memviz.model.attention import has_cross_attention

            if not has_cross_attention(model):
                return (
                    f"{self.name} reads the prompt's cross-attention, and this model has none (it is conditioned "
                    f"{'by class embeddings' if model.is_class_conditional else 'on nothing'}); it needs a "
                    f"text-conditional UNet2DConditionModel."
                )
        return None

    def describe(self, dim: int | None = None, n_probes: int = 8) -> dict:
        """A JSON-able description (``memviz detectors --json``)."""
        out = {
            "name": self.name,
            "levels": list(self.levels),
            "needs": list(self.needs),
            "sign": self.sign,
            "cost": self.cost,
            "stepwise": self.stepwise,
            "paper": self.paper,
        }
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
    prompt_scorers = [f for f in (detector.noise, detector.step, detector.generation) if f is not None]
    if (
        ("prompt" in detector.levels) != bool(prompt_scorers)
        or len(prompt_scorers) > 1
        or ("sample" in detector.levels) != (detector.sample is not None)
    ):
        raise ValueError(f"Detector {detector.name!r}: give one scoring function for each of its levels.")
    DETECTORS[detector.name] = detector
    return detector


def detectors(level: str | None = None, names=None) -> list[Detector]:
    """The registered detectors (of one level), optionally only ``names``; an unknown name gets one sentence."""
    if names:
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise ValueError(f"Unknown detector {unknown[0]!r}; the registered ones are {', '.join(DETECTORS)}.")
    return [d for d in DETECTORS.values() if (level is None or level in d.levels) and (not names or d.name in names)]


def serving(model, level: str = "prompt", names=None, notes: list | None = None) -> list[Detector]:
    """The detectors of ``level`` (or only ``names``) that can score ``model``. A name asked for that
    cannot raises its one sentence (``Detector.unavailable``); any other left out adds it to ``notes``."""
    out = []
    for d in detectors(level, names):
        why = d.unavailable(model)
        if why is None:
            out.append(d)
        elif names:
            raise ValueError(why)
        elif notes is not None and why not in notes:
            notes.append(why)
    return out
