"""Exact Hessian spectra: the full Jacobian from D vector-Jacobian products, then ``eigvalsh``.

Costs D backward passes (batched, ``chunk`` at a time) and D x D memory per point; for
D up to a few thousand. Above that, ``lanczos`` (extremes) or ``density`` (histogram).
"""

from __future__ import annotations

import os

import torch

from memviz.hessian.operator import ScoreJacobian
from memviz.model.autodiff import jacobian

BYTES_PER_ENTRY = 4 + 8 + 8  # the float32 Jacobian, its float64 symmetric part, eigvalsh's workspace


def exact_eigenvalues(op: ScoreJacobian, symmetric: bool = True, chunk: int = 64) -> torch.Tensor:
    """Every eigenvalue of each row's Hessian.

    Steps: 1. J_b row by row from D vjps with the basis vectors; 2. symmetrize (J + J^T) / 2;
    3. ``eigvalsh`` in float64 (or ``eigvals`` of J itself when ``symmetric=False``).

    Returns:
        (B, D) ascending, float64 (complex128 sorted by real part when not symmetric), on the CPU.
    """
    j = jacobian(op._vjp, op.y, chunk).double()  # 1.
    if not symmetric:
        ev = torch.linalg.eigvals(j)
        return torch.gather(ev, 1, torch.argsort(ev.real, dim=1)).cpu()
    return torch.linalg.eigvalsh((j + j.transpose(1, 2)) / 2).cpu()  # 2., 3.


def check_exact_fits(dim: int, rows: int, device: torch.device | str = "cpu") -> None:
    """Refuse, before any allocation, an exact spectrum whose D x D matrices exceed the free memory."""
    need = rows * dim * dim * BYTES_PER_ENTRY
    free = available_memory(torch.device(device))
    if need > free:
        raise ValueError(
            f"An exact spectrum at D = {dim:,} needs about {need / 2**30:.1f} GiB for the D x D "
            f"Jacobian, more than the {free / 2**30:.1f} GiB free; use method='lanczos' (the k "
            "extreme eigenvalues) or density() (the spectral histogram)."
        )


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
