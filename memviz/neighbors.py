"""Nearest training neighbours with FAISS, and the copy statistics built on them.

Calibrated l2 (Carlini et al. 2023, "Extracting training data from diffusion models",
Sec. 4.2): l2(x̂, nearest) / (alpha * mean l2 to the n nearest), n = 50, alpha = 0.5.
A copy sits much closer to one training image than to its other neighbours; small
values mean a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _flat(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, ...) to a C-contiguous float32 (N, D) array, as FAISS wants."""
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if len(x) == 0:
        raise ValueError("Got an empty set of images; give at least one.")
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


@dataclass(frozen=True)
class Neighbors:
    """k nearest training images of each query.

    Attributes:
        index (np.ndarray): (Q, k) training indices, nearest first.
        distance (np.ndarray): (Q, k) l2 distances (not squared).
    """

    index: np.ndarray
    distance: np.ndarray


class NeighborIndex:
    """An exact (flat l2) FAISS index over a reference set (N, ...).

    Example:
        >>> nn = NeighborIndex(train_images)
        >>> nb = nn.nearest(generated, k=50)
        >>> calibrated_l2(nb.distance)
    """

    def __init__(self, reference: torch.Tensor | np.ndarray):
        import faiss

        self.reference = _flat(reference)
        if len(self.reference) == 0:
            raise ValueError("The reference set is empty; give at least one training image.")
        if not np.isfinite(self.reference).all():
            raise ValueError("The reference set contains NaN or infinite values; clean it first.")
        self.index = faiss.IndexFlatL2(self.reference.shape[1])
        self.index.add(self.reference)

    def __len__(self) -> int:
        return len(self.reference)

    def nearest(self, queries: torch.Tensor | np.ndarray, k: int = 10) -> Neighbors:
        """The ``k`` nearest reference points of each query.  queries: (Q, ...) like the reference."""
        q = _flat(queries)
        if q.shape[1] != self.reference.shape[1]:
            raise ValueError(f"Queries have {q.shape[1]} dimensions but the index has {self.reference.shape[1]}.")
        if not np.isfinite(q).all():
            raise ValueError("The queries contain NaN or infinite values.")
        k = min(k, len(self))
        d2, idx = self.index.search(q, k)
        return Neighbors(idx.astype(np.int64), np.sqrt(np.maximum(d2, 0.0)))


def calibrated_l2(distance: np.ndarray, n: int = 50, alpha: float = 0.5) -> np.ndarray:
    """Carlini et al.'s calibrated l2 from sorted neighbour distances (Q, k >= n): (Q,).

    l2 to the nearest divided by alpha times the mean l2 to the ``n`` nearest.
    A query at distance 0 from its nearest gives 0 (a copy), never NaN.
    """
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2 or distance.shape[1] < 2:
        raise ValueError(f"distance must be (Q, k) with k >= 2; got shape {distance.shape}.")
    n = min(n, distance.shape[1])
    denom = alpha * distance[:, :n].mean(axis=1)
    return np.divide(distance[:, 0], denom, out=np.zeros(len(distance)), where=denom > 0)
