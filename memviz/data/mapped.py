"""Rows too large to hold, stored once and read a batch at a time: a latent model's VAE latents of a
whole training set (Stable Diffusion's 4 x 64 x 64 float32 is 64 KiB an image, 64 GB at 10^6).

``mapped_rows(kind, key, n, fill)`` returns ``MappedRows`` over ``<cache>/<kind>/<key>.npy``, a plain
NumPy array file (``numpy.lib.format``: no pickle) whose rows are read with ``os.pread`` as they are
indexed, so a pass holds only its batch (a memory map would count every page it touched as the
process's resident memory). It is written a chunk at a time (``fill(rows)`` -> (len(rows), ...)
float32, once per chunk of about ``CHUNK_BYTES``), each chunk's SHA-256 appended to ``<key>.sha256``
(32 bytes a chunk), its shape and chunk size in ``<key>.json``:

- resume: an interrupted build keeps its finished chunks (``<key>.partial.npy`` and its digests) and a
  rerun fills only the rest; the finished file is renamed into place and its JSON written last
  (atomically): only a file with its JSON is read;
- one writer: a build holds an exclusive lock (``fcntl.flock`` on ``<key>.lock``), so two processes
  asking for one key build it once, the second reading what the first wrote;
- never shown damaged: a chunk is verified against its digest the first time this process reads from
  it (verifying all of 64 GB at every open would take a minute); a chunk that fails is filled again
  from its source (``fill`` is deterministic: the VAE's posterior mean), written back with its digest,
  and said once on the ``memviz.data.mapped`` logger.

Why by hand: ``numpy.memmap`` neither resumes, checksums nor repairs, and its pages count as resident
memory; zarr or HDF5 would add a dependency for what is one array and a list of digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from memviz.data.base import LazyRows
from memviz.io.files import sweep, write_json

CHUNK_BYTES = 4 << 20  # rows filled, written and verified together: about 4 MiB (64 SD latents)
DIGEST = 32  # bytes of one chunk's SHA-256 in <key>.sha256
log = logging.getLogger("memviz.data.mapped")
Fill = Callable[[np.ndarray], np.ndarray]  # rows (b,) -> (b, ...) float32


def chunk_rows(row_bytes: int) -> int:
    """Rows per chunk for rows of ``row_bytes`` bytes: about ``CHUNK_BYTES``, at least one."""
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def mapped_rows(
    kind: str, key: str, n: int, fill: Fill, progress: bool = False, hashes: np.ndarray | None = None
) -> "MappedRows":
    """The (n, ...) float32 rows ``fill`` gives, from ``<cache>/<kind>/<key>.npy`` or built there first.

    Args:
        fill: ``fill(rows (b,) int64) -> (b, ...)`` float32; deterministic (a damaged chunk is filled again).
        hashes: (n,) each row's content identity for ``MappedRows.row_hashes`` (default: its index).
    """
    from memviz.io.cache import cache_dir

    if n < 1:
        raise ValueError("There are no rows to store; give at least one.")
    path = cache_dir() / kind / f"{key}.npy"
    meta = _meta(path)
    if meta is None:
        with _lock(path):
            meta = _meta(path) or _build(path, n, fill, progress)  # another process may have built it meanwhile
    if meta["shape"][0] != n:
        raise ValueError(f"{path.name} holds {meta['shape'][0]} rows where {n} were asked for; delete it.")
    return MappedRows(path, meta, fill, np.arange(n, dtype=np.int64), hashes)


class MappedRows(LazyRows):
    """(N, ...) float32 rows of a ``mapped_rows`` file, read (and verified a chunk at a time) on indexing."""

    def __init__(self, path: Path, meta: dict, fill: Fill, rows: np.ndarray, hashes: np.ndarray | None):
        self._path, self._meta, self._fill, self._rows = path, meta, fill, rows
        self.row_hashes = rows.astype("S8") if hashes is None else np.asarray(hashes)
        self._verified: set[int] = set()  # shared by every view of the file (take)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._rows), *self._meta["shape"][1:]))

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        stored = self._rows[rows]
        step = int(self._meta["chunk"])
        for c in np.unique(stored // step):
            if int(c) not in self._verified:
                self._verify(int(c))
        return torch.from_numpy(_pread(self._path, self._meta, stored))

    def take(self, index) -> "MappedRows":
        index = np.asarray(index, dtype=np.int64)
        view = MappedRows.__new__(MappedRows)
        view.__dict__.update(self.__dict__)
        view._rows, view.row_hashes = self._rows[index], self.row_hashes[index]
        return view

    def fingerprint_part(self) -> str:
        """What ``memviz.io.cache.fingerprint`` hashes: the file's key (its source's content) and the rows taken."""
        return hashlib.sha256(self._path.stem.encode() + self._rows.tobytes()).hexdigest()

    def _verify(self, c: int) -> None:
        """Check chunk ``c`` against its digest; fill it again and write it back with its digest if it fails."""
        rows = _chunk(self._meta, c)
        if _digest(_pread(self._path, self._meta, rows)) != _stored_digest(self._path, c):
            log.warning("%s: chunk %d failed its checksum; filled again from its source.", self._path.name, c)
            with _lock(self._path):
                _write_chunk(self._path, self._meta, c, self._fill(rows))
        self._verified.add(c)


def _chunk(meta: dict, c: int) -> np.ndarray:
    step, n = int(meta["chunk"]), int(meta["shape"][0])
    return np.arange(c * step, min((c + 1) * step, n))


def _digest(values: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes()).digest()


def _stored_digest(path: Path, c: int) -> bytes:
    """The digest stored for chunk ``c`` of ``path``."""
    with open(path.with_suffix(".sha256"), "rb") as f:
        f.seek(c * DIGEST)
        return f.read(DIGEST)


def _row_bytes(meta: dict) -> int:
    return 4 * int(np.prod(meta["shape"][1:]))


def _pread(path: Path, meta: dict, rows: np.ndarray) -> np.ndarray:
    """(len(rows), ...) float32 at ``rows``, one ``os.pread`` per run of consecutive rows."""
    rb, offset = _row_bytes(meta), int(meta["offset"])
    out = np.empty((len(rows), *meta["shape"][1:]), np.float32)
    if not len(rows):
        return out
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    fd = os.open(path, os.O_RDONLY)
    try:
        for run, at in zip(np.split(ordered, breaks), np.split(order, breaks)):
            buf = os.pread(fd, len(run) * rb, offset + int(run[0]) * rb)
            if len(buf) != len(run) * rb:
                raise ValueError(f"{path.name} was cut short after it was opened; open it again.")
            out[at] = np.frombuffer(buf, np.float32).reshape(len(run), *meta["shape"][1:])
    finally:
        os.close(fd)
    return out


def _write_chunk(path: Path, meta: dict, c: int, values: np.ndarray) -> None:
    """Write chunk ``c`` (its values, then its digest) into ``path`` and ``<path stem>.sha256``, on disk."""
    rows = _chunk(meta, c)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape != (len(rows), *meta["shape"][1:]):
        raise ValueError(f"The rows filled have shape {values.shape[1:]}, not {tuple(meta['shape'][1:])}.")
    for target, data, at in (
        (path, values.tobytes(), int(meta["offset"]) + int(rows[0]) * _row_bytes(meta)),
        (path.with_suffix(".sha256"), _digest(values), c * DIGEST),  # the values are on disk before their digest
    ):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            os.pwrite(fd, data, at)
            os.fsync(fd)
        finally:
            os.close(fd)


def _meta(path: Path) -> dict | None:
    """The JSON of a finished file whose size and digests match it, else None (absent, cut short or not ours)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        shape, chunks = meta["shape"], -(-int(meta["shape"][0]) // int(meta["chunk"]))
        size = int(meta["offset"]) + shape[0] * _row_bytes(meta)
        ok = path.stat().st_size == size and path.with_suffix(".sha256").stat().st_size == chunks * DIGEST
        return meta if ok else None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def _build(path: Path, n: int, fill: Fill, progress: bool) -> dict:
    """Fill ``path`` a chunk at a time, resuming a partial build; returns its JSON."""
    from tqdm.auto import tqdm

    sweep(path.parent)
    partial = path.with_name(path.stem + ".partial.npy")
    meta, done = _partial(partial, n)
    if meta is None:
        first = np.ascontiguousarray(fill(np.arange(1)), dtype=np.float32)  # one row: the shape of each
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, *first.shape[1:]))  # header only
        meta = _layout(partial)
        partial.with_suffix(".sha256").write_bytes(b"")
        done = 0
    chunks = -(-n // int(meta["chunk"]))
    for c in tqdm(range(done, chunks), disable=not progress, desc="encoding latents", initial=done, total=chunks):
        _write_chunk(partial, meta, c, fill(_chunk(meta, c)))
    os.replace(partial.with_suffix(".sha256"), path.with_suffix(".sha256"))
    os.replace(partial, path)
    write_json(path.with_suffix(".json"), meta)
    return meta


def _layout(path: Path) -> dict:
    """{shape, chunk, offset} of the float32 ``.npy`` at ``path``, from its header (the rows are not read)."""
    header = np.load(path, mmap_mode="r", allow_pickle=False)
    if header.dtype != np.float32:
        raise ValueError(f"{path.name} does not hold float32 rows.")
    return {"shape": list(header.shape), "chunk": chunk_rows(4 * int(np.prod(header.shape[1:]))),
            "offset": int(header.offset)}  # fmt: skip


def _partial(partial: Path, n: int) -> tuple[dict | None, int]:
    """(JSON, finished chunks) of a resumable partial build of ``n`` rows, else (None, 0): start afresh."""
    try:
        meta = _layout(partial)
        if meta["shape"][0] != n:
            return None, 0
        digests = partial.with_suffix(".sha256").read_bytes()
        done = 0
        for c in range(len(digests) // DIGEST):  # a chunk cut short by the kill is filled again
            if _digest(_pread(partial, meta, _chunk(meta, c))) != digests[c * DIGEST : (c + 1) * DIGEST]:
                break
            done = c + 1
        return meta, done
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``<path>.lock`` for as long as the block runs (none where fcntl is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: one writer is assumed
        yield
        return
    with open(path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
