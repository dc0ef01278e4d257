"""Streamed datasets: images decoded a batch at a time from where they lie, so that the memory of a
dataset-wide pass does not grow with N.

``open_stream`` reads what ``memviz.data.folder.load_data_source`` reads (image folders with their
captions; Parquet and Arrow tables of image bytes or paths; ``datasets`` ``save_to_disk`` folders) and
WebDataset shards (``.tar``), through Hugging Face ``datasets`` where the images lie in a table (a
memory-mapped Arrow file: the OS pages it, nothing is read whole). The ``ImageDataset`` it returns holds
a ``StreamedImages`` instead of a tensor: indexing it (``images[rows]``) decodes those rows only, so
every per-row pass of the Study (FLIPD, spectra, detectors) runs unchanged on it.

One content pass at open decodes every image once, a batch at a time: it drops what cannot be decoded
(noted, as the in-memory reader does) and keeps each row's identity, the SHA-256 of its 8-bit pixels
(``row_hashes``: duplicates are equal hashes). It is stored, keyed by the files' names, sizes and
modification times, so a second open reads no image. Decoded pixels equal the in-memory reader's, so
content keys, and hence stored rows, are shared between the two.

Why by hand: ``datasets`` decodes images but neither resizes them to a model's side nor converts their
modes the way the in-memory reader does (EXIF, 16-bit, alpha); both go through its ``_pixels``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from memviz.data.base import ImageDataset, LazyRows, from_uint8
from memviz.data.tables import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    SKIP_CAPTION,
    Notes,
    caption_text,
    local_file,
    pick_column,
)

log = logging.getLogger("memviz.data.stream")
STREAM_BATCH = 256  # images decoded at once by the content pass and by flatten()
STREAM_BYTES = 2 << 30  # the one rule of when a dataset is streamed: its float32 pixels would pass 2 GiB
WDS_IMAGE = ("png", "jpg", "jpeg", "webp", "bmp")  # WebDataset's image extensions, as datasets names the columns


@dataclass
class _Source:
    """Where the images lie: ``cells(rows) -> [Path | bytes]``, their names, captions and class labels."""

    cells: Callable[[np.ndarray], list]
    names: list[str]
    captions: list[str] | None
    labels: np.ndarray | None
    classes: list[str] | None
    fmt: str
    files: list[Path]  # what the content pass's key is made of
    unusable: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows whose caption is unusable
    column: str = ""  # a table's image column
    base: Path = Path(".")  # where a table's relative image paths are resolved
    keys: list[str] | None = None  # WebDataset: each row's __key__, as datasets read it


class StreamedImages(LazyRows):
    """(N, C, H, W) float32 images in [-1, 1], decoded from their source on indexing (``LazyRows``)."""

    batch_rows = STREAM_BATCH

    def __init__(self, source: _Source, rows: np.ndarray, mode: str, side: int, hashes: np.ndarray):
        self._source, self._rows, self._mode, self._side, self.row_hashes = source, rows, mode, side, hashes

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._rows), 1 if self._mode == "L" else 3, self._side, self._side))

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        return _decode_rows(self._source, self._rows[rows], self._mode, self._side)

    def take(self, index) -> "StreamedImages":
        index = np.asarray(index, dtype=np.int64)
        return StreamedImages(self._source, self._rows[index], self._mode, self._side, self.row_hashes[index])

    def fingerprint_part(self) -> str:
        """What ``memviz.io.cache.fingerprint`` hashes for this set: its shape and its rows' content hashes."""
        return hashlib.sha256(str(tuple(self.shape)).encode() + self.row_hashes.tobytes()).hexdigest()


def shards(p: Path) -> list[Path]:
    """The WebDataset shards at ``p``: itself if a ``.tar``, the ``.tar`` files of a folder, else none."""
    return sorted(p.glob("*.tar")) if p.is_dir() else [p] if p.suffix.lower() == ".tar" else []


def should_stream(n: int, resolution: int, channels: int) -> bool:
    """The one rule: stream when N images of ``channels`` x ``resolution``^2 float32 would pass ``STREAM_BYTES``."""
    return n * channels * resolution * resolution * 4 > STREAM_BYTES


def count_rows(path: str | Path) -> int | None:
    """How many images ``path`` holds, from a listing or a table's metadata without reading it; None: unknown."""
    p = Path(path).expanduser()
    try:
        if p.is_file() and p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(p).metadata.num_rows
        if p.is_dir() and not any(p.glob("*.arrow")) and not (p / "dataset_dict.json").exists():
            from memviz.data.folder import IMAGE_SUFFIXES

            return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    except OSError:
        return None
    return None


