"""Atomic writes (nothing half-written is ever read) and checked ``.npz`` files (a damaged one is
detected, never shown)."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder, so the final ``os.replace`` is
    atomic; on any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{suffix or '.tmp'}"
    # created by open(2) with mode 0666: the process's umask applies, as to any file, and nothing
    # process-wide is changed (reading the umask means setting it, which races between threads)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never a mix
        _fsync(path.parent)  # and the rename itself survives a crash
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def sweep(folder: Path, older_than: float = 3600.0) -> None:
    """Delete the temporary files that processes killed mid-write left in ``folder`` (never read,
    as their names start with a dot), once they are ``older_than`` seconds old."""
    import time

    now = time.time()
    for tmp in folder.glob(".*.*") if folder.is_dir() else []:
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
        except OSError:
            pass  # another process swept it first


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


CHECKSUM = "_sha256"  # the member of a checked .npz that holds the digest of every other array


def save_npz(path: str | os.PathLike, checksum: bool = False, **arrays: Any) -> None:
    """``numpy.savez`` of ``arrays``, atomically; with ``checksum``, also a SHA-256 of their
    names, dtypes, shapes and bytes, which ``load_npz(..., checksum=True)`` verifies."""
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if checksum:
        arrays[CHECKSUM] = np.asarray(digest(arrays))
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: str | os.PathLike, checksum: bool = False, checked: bool = False) -> dict:
    """Every array of an ``.npz``, after ``guard.npz_members`` has checked its declared sizes
    (no object arrays, nothing over ``MEMVIZ_MAX_BYTES``; ``checked``: the caller already did);
    with ``checksum``, the stored digest must match. Any damage is one ``ValueError``."""
    import zipfile

    import numpy as np

    from memviz.io.guard import npz_members

    if not checked:
        npz_members(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz ({exc.__class__.__name__}).") from None
    if checksum:
        stored = arrays.pop(CHECKSUM, None)
        if stored is None or str(stored) != digest(arrays):
            raise ValueError(f"{path} fails its checksum: it was damaged after it was written.")
    return arrays


def digest(arrays: dict) -> str:
    """SHA-256 of arrays' names, dtypes, shapes and bytes, in name order."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read a MiB at a time."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
