"""A user's own training data, read the way trainers store it: an image folder (Hugging Face
``imagefolder`` metadata, kohya-style ``.txt`` captions beside the images, or class sub-folders), a folder
written by ``datasets``' ``save_to_disk``, a ``.parquet`` / ``.csv`` / ``.tsv`` table, or an ``.npz``.

``load_data_source`` reads any of them into an ``ImageDataset`` whose ``meta`` says where each image came
from (``files``) and, in plain sentences, everything done to the data on the way (``notes``): what was
skipped and why, what was resized or converted. An image or caption that cannot be read is skipped,
never fatal unless no image remains. Sizes are checked from headers before any pixel is decoded.
"""

from __future__ import annotations

import json
from collections import Counter
from io import BytesIO
from pathlib import Path

import numpy as np

from memviz.data.base import ImageDataset, check_images, from_uint8
from memviz.data.tables import (
    CAPTION_COLUMNS,
    SKIP_CAPTION,
    Notes,
    Row,
    caption_text,
    captioned_row,
    check_rows,
    listing,
    local_file,
    open_csv,
    pick_column,
    read_saved,
    read_table,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
TABLE_SUFFIXES = {".parquet", ".csv", ".tsv", ".arrow"}
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")  # the first wins where a folder holds both
SIDECAR_SUFFIXES = (".txt", ".caption")
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
ORIENTATION = 0x0112  # the EXIF tag
UNREADABLE = "Skipped {n} unreadable image{s}"


def load_data_source(
    path: str | Path,
    resolution: int | None = None,
    channels: int | None = None,
    caption_column: str | None = None,
    image_column: str | None = None,
) -> ImageDataset:
    """A user's dataset, whatever the common way it is stored.

    - a folder: captions from ``metadata.jsonl`` / ``metadata.csv`` (Hugging Face ``imagefolder``: one row
      per line, ``file_name`` relative to the metadata file; images it does not name are left out), else
      from ``x.txt`` beside ``x.png`` (kohya), else class labels from sub-folders;
    - a folder written by ``datasets.Dataset.save_to_disk`` (a ``DatasetDict``'s: its ``train`` split);
    - a ``.parquet``, ``.csv``, ``.tsv`` or ``.arrow`` table, one image per row: a path relative to the
      table's folder, or the image's bytes (a ``{"bytes", "path"}`` struct as ``datasets.Image`` stores it);
    - an ``.npz`` (``load_npz``: read as it is, neither resized nor converted).

    Args:
        path: the folder or file.
        resolution: the side the images are resized to (bicubic), e.g. the model's; None: their own,
            which must then be one size.
        channels: 1 (grayscale) or 3 (RGB); None: RGB if any image has colour, else grayscale.
        caption_column: the caption column; None: ``text``, else ``caption``, else ``prompt``.
        image_column: the image column of a table; None: a ``datasets.Image`` column, else one named
            ``image``, ``img``, ``file_name``, ``image_path``, ``path``, ...

    Returns:
        images (N, C, H, W) in [-1, 1], captions (N) where the data has any, labels (N,) and class_names
        where it has classes; ``meta``: ``source``, ``format``, ``files`` (N str: each image's path relative to
        the folder, or ``"<table>#<row>"`` counted from 0 for bytes in a table; a list, so ``subset`` leaves
        it whole) and ``notes`` (list[str]).

    Raises ValueError, one sentence naming the file, for what cannot be read at all, a size over
    ``MEMVIZ_MAX_BYTES``, or no usable image.
    """
    p = Path(path).expanduser()
    if p.suffix.lower() == ".npz" and not p.is_dir():
        return load_npz(p)
    if channels not in (None, 1, 3):
        raise ValueError(f"Images are read with 1 (grayscale) or 3 (RGB) channels; {channels!r} were asked for.")
    if resolution is not None and (not float(resolution).is_integer() or resolution < 1):
        raise ValueError(f"resolution must be a positive whole number of pixels; got {resolution!r}.")
    resolution = None if resolution is None else int(resolution)
    notes = Notes()
    if p.is_dir() and _saved_by_datasets(p):
        rows, classes = read_saved(p, caption_column, image_column, notes)
        fmt = "save_to_disk"
    elif p.is_dir():
        rows, classes, fmt = _folder_rows(p, caption_column, notes)
    elif p.is_file() and p.suffix.lower() in TABLE_SUFFIXES:
        rows, classes = read_table(p, caption_column, image_column, notes)
        fmt = p.suffix.lower()[1:]
    elif not p.exists():
        raise ValueError(f"No file or folder at {p}; give an image folder, a table or an .npz.")
    else:
        raise ValueError(
            f"{p} is not data memviz reads; give an image folder, a folder saved by datasets' save_to_disk, "
            "a .parquet, .csv, .tsv or .arrow table, or an .npz."
        )
    return _dataset(p.stem if p.is_file() else p.name, p, fmt, rows, classes, resolution, channels, notes)


def load_image_folder(
    path: str | Path, resolution: int | None = None, channels: int | None = None, caption_column: str | None = None
) -> ImageDataset:
    """The folder at ``path`` (an image folder or a ``save_to_disk`` folder), as ``load_data_source`` reads it."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"No image folder at {root}; give a folder of image files.")
    return load_data_source(root, resolution, channels, caption_column)


def _saved_by_datasets(p: Path) -> bool:
    """Whether folder ``p`` was written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and any(p.glob("*.arrow")))


