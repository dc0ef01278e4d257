"""LID* of the data: scikit-dimension's estimators on neighbourhoods from one FAISS index.

The neighbours are computed once (``memviz.neighbors.index``) and fed to every estimator,
the way scikit-dimension accepts precomputed kNN. Local PCA is batched here with
Gram matrices because scikit-dimension's ``lPCA.fit_pw`` fits one
neighbourhood at a time (25 s for mnist5k measured here); it reproduces that
estimator's "FO" rule exactly (Fukunaga-Olsen: the number of PCA eigenvalues above
``alpha`` times the largest) and is tested against it.

A neighbourhood with no spread (duplicates: DD-Mem) has LID* = 0 by definition here,
for every method; that is the documented value, never NaN. LID* is read at the scale of
k neighbours: a duplicated image reads 0 when its copies fill its neighbourhood (k at most
its number of copies); with fewer copies than k, lPCA also sees the others' spread.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from memviz.neighbors.index import NeighborGraph, NeighborIndex, _flat, neighbor_graph

DEFAULT_K = {"lpca": 100, "mle": 20, "twonn": 100, "ess": 100}


def data_lid(
    reference,
    queries=None,
    method: str = "lpca",
    k: int | None = None,
    index: NeighborIndex | None = None,
    alpha: float = 0.05,
    chunk: int = 256,
    graph: NeighborGraph | None = None,
) -> np.ndarray:
    """Pointwise LID* of ``queries`` (or of every reference point) from their k nearest reference points.

    Args:
        reference: (N, ...) the data, e.g. the training images.
        queries: (Q, ...) points to estimate at; None means every reference point, its own
            copy left out of its neighbourhood (as ``skdim``'s ``fit_pw`` does).
        method: "lpca" (batched, FO rule), "mle" (Levina-Bickel), "twonn", "ess", or the
            name of any other ``skdim.id`` estimator fitted per neighbourhood.
        k: neighbourhood size (defaults: lpca 100, mle 20, twonn 100, ess 100).
        index: a prebuilt ``NeighborIndex`` over ``reference``.
        graph: the reference's precomputed ``NeighborGraph`` (k or more neighbours), used
            when ``queries`` is None instead of searching again.
        alpha: the FO threshold of lPCA.

    Returns:
        (Q,) float64 estimates; 0 where the neighbourhood has no spread.
    """
    method = method.lower()
    k = k or DEFAULT_K.get(method, 100)
    ref = _flat(reference)
    if len(ref) < 3:
        raise ValueError(f"LID* needs at least 3 reference points; got {len(ref)}.")
    if not 2 <= k < len(ref):
        raise ValueError(f"k = {k} must lie in [2, {len(ref) - 1}] for {len(ref)} reference points; lower k.")
    if queries is None:
        g = (graph or neighbor_graph(ref, k, index=index, cache=False)).first(k)
        dist, idx = g.distance, g.index
    else:
        nb = (index or NeighborIndex(ref)).nearest(_flat(queries), k)
        dist, idx = nb.distance, nb.index
    if method == "lpca":
        return _lpca_fo(ref, idx, alpha, chunk)
    if method == "mle":
        return _mle(dist)
    return _per_neighbourhood(ref, idx, method)


def _lpca_fo(ref: np.ndarray, idx: np.ndarray, alpha: float, chunk: int) -> np.ndarray:
    """Local PCA, FO rule: #{eigenvalues > alpha * largest} of each neighbourhood's covariance.

    The nonzero PCA eigenvalues are those of the k x k Gram matrix of the centred neighbourhood
    (cheaper than an SVD when k < D). They are computed in float32, and the neighbourhoods with
    an eigenvalue within 1e-5 (relative to the largest; float32 errors are about 1e-7) of the
    threshold are recomputed in float64, so the
    count equals scikit-dimension's (float64 PCA) at float32 speed.
    """
    out = np.empty(len(idx))
    data = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))
    for s in range(0, len(idx), chunk):
        rows = torch.from_numpy(idx[s : s + chunk])
        nbhd = data[rows]
        no_spread = (nbhd.amax(1) - nbhd.amin(1)).amax(1) == 0  # exact copies: LID* 0
        ev = _gram_eigenvalues(nbhd)  # (b, k), descending
        ev[no_spread] = 0
        thr = alpha * ev[:, :1]
        close = ((ev - thr).abs() <= 1e-5 * ev[:, :1].abs()).any(1) & (ev[:, 0] > 0)
        if close.any():
            ev64 = _gram_eigenvalues(nbhd[close].double())
            ev, thr = ev.double(), thr.double()
            ev[close], thr[close] = ev64, alpha * ev64[:, :1]
        out[s : s + chunk] = (ev > thr).sum(1).numpy()
    return out


def _gram_eigenvalues(nbhd: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (descending) of the centred Gram matrix of neighbourhoods (b, k, D)."""
    nbhd = nbhd - nbhd.mean(dim=1, keepdim=True)
    gram = nbhd @ nbhd.transpose(1, 2) if nbhd.shape[1] < nbhd.shape[2] else nbhd.transpose(1, 2) @ nbhd
    return torch.linalg.eigvalsh(gram).flip(1).clamp(min=0)


def _mle(dist: np.ndarray) -> np.ndarray:
    """Levina-Bickel MLE: [ (1/(k-1)) sum_{j<k} log(T_k / T_j) ]^{-1}; 0 where T_j = 0 for some j."""
    t = np.asarray(dist, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # zero distances: handled below
        logs = np.log(t[:, -1:]) - np.log(t[:, :-1])
        mean = logs.mean(axis=1)
    out = np.zeros(len(t))
    ok = np.isfinite(mean) & (mean > 0)
    out[ok] = 1.0 / mean[ok]
    return out


def _per_neighbourhood(ref: np.ndarray, idx: np.ndarray, method: str) -> np.ndarray:
    """Any skdim estimator fitted on each neighbourhood (slow: one fit per point)."""
    import skdim

    names = {name.lower(): name for name in dir(skdim.id) if not name.startswith("_")}
    if method not in names:
        raise ValueError(f"Unknown LID* method {method!r}; use lpca, mle, twonn, ess or one of skdim.id.")
    cls = getattr(skdim.id, names[method])
    out = np.zeros(len(idx))
    for i, rows in enumerate(idx):
        nbhd = np.unique(ref[rows].astype(np.float64), axis=0)  # copies carry no dimension (TwoNN needs this)
        if len(nbhd) == 1:
            continue  # no spread: LID* = 0
        if len(nbhd) < 3:
            out[i] = 1.0  # two distinct points span a line
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[i] = float(cls().fit(nbhd).dimension_)
    if not np.isfinite(out).all():
        raise ValueError(
            f"{method} gave no finite LID* for {int((~np.isfinite(out)).sum())} points; "
            "try a larger k or another method."
        )
    return out
