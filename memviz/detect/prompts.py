"""Prompt-level memorization scores: generate once, score with every registered detector.

For each prompt, ``reps`` groups of n generations (seeded) go through the one sampler; the
stepwise detectors score each of the first ``steps`` steps from its callback (Wen from the
sampler's own conditional and unconditional outputs, Jeon at x_t), the others score the
finished generations (FLIPD, the nearest training image). A prompt's score for (n, steps)
averages the first n generations of a group and the first ``steps`` steps, so one run serves
every (n, steps) of Jeon et al.'s Table 1. Prompts are a pass of ``memviz.runner``, stored per
prompt: an interrupted evaluation resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from memviz.cache import RowStore, fingerprint, model_fingerprint
from memviz.detect.registry import Detector, detectors
from memviz.memorization import evidence_of
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex
from memviz.runner import run
from memviz.sampling import SampleOutput, Step


@dataclass
class Generations:
    """What a per-generation detector reads: the generations of one prompt and their context.

    Attributes:
        model; prompt; out (SampleOutput): m generations; index: the training images (pixels);
        t0, n_probes, seed: the FLIPD settings.
    """

    model: DiffusionModel
    prompt: object
    out: SampleOutput
    index: NeighborIndex
    t0: float
    n_probes: int
    seed: int

    @cached_property
    def copies(self):
        """``CopyEvidence`` of each generation: its 50 nearest training images, the calibrated l2."""
        return evidence_of(self.out, self.index)


def score_generations(model: DiffusionModel, prompt, index: NeighborIndex, m: int, steps: int, sample_steps: int,
                      t0: float = 0.05, n_probes: int = 8, seed: int = 0, dets: Sequence[Detector] | None = None,
                      guidance_scale=None) -> tuple[dict, dict, Generations]:
    """Generate m samples of ``prompt`` and score each with every detector ``dets`` (default: every
    prompt-level one; those needing a condition are skipped for prompt None).

    Returns:
        (scores: name -> (m, steps) stepwise or (m,), seconds: name -> (steps,) or (1,) for the m
        generations, sampler time included, Generations).
    """
    dets = [d for d in (dets or detectors("prompt")) if prompt is not None or "condition" not in d.needs]
    stepwise = [d for d in dets if d.stepwise]
    values = {d.name: np.zeros((m, steps)) for d in stepwise}
    spent = {d.name: np.zeros(steps) for d in stepwise}

    def callback(s: Step) -> None:
        if s.index < steps:
            for d in stepwise:
                t = time.perf_counter()
                values[d.name][s.rows, s.index] = np.asarray(d.step(model, prompt, s))
                spent[d.name][s.index] += time.perf_counter() - t

    start = time.perf_counter()
    out = model.sample(m, prompt, sample_steps, guidance_scale, seed, callback=callback,
                       uncond=any("unconditional output" in d.needs for d in stepwise))
    t_sample = time.perf_counter() - start - sum(v.sum() for v in spent.values())
    seconds = {name: v + t_sample / sample_steps * (np.arange(steps) > 0) for name, v in spent.items()}
    g = Generations(model, prompt, out, index, t0, n_probes, seed)
    for d in dets:
        if not d.stepwise:
            t = time.perf_counter()
            values[d.name] = np.asarray(d.generation(g), dtype=float)
            seconds[d.name] = np.asarray([time.perf_counter() - t + t_sample])
    return values, seconds, g


@dataclass
class PromptScores:
    """Raw per-generation scores of P prompts, R groups of n generations each.

    Attributes:
        prompts (list): the P conditions.
        scores (dict[str, np.ndarray]): per detector, (P, R, n, S) per sampling step (stepwise) or (P, R, n).
        seconds (dict[str, np.ndarray]): per detector, seconds per group of n generations: (S,) for
            each step (stepwise, sampler steps included) or (1,) (the whole generation included).
        n (int), steps (int): the largest n and number of steps computed.
    """

    prompts: list
    scores: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    n: int
    steps: int

    def table(self, n: int, steps: int):
        """One row per (prompt, group): each detector's score for (n, steps), oriented by its sign so
        that higher = more memorized. A pandas.DataFrame."""
        import pandas as pd

        from memviz.detect.registry import DETECTORS

        if not 1 <= n <= self.n or not 1 <= steps <= self.steps:
            raise ValueError(f"Computed up to n = {self.n} and steps = {self.steps}; got n = {n}, steps = {steps}.")
        cols = {}
        for name, v in self.scores.items():
            d = DETECTORS[name]
            cols[name] = d.sign * (v[:, :, :n, :steps].mean((2, 3)) if d.stepwise else v[:, :, :n].mean(2))
        p, r = next(iter(self.scores.values())).shape[:2]
        frame = pd.DataFrame({k: v.ravel() for k, v in cols.items()})
        frame.insert(0, "group", np.tile(np.arange(r), p))
        frame.insert(0, "prompt", np.repeat(np.asarray(self.prompts, dtype=object), r))
        return frame

    def seconds_for(self, detector: str, n: int, steps: int) -> float:
        """Seconds per prompt of ``detector`` at (n, steps), scaled from the batched run by n."""
        from memviz.detect.registry import DETECTORS

        sec = self.seconds[detector]
        return float((sec[:steps].sum() if DETECTORS[detector].stepwise else sec[0]) * n / self.n)


def prompt_scores(model: DiffusionModel, prompts: Sequence, index: NeighborIndex, n: int = 4, steps: int = 50,
                  reps: int = 5, sample_steps: int = 50, t0: float = 0.05, n_probes: int = 8, seed: int = 0,
                  progress: bool = True, names: Sequence[str] | None = None, runner=None,
                  spec: dict | None = None) -> PromptScores:
    """Generate ``reps`` x ``n`` samples of each prompt and score every generation with every
    prompt-level detector (or only ``names``).

    Args:
        index: the training images (pixel space, [-1, 1]) for the nearest-neighbour evidence.
        steps: the stepwise detectors are evaluated at the first ``steps`` sampling steps.
        sample_steps: the sampler's number of steps (Jeon et al. and Wen et al.: 50).
        runner, spec: a remote runner (``memviz.ray_runner.RayRunner``) and the Study's ``spec``
            from which each worker reopens the model and the index (``PromptTask``).
    """
    if not 1 <= steps <= sample_steps:
        raise ValueError(f"steps must lie in 1..{sample_steps}; got {steps}.")
    dets = detectors("prompt", names)
    prompts = list(prompts)
    params = (fingerprint(index.reference), n, reps, steps, sample_steps, t0, n_probes, seed, [d.name for d in dets])
    store = RowStore("prompt_scores", fingerprint(model_fingerprint(model), params))
    knobs = {"n": n, "reps": reps, "steps": steps, "sample_steps": sample_steps, "t0": t0, "n_probes": n_probes,
             "seed": seed, "names": [d.name for d in dets]}
    remote = runner is not None and spec is not None
    table = run(prompt_batch(model, prompts, index, **knobs), np.arange(len(prompts)),
                [fingerprint(p, seed + 1000 * i) for i, p in enumerate(prompts)], store, batch_size=1,
                desc="prompts", progress=progress, runner=runner if remote else None,
                task=PromptTask(spec, prompts, knobs) if remote else None)
    scores = {k: v for k, v in table.items() if k != "id" and not k.startswith("seconds:")}
    seconds = {k.split(":", 1)[1]: v.mean(0) for k, v in table.items() if k.startswith("seconds:")}
    return PromptScores(prompts, scores, seconds, n, steps)


def prompt_batch(model: DiffusionModel, prompts: list, index: NeighborIndex, n: int, reps: int, steps: int,
                 sample_steps: int, t0: float, n_probes: int, seed: int, names: Sequence[str]):
    """The batch function of ``prompt_scores``: prompt numbers (1,) -> the prompt's scores and seconds."""
    dets = detectors("prompt", names)

    def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
        i = int(ids[0])  # one prompt per batch: each prompt is stored as soon as it is scored
        scores, seconds, _ = score_generations(model, prompts[i], index, n * reps, steps, sample_steps, t0,
                                               n_probes, seed + 1000 * i, dets)
        out = {k: v.reshape(1, reps, n, *v.shape[1:]) for k, v in scores.items()}
        return out | {f"seconds:{k}": v[None] / reps for k, v in seconds.items()}  # per group of n

    return batch


@dataclass(frozen=True)
class PromptTask:
    """``prompt_batch`` rebuilt on a worker from a Study's ``spec`` (model, and the training images as the index)."""

    spec: dict
    prompts: list
    knobs: dict

    def build(self):
        from memviz.study import open_study

        study = open_study(**self.spec)
        return prompt_batch(study.model, self.prompts, study.reference, **self.knobs)