# ---- image folders --------------------------------------------------------------------------------------


def _folder_rows(root: Path, caption_column: str | None, notes: Notes) -> tuple[list[Row], list[str] | None, str]:
    """The rows of an image folder, its class names (or None) and which convention it follows."""
    files = _image_files(root, notes)
    if not files:
        tables = sorted(p.name for p in root.iterdir() if p.suffix.lower() in TABLE_SUFFIXES | {".npz"})
        hint = f"; it holds {listing(tables)}: give one of those" if tables else ""
        raise ValueError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}){hint}.")
    metas = _metadata_files(root, notes)
    if metas:
        return _metadata_rows(root, metas, files, caption_column, notes), None, "imagefolder metadata"
    sidecars = {f: _sidecar(f) for f in files}
    if any(sidecars.values()):
        return _sidecar_rows(root, sidecars, notes), None, "sidecar captions"
    rows, classes = _class_rows(root, files)
    return rows, classes, "imagefolder"


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts)


def _image_files(root: Path, notes: Notes) -> list[Path]:
    """(N,) the image files under ``root``, sorted; hidden ones and links leading outside it left out (noted)."""
    files = []
    top = root.resolve()
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        rel = p.relative_to(root)
        if _hidden(rel):
            notes.add("Left out {n} hidden file{s} (a name starting with '.')", rel.as_posix())
        elif not p.resolve().is_relative_to(top):
            notes.add("Refused {n} link{s} to images outside {where}", rel.as_posix(), root.name)
        else:
            files.append(p)
    check_rows(len(files), root)
    return files


def _metadata_files(root: Path, notes: Notes) -> list[Path]:
    """The metadata files under ``root`` (one per folder: ``metadata.jsonl`` before ``metadata.csv``)."""
    found: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("metadata.*")):
        if p.name in METADATA_NAMES and p.is_file() and not _hidden(p.relative_to(root)):
            found.setdefault(p.parent, []).append(p)
    chosen = []
    for both in found.values():
        both.sort(key=lambda p: METADATA_NAMES.index(p.name))
        if len(both) > 1:
            first, second = (p.relative_to(root).as_posix() for p in both)
            notes.say(f"Read {first} and left out {second} beside it; keep one of them.")
        chosen.append(both[0])
    return chosen


def _metadata_rows(root: Path, metas: list[Path], files: list[Path], caption_column: str | None, notes: Notes):
    """One row per metadata line, in order, ``file_name`` relative to the metadata file's folder (as a Hugging
    Face ``imagefolder`` reads them); images no metadata names are left out (noted)."""
    rows: list[Row] = []
    named: Counter = Counter()
    for meta in metas:
        where = meta.relative_to(root).as_posix()
        records = _jsonl_records(meta, where, notes) if meta.suffix == ".jsonl" else _csv_records(meta, notes)
        caption = pick_column(list(dict.fromkeys(k for r in records for k in r)), caption_column, CAPTION_COLUMNS, meta)
        if caption is None:
            notes.say(f"{where} has no caption column (text, caption or prompt); read without captions.")
        for record in records:
            found = local_file(record["file_name"], meta.parent, root, notes, where)
            if found is None:
                continue
            named[found[0]] += 1
            row: Row | None = Row(*found)
            if caption:
                row = captioned_row(row, record.get(caption), notes, where)
            if row:
                rows.append(row)
    for name in (n for n, k in named.items() if k > 1):
        notes.add("The metadata names {n} file{s} more than once (read once a line, as in training)", name)
    for f in files:
        if f.relative_to(root).as_posix() not in named:
            notes.add(
                "Left out {n} image{s} that no metadata file names (a Hugging Face imagefolder does too)",
                f.relative_to(root).as_posix(),
            )
    return rows


