"""The one sampler: the denoising loop of a diffusers pipeline, with seams.

Every generation in memviz goes through ``sample``; detectors and mitigations hook in rather
than copy the loop:
- ``noise``: start from a given x_T (the same noise and seed give the same images);
- ``callback``: called at every step with a ``Step`` (the step index, t, x_t and the conditional
  and unconditional outputs, eps-parametrized), e.g. to score the first steps;
- ``guidance_scale``: a number, or a schedule w(t) (a callable of the diffusion time t, returning a
  number or one per row of the batch: (b,)).

Steps (per batch of rows): 1. x = x_T; 2. for each scheduler step k: the model's output (both
branches in one batched call when guided or asked for), classifier-free guidance
out_u + w(t) (out_c - out_u), the callback, then one scheduler step; 3. decode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from memviz.model.conditioning import Cond, rows_of

GuidanceScale = Union[float, Callable[[float], float], None]


@dataclass(frozen=True)
class SampleOutput:
    """A batch of generations and everything needed to reproduce it.

    Attributes:
        images (torch.Tensor): (n, C, H, W) in [0, 1], pixel space.
        x0 (torch.Tensor): (n, C', H', W') final sample in the model's space (latents for latent models), CPU.
        noise (torch.Tensor): (n, C', H', W') the initial noise x_T, CPU.
        seed (int), steps (int), guidance_scale (float or a schedule of t), cond: the call's arguments.
        trajectory (torch.Tensor | None): (S, n, C', H', W') the point x_t fed to the model at
            each of the S steps, when asked for (``return_trajectory``), CPU.
        ts (torch.Tensor): (S,) the diffusion time t of each step.
    """

    images: torch.Tensor
    x0: torch.Tensor
    noise: torch.Tensor
    seed: int
    steps: int
    guidance_scale: Any
    cond: Any
    trajectory: torch.Tensor | None = None
    ts: torch.Tensor | None = None


@dataclass(frozen=True)
class Step:
    """What a per-step callback sees, for one batch of rows at one sampler step.

    Attributes:
        index (int): the step's place in the loop (0 is x_T); t (float): its diffusion time.
        x_t (torch.Tensor): (b, C, H, W) the point fed to the model.
        eps_cond (torch.Tensor | None): (b, C, H, W) the conditional output, eps-parametrized
            (None for cond=None).
        eps_uncond (torch.Tensor | None): the unconditional output (None unless guided, asked
            for with ``uncond=True``, or cond=None).
        guidance_scale (float | torch.Tensor): w(t) at this step (or (b, 1, 1, 1), one per row).
        rows (slice): which of the n generations this batch holds.
    """

    index: int
    t: float
    x_t: torch.Tensor
    eps_cond: torch.Tensor | None
    eps_uncond: torch.Tensor | None
    guidance_scale: float
    rows: slice


def sample(
    model,
    n: int,
    cond: Cond = None,
    steps: int = 50,
    guidance_scale: GuidanceScale = None,
    seed: int = 0,
    scheduler: str = "ddim",
    noise: torch.Tensor | None = None,
    callback: Callable[[Step], None] | None = None,
    uncond: bool | Callable[[], bool] = False,
    batch_size: int = 256,
    progress: bool = False,
    return_trajectory: bool = False,
) -> SampleOutput:
    """Generate ``n`` samples of a ``DiffusionModel``, reproducibly from ``seed`` (or from ``noise``).

    Args:
        scheduler ("ddim" or "ddpm", defaults to "ddim"): built from the training scheduler's
            config; DDIM is deterministic (eta = 0) given the noise.
        guidance_scale: w, or a schedule t -> w(t); defaults to the model's recommended value
            (``DiffusionModel.guidance_scale``).
        noise: (n, C, H, W) x_T in the model's space, instead of drawing it from ``seed``.
        callback: called with a ``Step`` at every step of every batch (under ``torch.no_grad``).
        uncond: also compute the unconditional output at unguided steps, for the callback (one
            batched call with the conditional one); or a function asked at every step (a callback
            that needs it only until it has decided something).
        return_trajectory: also keep x_t at every step (``SampleOutput.trajectory``).
    """
    if n < 1 or steps < 1:
        raise ValueError(f"n and steps must be positive; got n={n}, steps={steps}.")
    from memviz.io.guard import check_bytes

    pixels = n * math.prod(model.pixel_shape) * 4 * 2  # x0 and its decoded or unit copy
    check_bytes(
        pixels * (steps + 1 if return_trajectory else 1),
        f"{n:,} samples" + (f" with {steps} steps of trajectory" if return_trajectory else ""),
    )
    w = guidance_scale if guidance_scale is not None else model.guidance_scale
    schedule = w if callable(w) else (lambda t, w=float(w): w)
    gen = torch.Generator("cpu").manual_seed(seed)
    drawn = initial_noise(model, n, gen)  # drawn either way: DDPM's later draws stay the same
    if noise is not None:
        if not torch.is_tensor(noise) or tuple(noise.shape) != tuple(drawn.shape):
            raise ValueError(
                f"noise must be x_T of shape ({n}, {', '.join(map(str, model.sample_shape))}); "
                f"got {tuple(getattr(noise, 'shape', ()))}."
            )
        drawn = noise.detach().cpu().float()
    sched = make_scheduler(model, scheduler, steps)
    kept: list[torch.Tensor] = []
    keep = (lambda s: kept.append(s.x_t.cpu())) if return_trajectory else None
    hooks = [f for f in (keep, callback) if f is not None]
    with torch.no_grad():
        x0 = torch.cat(
            [
                _denoise(
                    model,
                    drawn[i : i + batch_size],
                    rows_of(cond, i, batch_size),
                    schedule,
                    uncond,
                    sched,
                    gen,
                    progress,
                    hooks,
                    slice(i, min(i + batch_size, n)),
                )
                for i in range(0, n, batch_size)
            ]
        ).cpu()
        images = model.decode(x0)
    traj = None
    if return_trajectory:  # kept batch after batch, each with its S steps
        per_batch = [torch.stack(kept[b * steps : (b + 1) * steps]) for b in range(len(kept) // steps)]
        traj = torch.cat(per_batch, dim=1)
    return SampleOutput(images, x0, drawn, seed, steps, w, cond, traj, sched.timesteps.float().cpu() / model.T)


def _denoise(model, x_T, cond, schedule, uncond, sched, gen, progress, hooks, rows) -> torch.Tensor:
    """Steps 1-2 of the module docstring for one batch: x_0 (b, C, H, W)."""
    from tqdm.auto import tqdm

    x = x_T.to(model.device) * sched.init_noise_sigma  # 1.
    for i, k in enumerate(tqdm(sched.timesteps, disable=not progress, desc="sample")):  # 2.
        t = float(k) / model.T
        w = schedule(t)  # a number, or (b,) one per row (a schedule that decides per generation)
        if torch.is_tensor(w) and w.numel() not in (1, len(x)):
            raise ValueError(
                f"A guidance schedule returned {w.numel()} values for a batch of {len(x)} rows; return "
                "one, or one per row (sample with batch_size=n)."
            )
        w = w.to(model.device, torch.float32).view(-1, 1, 1, 1) if torch.is_tensor(w) else float(w)
        x_in = sched.scale_model_input(x, k)
        tau = torch.full((len(x),), float(k), device=model.device)
        both = cond is not None and (
            (uncond() if callable(uncond) else uncond) or bool(torch.any(torch.as_tensor(w) != 1.0))
        )
        if both:
            out_c, out_u = model.output(torch.cat([x_in, x_in]), torch.cat([tau, tau]), cond, double=True).chunk(2)
            out = out_u + w * (out_c - out_u)
        else:
            out = model.output(x_in, tau, cond)
            out_c, out_u = (out, None) if cond is not None else (None, out)
        if hooks:
            t_b = torch.full((len(x),), t, device=model.device)
            eps = [None if o is None else model.to_eps(o, x_in, t_b) for o in (out_c, out_u)]
            for hook in hooks:
                hook(Step(i, t, x_in, eps[0], eps[1], w, rows))
        x = sched.step(out, k, x, generator=gen).prev_sample
    return x


def first_step(model, n: int, seed: int, steps: int = 50, scheduler: str = "ddim") -> tuple[torch.Tensor, float]:
    """(x_T (n, C, H, W), t_1): the initial noise ``sample`` draws for ``seed`` and its first sampling time,
    where the remedies and detectors that act before sampling look."""
    return initial_noise(model, n, torch.Generator("cpu").manual_seed(seed)), float(
        sampling_times(model, steps, scheduler)[0]
    )


def initial_noise(model, n: int, generator: torch.Generator) -> torch.Tensor:
    """x_T ~ N(0, I): (n, C, H, W) on the CPU, drawn as ``sample`` draws it."""
    return torch.randn((n, *model.sample_shape), generator=generator)


def sampling_times(model, steps: int = 50, scheduler: str = "ddim") -> torch.Tensor:
    """(steps,) the diffusion times t = tau / T of a sampler's steps, first (noisiest) first."""
    return make_scheduler(model, scheduler, steps).timesteps.float().cpu() / model.T


def make_scheduler(model, scheduler: str, steps: int):
    cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}.get(scheduler)
    if cls is None:
        raise ValueError(f"Unknown scheduler {scheduler!r}; use 'ddim' or 'ddpm'.")
    sched = cls.from_config(model.scheduler.config)
    sched.set_timesteps(steps)
    return sched
