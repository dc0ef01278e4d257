"""Manifold embeddings: UMAP (umap-learn) of the training set, with generated points placed
by ``transform`` so that the training map does not move when generations are added.

UMAP runs on the shared FAISS neighbour graph (``memviz.neighbors.neighbor_graph``) as a
sparse precomputed distance matrix, and new points are placed from their FAISS
neighbours in the training set: one neighbour computation serves LID*, the map and the
neighbour view. The fitted map is cached on disk, keyed by the features and parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from memviz.cache import cached, cached_object, fingerprint
from memviz.neighbors import NeighborIndex, _flat, neighbor_graph

ZERO = 1e-6  # duplicates sit at distance 0, which a sparse matrix cannot store: they get this instead


@dataclass
class ManifoldMap:
    """A UMAP map of training features (N, F), and the index that places new points on it.

    Attributes:
        xy (np.ndarray): (N, 2) coordinates of the training points.
        reducer: the fitted ``umap.UMAP`` (metric "precomputed").
        n_neighbors (int), min_dist (float), seed (int).
    """

    xy: np.ndarray
    reducer: object
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
        nb = self._index.nearest(q, self.n_neighbors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UMAP warns that it assumes neighbour distances: it is told so
            return np.asarray(self.reducer.transform(_sparse(nb.index, nb.distance, len(self.xy))))


def fit_map(train: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
            refresh: bool = False) -> ManifoldMap:
    """UMAP of training features (N, F), cached on disk.

    Steps: 1. the neighbour graph (cached, shared); 2. a symmetric sparse distance matrix;
    3. UMAP on it (``metric="precomputed"``), seeded.
    """
    import umap

    x = _flat(train)
    if not 2 <= n_neighbors < len(x):
        raise ValueError(f"n_neighbors must lie in [2, {len(x) - 1}] for {len(x)} points; got {n_neighbors}.")

    def compute():
        g = neighbor_graph(x, n_neighbors)                                                   # 1.
        m = _sparse(g.index, g.distance, len(x))
        m = m.maximum(m.T).tocsr()                                                           # 2.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_jobs is 1 with a seed; UMAP says so each time
            return umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="precomputed",
                             random_state=seed).fit(m)                                      # 3.

    reducer = cached_object("umap", fingerprint(x, n_neighbors, min_dist, seed), compute, refresh)
    return ManifoldMap(np.asarray(reducer.embedding_), reducer, n_neighbors, min_dist, seed, NeighborIndex(x))


@dataclass(frozen=True)
class Embedding:
    """Coordinates of a training set and of generated points on the same map.

    Attributes:
        train (np.ndarray): (N, 2); generated (np.ndarray): (Q, 2), empty when none were given.
    """

    train: np.ndarray
    generated: np.ndarray


def embed(train: np.ndarray, generated: np.ndarray | None = None, n_neighbors: int = 15, min_dist: float = 0.1,
          seed: int = 0, refresh: bool = False) -> Embedding:
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
