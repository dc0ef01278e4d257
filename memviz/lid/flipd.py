"""FLIPD: local intrinsic dimension from the Fokker-Planck equation of a diffusion model.

Kamkari, Ross, Hosseinzadeh, Cresswell, Loaiza-Ganem (NeurIPS 2024), eq. (9)-(10):

    FLIPD(x, t0) = D + sigma(t0)^2 [ tr grad s(y, t0) + ||s(y, t0)||^2 ],   y = alpha(t0) x,
                 = D - sigma(t0) tr(d eps(y, t0) / dy) + ||eps(y, t0)||^2.

It tends to LID(x) as t0 -> 0 for a perfect model; with a real model, read it at a
fixed t0 (0.05 in the paper's tables) or at the knee of the FLIPD-versus-t0 curve.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from memviz.model.adapter import DiffusionModel
from memviz.model.autodiff import check_dense_affordable, eps_and_vjp, is_dense, trace_exact, trace_hutchinson
from memviz.model.conditioning import Cond, rows_of

T_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # log-spaced (1-2-5), with the paper's t0 = 0.05
DEFAULT_T0 = 0.05


def t_grid(model: DiffusionModel) -> tuple[float, ...]:
    """The one grid of t0 at which FLIPD is computed and stored for ``model``: its ``memviz.json``
    ``t_grid``, else ``T_GRID``. Any t0 inside it is read off the stored curves (``at_t0``)."""
    return tuple(float(t) for t in model.meta.get("t_grid", T_GRID))


def at_t0(ts: Sequence[float], curves: np.ndarray, t0: float) -> np.ndarray:
    """FLIPD at ``t0`` from curves (N, T) stored on the grid ``ts``: the grid value at a grid
    point, else linear interpolation in log t0 between the two neighbouring grid points (FLIPD
    varies smoothly in log t0; its curve is what the paper plots). No model call. -> (N,)."""
    logt = np.log(np.asarray(ts, dtype=float))
    t0 = float(t0)
    if not (t0 > 0 and logt[0] - 1e-9 <= np.log(t0) <= logt[-1] + 1e-9):
        raise ValueError(f"t0 = {t0} lies outside the stored grid [{ts[0]}, {ts[-1]}]; pick a t0 inside it.")
    curves = np.asarray(curves, dtype=float)
    return np.array([np.interp(np.log(t0), logt, row) for row in curves]) if len(curves) else np.zeros(0)


def flipd(
    model: DiffusionModel,
    x: torch.Tensor,
    t0: float | Literal["knee"] = DEFAULT_T0,
    cond: Cond = None,
    trace: Literal["auto", "exact", "hutchinson"] = "auto",
    n_probes: int = 1,
    seed: int | Sequence[int] = 0,
    batch_size: int | None = None,
    guidance_scale: float | None = None,
) -> torch.Tensor:
    """FLIPD of each point.

    Args:
        x: (B, C, H, W) in the model's data space ([-1, 1] images, or latents).
        t0: diffusion time in (0, 1], or "knee" (the knee of ``flipd_curve`` over ``T_GRID``).
        trace: "exact" (D vjps), "hutchinson" (``n_probes`` Rademacher probes), or "auto"
            (``memviz.model.autodiff.is_dense``: exact up to D = 4,096).
        seed: the probes' seed, or one seed per row (B,) (a row's estimate then does not depend on its batch).
        batch_size: rows per pass (defaults to 8 exact / 64 Hutchinson) to bound memory.

    Returns:
        (B,) float64 FLIPD estimates, on the CPU.
    """
    if isinstance(t0, str):
        if t0 != "knee":
            raise ValueError(f"t0 must be a time in (0, 1] or 'knee'; got {t0!r}.")
        curve = flipd_curve(
            model,
            x,
            T_GRID,
            cond=cond,
            trace=trace,
            n_probes=n_probes,
            seed=seed,
            batch_size=batch_size,
            guidance_scale=guidance_scale,
        )
        return curve[torch.arange(len(x)), torch.as_tensor(knee_index(T_GRID, curve.numpy()))]
    model.check_points(x)
    mode = _trace_mode(trace, model.dim)
    if mode == "exact":
        check_dense_affordable(model.dim, model.device, "An exact FLIPD trace", "trace='hutchinson'")
    bs = batch_size or (8 if mode == "exact" else 64)
    if isinstance(seed, (int, np.integer)):
        gens = torch.Generator().manual_seed(int(seed))
        gen = lambda i: gens  # noqa: E731 - one stream through the batches
    else:
        if len(seed) != len(x):
            raise ValueError(f"Give one seed, or one per row ({len(x)}); got {len(seed)}.")
        gen = lambda i: [torch.Generator().manual_seed(int(s)) for s in seed[i : i + bs]]  # noqa: E731
    out = [
        _flipd_batch(model, x[i : i + bs], float(t0), rows_of(cond, i, bs), mode, n_probes, gen(i), guidance_scale)
        for i in range(0, len(x), bs)
    ]
    return torch.cat(out)


def _flipd_batch(model, x, t0, cond, mode, n_probes, gen, guidance_scale) -> torch.Tensor:
    """Steps: 1. y = alpha(t0) x; 2. eps(y) and its vjp; 3. the trace; 4. eq. (10)."""
    y = (model.alpha(t0) * x).to(model.device, torch.float32)  # 1.
    eps, vjp_fn = eps_and_vjp(lambda z: model.eps(z, t0, cond, guidance_scale), y)  # 2.
    tr = trace_exact(vjp_fn, y) if mode == "exact" else trace_hutchinson(vjp_fn, y, n_probes, gen)  # 3.
    norm2 = eps.detach().flatten(1).double().pow(2).sum(1)
    return (model.dim - model.sigma(t0) * tr + norm2).cpu()  # 4.


def flipd_curve(model: DiffusionModel, x: torch.Tensor, ts: Sequence[float] = T_GRID, **kwargs) -> torch.Tensor:
    """FLIPD at every t0 in ``ts``: (B, len(ts)). The same probes are used at every t0."""
    if len(ts) < 1:
        raise ValueError("Give at least one t0.")
    return torch.stack([flipd(model, x, float(t), **kwargs) for t in ts], dim=1)


def knee_index(ts: Sequence[float], curve: np.ndarray) -> np.ndarray:
    """The knee of each FLIPD-versus-log(t0) curve (kneedle, Satopaa et al. 2011): (B,) indices.

    The curve starts on a plateau at about LID for small t0 and leaves it as t0 grows: upwards
    (towards D, as on images) or downwards (towards 0, as for data whose spread is small against
    the noise, a Gaussian say); the knee is where it leaves the plateau, found in the direction the
    curve goes. Curves without a knee take the smallest t0.
    """
    from kneed import KneeLocator

    logt = np.log(np.asarray(ts, dtype=float))
    out = np.zeros(len(curve), dtype=np.int64)
    for b, row in enumerate(np.asarray(curve, dtype=float)):
        shape = ("convex", "increasing") if row[-1] >= row[0] else ("concave", "decreasing")
        knee = KneeLocator(logt, row, curve=shape[0], direction=shape[1], online=False).knee
        out[b] = 0 if knee is None else int(np.argmin(np.abs(logt - knee)))
    return out


def _trace_mode(trace: str, dim: int) -> str:
    if trace not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"trace must be 'auto', 'exact' or 'hutchinson'; got {trace!r}.")
    return ("exact" if is_dense(dim) else "hutchinson") if trace == "auto" else trace
