"""The on-disk cache: expensive artifacts computed once, keyed by model, data and parameters.

Keys are SHA-256 fingerprints of the model's weights and schedule, the data's bytes and
the parameters, so a changed model or dataset never reads a stale result. Entries are
``.npz`` files written atomically. The folder is ``$MEMVIZ_CACHE`` or ``~/.cache/memviz``.
"""

from __future__ import annotations

import hashlib
import json
import os
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
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
    arrays = compute()
    save_npz(path, **arrays)
    return arrays


def cached_rows(kind: str, keys: list[str], compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(N, ...) rows each stored on its own under ``keys[i]``, so that any later subset (one
    picked image, a batch) reads back what any earlier call computed; ``compute(missing)``
    computes the missing rows' positions (m,) in one batched call -> (m, ...)."""
    rows: list[np.ndarray | None] = []
    for key in keys:
        path = cache_dir() / kind / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                rows.append(z["row"])
        except (OSError, ValueError, KeyError):
            rows.append(None)  # absent or corrupt: computed again
    missing = np.array([i for i, r in enumerate(rows) if r is None], dtype=np.int64)
    if len(missing):
        for i, row in zip(missing, compute(missing)):
            save_npz(cache_dir() / kind / f"{keys[i]}.npz", row=np.asarray(row))
            rows[i] = np.asarray(row)
    return np.stack(rows)


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
