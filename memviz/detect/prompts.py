"""Prompt-level memorization scores: generate once, score with every registered detector.

For each prompt, ``reps`` groups of n generations (seeded) go through the one sampler; the
stepwise detectors score each of the first ``steps`` steps from its callback (Wen from the
sampler's own conditional and unconditional outputs, Jeon at x_t), the others score the
finished generations (FLIPD, the nearest training image). A prompt's score for (n, steps)
averages the first n generations of a group and the first ``steps`` steps, so one run serves
every (n, steps) of Jeon et al.'s Table 1. Prompts are a pass of ``memviz.runner.local``, stored per
prompt: an interrupted evaluation resumes.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from memviz.detect.cost import Meter
from memviz.detect.registry import Detector, detectors, serving
from memviz.io.cache import RowStore, fingerprint, model_fingerprint
from memviz.model.adapter import DiffusionModel
from memviz.model.attention import capture_cross_attention, end_token_map
from memviz.model.sampling import SampleOutput, Step, initial_noise, make_scheduler
from memviz.neighbors.copies import evidence_of
from memviz.neighbors.index import NeighborIndex
from memviz.runner.local import run

PROTOCOL_STEPS = 50  # the detection papers' schedule (Wen, Jeon, Asthana): 50 DDIM steps


class NoTrainingImages:
    """Stands in for the training images (a ``NeighborIndex``) where there are none: only detectors
    that do not read them (``"training images"`` not in ``Detector.needs``) may run."""

    reference = np.zeros((1, 1), np.float32)


@dataclass
class Noise:
    """What a noise-level detector reads: the m initial noises x_T of one prompt's generations, and
    the model's outputs there at the times of a ``steps``-step schedule, each computed once (one
    batched conditional-and-unconditional call) and shared by every detector that reads it.

    Attributes:
        model; prompt; x_T (torch.Tensor): (m, C, H, W); steps (int): the schedule (the protocol's 50).
    """

    model: DiffusionModel
    prompt: object
    x_T: torch.Tensor
    steps: int = PROTOCOL_STEPS

    def __post_init__(self):
        self._outputs: dict[int, tuple] = {}
        self.spent: dict[int, tuple[float, int, float]] = {}  # index -> (seconds, calls, peak MiB) of computing it
        self.read: set[int] = set()  # the indices read since the caller last cleared it

    @cached_property
    def taus(self) -> torch.Tensor:
        """(steps,) the scheduler timesteps tau, first (noisiest) first."""
        return make_scheduler(self.model, "ddim", self.steps).timesteps.float()

    def outputs(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """(out_c, out_u, x, t) at the schedule's step ``index`` (0: the first; -3: the third-to-last) on x_T:
        the raw conditional and unconditional outputs (m, C, H, W), the input x_T and the time t in [0, 1]."""
        index = index % self.steps
        self.read.add(index)
        if index not in self._outputs:
            with Meter(self.model) as m, torch.no_grad():
                tau = self.taus[index]
                x = self.x_T.to(self.model.device)
                taus = torch.full((2 * len(x),), float(tau), device=self.model.device)
                out_c, out_u = self.model.output(torch.cat([x, x]), taus, self.prompt, double=True).chunk(2)
            self._outputs[index] = (
                out_c.float().cpu(),
                out_u.float().cpu(),
                self.x_T.float(),
                float(tau) / self.model.T,
            )
            self.spent[index] = (m.seconds, m.calls, m.peak_mb)
        return self._outputs[index]

    def first_step(self) -> Step:
        """The sampler's first ``Step`` on x_T under this schedule (both outputs, eps-parametrized),
        for stepwise detectors scored at the first step only."""
        out_c, out_u, x, t = self.outputs(0)
        t_b = torch.full((len(x),), t)
        return Step(0, t, x, self.model.to_eps(out_c, x, t_b), self.model.to_eps(out_u, x, t_b), 1.0, slice(0, len(x)))


@dataclass
class Generations:
    """What a per-generation detector reads: the generations of one prompt and their context.

    Attributes:
        model; prompt; out (SampleOutput): m generations; index: the training images (pixels);
        t0, n_probes, seed: the FLIPD settings (seed: one, or one per generation).
        diffs (torch.Tensor | None): (S, m, C, H, W) eps_c - eps_u at the first S scored steps, kept
            when a detector reads the cross-attention (Bright Ending's masked norm).
        attention (torch.Tensor | None): (m, h, w) the end token's cross-attention at the final step.
    """

    model: DiffusionModel
    prompt: object
    out: SampleOutput
    index: NeighborIndex
    t0: float
    n_probes: int
    seed: int | list[int]
    diffs: torch.Tensor | None = None
    attention: torch.Tensor | None = None

    @cached_property
    def copies(self):
        """``CopyEvidence`` of each generation: its 50 nearest training images, the calibrated l2."""
        return evidence_of(self.out, self.index)


@dataclass
class Cost:
    """What one detector spent on the m generations of a prompt: seconds and UNet calls, per scored
    step (S,) for stepwise detectors (the sampler steps it needs included) or (1,), and the peak
    memory (MiB above the start) of its work and of the sampling it needs."""

    seconds: np.ndarray
    calls: np.ndarray
    peak_mb: float


def score_generations(
    model: DiffusionModel,
    prompt,
    index: NeighborIndex,
    m: int,
    steps: int,
    sample_steps: int,
    t0: float = 0.05,
    n_probes: int = 8,
    seed: int = 0,
    dets: Sequence[Detector] | None = None,
    guidance_scale=None,
    protocol_steps: int = PROTOCOL_STEPS,
    noise: torch.Tensor | None = None,
) -> tuple[dict, dict[str, Cost], Generations | None]:
    """Score m generations of ``prompt`` (seeded) with every detector ``dets`` (default: every
    prompt-level one this model serves; those needing a condition are left out for prompt None).

    Steps: 1. x_T, drawn as the sampler draws it; the noise-level detectors read the model's outputs
    there at the times of a ``protocol_steps`` schedule (``Noise``, each output computed once);
    2. the stepwise detectors scored at the first step only (``steps`` = 1, or their protocol's
    ``max_steps``) are scored on the first step of that schedule, from the same outputs; 3. the m generations (``sample_steps`` steps, guidance ``guidance_scale``,
    default the model's), only if a detector needs them, with the stepwise detectors scored from
    the sampler's callback at its first ``steps`` steps; 4. the per-generation
    detectors on the finished generations.

    Args:
        prompt: one condition, or one per generation (m,) (several prompts batched through the model).
        seed: the seed of x_T and of the probes, or one seed per generation (m,) (each row's probes
            then do not depend on its batch).
        noise: (m, C, H, W) the initial noise x_T, instead of drawing it from ``seed``.

    Returns:
        (scores: name -> (m, S) stepwise (S = ``Detector.steps_for(steps)``) or (m,), costs: name -> ``Cost``, Generations or None
        when nothing was generated).
    """
    dets = [d for d in (dets or serving(model)) if prompt is not None or "condition" not in d.needs]
    values: dict[str, np.ndarray] = {}
    costs: dict[str, Cost] = {}
    x_T = initial_noise(model, m, torch.Generator("cpu").manual_seed(seed)) if noise is None else noise  # 1.
    probe = Noise(model, prompt, x_T, protocol_steps)
    for d in (d for d in dets if d.noise is not None):
        known = set(probe.spent)
        probe.read.clear()
        with Meter(model) as mt:
            values[d.name] = np.asarray(d.noise(probe), dtype=float)
        shared = [probe.spent[i] for i in probe.read & known]  # outputs it read that another detector computed
        costs[d.name] = Cost(
            np.array([mt.seconds + sum(c[0] for c in shared)]),
            np.array([mt.calls + sum(c[1] for c in shared)]),
            max([mt.peak_mb] + [c[2] for c in shared]),
        )
    stepwise = [d for d in dets if d.stepwise and d.step is not None]
    at_first = [d for d in stepwise if d.steps_for(steps) == 1]
    if at_first:  # 2.
        first = probe.first_step()
        base_s, base_c, base_mb = probe.spent[0]
        for d in at_first:
            with Meter(model) as mt:
                values[d.name] = np.asarray(d.step(model, prompt, first), dtype=float)[:, None]
            reads = "unconditional output" in d.needs  # it reads the outputs; others only x_T
            costs[d.name] = Cost(
                np.array([mt.seconds + reads * base_s]),
                np.array([mt.calls + reads * base_c]),
                max(mt.peak_mb, reads * base_mb),
            )
        stepwise = [d for d in stepwise if d not in at_first]
    finished = [d for d in dets if d.generation is not None]
    if not stepwise and not finished:
        return values, costs, None
    attend = any("cross-attention" in d.needs for d in finished)
    meters = {d.name: [Meter(model) for _ in range(d.steps_for(steps))] for d in stepwise}
    for d in stepwise:
        values[d.name] = np.zeros((m, d.steps_for(steps)))
    diffs = torch.zeros((steps, m, *model.sample_shape)) if attend else None
    attention: list = [None]

    def callback(s: Step) -> None:  # 3.
        if s.index < steps:
            for d in (d for d in stepwise if s.index < d.steps_for(steps)):
                with meters[d.name][s.index]:
                    values[d.name][s.rows, s.index] = np.asarray(d.step(model, prompt, s))
            if attend:
                diffs[s.index, s.rows] = (s.eps_cond - s.eps_uncond).float().cpu()
        if attend and s.index == sample_steps - 1:
            part = end_token_map(model, store, prompt, len(s.x_t))
            attention[0] = part if attention[0] is None else torch.cat([attention[0], part])

    uncond = any("unconditional output" in d.needs for d in stepwise + finished)
    with capture_cross_attention(model) if attend else nullcontext({}) as store, Meter(model) as ms:
        first_seed = seed if isinstance(seed, (int, np.integer)) else int(seed[0])
        out = model.sample(
            m, prompt, sample_steps, guidance_scale, first_seed, noise=x_T, callback=callback, uncond=uncond
        )
    own_s = sum(x.seconds for v in meters.values() for x in v)
    own_c = sum(x.calls for v in meters.values() for x in v)
    per_step = ((ms.seconds - own_s) / sample_steps, (ms.calls - own_c) / sample_steps)
    for d in stepwise:  # step i needs the sampler's steps before it, and its own outputs if it reads them
        before = np.arange(d.steps_for(steps)) + ("unconditional output" in d.needs)
        costs[d.name] = Cost(
            np.array([x.seconds for x in meters[d.name]]) + per_step[0] * np.diff(before, prepend=0),
            np.array([x.calls for x in meters[d.name]]) + per_step[1] * np.diff(before, prepend=0),
            max(ms.peak_mb, max(x.peak_mb for x in meters[d.name])),
        )
    g = Generations(model, prompt, out, index, t0, n_probes, seed, diffs, attention[0])
    for d in finished:  # 4.
        with Meter(model) as mt:
            values[d.name] = np.asarray(d.generation(g), dtype=float)
        costs[d.name] = Cost(
            np.array([mt.seconds + ms.seconds - own_s]),
            np.array([mt.calls + ms.calls - own_c]),
            max(mt.peak_mb, ms.peak_mb),
        )
    return values, costs, g


@dataclass
class PromptScores:
    """Raw per-generation scores of P prompts, R groups of n generations each, and their costs.

    Attributes:
        prompts (list): the P conditions.
        scores (dict[str, np.ndarray]): per detector, (P, R, n, S) per sampling step (stepwise) or (P, R, n).
        seconds (dict[str, np.ndarray]): per detector, seconds per group of n generations: (S,) for
            each step (stepwise, the sampler steps it needs included) or (1,) (the generation included).
        calls (dict[str, np.ndarray]): per detector, UNet forward calls per group (its n generations
            batched), (S,) or (1,), likewise.
        peak_mb (dict[str, float]): per detector, the largest peak memory of a prompt (MiB above the
            start; over the batch of R x n generations the run scores at once).
        n (int), steps (int): the largest n and number of steps computed.
        guidance_scale (float): w along the sampled trajectories.
    """

    prompts: list
    scores: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    calls: dict[str, np.ndarray]
    peak_mb: dict[str, float]
    n: int
    steps: int
    guidance_scale: float

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
        """Seconds per query (a prompt's n generations) of ``detector`` at (n, steps), scaled from the batched run by n."""
        return float(self._upto(self.seconds, detector, steps) * n / self.n)

    def calls_for(self, detector: str, steps: int) -> float:
        """UNet forward calls per query at ``steps`` (the n generations of a query run batched)."""
        return float(self._upto(self.calls, detector, steps))

    def _upto(self, table: dict, detector: str, steps: int) -> float:
        from memviz.detect.registry import DETECTORS

        v = table[detector]
        return v[:steps].sum() if DETECTORS[detector].stepwise else v[0]


def prompt_scores(
    model: DiffusionModel,
    prompts: Sequence,
    index: NeighborIndex,
    n: int = 4,
    steps: int = 50,
    reps: int = 5,
    sample_steps: int = 50,
    t0: float = 0.05,
    n_probes: int = 8,
    seed: int = 0,
    progress: bool = True,
    names: Sequence[str] | None = None,
    runner=None,
    spec: dict | None = None,
    guidance_scale: float | None = None,
    batch_size: int | None = None,
    on_batch=None,
) -> PromptScores:
    """Generate ``reps`` x ``n`` samples of each prompt and score every generation with every
    prompt-level detector (or only ``names``).

    Args:
        index: the training images (pixel space, [-1, 1]) for the nearest-neighbour evidence.
        steps: the stepwise detectors are evaluated at the first ``steps`` sampling steps.
        sample_steps: the sampler's number of steps (Jeon et al. and Wen et al.: 50).
        guidance_scale: w along the sampled trajectories (default: the model's, 7.5 for Stable Diffusion).
        runner, spec: a remote runner (``memviz.runner.ray_runner.RayRunner``) and the Study's ``spec``
            from which each worker reopens the model and the index (``PromptTask``).
        batch_size: prompts batched through the model in one call (default ``prompt_batch_size``).
        on_batch: ``on_batch(done, total)`` after each batch of prompts (the app's progress bar).

    A prompt's generations are seeded by its text and ``seed`` (``prompt_seed``), never by its
    position: the same prompt scores the same in any list, any batch and any resumed run.
    """
    if not 1 <= steps <= sample_steps:
        raise ValueError(f"steps must lie in 1..{sample_steps}; got {steps}.")
    dets = serving(model, "prompt", names)
    prompts = list(prompts)
    w = float(model.guidance_scale if guidance_scale is None else guidance_scale)
    params = (
        "costs",
        "seeded by text",
        fingerprint(index.reference),
        n,
        reps,
        steps,
        sample_steps,
        t0,
        n_probes,
        seed,
        [d.name for d in dets],
        w,
        PROTOCOL_STEPS,
    )
    store = RowStore("prompt_scores", fingerprint(model_fingerprint(model), params))
    knobs = {
        "n": n,
        "reps": reps,
        "steps": steps,
        "sample_steps": sample_steps,
        "t0": t0,
        "n_probes": n_probes,
        "seed": seed,
        "names": [d.name for d in dets],
        "guidance_scale": w,
    }
    remote = runner is not None and spec is not None
    table = run(
        prompt_batch(model, prompts, index, **knobs),
        np.arange(len(prompts)),
        [fingerprint(p) for p in prompts],  # the seed is in the store's key
        store,
        batch_size=batch_size or prompt_batch_size(dets, n * reps),
        desc="prompts",
        progress=progress,
        on_batch=on_batch,
        runner=runner if remote else None,
        task=PromptTask(spec, prompts, knobs) if remote else None,
    )
    scores = {k: v for k, v in table.items() if k != "id" and ":" not in k}
    cost = {
        kind: {k.split(":", 1)[1]: v for k, v in table.items() if k.startswith(kind + ":")}
        for kind in ("seconds", "calls", "peak")
    }
    return PromptScores(
        prompts,
        scores,
        {k: v.mean(0) for k, v in cost["seconds"].items()},
        {k: v.mean(0) for k, v in cost["calls"].items()},
        {k: float(np.nanmax(v)) if np.isfinite(v).any() else float("nan") for k, v in cost["peak"].items()},
        n,
        steps,
        w,
    )


def prompt_batch(
    model: DiffusionModel,
    prompts: list,
    index: NeighborIndex,
    n: int,
    reps: int,
    steps: int,
    sample_steps: int,
    t0: float,
    n_probes: int,
    seed: int,
    names: Sequence[str],
    guidance_scale: float,
):
    """The batch function of ``prompt_scores``: prompt numbers (1,) -> the prompt's scores and costs."""
    dets = detectors("prompt", names)

    def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
        """Prompts ``ids`` (b,) through the model at once: each one's m = n x reps generations start
        from the noise of its own seed, and every cost is divided by b (per prompt)."""
        m, b = n * reps, len(ids)
        seeds = [prompt_seed(prompts[int(i)], seed) for i in ids]
        x_T = torch.cat([initial_noise(model, m, torch.Generator("cpu").manual_seed(s)) for s in seeds])
        cond = prompts[int(ids[0])] if b == 1 else [prompts[int(i)] for i in ids for _ in range(m)]
        probe_seeds = [s + j for s in seeds for j in range(m)]
        scores, costs, _ = score_generations(
            model, cond, index, b * m, steps, sample_steps, t0, n_probes, probe_seeds, dets, guidance_scale,
            noise=x_T,
        )  # fmt: skip
        out = {k: v.reshape(b, reps, n, *v.shape[1:]) for k, v in scores.items()}
        return (
            out
            | {f"seconds:{k}": np.repeat(c.seconds[None] / (reps * b), b, 0) for k, c in costs.items()}
            | {f"calls:{k}": np.repeat(c.calls[None].astype(float), b, 0) for k, c in costs.items()}
            | {f"peak:{k}": np.full(b, c.peak_mb) for k, c in costs.items()}
        )  # seconds per group of n; a batched call serves b prompts at once

    return batch


def prompt_seed(prompt, seed: int = 0) -> int:
    """The seed of a prompt's generations: a hash of its text (or class) and the base ``seed``, in
    [0, 2**60), so a prompt's x_T and probes never depend on where it stands in a list."""
    return int(fingerprint("prompt seed", prompt, int(seed))[:15], 16)


def prompt_batch_size(dets: Sequence[Detector], m: int, rows: int = 256) -> int:
    """How many prompts go through the model at once: about ``rows`` generations a call, and one
    at a time for a detector that reads one prompt's cross-attention (its token positions)."""
    if any("cross-attention" in d.needs for d in dets):
        return 1
    return max(1, rows // max(m, 1))


@dataclass(frozen=True)
class PromptTask:
    """``prompt_batch`` rebuilt on a worker from a Study's ``spec`` (model, and the training images as the index):
    ``spec.open()`` reopens the Study (``memviz.study.StudySpec``), so this layer never imports the Study's."""

    spec: dict
    prompts: list
    knobs: dict

    def build(self):
        study = self.spec.open()
        return prompt_batch(study.model, self.prompts, study.reference, **self.knobs)
