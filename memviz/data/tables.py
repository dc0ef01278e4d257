"""The rows of a user's image+caption dataset, before any pixel is decoded: where each image is, its
caption, its label. Read from tables (``.parquet``, ``.csv``, ``.tsv``, ``.arrow``) and from folders written
by ``datasets.Dataset.save_to_disk``, with pyarrow and pandas (``datasets`` itself is never imported).

Every reader bounds what it reads before reading it (the file's size, its rows, a Parquet file's
uncompressed size), refuses an image path that leads outside the table's folder, and says what it
skipped in ``Notes``: plain sentences, each said once, naming at most five items.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MAX_ROWS = 1_000_000  # rows a table or folder may hold (the images are bounded again by MEMVIZ_MAX_BYTES)
CAPTION_COLUMNS = ("text", "caption", "prompt")
IMAGE_COLUMNS = ("image", "img", "file_name", "image_path", "path", "file", "filename", "filepath")
SNIFF_BYTES = 64 * 2**10
SKIP_CAPTION = "Skipped {n} image{s} whose caption cannot be used"


@dataclass
class Row:
    """One image to decode.

    Attributes:
        name (str): where it came from, for ``meta["files"]``: a path relative to the folder or table's
            folder, or ``"<table>#<row>"`` (row counted from 0) for bytes stored in the table.
        image (Path | bytes): the image file, or its encoded bytes.
        caption (str | None): its caption; None where the dataset has no captions.
        label (int | None): its class index, where the dataset has classes (-1: none).
    """

    name: str
    image: Path | bytes
    caption: str | None = None
    label: int | None = None


class Notes:
    """The sentences for ``meta["notes"]``, in the order first said, each once.

    ``say`` keeps a whole sentence; ``add`` files one name under a heading such as
    ``"Skipped {n} unreadable image{s}"`` (placeholders ``{n} {s} {are} {have} {where}``), said at the
    end as one sentence listing at most five names, then "and N more".
    """

    def __init__(self) -> None:
        self._said: dict[tuple[str, str], list[str] | None] = {}

    def say(self, sentence: str) -> None:
        """Keep ``sentence`` (once)."""
        self._said.setdefault((sentence, ""), None)

    def add(self, heading: str, name: str, where: str = "") -> None:
        """File ``name`` under ``heading`` about ``where`` (a file's name)."""
        names = self._said.setdefault((heading, where), [])
        names.append(name)  # type: ignore[union-attr]

    def sentences(self) -> list[str]:
        """Every sentence, in order."""
        out = []
        for (heading, where), names in self._said.items():
            if names is None:
                out.append(heading)
                continue
            one = len(names) == 1
            words = dict(n=f"{len(names):,}", s="" if one else "s", are="is" if one else "are", where=where)
            out.append(f"{heading.format(**words, have='has' if one else 'have')}: {listing(names)}.")
        return out

    def __bool__(self) -> bool:
        return bool(self._said)


def listing(names: list[str], most: int = 5) -> str:
    """``"a, b, c"``; past ``most`` names, ``"a, ..., e and 7 more"``."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most:,} more"


def check_rows(n: int, where: Path | str) -> None:
    """Refuse a table of more than ``MAX_ROWS`` rows."""
    if n > MAX_ROWS:
        raise ValueError(f"{where} has more than {MAX_ROWS:,} rows; split it into smaller tables.")


def pick_column(columns: list[str], wanted: str | None, choices: tuple[str, ...], where: Path | str) -> str | None:
    """The column named ``wanted`` (it must exist), else the first of ``choices`` present (any case), else None."""
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{where} has no column {wanted!r}; it has {listing([repr(c) for c in columns], 12)}.")
        return wanted
    for choice in choices:
        for c in columns:
            if c.lower() == choice:
                return c
    return None


def caption_text(value: Any) -> tuple[str | None, str | None]:
    """One caption cell: ``(text, None)`` if usable (``""`` or None: there is none), ``(None, why)`` if not.

    Usable: text (or a number) passing ``memviz.io.guard.check_prompt``.
    """
    from memviz.io.guard import MAX_PROMPT_CHARS, check_prompt

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"a caption that is {type(value).__name__}, not text"
    text = str(value)
    try:
        check_prompt(text)
    except ValueError:
        if len(text) > MAX_PROMPT_CHARS:
            return None, f"a caption of {len(text):,} characters; at most {MAX_PROMPT_CHARS:,}"
        return None, "a caption with control characters"
    return text, None


def captioned_row(row: Row, value: Any, notes: Notes, where: str) -> Row | None:
    """``row`` with the caption in ``value``; None (noted) when that caption cannot be used. A missing
    or empty caption is the empty prompt (noted)."""
    text, why = caption_text(value)
    if why:
        notes.add(SKIP_CAPTION, f"{row.name} ({why})")
        return None
    if not text:
        notes.add("{n} image{s} {have} no caption in {where} (read as the empty prompt)", row.name, where)
    row.caption = text or ""
    return row


def local_file(text: str, base: Path, root: Path, notes: Notes, where: str) -> tuple[str, Path] | None:
    """The file ``text`` names, relative to ``base`` (or absolute): ``(its path relative to root, the path)``.

    Backslashes read as ``/`` and a leading ``./`` is dropped. None (noted) for a URL, for a path that
    leads outside ``root`` (``..``, absolute elsewhere, or a link out), and for a file that is not there.
    """
    clean = text.replace("\\", "/")
    if "://" in clean:
        notes.add("Skipped {n} image{s} named by a URL in {where} (memviz reads local files only)", clean, where)
        return None
    try:
        top = Path(os.path.abspath(root))
        path = Path(os.path.normpath(Path(os.path.abspath(base)) / clean))
        inside = path.is_relative_to(top) and path.resolve().is_relative_to(top.resolve())
        there = inside and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        notes.add("Skipped {n} unusable image path{s} in {where}", repr(clean[:60]), where)
        return None
    if not inside:
        notes.add("Refused {n} image path{s} in {where} that lead outside its folder", clean, where)
        return None
    name = path.relative_to(top).as_posix()
    if not there:
        notes.add("{where} names {n} image file{s} that {are} not there", name, where)
        return None
    return name, path


def image_row(value: Any, name: str, base: Path, notes: Notes, where: str) -> Row | None:
    """One image cell: bytes, a ``{"bytes", "path"}`` struct (as ``datasets.Image`` stores it), or a path
    (see ``local_file``). ``name`` (``"<table>#<row>"``) names embedded bytes. None (noted) for no image."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return Row(name, bytes(value))
    if isinstance(value, str) and value:
        found = local_file(value, base, base, notes, where)
        return None if found is None else Row(found[0], found[1])
    notes.add("Skipped {n} row{s} of {where} with no image", f"row {name.rpartition('#')[2]}", where)
    return None


@dataclass
class Table:
    """A table's schema, and a reader of the columns asked for.

    Attributes:
        where (Path): the file (or folder) read, for messages.
        columns (list[str]): its column names.
        types (dict): pyarrow type of each column (empty for CSV: all text).
        features (dict): ``datasets`` features from the schema's metadata, where it was written by ``datasets``.
        read (Callable[[list[str]], dict[str, list]]): the columns asked for, as Python lists of equal length.
    """

    where: Path
    columns: list[str]
    types: dict
    features: dict
    read: Callable[[list[str]], dict[str, list]]


def read_rows(table: Table, base: Path, label: str, caption_column: str | None, image_column: str | None, notes: Notes):
    """Rows of ``table``, one image each, and its class names (a ``ClassLabel`` column) or None.

    ``base``: the folder image paths are relative to (and must stay inside); ``label``: the table's name in
    ``meta["files"]`` (``"<label>#<row>"``) and in notes.
    """
    image = _image_column(table, image_column, notes)
    caption = pick_column(table.columns, caption_column, CAPTION_COLUMNS, table.where)
    classes = next((c for c in table.columns if table.features.get(c, {}).get("_type") == "ClassLabel"), None)
    if caption is None and classes is None:
        notes.say(f"{label} has no caption column (text, caption or prompt); read without captions.")
    data = table.read([c for c in dict.fromkeys((image, caption, classes)) if c])
    rows = []
    for i, cell in enumerate(data[image]):
        row = image_row(cell, f"{label}#{i}", base, notes, label)
        if row and caption:
            row = captioned_row(row, data[caption][i], notes, label)
        if row and classes:
            row.label = -1 if data[classes][i] is None else int(data[classes][i])
        if row:
            rows.append(row)
    names = table.features[classes].get("names") if classes else None
    return rows, list(names) if names else None


def _image_column(table: Table, wanted: str | None, notes: Notes) -> str:
    """The image column: ``wanted``, else a ``datasets.Image`` column (one named image first), else a
    ``{bytes, path}`` struct, else one named image, img, file_name, image_path, path, file, ..."""
    if wanted is not None:
        return pick_column(table.columns, wanted, (), table.where)  # type: ignore[return-value]
    typed = [c for c in table.columns if table.features.get(c, {}).get("_type") == "Image" or _is_image(table, c)]
    typed.sort(key=lambda c: c.lower() not in IMAGE_COLUMNS[:2])
    if len(typed) > 1:
        notes.say(f"{table.where.name} has {len(typed)} image columns ({', '.join(typed)}); read {typed[0]!r}.")
    found = typed[0] if typed else pick_column(table.columns, None, IMAGE_COLUMNS, table.where)
    if found is None:
        raise ValueError(
            f"{table.where} has no image column (a datasets.Image column, or one named image, img or file_name); "
            f"name it with image_column= (it has {listing([repr(c) for c in table.columns], 12)})."
        )
    return found


def _is_image(table: Table, column: str) -> bool:
    import pyarrow as pa

    kind = table.types.get(column)
    return isinstance(kind, pa.StructType) and {"bytes", "path"} <= {kind.field(i).name for i in range(kind.num_fields)}


def _features(schema) -> dict:
    """The ``datasets`` features a schema's metadata declares ({column: {"_type": ...}}), or {}."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}
    return features if isinstance(features, dict) else {}


def open_parquet(path: Path) -> Table:
    """A ``.parquet`` file: its row count is bounded and the uncompressed size of the columns read is
    checked against ``MEMVIZ_MAX_BYTES`` before they are read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from memviz.io.guard import check_bytes

    try:
        f = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a readable Parquet file ({exc.__class__.__name__}).") from None
    md = f.metadata
    check_rows(md.num_rows, path)

    def read(columns: list[str]) -> dict[str, list]:
        size = sum(
            g.column(j).total_uncompressed_size
            for g in (md.row_group(i) for i in range(md.num_row_groups))
            for j in range(g.num_columns)
            if g.column(j).path_in_schema.split(".")[0] in columns
        )
        check_bytes(size, f"The columns {', '.join(columns)} of {path}")
        try:
            return f.read(columns=columns).to_pydict()
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{path} is not a readable Parquet file ({exc.__class__.__name__}).") from None

    schema = f.schema_arrow
    return Table(path, schema.names, dict(zip(schema.names, schema.types)), _features(schema), read)


def open_arrow(files: list[Path], where: Path) -> Table:
    """Arrow IPC files (the stream format ``datasets`` writes, or the file format), read as one table;
    their sizes on disk are checked together against ``MEMVIZ_MAX_BYTES`` first."""
    import pyarrow as pa

    from memviz.io.guard import check_bytes

    check_bytes(sum(f.stat().st_size for f in files), f"The data files of {where}")
    schema = _arrow_table(files[0], schema_only=True)

    def read(columns: list[str]) -> dict[str, list]:
        tables = [_arrow_table(f).select(columns) for f in files]
        check_rows(sum(len(t) for t in tables), where)
        return pa.concat_tables(tables).to_pydict()

    return Table(where, schema.names, dict(zip(schema.names, schema.types)), _features(schema), read)


def _arrow_table(path: Path, schema_only: bool = False):
    """The table in one Arrow IPC file (stream or file format), or only its schema."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    for opener in (ipc.open_stream, ipc.open_file):
        try:
            with pa.memory_map(str(path)) as source:
                reader = opener(source)
                return reader.schema if schema_only else reader.read_all()
        except (pa.ArrowInvalid, OSError):
            continue
    raise ValueError(f"{path} is not a readable Arrow file.")


def open_csv(path: Path, notes: Notes) -> Table:
    """A ``.csv`` (delimiter sniffed from the first 64 KiB) or ``.tsv`` table, UTF-8, every cell read as
    text exactly as written (nothing read as NaN). Lines with more cells than the header are skipped (noted)."""
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else _delimiter(path)
    bad: list[list[str]] = []
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            engine="python",
            on_bad_lines=bad.append,
            nrows=MAX_ROWS + 1,
        )
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as UTF-8.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise ValueError(f"{path} is not a readable table ({str(exc).splitlines()[0].rstrip('.')}).") from None
    check_rows(len(frame), path)
    for cells in bad:
        notes.add("Skipped {n} line{s} of {where} with more cells than its header", repr(cells[0][:60]), path.name)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    return Table(path, columns, {}, {}, lambda cols: {c: frame[c].tolist() for c in cols})


def _delimiter(path: Path) -> str:
    """The delimiter ``csv.Sniffer`` finds in the first 64 KiB (``,`` ``;`` tab or ``|``), else ``,``."""
    with path.open("rb") as f:
        sample = f.read(SNIFF_BYTES).decode("utf-8", errors="replace")
    if len(sample) >= SNIFF_BYTES // 2 and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        found = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","
    return found if found in sample.partition("\n")[0] else ","


def read_table(path: Path, caption_column: str | None, image_column: str | None, notes: Notes):
    """Rows of a ``.parquet``, ``.csv``, ``.tsv`` or ``.arrow`` table and its class names (or None); image
    paths in it are relative to its folder."""
    from memviz.io.guard import check_file

    check_file(path)
    suffix = path.suffix.lower()
    table = open_parquet(path) if suffix == ".parquet" else open_arrow([path], path) if suffix == ".arrow" else None
    table = table or open_csv(path, notes)
    return read_rows(table, path.parent, path.name, caption_column, image_column, notes)


def read_saved(root: Path, caption_column: str | None, image_column: str | None, notes: Notes):
    """Rows of a folder written by ``datasets.Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``: its
    ``train`` split, or its only one) and its class names (or None)."""
    label, folder = root.name, root
    if (root / "dataset_dict.json").is_file():
        split = _split(root, notes)
        label, folder = f"{root.name}/{split}", root / split
    state = _json(folder / "state.json")
    try:
        names = [str(d["filename"]) for d in state["_data_files"]]
    except (KeyError, TypeError):
        raise ValueError(f"{folder / 'state.json'} lists no data files (_data_files).") from None
    files = [_inside(folder, n, folder / "state.json") for n in names]
    if not files:
        raise ValueError(f"{folder / 'state.json'} lists no data files (_data_files).")
    return read_rows(open_arrow(files, folder), folder, label, caption_column, image_column, notes)


def _split(root: Path, notes: Notes) -> str:
    """The split of a ``DatasetDict`` folder to read: ``train``, or its only split."""
    splits = _json(root / "dataset_dict.json").get("splits")
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits):
        raise ValueError(f"{root / 'dataset_dict.json'} lists no splits.")
    split = "train" if "train" in splits else splits[0] if len(splits) == 1 else None
    if split is None:
        raise ValueError(f"{root} has no train split (it has {', '.join(splits)}); give one split's folder.")
    others = [s for s in splits if s != split]
    also = f" (it also has {', '.join(others)}, not read)" if others else ""
    notes.say(f"Read the {split} split of {root.name}{also}.")
    _inside(root, split, root / "dataset_dict.json")
    return split


def _inside(folder: Path, name: str, listed_in: Path) -> Path:
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()) or not path.exists():
        raise ValueError(f"{listed_in} names {name!r}, which is not in {folder}.")
    return path


def _json(path: Path) -> dict:
    from memviz.io.guard import check_file

    if not path.is_file():
        raise ValueError(f"{path} is missing; is this a folder written by datasets' save_to_disk?")
    check_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path} is not readable JSON.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object.")
    return data