def open_stream(
    path: str | Path,
    resolution: int | None = None,
    channels: int | None = None,
    caption_column: str | None = None,
    image_column: str | None = None,
    progress: bool = False,
    engine: str = "local",
) -> ImageDataset:
    """The dataset at ``path`` as an ``ImageDataset`` whose images are a ``StreamedImages``.

    Args as ``memviz.data.folder.load_data_source``; ``path`` may also be a WebDataset shard (``.tar``) or a
    folder of them. ``resolution``/``channels`` None: those of the first image. ``engine`` "ray": the content
    pass reads the files with Ray Data on the running Ray (the same digests, stored under the same key).
    Raises ValueError, one sentence, for what cannot be read or holds no decodable image.
    """
    from memviz.io.cache import cached, fingerprint

    p = Path(path).expanduser()
    notes = Notes()
    source = _source(p, caption_column, image_column, notes)
    if not source.names:
        raise ValueError(f"{p} holds no images.")
    mode, side = _first_shape(source, channels, resolution, p)
    key = fingerprint(
        "stream-rows", [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in source.files], mode, side
    )
    content = cached("stream_rows", key, lambda: _content_pass(source, mode, side, progress, engine))
    keep = np.setdiff1d(np.flatnonzero(content["ok"]), source.unusable)  # noted where they were read
    for i in np.flatnonzero(~content["ok"].astype(bool))[:50]:
        notes.add("Skipped {n} image{s} that could not be decoded", source.names[int(i)])
    if not len(keep):
        raise ValueError(f"No image in {p} could be decoded; check the files.")
    if int(content["resized"]):
        notes.say(f"Resized {int(content['resized']):,} images to {side}x{side} (bicubic), the resolution asked for.")
    images = StreamedImages(source, keep, mode, side, content["sha256"][keep])
    return ImageDataset(
        p.stem if p.is_file() else p.name,
        images,  # type: ignore[arg-type]
        labels=None if source.labels is None else source.labels[keep],
        captions=None if source.captions is None else [source.captions[i] for i in keep],
        class_names=source.classes,
        meta={
            "source": str(p),
            "format": source.fmt,
            "streamed": True,
            "files": [source.names[i] for i in keep],
            "notes": notes.sentences(),
        },
    )


def _content_pass(
    source: _Source, mode: str, side: int, progress: bool, engine: str = "local"
) -> dict[str, np.ndarray]:
    """Every image decoded once, a batch at a time: (N,) decodable, (N,) SHA-256 of its 8-bit pixels, resized
    count. ``engine`` "ray", on a cluster larger than this machine (``ray_data_pays``): Parquet, WebDataset
    shards and image folders are read by Ray Data on the cluster (``_ray_content_pass``); Arrow files (``save_to_disk``, ``.arrow``), which it has no reader for, are read here."""
    from tqdm.auto import tqdm

    if engine == "ray" and ray_data_pays():
        found = _ray_content_pass(source, mode, side)
        if found is not None:
            return found
    n = len(source.names)
    ok, digests, resized = np.zeros(n, bool), np.zeros(n, "S32"), 0
    for s in tqdm(range(0, n, STREAM_BATCH), disable=not progress, desc="reading images"):
        rows = np.arange(s, min(s + STREAM_BATCH, n))
        out = _hash_cells(source.cells(rows), mode, side)
        ok[rows], digests[rows], resized = out["ok"], out["sha256"], resized + int(out["resized"].sum())
    return {"ok": ok, "sha256": digests, "resized": np.array(resized)}


def ray_data_pays() -> bool:
    """The one rule of where a content pass runs on the Ray engine: on Ray Data where the running cluster
    has more CPUs than this machine, else here. On one machine Ray Data's pass measured 2.5 to 3.9 times
    this process's (bench/ingest.py, 2 CPUs: a fixed 7 to 10 s per execution against 4 s of hashing)."""
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("CPU", 0.0) > (os.cpu_count() or 1)


def _hash_cells(cells: list, mode: str, side: int) -> dict[str, np.ndarray]:
    """{ok, sha256, resized} (each (b,)) of image cells (paths or bytes): the one content rule, wherever it runs."""
    from memviz.data.folder import _pixels

    ok, digests, resized = np.zeros(len(cells), bool), np.zeros(len(cells), "S32"), np.zeros(len(cells), bool)
    for j, cell in enumerate(cells):
        try:
            array, _, size = _pixels(cell, mode, side)
        except Exception:  # noqa: BLE001 - a file cut short or not an image: skipped, noted by the caller
            continue
        resized[j] = size != (side, side)
        ok[j], digests[j] = True, hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest()
    return {"ok": ok, "sha256": digests, "resized": resized}


