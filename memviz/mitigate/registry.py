"""The mitigation registry: every remedy against memorized generations declares itself here, and
everything that lists or runs remedies (``memviz mitigate``, the lab's report, ``--list``) iterates
``MITIGATIONS``. Adding one is one module in ``memviz.mitigate`` that calls ``register``.

A mitigation generates n samples of one condition, as ``DiffusionModel.sample`` would, but changes
one thing (the initial noise, the guidance schedule, the condition or the prompt), through the one
sampler's seams (``memviz.model.sampling``: given x_T, per-step callbacks, a guidance schedule w(t)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(frozen=True)
class Knob:
    """A mitigation's one setting: its name, default and the closed range it may take."""

    name: str
    default: float
    low: float
    high: float
    integer: bool = False
    help: str = ""

    def check(self, value: float | None) -> float:
        """``value`` (the default when None), or ValueError in one sentence when out of range."""
        if value is None:
            return self.default
        value = float(value)
        if not self.low <= value <= self.high or (self.integer and value != int(value)):
            kind = "a whole number" if self.integer else "a number"
            raise ValueError(f"{self.name} must be {kind} in [{self.low:g}, {self.high:g}]; got {value:g}.")
        return int(value) if self.integer else value

    def sweep(self, k: int = 5) -> list[float]:
        """k settings across the range, for a Pareto sweep: powers of 2 for whole numbers (at most ``high``),
        evenly spaced strictly inside the range otherwise."""
        if self.integer:
            return [2**i for i in range(k) if 2**i <= self.high and 2**i >= self.low] or [self.default]
        return [round(self.low + (self.high - self.low) * (i + 1) / (k + 1), 4) for i in range(k)]


@dataclass(frozen=True)
class Mitigated:
    """What a mitigation produced for one condition.

    Attributes:
        out (memviz.model.sampling.SampleOutput): the n generations (images (n, C, H, W) in [0, 1]).
        cond: the condition actually sampled (an edited prompt, for instance).
        info (dict): what the method decided (switch steps, chosen candidates...), JSON-able.
    """

    out: object
    cond: object = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mitigation:
    """One remedy.

    Attributes:
        name (str): its registry name; changes (str): what it changes ("initial noise", "guidance
            schedule", "prompt", "condition embedding" or "nothing").
        knob (Knob | None): its one setting (None: none).
        cost (str): extra model calls, as a formula; paper (str).
        needs (tuple[str, ...]): "condition", "text" (a text-conditional model), "embedding" (a text
            encoder's states, or a class embedding layer).
        run (Callable): run(model, cond, n, seed, steps, guidance_scale, knob) -> ``Mitigated``.
    """

    name: str
    changes: str
    knob: Knob | None
    cost: str
    paper: str
    needs: tuple[str, ...] = ()
    run: Callable = field(default=None, repr=False)

    def unavailable(self, model) -> str | None:
        """None if this method applies to ``model``; else one sentence saying why not."""
        if "text" in self.needs and not model.is_text_conditional:
            return (
                f"{self.name} edits the prompt's words, and this model is conditioned "
                f"{'by class labels' if model.is_class_conditional else 'on nothing'}; it needs a text model."
            )
        if "condition" in self.needs and not (model.is_class_conditional or model.is_text_conditional):
            return f"{self.name} acts on the condition, and this model is unconditional."
        if "embedding" in self.needs and model.is_class_conditional and not hasattr(model.unet, "class_embedding"):
            return f"{self.name} optimizes a class embedding, and this model's UNet has no class_embedding layer."
        return None

    def describe(self) -> dict:
        """A JSON-able description (``memviz mitigate --list``)."""
        knob = (
            None
            if self.knob is None
            else {
                "name": self.knob.name,
                "default": self.knob.default,
                "range": [self.knob.low, self.knob.high],
                "help": self.knob.help,
            }
        )
        return {
            "name": self.name,
            "changes": self.changes,
            "knob": knob,
            "cost": self.cost,
            "paper": self.paper,
            "needs": list(self.needs),
        }

    def __call__(
        self, model, cond, n: int, seed: int = 0, steps: int = 50, guidance_scale=None, knob: float | None = None
    ) -> Mitigated:
        why = self.unavailable(model)
        if why is not None:
            raise ValueError(why)
        value = None if self.knob is None else self.knob.check(knob)
        with torch.no_grad():
            return self.run(model, cond, n, seed, steps, guidance_scale, value)


MITIGATIONS: dict[str, Mitigation] = {}


def register(method: Mitigation) -> Mitigation:
    """Add a mitigation to ``MITIGATIONS`` (its name must be new and its runner given)."""
    if method.name in MITIGATIONS:
        raise ValueError(f"A mitigation named {method.name!r} is already registered.")
    if method.run is None:
        raise ValueError(f"Mitigation {method.name!r}: give its run function.")
    MITIGATIONS[method.name] = method
    return method


def mitigations(names=None, model=None, notes: list | None = None) -> list[Mitigation]:
    """The registered mitigations (``names``: only these; "all": every one). With ``model``, those that
    apply to it: a name asked for that does not raises its sentence; with "all" the others are left
    out and their sentences added to ``notes``. An unknown name gets one sentence."""
    every = not names or list(names) == ["all"]
    if not every:
        unknown = [n for n in names if n not in MITIGATIONS]
        if unknown:
            raise ValueError(f"Unknown mitigation {unknown[0]!r}; the registered ones are {', '.join(MITIGATIONS)}.")
    chosen = list(MITIGATIONS.values()) if every else [MITIGATIONS[n] for n in dict.fromkeys(names)]
    if model is None:
        return chosen
    out = []
    for m in chosen:
        why = m.unavailable(model)
        if why is None:
            out.append(m)
        elif not every:
            raise ValueError(why)
        elif notes is not None:
            notes.append(why)
    return out
