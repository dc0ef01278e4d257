"""Nearest training neighbours with FAISS, the copy statistics built on them, and the one
neighbour graph of a dataset.

Calibrated l2 (Carlini et al. 2023, "Extracting training data from diffusion models",
Sec. 4.2): l2(x̂, nearest) / (alpha * mean l2 to the n nearest), n = 50, alpha = 0.5.
A copy sits much closer to one training image than to its other neighbours; small
values mean a copy. The simpler common rule: nearest over second-nearest distance.

The index is exact (``IndexFlatL2``) by default, which is fast enough up to about a
million vectors; ``kind="ivf"`` builds an inverted-file index (``IndexIVFFlat``) whose
recall against the exact one is measured by ``recall_at_k``. Vectors are pixels, or
features from any extractor (``memviz.neighbors.features``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COPY_NEIGHBORS = 50  # Carlini et al.'s n: the calibrated l2 divides by the mean l2 to this many nearest
COPY_ALPHA = 0.5  # and by alpha
COPY_THRESHOLD = 0.5  # the one copy rule: calibrated l2 below this, a copy of the nearest training image

GRAPH_K = 100  # neighbours kept per point in the shared graph (LID*'s lPCA default)


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
    """A FAISS l2 index over a reference set (N, ...): exact (flat) or inverted-file (IVF).

    Args:
        reference: (N, ...) vectors (images are flattened).
        kind: "flat" (exact) or "ivf" (approximate; ``nlist`` cells, ``nprobe`` searched).
        nlist: IVF cells, defaults to about 4 sqrt(N); nprobe: cells visited per query.

    Example:
        >>> nn = NeighborIndex(train_images)
        >>> nb = nn.nearest(generated, k=50)
        >>> copy_scores(nb.distance).calibrated
    """

    def __init__(
        self,
        reference: torch.Tensor | np.ndarray,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        seed: int = 0,
    ):
        self.reference = _flat(reference)
        if not np.isfinite(self.reference).all():
            raise ValueError("The reference set contains NaN or infinite values; clean it first.")
        if kind not in ("flat", "ivf"):
            raise ValueError(f"kind must be 'flat' or 'ivf'; got {kind!r}.")
        self.kind = kind
        self.index = _build(self.reference, kind, nlist, nprobe, seed)

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


@dataclass(frozen=True)
class NeighborGraph:
    """The k nearest other points of every point of a dataset, computed once and shared by
    LID* (its neighbourhoods), UMAP (a sparse precomputed distance matrix) and the neighbour view.

    Attributes:
        index (np.ndarray): (N, k) neighbour rows, nearest first, each point's own row left out.
        distance (np.ndarray): (N, k) l2 distances.
    """

    index: np.ndarray
    distance: np.ndarray

    @property
    def k(self) -> int:
        return self.index.shape[1]

    def first(self, k: int) -> "NeighborGraph":
        """The graph of the k nearest (k at most this graph's k)."""
        if not 1 <= k <= self.k:
            raise ValueError(f"This graph holds {self.k} neighbours per point; ask for 1..{self.k}, or rebuild it.")
        return NeighborGraph(self.index[:, :k], self.distance[:, :k])


def neighbor_graph(
    points, k: int = 100, index: NeighborIndex | None = None, cache: bool = True, refresh: bool = False
) -> NeighborGraph:
    """The ``NeighborGraph`` of ``points`` (N, ...) with k neighbours per point.

    One graph of ``GRAPH_K`` (or more) neighbours is computed and cached per dataset, keyed by
    its bytes; every smaller k (LID*'s 20 or 100, UMAP's 15, the neighbour view's strip) is a
    slice of it. A point's own row is left out (as scikit-dimension's ``fit_pw`` does); among
    exact duplicates the others stay in, at distance 0.
    """
    from memviz.io.cache import cached, fingerprint

    ref = _flat(points)
    if not 1 <= k < len(ref):
        raise ValueError(f"k = {k} must lie in [1, {len(ref) - 1}] for {len(ref)} points; lower k.")
    k_stored = min(max(k, GRAPH_K), len(ref) - 1)

    def compute() -> dict[str, np.ndarray]:
        nb = (index or NeighborIndex(ref)).nearest(ref, k_stored + 1)
        own = nb.index == np.arange(len(ref))[:, None]  # at most one per row: FAISS returns distinct indices
        own[~own.any(1), -1] = True  # own row not among the k+1 (many exact duplicates): drop the farthest
        return {
            "index": nb.index[~own].reshape(len(ref), k_stored),
            "distance": nb.distance[~own].reshape(len(ref), k_stored),
        }

    arrays = cached("neighbor_graph", fingerprint(ref, k_stored), compute, refresh=refresh) if cache else compute()
    return NeighborGraph(arrays["index"], arrays["distance"]).first(k)


def _build(ref: np.ndarray, kind: str, nlist: int | None, nprobe: int, seed: int):
    """The FAISS index; IVF cells are trained by k-means on (up to 64 per cell of) the reference."""
    import faiss

    d = ref.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    else:
        nlist = nlist or max(1, min(int(4 * np.sqrt(len(ref))), len(ref) // 39))  # >= 39 points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        train = ref if len(ref) <= 64 * nlist else ref[rng.choice(len(ref), 64 * nlist, replace=False)]
        index.train(train)
        index.nprobe = min(nprobe, nlist)
    index.add(ref)
    return index


def recall_at_k(index: NeighborIndex, queries, k: int = 10) -> float:
    """The fraction of the exact k nearest neighbours that ``index`` returns (1.0 for a flat index)."""
    exact = NeighborIndex(index.reference).nearest(queries, k).index
    found = index.nearest(queries, k).index
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, found, strict=True)]))


@dataclass(frozen=True)
class CopyScores:
    """Copy statistics of each query from its sorted neighbour distances.

    Attributes:
        nearest (np.ndarray): (Q,) l2 to the nearest reference point.
        calibrated (np.ndarray): (Q,) Carlini et al.'s calibrated l2 (small = copy).
        ratio (np.ndarray): (Q,) nearest over second-nearest distance (small = copy).
        is_copy (np.ndarray): (Q,) calibrated < threshold.
        threshold (float): the calibrated l2 below which a query is a copy.
    """

    nearest: np.ndarray
    calibrated: np.ndarray
    ratio: np.ndarray
    is_copy: np.ndarray
    threshold: float


def copy_scores(
    distance: np.ndarray, threshold: float = COPY_THRESHOLD, n: int = COPY_NEIGHBORS, alpha: float = COPY_ALPHA
) -> CopyScores:
    """``CopyScores`` from neighbour distances (Q, k >= 2), nearest first."""
    cal = calibrated_l2(distance, n, alpha)
    d = np.asarray(distance, dtype=np.float64)
    ratio = np.divide(d[:, 0], d[:, 1], out=np.zeros(len(d)), where=d[:, 1] > 0)  # two copies at 0: ratio 0
    return CopyScores(d[:, 0], cal, ratio, cal < threshold, float(threshold))


def calibrated_l2(distance: np.ndarray, n: int = COPY_NEIGHBORS, alpha: float = COPY_ALPHA) -> np.ndarray:
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
