"""Dataset-wide LID: FLIPD over a grid of t0 and LID* for every sample, cached on disk.

The expensive artifact is the FLIPD-versus-t0 curve of every sample (one pass per t0)
and LID* per method; choosing t0, the knee or a verdict threshold afterwards is cheap
(a slider picks a column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from memviz.cache import cached, fingerprint, model_fingerprint
from memviz.data.base import ImageDataset
from memviz.lid.data_lid import DEFAULT_K, data_lid
from memviz.lid.flipd import DEFAULT_TS, flipd, knee_index
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex, neighbor_graph


@dataclass(frozen=True)
class LIDResult:
    """Per-sample LID of a dataset.

    Attributes:
        ts (np.ndarray): (T,) the t0 grid.
        flipd (np.ndarray): (N, T) FLIPD at every t0.
        data_lid (dict[str, np.ndarray]): method -> (N,) LID*.
    """

    ts: np.ndarray
    flipd: np.ndarray
    data_lid: dict[str, np.ndarray]

    def flipd_at(self, t0: float | str) -> np.ndarray:
        """(N,) FLIPD at the cached t0 nearest to ``t0`` (log scale), or at each sample's knee."""
        if t0 == "knee":
            return self.flipd[np.arange(len(self.flipd)), knee_index(self.ts, self.flipd)]
        return self.flipd[:, int(np.argmin(np.abs(np.log(self.ts) - np.log(float(t0)))))]


def compute_lid(model: DiffusionModel, data: ImageDataset, ts: Sequence[float] = DEFAULT_TS,
                trace: str = "hutchinson", n_probes: int = 4, conditional: bool = False,
                methods: Sequence[str] = ("lpca", "mle"), reference: ImageDataset | None = None,
                batch_size: int = 64, seed: int = 0, progress: bool = True, refresh: bool = False,
                on_batch=None) -> LIDResult:
    """FLIPD curves and LID* for every sample of ``data``, from the cache when present.

    Args:
        conditional: FLIPD conditioned on each sample's label (else unconditional).
        methods: LID* estimators (see ``data_lid``); the neighbour index is built once.
        reference: LID* from neighbourhoods in this data set (e.g. the training set, for
            held-out images); None means pointwise within ``data``, each point's own row left out.
        on_batch: ``on_batch(done, total)`` as the FLIPD curves are computed (a progress bar).
    """
    if tuple(data.shape) != model.sample_shape:
        raise ValueError(f"The data's images are {data.shape} but the model expects {model.sample_shape}.")
    ts = np.asarray(ts, dtype=float)
    key = fingerprint(model_fingerprint(model), data.images, list(ts), trace, n_probes, conditional, seed, batch_size)
    cond = model.conditions_of(data) if conditional else None
    curves = cached("flipd", key, lambda: {"flipd": _flipd_curves(model, data.images, ts, cond, trace, n_probes,
                                                                      batch_size, seed, progress, on_batch)},
                    refresh=refresh)["flipd"]
    queries = None if reference is None else data.images
    return LIDResult(ts, curves, compute_data_lid((reference or data).images, methods, queries, refresh))


def compute_data_lid(images, methods: Sequence[str], queries=None, refresh: bool = False) -> dict[str, np.ndarray]:
    """LID* of ``queries`` (or pointwise of ``images``) by each method, on one neighbour graph, cached.

    k is each method's default (``DEFAULT_K``), or the largest the data allows when it is small.
    """
    ks = {m: min(DEFAULT_K.get(m, 100), len(images) - 1) for m in methods}
    # one neighbour graph (cached) for every pointwise method; one index for queries
    graph = neighbor_graph(images, max(ks.values())) if ks and queries is None else None
    index = NeighborIndex(images) if ks and queries is not None else None
    out = {}
    for m, k in ks.items():
        key = fingerprint(images, queries if queries is not None else "pointwise", m, k)
        out[m] = cached("data_lid", key, lambda m=m, k=k: {"lid": data_lid(images, queries, method=m, k=k,
                                                                             index=index, graph=graph)}, refresh=refresh)["lid"]
    return out


def _flipd_curves(model, images, ts, cond, trace, n_probes, batch_size, seed, progress, on_batch=None) -> np.ndarray:
    out = np.zeros((len(images), len(ts)))
    bar = tqdm(total=len(images) * len(ts), disable=not progress, desc="FLIPD")
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size]
        c = cond[s:s + batch_size] if cond is not None else None
        for j, t in enumerate(ts):
            out[s:s + len(x), j] = flipd(model, x, float(t), cond=c, trace=trace, n_probes=n_probes,
                                         seed=seed + s, batch_size=batch_size).numpy()
            bar.update(len(x))
        if on_batch is not None:
            on_batch(s + len(x), len(images))
    bar.close()
    return out


def lid_table(model: DiffusionModel, train: ImageDataset, test: ImageDataset | None = None, t0: float | str = 0.05,
              fpr: float = 0.05, verdict_lid: str = "mle", **kwargs):
    """One row per distinct training image (and per test image): FLIPD at ``t0``, LID*, planted
    kind, and the MMH verdict.

    FLIPD is computed once per distinct image. LID* of a training image comes from the training
    set as stored, duplicates included (that is what makes DD-Mem read 0), its own row left out;
    LID* of a test image from its neighbourhood in the training set. The verdict reads LID* of
    ``verdict_lid`` (MLE, k = 20: below the number of copies of a planted duplicate) and a FLIPD
    threshold calibrated on the test images at ``fpr`` (on all rows when there is no test set).

    Returns:
        (pandas.DataFrame, threshold)
    """
    import pandas as pd

    from memviz.lid.verdict import calibrate_threshold, mmh_verdict

    methods = tuple(dict.fromkeys([*kwargs.pop("methods", ("lpca", "mle")), verdict_lid]))
    first = train.first_rows()
    unique = train.subset(first)
    frames = []
    for split, data in (("train", unique), ("test", test)):
        if data is None:
            continue
        res = compute_lid(model, data, methods=() if split == "train" else methods,
                          reference=None if split == "train" else train, **kwargs)
        lid_star = ({m: v[first] for m, v in compute_data_lid(train.images, methods).items()} if split == "train"
                    else res.data_lid)
        frame = pd.DataFrame({"split": split, "index": np.arange(len(data)),
                              "label": data.labels if data.labels is not None else -1,
                              "kind": data.meta.get("kind", "none") if split == "train" else "none",
                              "flipd": res.flipd_at(t0), **{f"lid_{m}": v for m, v in lid_star.items()}})
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    ref = table.loc[table.split == "test", "flipd"] if test is not None else table["flipd"]
    threshold = calibrate_threshold(ref, fpr)
    table["verdict"] = mmh_verdict(table["flipd"], table[f"lid_{verdict_lid}"], model_threshold=threshold)
    return table, threshold
