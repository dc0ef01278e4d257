"""The on-disk store: expensive artifacts computed once, keyed by model, data and parameters.

Keys are SHA-256 fingerprints of the model's weights and schedule, the data's bytes and
the parameters, so a changed model or dataset never reads a stale result. Entries are
``.npz`` files written atomically; a corrupt entry is computed again, never shown. The
folder is ``$MEMVIZ_CACHE`` or ``~/.cache/memviz``.

Two shapes of entry: ``cached`` (one artifact of a whole dataset: LID*, a neighbour graph)
and ``RowStore`` (one row per item, each addressed by its content: a FLIPD curve, a
spectrum, a prompt's scores; written batch by batch by ``memviz.runner``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from memviz._io import save_npz


def cache_dir() -> Path:
    return Path(os.environ.get("MEMVIZ_CACHE", Path.home() / ".cache" / "memviz"))


def fingerprint(*parts: Any) -> str:
    """A short stable hash of tensors, arrays, and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if torch.is_tensor(part):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def model_fingerprint(model) -> str:
    """Weights (UNet, and the VAE and text encoder where present), schedule and prediction type of a
    ``DiffusionModel``; computed once per model object (its weights are frozen), as hashing a
    Stable Diffusion UNet's 3.4 GB takes seconds."""
    if getattr(model, "_fingerprint", None) is None:
        parts = [getattr(model, name, None) for name in ("unet", "vae", "text_encoder")]
        tensors = [t for part in parts if part is not None for _, t in sorted(part.state_dict().items())]
        model._fingerprint = fingerprint(dict(model.scheduler.config), model.prediction_type, *tensors)
    return model._fingerprint


def cached(kind: str, key: str, compute: Callable[[], dict[str, np.ndarray]], refresh: bool = False) -> dict[str, np.ndarray]:
    """Arrays of ``kind``/``key`` from disk, or ``compute()`` them and store them first."""
    path = cache_dir() / kind / f"{key}.npz"
    if path.exists() and not refresh:
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except BROKEN:
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
    arrays = compute()
    save_npz(path, **arrays)
    return arrays


BROKEN = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # what a damaged .npz raises


class RowStore:
    """Rows of one quantity under one set of parameters (``kind``/``partition``), each row
    addressed by a content key (a fingerprint of the image and its condition, say), so that
    any later pass over any subset reads back what an earlier one computed.

    Each finished batch is one file, written atomically: an interrupted pass keeps every
    finished batch (resume), and no file is ever half-written.
    """

    def __init__(self, kind: str, partition: str):
        self.path = cache_dir() / kind / partition

    def read(self, keys: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found (K,) bool, columns of the found rows, in ``keys`` order)."""
        stored: dict[str, tuple[int, int]] = {}
        parts: list[dict[str, np.ndarray]] = []
        for file in sorted(self.path.glob("part-*.npz")) if self.path.is_dir() else []:
            try:
                with np.load(file, allow_pickle=False) as z:
                    part = {k: z[k] for k in z.files}
                part_keys = part.pop("_key")
            except BROKEN:
                file.unlink(missing_ok=True)  # a damaged batch is computed again
                continue
            stored.update({str(k): (len(parts), i) for i, k in enumerate(part_keys)})
            parts.append(part)
        where = [stored.get(k) for k in keys]
        found = np.array([w is not None for w in where], dtype=bool)
        names = parts[0].keys() if parts else ()
        columns = {c: np.stack([parts[p][c][i] for p, i in (w for w in where if w is not None)])
                   for c in names} if found.any() else {}
        return found, columns

    def write(self, keys: list[str], columns: dict[str, np.ndarray]) -> None:
        """Store one finished batch: ``columns`` of (len(keys), ...) arrays."""
        save_npz(self.path / f"part-{uuid.uuid4().hex}.npz", _key=np.asarray(keys, dtype=str), **columns)


def cached_object(kind: str, key: str, compute: Callable[[], Any], refresh: bool = False) -> Any:
    """A fitted object (a UMAP reducer, say) of ``kind``/``key`` from disk, or ``compute()`` and pickle it.

    Pickles are only read from memviz's own cache folder, which only memviz writes.
    """
    import pickle

    from memviz._io import atomic_path

    path = cache_dir() / kind / f"{key}.pkl"
    if path.exists() and not refresh:
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            path.unlink(missing_ok=True)  # a corrupt or stale entry is recomputed
    obj = compute()
    with atomic_path(path, ".pkl") as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return obj
