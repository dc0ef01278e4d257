"""Prompt-level memorization scores: generate once, score with every detector.

For each prompt, ``reps`` groups of n generations (seeded) are sampled with their
trajectories; then, per generation:
- Wen et al.: ||eps(x_t, c) - eps(x_t, null)|| at each of the first sampling steps;
- Jeon et al.: ||H_c s_Delta - H_u s_Delta|| at each of the first sampling steps;
- MMH: FLIPD of the final sample, conditional and unconditional;
- the evidence: l2 to the nearest training image and Carlini's calibrated l2.
A prompt's score for (n, steps) averages the first n generations of a group and the
first ``steps`` steps, so one run serves every (n, steps) of Jeon et al.'s Table 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from memviz.detect.wen import wen_score
from memviz.hessian.sharpness import jeon_score
from memviz.lid.flipd import flipd
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex, copy_scores

STEPWISE = ("wen", "jeon")
PER_GENERATION = ("flipd_cond", "flipd_uncond", "nn_distance", "calibrated_l2")


@dataclass
class PromptScores:
    """Raw per-generation scores of P prompts, R groups of n generations each.

    Attributes:
        prompts (list): the P conditions.
        scores (dict[str, np.ndarray]): "wen", "jeon": (P, R, n, S) per sampling step;
            "flipd_cond", "flipd_uncond", "nn_distance", "calibrated_l2": (P, R, n).
        seconds (dict[str, np.ndarray]): per detector, seconds per group of n generations:
            (S,) for each step (stepwise detectors, sampler steps included) or (1,) (the
            others, the whole generation included); measured on the batch of R n generations.
        n (int), steps (int): the largest n and number of steps computed.
    """

    prompts: list
    scores: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    n: int
    steps: int

    def table(self, n: int, steps: int):
        """One row per (prompt, group): each detector's score for (n, steps), higher = more
        memorized (FLIPD and distances enter negated). A pandas.DataFrame."""
        import pandas as pd

        if not 1 <= n <= self.n or not 1 <= steps <= self.steps:
            raise ValueError(f"Computed up to n = {self.n} and steps = {self.steps}; got n = {n}, steps = {steps}.")
        p, r = self.scores["wen"].shape[:2]
        cols = {name: self.scores[name][:, :, :n, :steps].mean((2, 3)) for name in STEPWISE}
        cols |= {name: -self.scores[name][:, :, :n].mean(2) for name in PER_GENERATION}
        frame = pd.DataFrame({k: v.ravel() for k, v in cols.items()})
        frame.insert(0, "group", np.tile(np.arange(r), p))
        frame.insert(0, "prompt", np.repeat(np.asarray(self.prompts, dtype=object), r))
        return frame

    def seconds_for(self, detector: str, n: int, steps: int) -> float:
        """Seconds per prompt of ``detector`` at (n, steps), scaled from the batched run by n."""
        sec = self.seconds[detector]
        return float((sec[:steps].sum() if detector in STEPWISE else sec[0]) * n / self.n)


def prompt_scores(model: DiffusionModel, prompts: Sequence, index: NeighborIndex, n: int = 4, steps: int = 50,
                  reps: int = 5, sample_steps: int = 50, t0: float = 0.05, n_probes: int = 8, seed: int = 0,
                  progress: bool = True) -> PromptScores:
    """Generate ``reps`` x ``n`` samples of each prompt and score every generation.

    Args:
        index: the training images (pixel space, [-1, 1]) for the nearest-neighbour evidence.
        steps: the stepwise detectors are evaluated at the first ``steps`` sampling steps.
        sample_steps: the sampler's number of steps (Jeon et al. and Wen et al.: 50).
    """
    if not 1 <= steps <= sample_steps:
        raise ValueError(f"steps must lie in 1..{sample_steps}; got {steps}.")
    out = {k: [] for k in STEPWISE + PER_GENERATION}
    sec = {k: np.zeros(steps if k in STEPWISE else 1) for k in STEPWISE + PER_GENERATION}
    for i, prompt in enumerate(tqdm(prompts, disable=not progress, desc="prompts")):
        scores, seconds = _score_prompt(model, prompt, index, n * reps, steps, sample_steps, t0, n_probes,
                                        seed + 1000 * i)
        for k, v in scores.items():
            out[k].append(v.reshape(reps, n, *v.shape[1:]))
            sec[k] += seconds[k] / len(prompts) / reps  # per prompt and group of n
    return PromptScores(list(prompts), {k: np.stack(v) for k, v in out.items()}, sec, n, steps)


def _score_prompt(model, prompt, index, m, steps, sample_steps, t0, n_probes, seed):
    """Steps: 1. sample m generations with their trajectories; 2. stepwise detectors at the first
    ``steps`` points; 3. FLIPD of the final samples; 4. the nearest training images."""
    t_start = time.perf_counter()
    gen = model.sample(m, prompt, sample_steps, seed=seed, return_trajectory=True)                 # 1.
    t_sample = time.perf_counter() - t_start
    scores, seconds = {}, {}
    for name, fn in (("wen", wen_score), ("jeon", lambda mdl, c, x_t, t: jeon_score(mdl, c, x_t=x_t, t=t))):
        values, times = [], []
        for s in range(steps):                                                                      # 2.
            t0_ = time.perf_counter()
            values.append(fn(model, prompt, gen.trajectory[s], float(gen.ts[s])).numpy())
            times.append(time.perf_counter() - t0_ + t_sample / sample_steps * (s > 0))
        scores[name], seconds[name] = np.stack(values, axis=1), np.asarray(times)
    for name, cond in (("flipd_cond", prompt), ("flipd_uncond", None)):                            # 3.
        t0_ = time.perf_counter()
        scores[name] = flipd(model, gen.x0, t0, cond=cond, trace="hutchinson", n_probes=n_probes, seed=seed).numpy()
        seconds[name] = np.asarray([time.perf_counter() - t0_ + t_sample])
    t0_ = time.perf_counter()
    cs = copy_scores(index.nearest(gen.images * 2 - 1, k=50).distance)                            # 4.
    scores["nn_distance"], scores["calibrated_l2"] = cs.nearest, cs.calibrated
    seconds["nn_distance"] = seconds["calibrated_l2"] = np.asarray([time.perf_counter() - t0_ + t_sample])
    return scores, seconds
