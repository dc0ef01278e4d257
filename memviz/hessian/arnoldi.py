"""Eigenvalues of the unsymmetrized Hessian by implicitly restarted Arnoldi (ARPACK's ``eigs``).

The learned score is not an exact gradient field, so its Jacobian H is not symmetric and
its eigenvalues can be complex; Jeon, Kim and No (ICML 2025) use Arnoldi for that reason.
H^T has the same eigenvalues as H, so the iteration runs on H^T v: one plain backward pass
per product, no double backward.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigs

from memviz.hessian.lanczos import _check_k
from memviz.hessian.operator import ScoreJacobian


def arnoldi_eigenvalues(
    op: ScoreJacobian, k: int, tol: float = 1e-4, seed: int = 0, maxiter: int | None = None
) -> torch.Tensor:
    """The k eigenvalues of H with the smallest real part and the k with the largest, at one point.

    Args:
        op: a ``ScoreJacobian`` of one point (B = 1).
        k: eigenvalues per end; 2k must be below D - 1.

    Returns:
        (2k,) complex128, sorted by real part.
    """
    _check_k(k, op.dim, ends=2)
    a = op.scipy_operator("rmatvec")
    v0 = np.random.default_rng(seed).standard_normal(op.dim)
    ncv = min(op.dim, max(4 * k + 1, 40))
    try:
        ends = [
            eigs(a, k=k, which=w, tol=tol, v0=v0, ncv=ncv, maxiter=maxiter, return_eigenvectors=False)
            for w in ("SR", "LR")
        ]
    except ArpackNoConvergence as e:
        raise ValueError(
            f"Arnoldi did not converge ({len(e.eigenvalues)} of {k} eigenvalues); raise maxiter or tol, or lower k."
        ) from None
    ev = np.concatenate(ends)
    return torch.from_numpy(ev[np.argsort(ev.real, kind="stable")].astype(np.complex128))
