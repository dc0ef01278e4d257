"""The Study: one model, its training data and one on-disk store, handing out every artifact.

The CLI, the app, eval-detection and the benches all read through a Study, so each quantity
is computed once, stored once (keyed by the model's weights, the item's content and the
parameters) and decided by one rule:

- ``rows``: the training rows analysed (stable integers: a sample is its training row);
- ``flipd_grid`` / ``flipd(t0)``: FLIPD on the model's one t grid (``memviz.lid.t_grid``);
  any t0 inside the grid is read off the stored curves, so changing t0 never calls the model;
- ``lid_data(method)``: LID* on the training set as stored (duplicates included: DD-Mem reads 0);
- ``verdicts(t0)``: the one MMH rule (``memviz.lid.verdict_rule``);
- ``neighbors(row, k)``, ``nn_distance()``: the one neighbour graph of the training set;
- ``embedding()``: the UMAP map of the analysed rows;
- ``spectrum(row, t)`` / ``spectra(rows, t)``: one store of spectra per image content, t,
  method and condition, shared by a pick, ``memviz compute spectra`` and the detectors.

Every per-row quantity is a pass of ``memviz.runner.local`` (a function of a batch of rows), so it
resumes, reports progress and can run on another engine. Latent models: the images are
encoded once into an on-disk store (``memviz.data.mapped``: written a chunk at a time, resumed,
verified as read, so 10^6 Stable Diffusion latents never sit in memory) and every estimate is in
latent space; pixels are what is shown.

Example:
    >>> study = open_study("demo-mnist")
    >>> study.table(t0=0.05).head()          # row, label, kind, flipd, lid_mle, verdict, x, y, ...
    >>> study.spectrum(int(study.rows[0]))   # (D,) ascending
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from memviz.data.base import ImageDataset
from memviz.io.cache import RowStore, cached, fingerprint, model_fingerprint
from memviz.lid.flipd import DEFAULT_T0, at_t0, flipd_curve, t_grid
from memviz.lid.verdict import VERDICT_LID, verdict_rule
from memviz.model.adapter import DiffusionModel
from memviz.runner.local import run, worker_kept

DEFAULT_N = 600  # training images analysed by default: every planted one, then a seeded sample
KEY_BATCH = 256  # rows whose content keys are hashed at once
HELD_OUT = 200  # held-out images whose FLIPD calibrates the verdict's threshold
STAGES = {
    "uncond": "FLIPD curves, unconditional",
    "cond": "FLIPD curves under each image's condition",
    "reference": "FLIPD of held-out images (the verdict's threshold)",
}


def open_study(
    model: str | Path | DiffusionModel,
    data: str | Path | ImageDataset | None = None,
    *,
    n: int | None = DEFAULT_N,
    n_probes: int = 2,
    trace: str = "hutchinson",
    seed: int = 0,
    device: str | None = None,
    holdout: str | Path | ImageDataset | None = None,
    features: str | Path | None = None,
    runner=None,
) -> "Study":
    """A ``Study`` of ``model`` (a bundled demo's name, a local diffusers folder, or a loaded
    ``DiffusionModel``) on ``data``: None for the model's own training data (rebuilt offline from
    its ``memviz.json``), an image folder or ``.npz`` (checked against the model's image shape), or
    an ``ImageDataset``. ``n``: training images analysed (None: every distinct one).
    ``holdout``: images the model never saw (a folder, a table, an ``.npz`` or an ``ImageDataset``):
    their FLIPD sets the verdict's threshold (``Study.threshold_source``); default the model's own
    held-out split where it has one. ``features``: the space of the copy judgement and the map,
    "pixel" (default) or the folder of a local image embedder (``memviz.neighbors.features.ImageEmbedder``);
    LID* and the neighbour strip stay in the model's space, where the MMH defines LID*.
    ``runner``: where the dataset-wide passes run (``Study.runner``); a ``RayRunner`` also reads a streamed
    dataset's files with Ray Data for the content pass (``memviz.data.stream.open_stream(engine="ray")``)."""
    from memviz.data import training_data

    engine = getattr(runner, "engine", "local")
    if engine == "ray":
        runner.start()

    path = None if isinstance(model, DiffusionModel) else str(model)
    model = model if isinstance(model, DiffusionModel) else DiffusionModel.from_pretrained(model, device=device)
    train = test = error = None
    if isinstance(data, ImageDataset):
        train = data
    elif data is not None:
        train = load_data(data, model, engine)
    else:
        try:
            train, test = training_data(model.meta)
        except ValueError as exc:  # an SD folder, say: the Prompts page still works without data
            error = str(exc)
    if holdout is not None:
        test = holdout if isinstance(holdout, ImageDataset) else load_data(holdout, model, engine)
        if tuple(test.shape) != model.pixel_shape:
            raise ValueError(
                f"The held-out images are {tuple(test.shape)} (C, H, W) but the model expects {model.pixel_shape}."
            )
    if features is not None and str(features) != "pixel":
        from memviz.neighbors.features import check_embedder_folder

        check_embedder_folder(features)  # a wrong folder is said at once; its weights load when first needed
    if train is not None and len(train) == 0:
        raise ValueError("The training data hold no images; give at least one.")
    if train is not None and tuple(train.shape) != model.pixel_shape:
        raise ValueError(
            f"The data's images are {tuple(train.shape)} (C, H, W) but the model expects "
            f"{model.pixel_shape}; give images of that shape."
        )
    study = Study(
        model,
        train,
        test,
        n=n,
        n_probes=n_probes,
        trace=trace,
        seed=seed,
        path=path,
        data_path=None if data is None or isinstance(data, ImageDataset) else str(data),
        error=error,
        holdout_path=None if holdout is None or isinstance(holdout, ImageDataset) else str(holdout),
        features=None if features is None or str(features) == "pixel" else str(Path(features).expanduser()),
    )
    study.runner = runner
    return study


class StudySpec(dict):
    """The keyword arguments of ``open_study`` that reopen a Study elsewhere (a Ray worker), as a
    picklable dict; ``open()`` reopens it, so that the passes of lower layers (the prompt-level
    detectors' ``PromptTask``) rebuild a Study without importing this module."""

    def open(self) -> "Study":
        """The Study; in a worker that keeps what it opens (``memviz.runner.local.keep_opened``: a Ray
        actor running many passes of one run), one per spec, so its model is loaded once."""
        kept = worker_kept()
        if kept is None:
            return open_study(**self)
        key = "study:" + fingerprint(dict(self))
        if key not in kept:
            kept[key] = open_study(**self)
        return kept[key]


@dataclass(frozen=True)
class StudyTask:
    """A Study's pass, rebuilt on a worker: ``open_study(**spec)``, then the same builder method
    (``_flipd_fn``, ``_spectrum_fn``) and the same batch function as in this process."""

    spec: dict
    builder: str
    args: tuple
    conditional: bool
    held_out: bool

    def build(self):
        study = StudySpec(self.spec).open()
        return study.batch_fn(getattr(study, self.builder)(*self.args), self.conditional, self.held_out)


def load_data(path: str | Path, model: DiffusionModel, engine: str = "local") -> ImageDataset:
    """The user's images at the model's pixel size (latent models: the VAE's): an image folder
    (``metadata.jsonl`` / ``.csv``, sidecar ``.txt`` captions, class folders), a ``datasets``
    ``save_to_disk`` folder, a Parquet / CSV table of image paths or bytes, or an ``.npz``
    (``memviz.data.folder.load_data_source``); what was resized or skipped is in ``meta["notes"]``.
    Past ``memviz.data.stream.STREAM_BYTES`` of pixels it is streamed (``open_stream``, its content pass on ``engine``)."""
    from memviz.data.folder import load_data_source
    from memviz.data.stream import count_rows, open_stream, shards, should_stream

    c, h, _ = model.pixel_shape
    p = Path(path).expanduser()
    n = count_rows(p)
    if shards(p) or (n is not None and should_stream(n, h, c)):  # WebDataset shards are always streamed
        return open_stream(p, resolution=h, channels=c, progress=True, engine=engine)
    return load_data_source(p, resolution=h, channels=c)


def _by_batch(images, rows, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """(len(rows), ...) ``fn`` of ``images`` (N, C, H, W: a tensor or a streamed set) at ``rows``, read
    ``KEY_BATCH`` rows at a time."""
    rows = np.asarray(rows, dtype=np.int64)
    parts = [fn(images[torch.as_tensor(rows[s : s + KEY_BATCH])]).numpy() for s in range(0, len(rows), KEY_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _flat_rows(images, rows) -> np.ndarray:
    """(len(rows), D) images at ``rows``, flattened."""
    return _by_batch(images, rows, lambda x: x.flatten(1))


def analysed_rows(train: ImageDataset, n: int | None, seed: int = 0) -> np.ndarray:
    """The one selection rule: every distinct planted image, then a seeded random sample of the
    distinct ordinary ones, up to ``n`` (None: all); sorted training rows. A smaller n is a subset
    of a larger one, so what one computed serves the other."""
    first = train.first_rows()
    kind = np.asarray(train.meta.get("kind", np.full(len(train), "none")))[first]
    ordinary = np.random.default_rng(seed).permutation(first[kind == "none"])
    return np.sort(np.r_[first[kind != "none"], ordinary][:n])


class Study:
    """See the module docstring. Built by ``open_study``; cheap to make, artifacts computed on demand."""

    def __init__(
        self,
        model: DiffusionModel,
        train: ImageDataset | None,
        test: ImageDataset | None = None,
        *,
        n: int | None = DEFAULT_N,
        n_probes: int = 2,
        trace: str = "hutchinson",
        seed: int = 0,
        path: str | None = None,
        data_path: str | None = None,
        error: str | None = None,
        holdout_path: str | None = None,
        features: str | None = None,
    ):
        self.model, self.train, self.test = model, train, test
        self.features = features  # None: pixels; else the folder of an ImageEmbedder
        self.n, self.n_probes, self.trace, self.seed = n, n_probes, trace, seed
        self.path, self.data_path, self.error, self.holdout_path = path, data_path, error, holdout_path
        self.ts = t_grid(model)
        self.runner = None  # memviz.runner.local.LocalRunner by default; a RayRunner runs passes on a cluster
        self.batch_size = None  # rows per batch of every pass (default: each pass's own)
        self._keys: dict[tuple, list[str]] = {}
        self._memo: dict = {}  # what was read from the store, kept in memory (artifacts never change once stored)

    @property
    def spec(self) -> StudySpec | None:
        """What reopens this Study elsewhere (a Ray worker): ``spec.open()``; None when it was
        made from a loaded model rather than a path."""
        if self.path is None:
            return None
        optional = {"holdout": self.holdout_path, "features": self.features}
        return StudySpec(
            model=self.path,
            data=self.data_path,
            n=self.n,
            n_probes=self.n_probes,
            trace=self.trace,
            seed=self.seed,
            **{name: value for name, value in optional.items() if value},
        )

    def with_n(self, n: int | None) -> "Study":
        """The same model, data, store and runner with another number of analysed images
        (``analysed_rows``: a larger n holds a smaller one's rows, so nothing is computed twice)."""
        other = Study(
            self.model,
            self.train,
            self.test,
            n=n,
            n_probes=self.n_probes,
            trace=self.trace,
            seed=self.seed,
            path=self.path,
            data_path=self.data_path,
            error=self.error,
            holdout_path=self.holdout_path,
            features=self.features,
        )
        other.runner, other.batch_size = self.runner, self.batch_size
        if "embedder" in self.__dict__:
            other.embedder = self.embedder  # loaded once
        return other

    @property
    def folder(self) -> Path | None:
        """The model's folder on disk (bundled demos included), when it was opened from one."""
        from memviz.model.loading import model_path

        return None if self.path is None else model_path(self.path)

    # ---- what is analysed ---------------------------------------------------------------
    @cached_property
    def rows(self) -> np.ndarray:
        """(N,) the training rows analysed."""
        self._need_data()
        return analysed_rows(self.train, self.n)

    @property
    def conditional(self) -> bool:
        """Whether each image has its own condition (label or caption) for this model."""
        return self.train is not None and self.model.conditions_of(self.train) is not None

    def images(self, rows: Sequence[int]) -> torch.Tensor:
        """(N, C, H, W) the training images of ``rows`` in [-1, 1], pixels."""
        return self.train.images[torch.from_numpy(np.array(rows, dtype=np.int64))]

    def image(self, row: int) -> torch.Tensor:
        """(C, H, W) one training image."""
        return self.images([self._check_row(row)])[0]

    def kind(self, rows: Sequence[int]) -> np.ndarray:
        """(N,) the planted kind of each row ("none", "DD-Mem", "OD-Mem"; "none" without ground truth)."""
        return np.asarray(self.train.meta.get("kind", np.full(len(self.train), "none")))[np.asarray(rows, dtype=int)]

    # ---- the model's LID (FLIPD) --------------------------------------------------------
    def flipd_grid(
        self, conditional: bool | None = None, rows: Sequence[int] | None = None, held_out: bool = False, on_batch=None
    ) -> np.ndarray:
        """(N, T) FLIPD at every t of ``self.ts`` for ``rows`` (default: the analysed ones; held-out:
        the first ``HELD_OUT`` test images), unconditional or under each image's condition
        (default: conditional when the images have conditions). Stored per image content."""
        conditional = self.conditional if conditional is None else conditional
        memo = ("flipd", conditional, held_out)
        if memo in self._memo and rows is None:
            return self._memo[memo]
        if memo in self._memo and not held_out:  # analysed rows: a slice of what is in memory
            where = np.searchsorted(self.rows, np.asarray(rows, dtype=np.int64)).clip(max=len(self.rows) - 1)
            if np.array_equal(self.rows[where], np.asarray(rows)):
                return self._memo[memo][where]
        memo = memo if rows is None else None
        rows = self._default_rows(rows, held_out)
        params = (list(self.ts), self.trace, self.n_probes, self.seed)
        grid = self.per_row(
            "flipd", params, rows, self._flipd_fn(), conditional, held_out, on_batch=on_batch, builder=("_flipd_fn", ())
        )["flipd"]
        if memo is not None:
            self._memo[memo] = grid
        return grid

    def _flipd_fn(self):
        """The FLIPD pass on a batch: fn(x, cond, keys) -> {"flipd": (b, T)}."""

        def fn(x, cond, keys):
            seeds = [int(k[:8], 16) + self.seed for k in keys]  # a row's probes depend on its content only
            return {
                "flipd": flipd_curve(
                    self.model, x, self.ts, cond=cond, trace=self.trace, n_probes=self.n_probes, seed=seeds
                ).numpy()
            }

        return fn

    def flipd(
        self, t0: float = DEFAULT_T0, conditional: bool | None = None, rows=None, held_out: bool = False
    ) -> np.ndarray:
        """(N,) FLIPD at ``t0``, read off the stored grid (``memviz.lid.at_t0``): never a model call
        once the grid is stored."""
        return at_t0(self.ts, self.flipd_grid(conditional, rows, held_out), t0)

    # ---- the data's LID (LID*) and neighbours --------------------------------------------
    def lid_data(self, method: str = VERDICT_LID, rows: Sequence[int] | None = None) -> np.ndarray:
        """(N,) LID* of ``rows`` from the training set as stored (each row's own copy left out, the
        others in: a duplicated image reads 0). Methods: lpca (k = 100), mle (k = 20), twonn, ess."""
        from memviz.lid.data_lid import DEFAULT_K, data_lid

        if ("lid", method) not in self._memo:
            data = self._space()
            k = min(DEFAULT_K.get(method, 100), len(data) - 1)
            graph = self._graph()
            key = fingerprint(data.images, "pointwise", method, k)
            self._memo["lid", method] = cached(
                "data_lid", key, lambda: {"lid": data_lid(data.images, method=method, k=k, graph=graph)}
            )["lid"]
        return self._memo["lid", method][self._default_rows(rows)]

    def neighbors(self, row: int, k: int = 8):
        """The k nearest other training rows of ``row`` (``Neighbors``: index = training rows, distance)."""
        from memviz.neighbors.index import Neighbors

        g, row = self._graph().first(k), self._check_row(row)
        return Neighbors(g.index[row], g.distance[row])

    def copies(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """(N,) how many training rows hold each row's image (``ImageDataset.copies``; 1: unique)."""
        if "copies" not in self._memo:
            self._memo["copies"] = self.train.copies()
        return self._memo["copies"][self._default_rows(rows)]

    def neighbor_groups(self, row: int, k: int = 8):
        """The k nearest distinct training images of ``row``, duplicates grouped by the one duplicate rule
        (``ImageDataset.duplicate_of``) instead of filling the strip: ``Neighbors`` of one representative
        row per image (the row's own image first when other rows hold it), and (k,) how many training
        rows hold each (the group's size)."""
        from memviz.neighbors.index import Neighbors

        if "duplicate_of" not in self._memo:
            self._memo["duplicate_of"] = self.train.duplicate_of()
        group, g, row = self._memo["duplicate_of"], self._graph(), self._check_row(row)
        index, distance = g.index[row], g.distance[row]
        _, first = np.unique(group[index], return_index=True)
        keep = np.sort(first)[:k]  # the nearest member of each group, nearest first
        return Neighbors(index[keep], distance[keep]), self.copies(index[keep])

    def nn_distance(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """(N,) distance to the nearest other training image (0 for a stored duplicate)."""
        return self._graph().distance[self._default_rows(rows), 0]

    @cached_property
    def reference(self):
        """A ``NeighborIndex`` over the distinct training images (pixels, or the embedder's vectors of them):
        the nearest training image of a generation. Exact up to ``memviz.neighbors.index.FLAT_MAX`` images,
        an approximate index kept in the store above (``stored_index``: built once, its recall@10 measured
        and kept beside it)."""
        from memviz.neighbors.index import stored_index

        self._need_data()
        distinct = self.train.deduplicated().images
        if self.embedder is None:
            return stored_index(distinct)
        return stored_index(self._embedded(self.train.first_rows())).with_features(self.embedder, distinct)

    @cached_property
    def embedder(self):
        """The ``ImageEmbedder`` of ``features`` (loaded once), or None for pixels."""
        from memviz.neighbors.features import feature_space

        return feature_space(self.features)

    def _embedded(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), F) the embedder's vectors of training rows, stored per image content and embedder
        (an interrupted pass resumes); computed here, as they read pixels rather than the model's space."""
        keys = self._row_keys(False, False, pixels=self.model.vae is not None)
        store = RowStore("features", fingerprint(self.embedder.fingerprint))
        images, embed = self.train.images, self.embedder

        def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
            return {"features": embed(images[torch.as_tensor(ids)])}

        rows = np.asarray(rows, dtype=np.int64)
        return run(batch, rows, [keys[i] for i in rows], store, KEY_BATCH, desc="features")["features"]

    # ---- the verdict --------------------------------------------------------------------
    def threshold(self, t0: float = DEFAULT_T0) -> float:
        """The verdict's FLIPD threshold at t0 (held-out images; the analysed ones without a test set)."""
        return verdict_rule(np.zeros(0), np.zeros(0), self._reference(t0))[1]

    def threshold_source(self, t0: float = DEFAULT_T0) -> str:
        """What the verdict's threshold is computed from, in one sentence (the CLI and the app say it)."""
        from memviz.lid.verdict import FALSE_POSITIVE_RATE

        q = f"{FALSE_POSITIVE_RATE:.0%}"
        if self.test is not None:
            n = len(self._default_rows(None, held_out=True))
            return f"FLIPD threshold {self.threshold(t0):.2f}: {q} of {n:,} held-out images lie below it."
        return (
            f"FLIPD threshold {self.threshold(t0):.2f}: {q} of the {len(self.rows):,} analysed images themselves lie "
            f"below it, as there are no held-out images, so about {q} are flagged whatever the model; "
            "give images the model never saw (--holdout DIR) for a threshold that can say none are memorized."
        )

    def verdicts(self, t0: float = DEFAULT_T0, rows: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
        """((N,) the MMH verdict of each row, threshold): ``verdict_rule`` on FLIPD at t0 (conditional
        when the images have conditions) and LID*."""
        rows = self._default_rows(rows)
        return verdict_rule(self.flipd(t0, rows=rows), self.lid_data(VERDICT_LID, rows), self._reference(t0))

    def _reference(self, t0: float) -> np.ndarray:
        """FLIPD at t0 of the images known not to be memorized: held-out ones, else the analysed ones."""
        return self.flipd(t0, held_out=True) if self.test is not None else self.flipd(t0)

    # ---- the map ------------------------------------------------------------------------
    def embedding(self) -> np.ndarray:
        """(N, 2) the UMAP map of the analysed rows (stored; ``memviz.neighbors.embed`` places new points on it)."""

        return self._map(self.rows)

    def _map(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 2) the UMAP map of training ``rows`` in the study's feature space, stored (fitted on
        a sample beyond ``memviz.neighbors.embed.MAP_FIT_MAX``, the rest placed)."""
        from memviz.neighbors.embed import fit_map

        memo = ("map", fingerprint(np.asarray(rows, dtype=np.int64)))
        if memo not in self._memo:  # the coordinates stored on their own: reading them needs no umap (3 s of numba)
            x = _flat_rows(self._space().images, rows) if self.embedder is None else self._embedded(rows)
            k = min(15, len(x) - 1)
            self._memo[memo] = cached("map_xy", fingerprint(x, k), lambda: {"xy": fit_map(x, n_neighbors=k).xy})["xy"]
        return self._memo[memo]

    def map_table(self, t0: float = DEFAULT_T0):
        """One row per distinct training image (pandas.DataFrame), for the map of them all: row, label,
        kind, lid_lpca, lid_mle, nn_distance, copies, x, y (its own map) for every one; flipd and verdict
        for the analysed rows (NaN and "not analysed" elsewhere, as FLIPD costs a model pass per image)."""
        import pandas as pd

        rows = self.train.first_rows()
        part = self.table(t0).set_index("row")
        xy = self._map(rows)
        labels = self.train.labels[rows] if self.train.labels is not None else np.full(len(rows), -1)
        verdict = part["verdict"].reindex(rows)
        return pd.DataFrame(
            {
                "row": rows,
                "label": labels,
                "kind": self.kind(rows),
                "flipd": part["flipd"].reindex(rows).to_numpy(),
                **{f"lid_{m}": self.lid_data(m, rows) for m in ("lpca", "mle")},
                "verdict": verdict.where(verdict.notna(), "not analysed").to_numpy(),
                "nn_distance": self.nn_distance(rows),
                "copies": self.copies(rows),
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )

    # ---- Hessian spectra ------------------------------------------------------------------
    def spectra(
        self,
        rows: Sequence[int] | None = None,
        t: float = DEFAULT_T0,
        conditional: bool | None = None,
        method: str | None = None,
        on_batch=None,
        batch_size: int = 32,
        held_out: bool = False,
    ) -> np.ndarray:
        """(N, m) Hessian spectra at y = alpha(t) x, ascending: one store per image content, t,
        method and condition, shared by a pick, ``memviz compute spectra`` and the detectors.
        ``method``: default ``affordable_method`` (exact where D allows)."""
        from memviz.hessian.spectrum import affordable_method

        method = method or affordable_method(self.model)
        if method is None:
            raise ValueError(
                f"No spectrum at D = {self.model.dim:,} on a CPU: Lanczos needs about 250 Hessian-vector "
                "products, each a double backward pass (hours at Stable Diffusion's size); use a GPU."
            )
        conditional = self.conditional if conditional is None else conditional
        return self.per_row(
            "spectrum",
            (float(t), method),
            rows,
            self._spectrum_fn(float(t), method),
            conditional,
            held_out,
            batch_size=batch_size,
            on_batch=on_batch,
            builder=("_spectrum_fn", (float(t), method)),
        )["eigenvalues"]

    def _spectrum_fn(self, t: float, method: str):
        """The spectrum pass on a batch: fn(x, cond, keys) -> {"eigenvalues": (b, m)}."""
        from memviz.hessian.spectrum import spectrum

        return lambda x, cond, keys: {"eigenvalues": spectrum(self.model, x, t, cond, method).numpy()}

    def spectrum(self, row: int, t: float = DEFAULT_T0, conditional: bool | None = None) -> np.ndarray:
        """(m,) the spectrum of one training row (see ``spectra``)."""
        return self.spectra([self._check_row(row)], t, conditional)[0]

    # ---- the table every page shows --------------------------------------------------------
    def table(self, t0: float = DEFAULT_T0):
        """One row per analysed image (pandas.DataFrame): row, label, kind, flipd (conditional when
        the images have conditions), flipd_uncond, lid_lpca, lid_mle, verdict, nn_distance, copies
        (training rows holding this image), x, y.
        Cheap once ``prepare`` has run: every column is read from the store."""
        import pandas as pd

        if ("table", float(t0)) in self._memo:
            return self._memo["table", float(t0)].copy()
        rows = self.rows
        verdicts, _ = self.verdicts(t0)
        xy = self.embedding()
        labels = self.train.labels[rows] if self.train.labels is not None else np.full(len(rows), -1)
        table = pd.DataFrame(
            {
                "row": rows,
                "label": labels,
                "kind": self.kind(rows),
                "flipd": self.flipd(t0),
                "flipd_uncond": self.flipd(t0, conditional=False),
                **{f"lid_{m}": self.lid_data(m) for m in ("lpca", "mle")},
                "verdict": verdicts,
                "nn_distance": self.nn_distance(),
                "copies": self.copies(),
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )
        self._memo["table", float(t0)] = table
        return table.copy()

    def prepare(self, on_progress: Callable[[float, str], None] | None = None) -> "Study":
        """Compute every dataset-wide artifact the table needs, reporting ``on_progress(fraction, what)``
        (FLIPD passes by batch; LID*, neighbours and the map take seconds and report nothing)."""
        stages = ["uncond"] + ["cond"] * self.conditional + ["reference"] * (self.test is not None)
        for k, stage in enumerate(stages):
            report = (
                None
                if on_progress is None
                else (
                    lambda done, total, k=k, stage=stage: on_progress(
                        (k + done / total) / len(stages), f"{STAGES[stage]}: {done:,} of {total:,} images"
                    )
                )
            )
            self.flipd_grid(
                conditional=stage == "cond" or (stage == "reference" and self.conditional),
                held_out=stage == "reference",
                on_batch=report,
            )
        self.table()
        return self

    # ---- internals ------------------------------------------------------------------------
    def per_row(
        self,
        kind: str,
        params,
        rows,
        fn,
        conditional: bool,
        held_out: bool = False,
        batch_size: int = 64,
        on_batch=None,
        builder: tuple[str, tuple] | None = None,
    ) -> dict[str, np.ndarray]:
        """A per-row pass through the runner (any detector or quantity can add one): ``fn(x (b, C, H, W)
        in model space, conditions (b,) or None, keys (b,)) -> {column: (b, ...)}``, stored under
        ``kind`` and ``params`` per content key (the image's bytes and its condition).
        ``builder``: (method name, args) of this Study that returns ``fn``, so that a remote runner
        can rebuild it (``StudyTask``); passes without one run locally.
        Returns the table {"id": rows, column: (N, ...)}."""
        rows = self._default_rows(rows, held_out)
        keys = self._row_keys(held_out, conditional)
        store = RowStore(kind, fingerprint(model_fingerprint(self.model), kind, params))
        remote = self.runner is not None and builder is not None and self.spec is not None
        task = StudyTask(self.spec, builder[0], builder[1], conditional, held_out) if remote else None
        return run(
            self.batch_fn(fn, conditional, held_out),
            rows,
            [keys[i] for i in rows],
            store,
            self.batch_size or batch_size,
            desc=kind,
            on_batch=on_batch,
            runner=self.runner if remote else None,
            task=task,
        )

    def batch_fn(self, fn, conditional: bool, held_out: bool = False):
        """``fn(x, cond, keys)`` as a batch function of rows: ids (b,) -> {column: (b, ...)}."""
        data = self._space(held_out)
        conds = self.model.conditions_of(data) if conditional else None
        if conditional and conds is None:
            raise ValueError("These images have no condition (label or caption) for this model; use conditional=False.")
        keys = self._row_keys(held_out, conditional)

        def batch(ids: np.ndarray) -> dict[str, np.ndarray]:
            x = data.images[torch.as_tensor(ids)]
            return fn(x, None if conds is None else [conds[i] for i in ids], [keys[i] for i in ids])

        return batch

    def _row_keys(self, held_out: bool, conditional: bool, pixels: bool = False) -> list[str]:
        """Content key of every row: a fingerprint of the image in model space (``pixels``: the image
        itself, which a latent model's passes that read pixels key by) and its condition."""
        if (held_out, conditional, pixels) not in self._keys:
            data = self._space(held_out) if not pixels else self.test if held_out else self.train
            conds = self.model.conditions_of(data) if conditional else None
            keys = []
            for s in range(0, len(data), KEY_BATCH):  # a batch at a time: a streamed set is decoded as it goes
                flat = data.images[s : s + KEY_BATCH].flatten(1).numpy()
                keys += [fingerprint(flat[j], None if conds is None else conds[s + j]) for j in range(len(flat))]
            self._keys[(held_out, conditional, pixels)] = keys
        return self._keys[(held_out, conditional, pixels)]

    def _space(self, held_out: bool = False) -> ImageDataset:
        """The training (or held-out) images in the model's space: the VAE's scaled posterior means for
        latent models (encoded once, cached on disk), the images themselves for pixel models."""
        self._need_data()
        data = self.test if held_out else self.train
        if data is None:
            raise ValueError("This study has no held-out images.")
        if self.model.vae is None:
            return data
        attr = "_test_latents" if held_out else "_train_latents"
        if not hasattr(self, attr):
            from memviz.data.mapped import mapped_rows

            images, key = data.images, fingerprint(model_fingerprint(self.model), data.images)
            z = mapped_rows(
                "latents",
                key,
                len(data),
                lambda rows: _by_batch(images, rows, self.model.encode),
                True,
                data.duplicate_of(),
            )
            setattr(self, attr, replace(data, images=z))
        return getattr(self, attr)

    def _graph(self):
        """The one neighbour graph of the training set as stored (model space), cached."""
        from memviz.neighbors.index import GRAPH_K, neighbor_graph

        if "graph" not in self._memo:
            data = self._space()
            self._memo["graph"] = neighbor_graph(data.images, min(GRAPH_K, len(data) - 1))
        return self._memo["graph"]

    def _default_rows(self, rows, held_out: bool = False) -> np.ndarray:
        if held_out:
            return (
                np.arange(min(len(self._space(True)), HELD_OUT)) if rows is None else np.asarray(rows, dtype=np.int64)
            )
        return self.rows if rows is None else np.array([self._check_row(r) for r in rows], dtype=np.int64)

    def _check_row(self, row) -> int:
        self._need_data()
        if not 0 <= int(row) < len(self.train):
            raise ValueError(f"Training row {row} does not exist; the training set has rows 0..{len(self.train) - 1}.")
        return int(row)

    def _need_data(self) -> None:
        if self.train is None:
            raise ValueError(self.error or "This study has no training data; open it with data=.")
