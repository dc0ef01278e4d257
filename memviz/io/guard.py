"""The boundary: what a file or a path must satisfy before memviz opens it.

Three rules, each in one place:

- ``max_bytes()``: the most any data file (an ``.npz``, an image folder, captions, an
  upload) may make memviz hold in memory, ``$MEMVIZ_MAX_BYTES`` (default 4 GiB). It is
  checked against what a file *declares* (an array header, an image header), before the
  file is read, so a small file declaring a huge array is refused in milliseconds.
- ``npz_members(path)``: the declared name, dtype and shape of each array in an ``.npz``,
  read from its zip directory and ``.npy`` headers alone (no array data); object arrays
  (pickles) are refused.
- ``inside_roots(path)``: the app opens model and data paths only inside the allowed roots
  (the bundled demos and ``$MEMVIZ_ROOTS``, by default the folder the app was started in),
  after resolving symlinks and ``..``; the CLI and the library trust their caller, who
  already has a shell.

Every failure is one ``ValueError`` sentence that names the rule.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_MAX_BYTES = 4 * 2**30
MAX_PROMPT_CHARS = 1000  # a prompt longer than this is refused (text encoders read 77 tokens at most)


def max_bytes() -> int:
    """``$MEMVIZ_MAX_BYTES`` (an integer number of bytes; suffixes K, M, G allowed) or 4 GiB."""
    raw = os.environ.get("MEMVIZ_MAX_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(raw[-1].upper(), 1)
    try:
        value = int(float(raw[:-1] if scale > 1 else raw) * scale)
    except ValueError:
        raise ValueError(f"MEMVIZ_MAX_BYTES={raw!r} is not a size; give bytes, or a number with K, M or G.") from None
    if value <= 0:
        raise ValueError(f"MEMVIZ_MAX_BYTES={raw!r} must be positive.")
    return value


def check_bytes(n: int, what: str) -> None:
    """Refuse ``what`` if holding it takes more than ``max_bytes()``."""
    limit = max_bytes()
    if n > limit:
        raise ValueError(
            f"{what} would take {_size(n)} in memory, over the limit of {_size(limit)}; "
            "raise MEMVIZ_MAX_BYTES if you trust it and have the memory."
        )


def check_file(path: Path, what: str = "") -> None:
    """Refuse a file larger on disk than ``max_bytes()``."""
    check_bytes(path.stat().st_size, what or str(path))


def npz_members(path: str | os.PathLike) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{name: (dtype, shape)} of every array in an ``.npz``, from its headers only.

    Refuses (one sentence each): a file that is not a zip of ``.npy`` arrays, object arrays
    (they would be unpickled), a member cut short, and a total over ``max_bytes()``.
    """
    path = Path(path)
    members: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (
                        np.lib.format.read_array_header_1_0(f)
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0(f)
                    )
                    header = f.tell() if f.seekable() else 128
                if dtype.hasobject:
                    raise ValueError(
                        f"{path} holds an object array {name!r}, which would run code when loaded "
                        "(a pickle); save plain numeric or string arrays."
                    )
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if info.file_size < header + nbytes:
                    raise ValueError(
                        f"{path} is cut short: array {name!r} declares {_size(nbytes)} but holds "
                        f"{_size(max(info.file_size - header, 0))}."
                    )
                total += nbytes
                members[name] = (dtype, tuple(shape))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz ({exc.__class__.__name__}).") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path} is not a readable .npz (a damaged array header).") from None
    check_bytes(total, str(path))
    return members


def roots() -> list[Path]:
    """The folders the app may open models and data in: the bundled demos, then ``$MEMVIZ_ROOTS``
    (separated by ``os.pathsep``), or the current folder when it is unset."""
    from memviz.io.assets import BUNDLED

    listed = [p for p in os.environ.get("MEMVIZ_ROOTS", "").split(os.pathsep) if p.strip()]
    return [BUNDLED.resolve()] + [Path(p).expanduser().resolve() for p in (listed or [os.getcwd()])]


def inside_roots(path: str | os.PathLike, what: str = "path") -> Path:
    """``path`` resolved (symlinks and ``..`` followed, nothing opened), if it lies inside one of
    ``roots()``; otherwise one sentence naming the rule."""
    text = str(path)
    if "\x00" in text or len(text) > 4096:
        raise ValueError(f"That {what} is not a usable path.")
    resolved = Path(text).expanduser().resolve()
    allowed = roots()
    if not any(resolved == r or resolved.is_relative_to(r) for r in allowed):
        raise ValueError(
            f"The {what} {text!r} is outside the folders this app may open "
            f"({', '.join(str(r) for r in allowed[1:])} and the bundled demos); "
            "list its folder in MEMVIZ_ROOTS to allow it."
        )
    return resolved


def check_prompt(prompt: str) -> str:
    """A prompt of at most ``MAX_PROMPT_CHARS`` characters, without control characters."""
    if not isinstance(prompt, str):
        raise ValueError(f"A prompt must be text; got {type(prompt).__name__}.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"A prompt of {len(prompt):,} characters is too long; give at most {MAX_PROMPT_CHARS}.")
    if any(ord(c) < 32 and c not in "\t\n" for c in prompt):
        raise ValueError("A prompt may not contain control characters.")
    return prompt


def _size(n: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