class _RayHash:
    """Ray Data's batch function of the content pass: {image cells[, path | __key__]} -> {[path | __key__,] ok,
    sha256, resized}."""

    def __init__(self, column: str, mode: str, side: int, base: str):
        self.column, self.mode, self.side, self.base = column, mode, side, base

    def __call__(self, batch: dict) -> dict:
        cells = [_plain_cell(v, Path(self.base), Notes()) for v in batch[self.column]]  # notes: said at open
        out = _hash_cells(cells, self.mode, self.side)
        out["sha256"] = out["sha256"].view(np.uint8).reshape(-1, 32)  # Arrow would cut bytes strings at a NUL
        return {**{k: batch[k] for k in ("path", "__key__") if k in batch}, **out}  # what rows are matched by


def _ray_content_pass(source: _Source, mode: str, side: int) -> dict[str, np.ndarray] | None:
    """The content pass on Ray Data: the source's own files read by its readers (``read_parquet``,
    ``read_webdataset``, ``read_binary_files``) on the cluster, each block hashed where it is read; only
    the digests come back. Rows are matched by order (Parquet, shards: checked against the shards' keys)
    or by path (folders). None where Ray's reading does not line up with the source's rows (then the
    caller reads them here)."""
    try:
        import ray
    except ImportError:
        raise ValueError('Reading with Ray Data needs Ray: pip install "memviz[ray]".') from None
    if not ray.is_initialized():
        raise ValueError("Reading with Ray Data needs a running Ray (memviz.runner.ray_runner.RayRunner.start).")
    if source.fmt in ("save_to_disk", "arrow"):
        return None
    context = ray.data.DataContext.get_current()
    order, context.execution_options.preserve_order = context.execution_options.preserve_order, True
    n = len(source.names)
    try:
        if source.fmt == "parquet":
            ds = ray.data.read_parquet([str(f) for f in source.files]).select_columns([source.column])
        elif source.fmt == "webdataset":
            ds = ray.data.read_webdataset([str(f) for f in source.files], decoder=None)
            ds = ds.select_columns([source.column, "__key__"])
        else:  # an image folder: its files, matched back by path
            paths = [str(Path(f).resolve()) for f in source.files]
            ds = ray.data.read_binary_files(paths, include_paths=True)
        column = source.column if source.fmt in ("parquet", "webdataset") else "bytes"
        hashed = ds.map_batches(_RayHash(column, mode, side, str(source.base)), batch_format="numpy")
        parts = list(hashed.iter_batches(batch_size=None, batch_format="numpy"))
    finally:
        context.execution_options.preserve_order = order
    ok, digests, resized = np.zeros(n, bool), np.zeros(n, "S32"), np.zeros(n, bool)
    if "path" in (parts[0] if parts else {}):
        where = {p: i for i, p in enumerate(str(Path(f).resolve()) for f in source.files)}
        rows = np.array([where[str(Path(p).resolve())] for part in parts for p in part["path"]], np.int64)
    else:
        rows = np.arange(sum(len(part["ok"]) for part in parts))
    if len(rows) != n:
        log.warning("Ray Data read %d images where %d were listed; hashed here instead.", len(rows), n)
        return None
    if source.keys is not None and [str(k) for part in parts for k in part["__key__"]] != source.keys:
        log.warning("Ray Data reads these shards in another order than datasets does; hashed here instead.")
        return None
    ok[rows], resized[rows] = (np.concatenate([part[name] for part in parts]) for name in ("ok", "resized"))
    digests[rows] = np.ascontiguousarray(np.concatenate([part["sha256"] for part in parts]), np.uint8).view("S32")[:, 0]
    return {"ok": ok, "sha256": digests, "resized": np.array(int(resized.sum()))}


def _decode_rows(source: _Source, rows: np.ndarray, mode: str, side: int) -> torch.Tensor:
    """(b, C, H, W) float32 in [-1, 1] of source rows ``rows``, as the in-memory reader decodes them."""
    from memviz.data.folder import _pixels

    arrays = []
    for i, cell in zip(rows, source.cells(rows)):
        try:
            arrays.append(_pixels(cell, mode, side)[0])
        except Exception as exc:  # noqa: BLE001 - it decoded in the content pass: the file changed since
            raise ValueError(f"{source.names[int(i)]} no longer decodes ({exc}); reopen the dataset.") from None
    c = 1 if mode == "L" else 3
    if not arrays:
        return torch.empty((0, c, side, side))
    pix = np.stack(arrays)
    return from_uint8(pix[:, None] if pix.ndim == 3 else pix.transpose(0, 3, 1, 2))


def _first_shape(source: _Source, channels: int | None, resolution: int | None, where: Path) -> tuple[str, int]:
    """(PIL mode, side) of the stream: asked for, else the first decodable image's."""
    from memviz.data.folder import GRAY_MODES, _open

    if channels not in (None, 1, 3):
        raise ValueError(f"Images are read with 1 (grayscale) or 3 (RGB) channels; {channels!r} were asked for.")
    for s in range(0, min(len(source.names), 64)):
        try:
            with _open(source.cells(np.array([s]))[0]) as im:
                mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if im.mode in GRAY_MODES else "RGB")
                return mode, int(resolution or im.size[0])
        except Exception:  # noqa: BLE001 - the next one
            continue
    raise ValueError(f"None of the first images in {where} could be decoded; check the files.")


