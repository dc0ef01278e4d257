"""Nearest training neighbours and the maps built on them: the FAISS index, Carlini's calibrated l2
and the one neighbour graph of a dataset (``index``), feature spaces (``features``: pixels, the
denoiser's own, or any callable), the UMAP map (``embed``) and the evidence that a generation copies
a training image (``copies``).

May import ``memviz.io``, ``memviz.data`` and ``memviz.model``; LID*, detectors and the Study import it.
"""

from memviz.neighbors.index import (
    COPY_ALPHA,
    COPY_NEIGHBORS,
    COPY_THRESHOLD,
    RECALL_TARGET,
    NeighborIndex,
    calibrated_l2,
    copy_scores,
    neighbor_graph,
    recall_at_k,
    search_depth,
    stored_index,
)

__all__ = [
    "COPY_ALPHA",
    "COPY_NEIGHBORS",
    "COPY_THRESHOLD",
    "RECALL_TARGET",
    "NeighborIndex",
    "calibrated_l2",
    "copy_scores",
    "neighbor_graph",
    "recall_at_k",
    "search_depth",
    "stored_index",
]
