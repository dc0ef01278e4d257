"""Manifold embeddings: UMAP (umap-learn) of the training set, with generated points placed
by ``transform`` so that the training map does not move when generations are added.

UMAP runs on the shared FAISS neighbour graph (``memviz.neighbors.index.neighbor_graph``) as a
sparse precomputed distance matrix, and new points are placed from their FAISS
neighbours in the training set: one neighbour computation serves LID*, the map and the
neighbour view. The map's coordinates are cached on disk as plain arrays, keyed by the
features and parameters; the fitted ``umap.UMAP`` object is never stored (it would have to be
pickled, and a pickle from a shared cache folder runs code). New points are placed as UMAP's
own ``transform`` places them before it refines: at the membership-weighted mean of their
training neighbours (umap-learn's ``smooth_knn_dist``, ``compute_membership_strengths`` and
``init_graph_transform``), so a copy of a training image lands on it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from memviz.io.cache import cached, fingerprint
from memviz.neighbors.index import NeighborIndex, _flat, neighbor_graph, stored_index

ZERO = 1e-6  # duplicates sit at distance 0, which a sparse matrix cannot store: they get this instead
MAP_FIT_MAX = 50_000  # above this many points UMAP is fitted on a seeded sample and the rest placed on it
PLACE_BATCH = 50_000  # points placed on the map at a time (memory bounded by this, not by N)


@dataclass
class ManifoldMap:
    """A UMAP map of training features (N, F), and the index that places new points on it.

    Attributes:
        xy (np.ndarray): (N, 2) coordinates of the training points.
        n_neighbors (int): UMAP's neighbourhood size.
        min_dist (float): UMAP's minimum distance.
        seed (int): UMAP's seed.
    """

    xy: np.ndarray
    n_neighbors: int
    min_dist: float
    seed: int
    _index: NeighborIndex | None = None

    def transform(self, points: np.ndarray) -> np.ndarray:
        """(Q, 2) coordinates of new feature vectors (Q, F), from their training neighbours; the
        training map stays where it is."""
        q = _flat(points)
        if self._index is None:
            raise ValueError("This map was loaded without its training features; use fit_map(features).")
        from umap.umap_ import compute_membership_strengths, init_graph_transform, smooth_knn_dist

        nb = self._index.nearest(q, self.n_neighbors)
        dist = np.ascontiguousarray(nb.distance, dtype=np.float32)
        sigmas, rhos = smooth_knn_dist(dist, float(self.n_neighbors), local_connectivity=0.0)  # as UMAP.transform
        rows, cols, vals, _ = compute_membership_strengths(
            nb.index.astype(np.int32), dist, sigmas, rhos, bipartite=True
        )
        graph = sp.coo_matrix((vals, (rows, cols)), shape=(len(q), len(self.xy))).tocsr()
        graph.eliminate_zeros()
        return np.asarray(init_graph_transform(graph, self.xy.astype(np.float32)), dtype=np.float64)


def fit_map(
    train: np.ndarray,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    refresh: bool = False,
    fit_max: int = MAP_FIT_MAX,
) -> ManifoldMap:
    """UMAP of training features (N, F), cached on disk.

    Steps: 1. the neighbour graph (cached, shared); 2. a symmetric sparse distance matrix;
    3. UMAP on it (``metric="precomputed"``), seeded. Above ``fit_max`` points, UMAP is fitted on a
    seeded sample of ``fit_max`` of them (which keep their coordinates) and every other point is
    placed on that map from its neighbours among the sample (``ManifoldMap.transform``), a batch at a time.
    """
    import umap

    x = _flat(train)
    if not 2 <= n_neighbors < len(x):
        raise ValueError(f"n_neighbors must lie in [2, {len(x) - 1}] for {len(x)} points; got {n_neighbors}.")
    if len(x) > fit_max:
        return _fit_sampled(x, n_neighbors, min_dist, seed, refresh, fit_max)

    def compute():
        g = neighbor_graph(x, n_neighbors)  # 1.
        m = _sparse(g.index, g.distance, len(x))
        m = m.maximum(m.T).tocsr()  # 2.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_jobs is 1 with a seed; UMAP says so each time
            reducer = umap.UMAP(
                n_neighbors=n_neighbors, min_dist=min_dist, metric="precomputed", random_state=seed
            ).fit(m)  # 3.
        return {"xy": np.asarray(reducer.embedding_, dtype=np.float64)}

    xy = cached("umap_xy", fingerprint(x, n_neighbors, min_dist, seed), compute, refresh)["xy"]
    return ManifoldMap(xy, n_neighbors, min_dist, seed, NeighborIndex(x))


def _fit_sampled(x: np.ndarray, n_neighbors: int, min_dist: float, seed: int, refresh: bool, fit_max: int):
    """``fit_map`` beyond ``fit_max`` points: fitted on a seeded sample, the rest placed on it."""
    pick = np.sort(np.random.default_rng(seed).choice(len(x), fit_max, replace=False))
    base = fit_map(x[pick], n_neighbors, min_dist, seed, refresh, fit_max)

    def compute():
        xy = np.empty((len(x), 2))
        xy[pick] = base.xy
        rest = np.setdiff1d(np.arange(len(x)), pick)
        for start in range(0, len(rest), PLACE_BATCH):
            part = rest[start : start + PLACE_BATCH]
            xy[part] = base.transform(x[part])
        return {"xy": xy}

    xy = cached("umap_xy_sampled", fingerprint(x, n_neighbors, min_dist, seed, fit_max), compute, refresh)["xy"]
    return ManifoldMap(xy, n_neighbors, min_dist, seed, stored_index(x))


@dataclass(frozen=True)
class Embedding:
    """Coordinates of a training set and of generated points on the same map.

    Attributes:
        train (np.ndarray): (N, 2); generated (np.ndarray): (Q, 2), empty when none were given.
    """

    train: np.ndarray
    generated: np.ndarray


def embed(
    train: np.ndarray,
    generated: np.ndarray | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    refresh: bool = False,
) -> Embedding:
    """The training map (fitted once) and the generated points placed on it, both cached.

    train: (N, F) and generated: (Q, F) features (``memviz.features.features``).
    """
    m = fit_map(train, n_neighbors, min_dist, seed, refresh)
    if generated is None or len(generated) == 0:
        return Embedding(m.xy, np.zeros((0, 2)))
    key = fingerprint(_flat(train), _flat(generated), n_neighbors, min_dist, seed)
    xy = cached("umap_transform", key, lambda: {"xy": m.transform(generated)}, refresh=refresh)["xy"]
    return Embedding(m.xy, xy)


def _sparse(index: np.ndarray, distance: np.ndarray, n: int) -> sp.csr_matrix:
    """(Q, n) sparse distances from each query to its neighbours (at least ``ZERO``)."""
    rows = np.repeat(np.arange(len(index)), index.shape[1])
    return sp.csr_matrix((np.maximum(distance.ravel(), ZERO), (rows, index.ravel())), shape=(len(index), n))