# ---- sources ----------------------------------------------------------------------------------------------


def _source(p: Path, caption_column, image_column, notes: Notes) -> _Source:
    from memviz.data.folder import TABLE_SUFFIXES, _folder_rows, _saved_by_datasets

    tars = shards(p)
    if tars:
        return _table_source(_hf("webdataset", tars), p, caption_column, image_column, notes, "webdataset", tars)
    if p.is_dir() and _saved_by_datasets(p):
        import datasets

        saved = datasets.load_from_disk(str(p))
        if isinstance(saved, datasets.DatasetDict):
            saved = saved["train"] if "train" in saved else saved[next(iter(saved))]
        files = [Path(f["filename"]) for f in saved.cache_files]
        return _table_source(saved, p, caption_column, image_column, notes, "save_to_disk", files)
    if p.is_dir():
        rows, classes, fmt = _folder_rows(p, caption_column, notes)
        images = [r.image for r in rows]
        captioned = any(r.caption is not None for r in rows)
        return _Source(
            lambda idx: [images[int(i)] for i in idx],
            [r.name for r in rows],
            [r.caption or "" for r in rows] if captioned else None,
            None if classes is None else np.array([r.label for r in rows], dtype=np.int64),
            classes,
            fmt,
            images,  # type: ignore[arg-type]
        )
    if p.is_file() and p.suffix.lower() in (".parquet", ".arrow"):
        return _table_source(_hf(p.suffix.lower()[1:], [p]), p.parent, caption_column, image_column, notes,
                             p.suffix.lower()[1:], [p])  # fmt: skip
    if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES:
        raise ValueError(f"{p.name}: a {p.suffix} table is read whole; give it without streaming (it is small).")
    raise ValueError(f"No data memviz streams at {p}; give an image folder, a Parquet or Arrow table, a "
                     "save_to_disk folder, or WebDataset .tar shards.")  # fmt: skip


def _hf(builder: str, files: list[Path]):
    """A memory-mapped ``datasets.Dataset`` of ``files`` (its Arrow cache in memviz's store)."""
    import datasets

    from memviz.io.cache import cache_dir

    try:
        return datasets.load_dataset(
            builder, data_files={"train": [str(f) for f in files]}, split="train", cache_dir=str(cache_dir() / "hf")
        )
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; one sentence at the boundary
        raise ValueError(f"{files[0]} could not be read as {builder} ({exc.__class__.__name__}: {exc}).") from None


def _table_source(ds, base: Path, caption_column, image_column, notes: Notes, fmt: str, files: list[Path]) -> _Source:
    import datasets

    columns = list(ds.column_names)
    typed = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    names = IMAGE_COLUMNS + (WDS_IMAGE if fmt == "webdataset" else ())
    image = image_column or (typed[0] if typed else pick_column(columns, None, names, base))
    if image is None or image not in columns:
        raise ValueError(f"{base} has no image column (it has {', '.join(columns[:12])}); name it with image_column=.")
    if isinstance(ds.features[image], datasets.Image):
        ds = ds.cast_column(image, datasets.Image(decode=False))
    caption = pick_column(columns, caption_column, CAPTION_COLUMNS + (("txt",) if fmt == "webdataset" else ()), base)
    captions, unusable = None, []
    if caption is not None:
        captions = []
        for i, text in enumerate(ds[caption]):
            value, why = caption_text(text)
            if why:
                notes.add(SKIP_CAPTION, f"{base.name}#{i} ({why})")
                unusable.append(i)
            captions.append(value or "")
    classes = next((c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)), None)
    labels = None if classes is None else np.array([-1 if v is None else v for v in ds[classes]], dtype=np.int64)
    column = ds.select_columns([image])

    def cells(idx: np.ndarray) -> list:
        return [_plain_cell(value, base, notes) for value in column[[int(i) for i in idx]][image]]

    label = base.name if fmt != "parquet" else files[0].name
    keys = list(ds["__key__"]) if fmt == "webdataset" and "__key__" in columns else None
    return _Source(cells, [f"{label}#{i}" for i in range(len(ds))], captions, labels,
                   ds.features[classes].names if classes else None, fmt, files, np.array(unusable, np.int64),
                   image, base, keys)  # fmt: skip


def _plain_cell(value, base: Path, notes: Notes):
    """A table's image cell as ``_pixels`` reads it: bytes, or a local path (resolved inside ``base``; b"" if absent)."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, str):
        found = local_file(value, base, base, notes, str(base))
        value = b"" if found is None else found[1]
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value
