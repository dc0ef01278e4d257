"""Nearest training neighbours with FAISS, the copy statistics built on them, and the one
neighbour graph of a dataset.

Calibrated l2 (Carlini et al. 2023, "Extracting training data from diffusion models",
Sec. 4.2): l2(x̂, nearest) / (alpha * mean l2 to the n nearest), n = 50, alpha = 0.5.
A copy sits much closer to one training image than to its other neighbours; small
values mean a copy. The simpler common rule: nearest over second-nearest distance.

One exact-vs-approximate rule (``index_kind``): exact search (``IndexFlatL2``) up to ``FLAT_MAX``
vectors, a graph index (``IndexHNSWFlat``) above; ``kind="ivf"`` builds an inverted-file index
(``IndexIVFFlat``) on request. ``stored_index`` keeps an approximate index on disk in the store
(FAISS's own file format, never a pickle; checked by SHA-256 and rebuilt when damaged) with its
recall@10 against exact search measured on a sample of the reference, so a study of a large data
set builds it once; a flat index is rebuilt instead, as its file would be the vectors again and
adding them takes milliseconds. Vectors are pixels, or features from any extractor
(``memviz.neighbors.features``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COPY_NEIGHBORS = 50  # Carlini et al.'s n: the calibrated l2 divides by the mean l2 to this many nearest
COPY_ALPHA = 0.5  # and by alpha
COPY_THRESHOLD = 0.5  # the one copy rule: calibrated l2 below this, a copy of the nearest training image

GRAPH_K = 100  # neighbours kept per point in the shared graph (LID*'s lPCA default)
FLAT_MAX = 100_000  # the one exact-vs-approximate rule: exact search up to this many reference vectors
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128  # FAISS's HNSW: links per node, build and search depth
RECALL_SAMPLE = 1000  # reference points whose exact neighbours measure an approximate index's recall@10
RECALL_TARGET = 0.95  # the one recall rule: a stored index searches deeper until its measured recall@10 reaches this
EF_SEARCH_MAX = 2048  # HNSW's search depth stops doubling here (IVF's nprobe at all cells)


def index_kind(n: int) -> str:
    """The kind of index over ``n`` reference vectors: "flat" (exact) up to ``FLAT_MAX``, "hnsw" above."""
    return "flat" if n <= FLAT_MAX else "hnsw"


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
        kind: "flat" (exact), "hnsw" (approximate graph search), "ivf" (approximate; ``nlist`` cells,
            ``nprobe`` searched), or "auto" (``index_kind``: flat up to ``FLAT_MAX``).
        nlist: IVF cells, defaults to about 4 sqrt(N); nprobe: cells visited per query.
        index: an already built FAISS index over ``reference`` (``stored_index`` reads one from disk).

    Attributes:
        recall (float): recall@10 against exact search (1.0 for flat; measured by ``stored_index``,
            NaN when not measured); recall_sample (int): the queries it was measured on.

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
        index=None,
    ):
        self.reference = _flat(reference)
        if not np.isfinite(self.reference).all():
            raise ValueError("The reference set contains NaN or infinite values; clean it first.")
        kind = index_kind(len(self.reference)) if kind == "auto" else kind
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or 'auto'; got {kind!r}.")
        self.kind = kind
        self.index = _build(self.reference, kind, nlist, nprobe, seed) if index is None else index
        self.recall, self.recall_sample, self.from_store = (1.0 if kind == "flat" else float("nan")), 0, False
        self.embed = None  # the ImageEmbedder whose vectors these are (``with_features``); None: pixels
        self.source = None  # and the (N, C, H, W) images they were computed from

    def __len__(self) -> int:
        return len(self.reference)

    def with_features(self, embed, source) -> "NeighborIndex":
        """This index over ``embed``'s vectors of the images ``source`` (N, C, H, W): queries given as
        images (``nearest_images``) are embedded the same way, and ``images_of`` returns the sources."""
        if len(source) != len(self):
            raise ValueError(f"{len(source)} source images for {len(self)} vectors; give one per vector.")
        self.embed, self.source = embed, source
        return self

    def nearest_images(self, images: torch.Tensor, k: int = 10) -> Neighbors:
        """The ``k`` nearest reference images of images (Q, C, H, W) in [-1, 1], in this index's
        feature space (pixels, or its embedder's vectors)."""
        return self.nearest(images if self.embed is None else self.embed(images), k)

    def images_of(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), ...) the reference images at ``index``: the sources of an embedder's vectors,
        else the pixel vectors themselves (reshape them to the images' shape)."""
        if self.source is None:
            return torch.as_tensor(self.reference[np.asarray(index)])
        return self.source[torch.as_tensor(np.asarray(index, dtype=np.int64))]

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
        nb = (index or stored_index(ref)).nearest(ref, k_stored + 1)  # the one exact-vs-approximate rule
        own = nb.index == np.arange(len(ref))[:, None]  # at most one per row: FAISS returns distinct indices
        own[~own.any(1), -1] = True  # own row not among the k+1 (many exact duplicates): drop the farthest
        return {
            "index": nb.index[~own].reshape(len(ref), k_stored),
            "distance": nb.distance[~own].reshape(len(ref), k_stored),
        }

    arrays = cached("neighbor_graph", fingerprint(ref, k_stored), compute, refresh=refresh) if cache else compute()
    return NeighborGraph(arrays["index"], arrays["distance"]).first(k)


KINDS = ("flat", "hnsw", "ivf")


def _build(ref: np.ndarray, kind: str, nlist: int | None, nprobe: int, seed: int):
    """The FAISS index; IVF cells are trained by k-means on (up to 64 per cell of) the reference."""
    import faiss

    d = ref.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(ref)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    else:
        nlist = nlist or max(1, min(int(4 * np.sqrt(len(ref))), len(ref) // 39))  # >= 39 points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        train = ref if len(ref) <= 64 * nlist else ref[rng.choice(len(ref), 64 * nlist, replace=False)]
        index.train(train)
        index.nprobe = min(nprobe, nlist)
    index.add(ref)
    return index


def stored_index(reference, kind: str = "auto", sample: int = RECALL_SAMPLE, seed: int = 0) -> NeighborIndex:
    """A ``NeighborIndex`` over ``reference`` (N, ...), an approximate one kept in the store.

    An approximate index (``kind`` "hnsw" or "ivf", or "auto" above ``FLAT_MAX``) is built once, its
    recall@10 against exact search measured on ``sample`` reference points (seeded), and written to
    ``<cache>/faiss_index/<key>.faiss`` (atomically, with a JSON of its kind, size, recall and SHA-256);
    later calls read it back, and a file that fails its checksum or does not match is rebuilt.
    ``from_store`` says which happened. A flat index is built in memory (exact: recall 1).

    The one recall rule: while the measured recall@10 is below ``RECALL_TARGET``, the search depth
    (HNSW's efSearch, IVF's nprobe) doubles, up to ``EF_SEARCH_MAX`` or every IVF cell; the depth
    reached is stored with the index, and ``recall`` is what that depth measured (below the target
    only when the cap was hit, which the CLI prints).
    """
    import json

    import faiss

    from memviz.io.cache import cache_dir, fingerprint
    from memviz.io.files import atomic_path, file_sha256, write_json

    ref = _flat(reference)
    kind = index_kind(len(ref)) if kind == "auto" else kind
    if kind == "flat":
        return NeighborIndex(ref, "flat")
    key = fingerprint(ref, kind, HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, RECALL_TARGET, sample, seed)
    path = cache_dir() / "faiss_index" / f"{key}.faiss"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") == file_sha256(path) and meta.get("n") == len(ref) and meta.get("kind") == kind:
                index = faiss.read_index(str(path))
                if index.ntotal == len(ref) and index.d == ref.shape[1]:
                    _set_depth(index, int(meta["depth"]))
                    nn = NeighborIndex(ref, kind, index=index, seed=seed)
                    nn.recall, nn.recall_sample, nn.from_store = float(meta["recall_at_10"]), int(meta["sample"]), True
                    return nn
        except (ValueError, OSError, RuntimeError, KeyError):  # damaged: rebuilt below, never trusted
            pass
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    nn = NeighborIndex(ref, kind, seed=seed)
    queries = ref[np.random.default_rng(seed).choice(len(ref), min(sample, len(ref)), replace=False)]
    exact = NeighborIndex(ref).nearest(queries, 10)  # once: every depth tried is scored against it
    nn.recall, nn.recall_sample = recall_at_k(nn, queries, 10, exact=exact), len(queries)
    while nn.recall < RECALL_TARGET and _depth(nn.index) < _max_depth(nn.index):
        _set_depth(nn.index, min(2 * _depth(nn.index), _max_depth(nn.index)))
        nn.recall = recall_at_k(nn, queries, 10, exact=exact)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".faiss") as tmp:
        faiss.write_index(nn.index, str(tmp))
    write_json(
        meta_path,
        {"kind": kind, "n": len(ref), "d": ref.shape[1], "recall_at_10": nn.recall, "sample": len(queries),
         "depth": _depth(nn.index), "sha256": file_sha256(path)},
    )  # fmt: skip
    return nn


def _depth(index) -> int:
    """An approximate index's search depth: HNSW's efSearch or IVF's nprobe."""
    return int(index.hnsw.efSearch if hasattr(index, "hnsw") else index.nprobe)


def _max_depth(index) -> int:
    return EF_SEARCH_MAX if hasattr(index, "hnsw") else int(index.nlist)


def _set_depth(index, depth: int) -> None:
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = depth
    else:
        index.nprobe = depth


def search_depth(index: NeighborIndex) -> int | None:
    """The search depth an approximate ``NeighborIndex`` uses (efSearch or nprobe); None for a flat one."""
    return None if index.kind == "flat" else _depth(index.index)


def recall_at_k(index: NeighborIndex, queries, k: int = 10, exact: Neighbors | None = None) -> float:
    """recall@k of ``index`` against exact search (1.0 for a flat index): the fraction of the k
    neighbours it returns that lie no farther than the exact k-th nearest (ann-benchmarks' tie-aware
    rule, relative tolerance 1e-3), so that among exact duplicates any of the tied rows counts.
    exact: the queries' exact ``Neighbors`` (k of them), when already known."""
    exact = NeighborIndex(index.reference).nearest(queries, k) if exact is None else exact
    found = index.nearest(queries, k).distance
    kth = exact.distance[:, -1:]
    return float(np.mean(found <= kth * (1 + 1e-3) + 1e-6))


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
