"""The on-disk store: expensive artifacts computed once, keyed by model, data and parameters.

Keys are SHA-256 fingerprints of the model's weights and schedule, the data's bytes and
the parameters, so a changed model or dataset never reads a stale result. Entries are
``.npz`` files of plain arrays (never pickles), written atomically (temporary file, fsync,
rename) with a SHA-256 of their contents: an entry that is cut short, damaged or fails its
checksum is deleted and computed again, never shown. Two processes writing one key each
write a whole file and the last rename wins. The folder is ``$MEMVIZ_CACHE`` or
``~/.cache/memviz``.

Behind it, read-only: the stores shipped with the bundled demos (``assets/models/*/store``, the
same layout), so a fresh machine opens a demo without computing its dataset-wide artifacts. They
are read only where the cache has nothing, and by the same keys: a changed model, dataset or
parameter never matches them. A shipped entry that fails its checksum is passed over (and
computed into the cache), never shown. ``MEMVIZ_SHIPPED=0`` turns them off.

Two shapes of entry: ``cached`` (one artifact of a whole dataset: LID*, a neighbour graph)
and ``RowStore`` (one row per item, each addressed by its content: a FLIPD curve, a
spectrum, a prompt's scores; written batch by batch by ``memviz.runner.local``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from memviz.io.assets import BUNDLED
from memviz.io.files import load_npz, save_npz, sweep


def cache_dir() -> Path:
    return Path(os.environ.get("MEMVIZ_CACHE", Path.home() / ".cache" / "memviz"))


SHIPPED = BUNDLED  # the demos' folders hold their stores


def shipped_dirs() -> list[Path]:
    """The bundled demos' read-only stores, read after the cache (none when ``MEMVIZ_SHIPPED=0``)."""
    if os.environ.get("MEMVIZ_SHIPPED", "1") == "0":
        return []
    return sorted(d for d in SHIPPED.glob("*/store") if d.is_dir())


def fingerprint(*parts: Any) -> str:
    """A short stable hash of tensors, arrays, and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "fingerprint_part"):  # a streamed image set: its shape and rows' content hashes
            part = ["streamed", part.fingerprint_part()]
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
        unet = getattr(model, "_unet", None)  # a lazy UNet (memviz.model.loading.LazyUNet) reads its file, unbuilt
        parts = [getattr(model, "unet", None) if unet is None else unet] + [
            getattr(model, name, None) for name in ("vae", "text_encoder")
        ]
        tensors = [t for part in parts if part is not None for _, t in sorted(part.state_dict().items())]
        model._fingerprint = fingerprint(dict(model.scheduler.config), model.prediction_type, *tensors)
    return model._fingerprint


def cached(
    kind: str, key: str, compute: Callable[[], dict[str, np.ndarray]], refresh: bool = False
) -> dict[str, np.ndarray]:
    """Arrays of ``kind``/``key`` from disk, or ``compute()`` them and store them first."""
    path = cache_dir() / kind / f"{key}.npz"
    if path.exists() and not refresh:
        try:
            return load_npz(path, checksum=True)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
    for shipped in [] if refresh else [d / kind / f"{key}.npz" for d in shipped_dirs()]:
        if shipped.exists():
            try:
                return load_npz(shipped, checksum=True)
            except (ValueError, OSError):
                continue  # package data is never deleted; computed into the cache instead
    arrays = compute()
    sweep(path.parent)
    save_npz(path, checksum=True, **arrays)
    return arrays


_PARTS: dict[Path, tuple[tuple[int, int], dict[str, np.ndarray], np.ndarray]] = {}


def _part(file: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(columns, keys) of one verified batch file, read from disk once per process and version."""
    stat = file.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    hit = _PARTS.get(file)
    if hit is None or hit[0] != version:
        part = load_npz(file, checksum=True)
        keys = part.pop("_key")
        hit = _PARTS[file] = (version, part, keys)
    return hit[1], hit[2]


class RowStore:
    """Rows of one quantity under one set of parameters (``kind``/``partition``), each row
    addressed by a content key (a fingerprint of the image and its condition, say), so that
    any later pass over any subset reads back what an earlier one computed.

    Each finished batch is one file, written atomically: an interrupted pass keeps every
    finished batch (resume), and no file is ever half-written. A batch file never changes once
    written (its name is a fresh uuid), so each process verifies and reads it once and keeps it
    while its size and modification time stay the same.
    """

    def __init__(self, kind: str, partition: str):
        self.path = cache_dir() / kind / partition
        self.shipped = [d / kind / partition for d in shipped_dirs()]

    def read(self, keys: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found (K,) bool, columns of the found rows, in ``keys`` order): the cache's rows first,
        then the shipped stores' for keys the cache lacks."""
        stored: dict[str, tuple[int, int]] = {}
        parts: list[dict[str, np.ndarray]] = []
        for folder in [*self.shipped, self.path]:  # later folders win: the cache over package data
            for file in sorted(folder.glob("part-*.npz")) if folder.is_dir() else []:
                try:
                    part, part_keys = _part(file)
                except (ValueError, OSError, KeyError):
                    _PARTS.pop(file, None)
                    if folder == self.path:
                        file.unlink(missing_ok=True)  # a damaged batch is computed again
                    continue
                stored.update({str(k): (len(parts), i) for i, k in enumerate(part_keys)})
                parts.append(part)
        where = [stored.get(k) for k in keys]
        found = np.array([w is not None for w in where], dtype=bool)
        names = parts[0].keys() if parts else ()
        columns = (
            {c: np.stack([parts[p][c][i] for p, i in (w for w in where if w is not None)]) for c in names}
            if found.any()
            else {}
        )
        return found, columns

    def write(self, keys: list[str], columns: dict[str, np.ndarray]) -> None:
        """Store one finished batch: ``columns`` of (len(keys), ...) arrays."""
        sweep(self.path)
        save_npz(self.path / f"part-{uuid.uuid4().hex}.npz", checksum=True, _key=np.asarray(keys, dtype=str), **columns)
