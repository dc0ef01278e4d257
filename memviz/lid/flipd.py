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

from memviz.autodiff import check_dense_affordable, eps_and_vjp, trace_exact, trace_hutchinson
from memviz.models import Cond, DiffusionModel, rows_of

EXACT_MAX_DIM = 3500  # the authors' default: exact trace up to D = 3,500, Hutchinson above
DEFAULT_TS = tuple(np.round(np.geomspace(0.005, 0.5, 16), 5))


def flipd(model: DiffusionModel, x: torch.Tensor, t0: float | Literal["knee"] = 0.05, cond: Cond = None,
          trace: Literal["auto", "exact", "hutchinson"] = "auto", n_probes: int = 1, seed: int = 0,
          batch_size: int | None = None, guidance_scale: float | None = None) -> torch.Tensor:
    """FLIPD of each point.

    Args:
        x: (B, C, H, W) in the model's data space ([-1, 1] images, or latents).
        t0: diffusion time in (0, 1], or "knee" (the knee of ``flipd_curve`` over ``DEFAULT_TS``).
        trace: "exact" (D vjps), "hutchinson" (``n_probes`` Rademacher probes), or "auto"
            (exact up to D = 3,500).
        batch_size: rows per pass (defaults to 8 exact / 64 Hutchinson) to bound memory.

    Returns:
        (B,) float64 FLIPD estimates, on the CPU.
    """
    if isinstance(t0, str):
        if t0 != "knee":
            raise ValueError(f"t0 must be a time in (0, 1] or 'knee'; got {t0!r}.")
        curve = flipd_curve(model, x, DEFAULT_TS, cond=cond, trace=trace, n_probes=n_probes, seed=seed,
                            batch_size=batch_size, guidance_scale=guidance_scale)
        return curve[torch.arange(len(x)), torch.as_tensor(knee_index(DEFAULT_TS, curve.numpy()))]
    model.check_points(x)
    mode = _trace_mode(trace, model.dim)
    if mode == "exact":
        check_dense_affordable(model.dim, model.device, "An exact FLIPD trace", "trace='hutchinson'")
    bs = batch_size or (8 if mode == "exact" else 64)
    gen = torch.Generator().manual_seed(seed)
    out = [_flipd_batch(model, x[i:i + bs], float(t0), rows_of(cond, i, bs), mode, n_probes, gen, guidance_scale)
           for i in range(0, len(x), bs)]
    return torch.cat(out)


def _flipd_batch(model, x, t0, cond, mode, n_probes, gen, guidance_scale) -> torch.Tensor:
    """Steps: 1. y = alpha(t0) x; 2. eps(y) and its vjp; 3. the trace; 4. eq. (10)."""
    y = (model.alpha(t0) * x).to(model.device, torch.float32)                              # 1.
    eps, vjp_fn = eps_and_vjp(lambda z: model.eps(z, t0, cond, guidance_scale), y)         # 2.
    tr = trace_exact(vjp_fn, y) if mode == "exact" else trace_hutchinson(vjp_fn, y, n_probes, gen)  # 3.
    norm2 = eps.detach().flatten(1).double().pow(2).sum(1)
    return (model.dim - model.sigma(t0) * tr + norm2).cpu()                                # 4.


def flipd_curve(model: DiffusionModel, x: torch.Tensor, ts: Sequence[float] = DEFAULT_TS, **kwargs) -> torch.Tensor:
    """FLIPD at every t0 in ``ts``: (B, len(ts)). The same probes are used at every t0."""
    if len(ts) < 1:
        raise ValueError("Give at least one t0.")
    return torch.stack([flipd(model, x, float(t), **kwargs) for t in ts], dim=1)


def knee_index(ts: Sequence[float], curve: np.ndarray) -> np.ndarray:
    """The knee of each FLIPD-versus-log(t0) curve (kneedle, Satopaa et al. 2011): (B,) indices.

    The curve rises from about LID at small t0 towards D; the knee is where it leaves
    its plateau. Curves without a knee take the smallest t0.
    """
    from kneed import KneeLocator

    logt = np.log(np.asarray(ts, dtype=float))
    out = np.zeros(len(curve), dtype=np.int64)
    for b, row in enumerate(np.asarray(curve, dtype=float)):
        knee = KneeLocator(logt, row, curve="convex", direction="increasing", online=False).knee
        out[b] = 0 if knee is None else int(np.argmin(np.abs(logt - knee)))
    return out


def _trace_mode(trace: str, dim: int) -> str:
    if trace not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"trace must be 'auto', 'exact' or 'hutchinson'; got {trace!r}.")
    return ("exact" if dim <= EXACT_MAX_DIM else "hutchinson") if trace == "auto" else trace
