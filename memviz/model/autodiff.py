"""Jacobians of a network by reverse mode: vector-Jacobian products, their traces, and
Jacobian-vector products from a double vjp.

Reverse mode only: forward mode (``torch.func.jvp``) has no rule for the flash
attention and group norm kernels of diffusers UNets on CPU. J v comes instead from the
vjp of the linear map u -> J^T u (a double backward), which needs the math attention
kernel: the flash kernel has no double backward either (``math_attention``).

Every function here takes batched ``y`` (B, ...) whose rows are independent (UNets
normalize per sample), so one cotangent per row gives every row's product at once.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.func import vjp, vmap

Fn = Callable[[torch.Tensor], torch.Tensor]
VjpFn = Callable[[torch.Tensor], tuple[torch.Tensor]]
# vmap over the backward of CPU flash attention falls back to a loop; correct, only slower (measured in bench/)
warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product_flash_attention.*")


DENSE_MAX_DIM = 4096


def is_dense(dim: int) -> bool:
    """The one exact-versus-iterative rule, for traces (FLIPD) and spectra alike: D backward passes
    per point (exact trace, full Jacobian) up to D = 4,096; Hutchinson probes or Lanczos above.
    At Stable Diffusion's D = 16,384 one exact point takes hours on a CPU."""
    return dim <= DENSE_MAX_DIM


def check_dense_affordable(dim: int, device: torch.device, what: str, cheaper: str) -> None:
    """Refuse up front, on a CPU, a computation of D backward passes per point (an exact
    Jacobian, trace or spectrum) above ``is_dense``'s bound. ``cheaper`` names the method to use instead."""
    if torch.device(device).type == "cpu" and not is_dense(dim):
        raise ValueError(
            f"{what} at D = {dim:,} needs {dim:,} backward passes per point, hours on a CPU; "
            f"use {cheaper}, or a CUDA GPU."
        )


def eps_and_vjp(fn: Fn, y: torch.Tensor) -> tuple[torch.Tensor, VjpFn]:
    """fn(y) (B, ...) and its vjp function u -> (u^T J,) for every row."""
    return vjp(fn, y)


@contextmanager
def math_attention():
    """Scaled dot-product attention by its math kernel, which has a double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def jvp_from_vjp(vjp_fn: VjpFn, y: torch.Tensor) -> Fn:
    """v -> J v for every row, as the vjp of the linear map u -> J^T u (exact, not a finite difference).

    The forward pass behind ``vjp_fn`` must have run inside ``math_attention()``.
    v: (B, ...) or, under ``vmap``, several of them.
    """
    _, vjp2 = vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(y))
    return lambda v: vjp2(v)[0]


def basis_vjps(vjp_fn: VjpFn, y: torch.Tensor, chunk: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rows e_i^T J_b of every row's Jacobian, ``chunk`` basis vectors at a time.

    y: (B, C, H, W). Yields (idx (k,), rows (k, B, D)) with rows[j, b] = e_{idx[j]}^T J_b.
    """
    b, d = len(y), y[0].numel()
    for start in range(0, d, chunk):
        idx = torch.arange(start, min(start + chunk, d), device=y.device)
        basis = torch.zeros(len(idx), b, d, device=y.device, dtype=y.dtype)
        basis[torch.arange(len(idx)), :, idx] = 1.0  # e_i for every row
        yield idx, vmap(vjp_fn)(basis.view(len(idx), *y.shape))[0].flatten(2)


def jacobian(vjp_fn: VjpFn, y: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The full Jacobian of every row from D vjps: (B, D, D), J[b, i, j] = d f_i / d y_j."""
    b, d = len(y), y[0].numel()
    out = torch.empty(b, d, d, device=y.device, dtype=y.dtype)
    for idx, rows in basis_vjps(vjp_fn, y, chunk):
        out[:, idx, :] = rows.transpose(0, 1)
    return out


def trace_exact(vjp_fn: VjpFn, y: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """tr(J_b) for every row b, from D vjps with the basis vectors e_i: (B,), float64."""
    trace = torch.zeros(len(y), dtype=torch.float64, device=y.device)
    for idx, rows in basis_vjps(vjp_fn, y, chunk):
        trace += rows[torch.arange(len(idx)), :, idx].sum(0).double()  # sum_i (e_i^T J_b)_i
    return trace


def trace_hutchinson(
    vjp_fn: VjpFn, y: torch.Tensor, n_probes: int, generator: torch.Generator | list[torch.Generator]
) -> torch.Tensor:
    """Hutchinson's estimate mean_k v_k^T J_b v_k with Rademacher v_k (Hutchinson 1989).

    ``generator``: one for the batch, or one per row (each row's probes then depend on that row
    alone, not on the batch it falls in).

    Returns (B,): unbiased, variance 2 (||J_b||_F^2 - sum_i J_ii^2) / n_probes for symmetric J.
    """
    if isinstance(generator, torch.Generator):
        v = rademacher((n_probes, *y.shape), generator).to(y)
    else:
        v = torch.stack([rademacher((n_probes, *y.shape[1:]), g) for g in generator], dim=1).to(y)
    vj = vmap(vjp_fn)(v)[0] if n_probes > 1 else vjp_fn(v[0])[0].unsqueeze(0)
    return (vj * v).flatten(2).sum(-1).double().mean(0)


def rademacher(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Entries +-1 with equal probability, float32 on the CPU."""
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
