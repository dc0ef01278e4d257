"""The k extreme eigenvalues at each end of the symmetrized Hessian, by implicitly restarted
Lanczos (ARPACK's ``eigsh`` on a ``LinearOperator``): Hessian-vector products only, never
a D x D matrix, so it runs at D = 16,384 (Stable Diffusion latents).

The low end is the k most negative eigenvalues (the sharpest directions). The high end
is the k largest; a log-density Hessian near the data is negative semi-definite up to the
model's error, so these are the k nearest zero (the flat, tangent directions), plus any
positive ones the model has. Interior eigenvalues are what ``density`` estimates.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from memviz.hessian.operator import ScoreJacobian


def lanczos_eigenvalues(
    op: ScoreJacobian, k: int, tol: float = 1e-5, seed: int = 0, maxiter: int | None = None
) -> torch.Tensor:
    """The k smallest and k largest eigenvalues of (H + H^T) / 2 at a single point.

    Args:
        op: a ``ScoreJacobian`` of one point (B = 1) built with ``need_matvec=True``.
        k: eigenvalues per end; 2k must be below D.
        tol: ARPACK's relative accuracy (float32 products put a floor near 1e-6).
        seed: the seed of the starting vector, so that results are reproducible.

    Returns:
        (2k,) ascending, float64.
    """
    _check_k(k, op.dim, ends=2)
    v0 = np.random.default_rng(seed).standard_normal(op.dim)
    try:
        ev = eigsh(
            op.scipy_operator("sym"),
            k=2 * k,
            which="BE",
            tol=tol,
            v0=v0,
            maxiter=maxiter,
            ncv=min(op.dim, max(4 * k + 1, 40)),
            return_eigenvectors=False,
        )
    except ArpackNoConvergence as e:
        raise ValueError(
            f"Lanczos did not converge to {2 * k} eigenvalues ({len(e.eigenvalues)} did); "
            "raise maxiter or tol, or lower k."
        ) from None
    return torch.from_numpy(np.sort(ev))


def _check_k(k: int, dim: int, ends: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1 or ends * k >= dim - 1:
        raise ValueError(
            f"k must be a positive integer with {ends}k below D - 1 = {dim - 1}; got {k!r}. "
            "For the whole spectrum use method='exact'."
        )