def _jsonl_records(meta: Path, where: str, notes: Notes) -> list[dict]:
    """The JSON objects of ``metadata.jsonl`` that have a ``file_name``; other lines are skipped (noted)."""
    text = _metadata_text(meta)
    check_rows(text.count("\n"), meta)
    records = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("file_name"), str):
            records.append(record)
        else:
            notes.add(
                "Skipped {n} line{s} of {where} that {are} not a JSON object with a file_name", f"line {n}", where
            )
    return records


def _metadata_text(meta: Path) -> str:
    from memviz.io.guard import check_file

    check_file(meta)
    try:
        return meta.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{meta} is not UTF-8 text; save it as UTF-8.") from None


def _csv_records(meta: Path, notes: Notes) -> list[dict]:
    """The rows of ``metadata.csv`` (every cell text as written); it must have a ``file_name`` column."""
    from memviz.io.guard import check_file

    check_file(meta)
    table = open_csv(meta, notes)
    if "file_name" not in table.columns:
        raise ValueError(f"{meta} has no file_name column; it has {listing([repr(c) for c in table.columns], 12)}.")
    data = table.read(table.columns)
    return [dict(zip(table.columns, cells)) for cells in zip(*data.values())]


def _sidecar(image: Path) -> Path | None:
    """``x.txt`` (or ``x.caption``) beside ``x.png``, if there is one."""
    return next((t for t in (image.with_suffix(s) for s in SIDECAR_SUFFIXES) if t.is_file()), None)


def _sidecar_rows(root: Path, sidecars: dict[Path, Path | None], notes: Notes) -> list[Row]:
    """One row per image, its caption from the text file beside it (surrounding whitespace dropped)."""
    rows = []
    for image, txt in sidecars.items():
        row = Row(image.relative_to(root).as_posix(), image)
        raw, why = _sidecar_text(txt) if txt else ("", None)
        text, why = (None, why) if why else caption_text(raw)
        if why:
            notes.add(SKIP_CAPTION, f"{row.name} ({why})")
            continue
        if not text:
            notes.add("{n} image{s} {have} no caption file (.txt) or an empty one (read as the empty prompt)", row.name)
        row.caption = text or ""
        rows.append(row)
    return rows


def _sidecar_text(txt: Path) -> tuple[str | None, str | None]:
    """(the caption in ``txt``, None), or (None, why it cannot be read)."""
    from memviz.io.guard import MAX_PROMPT_CHARS

    size = txt.stat().st_size
    if size > 4 * MAX_PROMPT_CHARS + 64:  # UTF-8 takes at most 4 bytes a character: too long, unread
        return None, f"a caption file of {size:,} bytes; at most {MAX_PROMPT_CHARS:,} characters"
    try:
        return txt.read_text(encoding="utf-8-sig").replace("\r\n", "\n").strip(), None
    except UnicodeDecodeError:
        return None, f"{txt.name} is not UTF-8 text"
    except OSError as exc:
        return None, f"{txt.name} cannot be read ({exc.__class__.__name__})"


def _class_rows(root: Path, files: list[Path]) -> tuple[list[Row], list[str] | None]:
    """One row per image, labelled by its folder's name (images at the top: -1) when there are sub-folders."""
    classes = sorted({f.parent.name for f in files if f.parent != root})
    rows = [Row(f.relative_to(root).as_posix(), f) for f in files]
    if not classes:
        return rows, None
    for row, f in zip(rows, files):
        row.label = classes.index(f.parent.name) if f.parent != root else -1
    return rows, classes


# ---- decoding: headers first (sizes, modes), then pixels ------------------------------------------------


