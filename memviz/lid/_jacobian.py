"""Traces of the Jacobian d eps(y, t) / dy by reverse mode (vector-Jacobian products).

Reverse mode only: forward mode (``torch.func.jvp``) has no rule for the flash
attention and group norm kernels of diffusers UNets on CPU.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.func import vjp, vmap

Fn = Callable[[torch.Tensor], torch.Tensor]
# vmap over the backward of CPU flash attention falls back to a loop; correct, only slower (measured in bench/)
warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product_flash_attention.*")


def eps_and_vjp(fn: Fn, y: torch.Tensor) -> tuple[torch.Tensor, Callable]:
    """fn(y) (B, ...) and its vjp function; rows of the batch are independent (UNets
    normalize per sample), so one cotangent per row gives every row's v^T J_b at once."""
    return vjp(fn, y)


def trace_exact(vjp_fn: Callable, y: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """tr(J_b) for every row b, from D vjps with the basis vectors e_i, ``chunk`` at a time.

    y: (B, C, H, W). Returns (B,), float64 accumulation.
    """
    b, d = len(y), y[0].numel()
    trace = torch.zeros(b, dtype=torch.float64, device=y.device)
    for start in range(0, d, chunk):
        idx = torch.arange(start, min(start + chunk, d), device=y.device)
        basis = torch.zeros(len(idx), b, d, device=y.device, dtype=y.dtype)
        basis[torch.arange(len(idx)), :, idx] = 1.0                    # e_i for every row
        rows = vmap(vjp_fn)(basis.view(len(idx), *y.shape))[0]        # (k, B, C, H, W): e_i^T J_b
        trace += rows.flatten(2)[torch.arange(len(idx)), :, idx].sum(0).double()  # sum_i (e_i^T J_b)_i
    return trace


def trace_hutchinson(vjp_fn: Callable, y: torch.Tensor, n_probes: int, generator: torch.Generator) -> torch.Tensor:
    """Hutchinson's estimate mean_k v_k^T J_b v_k with Rademacher v_k (Hutchinson 1989).

    Returns (B,): unbiased, variance 2 (||J_b||_F^2 - sum_i J_ii^2) / n_probes for symmetric J.
    """
    v = torch.randint(0, 2, (n_probes, *y.shape), generator=generator).to(y) * 2 - 1
    vj = vmap(vjp_fn)(v)[0] if n_probes > 1 else vjp_fn(v[0])[0].unsqueeze(0)
    return (vj * v).flatten(2).sum(-1).double().mean(0)
