"""The Hessian of the learned log density as an operator, through the model adapter.

H_b = d s(y_b, t | c) / dy_b, the Jacobian of the score at each point y_b (Jeon, Kim,
No; ICML 2025: the Hessian of log p_t). The learned score is not an exact gradient
field, so H_b is not exactly symmetric: ``sym`` applies (H + H^T) / 2, the symmetric
part whose eigenvalues are real (Lanczos, ``eigvalsh``); ``rmatvec`` applies H^T, which
has the same eigenvalues as H (Arnoldi).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch.func import vjp, vmap

from memviz.model.adapter import Cond, DiffusionModel
from memviz.model.autodiff import jvp_from_vjp, math_attention


class ScoreJacobian:
    """H_b = d s(y_b, t) / dy_b of every row b, applied by reverse-mode products.

    Construction runs one forward pass; then each product costs one backward
    (``rmatvec``) or one double backward (``matvec``). Vectors U are (B, C, H, W), one per
    row, or (P, B, C, H, W): P of them per row at once.

    Args:
        y: (B, C, H, W) points in the model's space (already noised: y = alpha x (+ sigma eps)).
        t: diffusion time in [0, 1].
        need_matvec: build the forward with the math attention kernel, whose double
            backward gives H v; without it only H^T v is available (cheaper).
    """

    def __init__(
        self,
        model: DiffusionModel,
        y: torch.Tensor,
        t: float,
        cond: Cond = None,
        guidance_scale: float | None = None,
        need_matvec: bool = True,
    ):
        self.y = y.detach().to(model.device, torch.float32)
        self.shape, self.dim = tuple(self.y.shape), model.dim
        self._need_matvec = need_matvec
        with math_attention() if need_matvec else nullcontext():
            self.score, self._vjp = vjp(lambda z: model.score(z, t, cond, guidance_scale), self.y)
        self.score = self.score.detach()
        self._jvp = None

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """H^T u (u^T H, row by row): same shape as u."""
        return self._batched(lambda v: self._vjp(v)[0], u)

    def matvec(self, u: torch.Tensor) -> torch.Tensor:
        """H u, exact (a double backward): same shape as u."""
        if not self._need_matvec:
            raise ValueError("This operator was built without need_matvec=True, so it only applies H^T.")
        if self._jvp is None:
            self._jvp = jvp_from_vjp(self._vjp, self.y)
        return self._batched(self._jvp, u)

    def sym(self, u: torch.Tensor) -> torch.Tensor:
        """(H + H^T) u / 2, the symmetric part: same shape as u."""
        return (self.matvec(u) + self.rmatvec(u)) / 2

    def _batched(self, fn, u: torch.Tensor) -> torch.Tensor:
        u = u.to(self.y)
        if u.shape == self.shape:
            return fn(u)
        if u.shape[1:] != self.shape:
            raise ValueError(f"Vectors must have shape {self.shape} or (P, *{self.shape}); got {tuple(u.shape)}.")
        return vmap(fn)(u)

    def scipy_operator(self, product: str = "sym"):
        """A ``scipy.sparse.linalg.LinearOperator`` (D x D, float64) for a single-row operator.

        product: "sym" ((H + H^T) / 2) or "rmatvec" (H^T, for eigenvalues of H).
        """
        from scipy.sparse.linalg import LinearOperator

        if self.shape[0] != 1:
            raise ValueError("scipy_operator needs a single point (B = 1).")
        fn = {"sym": self.sym, "rmatvec": self.rmatvec}[product]

        def apply(v: np.ndarray) -> np.ndarray:
            u = torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32)).view(self.shape)
            return fn(u).detach().cpu().double().numpy().ravel()

        return LinearOperator((self.dim, self.dim), matvec=apply, dtype=np.float64)