def _dataset(name, source: Path, fmt: str, rows: list[Row], classes, resolution, channels, notes: Notes):
    """The ``ImageDataset`` of ``rows``: sizes checked from the headers, then each image decoded, converted
    to one mode, resized to ``resolution``; what cannot be read is skipped and said in ``notes``."""
    check_rows(len(rows), source)
    failed: list[str] = []
    heads = _headers(rows, notes, failed)
    if not heads:
        raise _nothing_left(source, failed, notes)
    mode = _mode(channels, heads, notes)
    _check_sizes(heads, mode, resolution, source)
    sizes = sorted({size for _, size, _ in heads})
    if not resolution and len(sizes) > 1:
        shown = listing([f"{w}x{h}" for w, h in sizes])
        raise ValueError(f"Images in {source} have different sizes ({shown}); pass resolution= to resize.")
    arrays, kept = _decode(heads, mode, resolution, notes, failed)
    if not kept:
        raise _nothing_left(source, failed, notes)
    pix = np.stack(arrays)
    pix = pix[:, None] if pix.ndim == 3 else pix.transpose(0, 3, 1, 2)
    captioned = any(r.caption is not None for r in kept)
    return ImageDataset(
        name,
        from_uint8(pix),
        labels=None if classes is None else np.array([r.label for r in kept], dtype=np.int64),
        captions=[r.caption or "" for r in kept] if captioned else None,
        class_names=classes,
        meta={
            "source": str(source),
            "format": fmt,
            "files": [r.name for r in kept],
            "notes": notes.sentences(),
        },
    )


def _open(image: Path | bytes):
    """``PIL.Image.open`` (lazy: the header only) on a file or encoded bytes."""
    from PIL import Image

    return Image.open(BytesIO(image) if isinstance(image, bytes) else image)


def _unreadable(row: Row, exc: Exception, notes: Notes, failed: list[str]) -> None:
    notes.add(UNREADABLE, f"{row.name} ({exc.__class__.__name__})")
    failed.append(f"{row.name} is not a readable image ({exc.__class__.__name__})")


def _headers(rows: list[Row], notes: Notes, failed: list[str]) -> list[tuple[Row, tuple[int, int], str]]:
    """(row, (width, height) once turned upright, PIL mode) of each image whose header reads; the others
    are skipped (noted). No pixel is decoded."""
    heads = []
    for row in rows:
        try:
            with _open(row.image) as im:
                size, mode = im.size, im.mode
                if im.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # turned a quarter: width and height swap
                    size = size[::-1]
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on a damaged or hostile file
            _unreadable(row, exc, notes, failed)
            continue
        heads.append((row, size, mode))
    return heads


def _mode(channels: int | None, heads: list, notes: Notes) -> str:
    """The PIL mode every image is read in: ``L`` or ``RGB`` (``channels``, else RGB if any has colour)."""
    if channels:
        return {1: "L", 3: "RGB"}[channels]
    gray = [row.name for row, _, mode in heads if mode in GRAY_MODES]
    if len(gray) == len(heads):
        return "L"
    for name in gray:
        notes.add("Read {n} grayscale image{s} as RGB, as the others have colour", name)
    return "RGB"


def _check_sizes(heads: list, mode: str, resolution: int | None, source: Path) -> None:
    """Refuse the data if its images, as float32 tensors, would exceed ``MEMVIZ_MAX_BYTES`` (from headers)."""
    from memviz.io.guard import check_bytes

    c = 1 if mode == "L" else 3
    area = sum(resolution * resolution if resolution else w * h for _, (w, h), _ in heads)
    check_bytes(2 * 4 * c * area, f"The {len(heads):,} images in {source}")  # decoded pixels and their float32 copy


def _decode(heads: list, mode: str, resolution: int | None, notes: Notes, failed: list[str]):
    """([(H, W) or (H, W, 3) uint8 per image], their rows); images that fail to decode are skipped (noted)."""
    arrays, kept, resized = [], [], Counter()
    for row, size, _ in heads:
        try:
            array, done, _ = _pixels(row.image, mode, resolution)
        except Exception as exc:  # noqa: BLE001 - a header can read and the pixels not (a file cut short)
            _unreadable(row, exc, notes, failed)
            continue
        for heading in done:
            notes.add(heading, row.name)
        if resolution and size != (resolution, resolution):
            resized[size] += 1
        arrays.append(array)
        kept.append(row)
    if resized:
        n = sum(resized.values())
        sizes = [f"{w}x{h}" + (f" ({k:,})" if len(resized) > 1 else "") for (w, h), k in resized.most_common()]
        notes.say(
            f"Resized {n:,} image{'s' if n > 1 else ''} from {listing(sizes)} to {resolution}x{resolution} "
            "(bicubic), the resolution asked for."
        )
    return arrays, kept


def _pixels(image: Path | bytes, mode: str, resolution: int | None) -> tuple[np.ndarray, list[str], tuple[int, int]]:
    """One image as (H, W) (``L``) or (H, W, 3) (``RGB``) uint8, turned upright as its EXIF says, the
    headings of the notes about what was done to it, and its (W, H) as stored (before any resize)."""
    from PIL import Image, ImageOps

    done = []
    with _open(image) as im:
        size = im.size
        if im.getexif().get(ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
            done.append("Turned {n} image{s} upright, as the EXIF orientation says")
        if im.mode in ALPHA_MODES or "transparency" in im.info:
            done.append("Dropped the transparency (alpha) of {n} image{s}")
        if mode == "L" and im.mode not in GRAY_MODES:
            done.append("Read {n} colour image{s} as grayscale (1 channel asked for)")
        if im.mode.startswith("I"):  # 16-bit: PIL's convert would clip at 255, not scale
            im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
            done.append("Scaled {n} 16-bit image{s} to 8 bits")
        im = im.convert(mode)
        if resolution and im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.BICUBIC)
        return np.asarray(im), done, size


def _nothing_left(source: Path, failed: list[str], notes: Notes) -> ValueError:
    """The one sentence when no image of ``source`` can be used."""
    said = [
        s.rstrip(".") for s in notes.sentences() if not (s.startswith("Skipped") and "unreadable" in s.split(":")[0])
    ]
    why = ([failed[0] + (f", as are {len(failed) - 1:,} more" if len(failed) > 1 else "")] if failed else []) + said
    return ValueError(f"No image in {source} can be used: {'; '.join(why) or 'it lists none'}.")


# ---- arrays -------------------------------------------------------------------------------------------


def load_npz(path: str | Path) -> ImageDataset:
    """An ``.npz`` with ``images`` (N, C, H, W) or (N, H, W) — uint8 in [0, 255] or float in
    [-1, 1] — and optional ``labels`` (N,), ``captions`` (N,) and ``lid`` (N,), read as it is (no pickle);
    ``meta["files"]`` names row i ``"<file name>#i"``."""
    import torch

    from memviz.io.files import load_npz as read
    from memviz.io.guard import check_bytes, npz_members

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}; give an .npz with an 'images' array.")
    members = npz_members(path)  # declared shapes and dtypes, before any array is read
    if "images" not in members:
        raise ValueError(f"{path} has no 'images' array (it has {sorted(members)}).")
    dtype, shape = members["images"]
    if len(shape) not in (3, 4):
        raise ValueError(f"'images' in {path} must have shape (N, C, H, W) or (N, H, W); got {shape}.")
    if shape[0] == 0:
        raise ValueError(f"'images' in {path} is empty; give at least one image.")
    if dtype.kind not in "uif":
        raise ValueError(f"'images' in {path} must be uint8 or float; got {dtype}.")
    check_bytes(int(np.prod(shape, dtype=object)) * 4, f"'images' in {path} as float32")
    for name in ("labels", "captions", "lid"):
        if name in members and members[name][1][:1] != shape[:1]:
            raise ValueError(f"'{name}' in {path} has {members[name][1][:1] or 'no'} rows but 'images' has {shape[0]}.")
    arrays = read(path, checked=True)
    x = arrays["images"]
    if x.ndim == 3:
        x = x[:, None]
    images = from_uint8(x) if x.dtype == np.uint8 else torch.as_tensor(x, dtype=torch.float32)
    check_images(images, what=f"'images' in {path}")
    caps = arrays.get("captions")
    return ImageDataset(
        path.stem,
        images,
        labels=arrays.get("labels"),
        lid=arrays.get("lid"),
        captions=None if caps is None else [str(c) for c in caps],
        meta={
            "source": str(path),
            "format": "npz",
            "files": [f"{path.name}#{i}" for i in range(len(x))],
            "notes": [],
        },
    )
