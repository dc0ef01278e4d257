"""Prompt sets as files: the one reader of the CLI (``memviz scan``, ``eval-detection``,
``mitigate``), the app's Scan page and the Python API.

Formats, by suffix:

- ``.txt``: one prompt a line; blank lines and lines starting with ``#`` are skipped;
- ``.jsonl``: one JSON object a line, the prompt under ``prompt``, ``caption`` or ``text``
  (Wen et al.'s ``sdv1_500_memorized.jsonl``: ``{"caption", "index", "url"}``);
- ``.csv`` / ``.tsv``: a header row, the delimiter sniffed (NeMo's ``memorized_laion_prompts.csv``
  is ``Caption;URL;type;mean_sscd;max_sscd;Index``);
- ``.parquet`` (Webster's prompt tables).

Every other column is kept as it is. Text is kept byte for byte (no stripping, no NA parsing).
An optional label column (1/0, true/false, yes/no, or named classes with ``positive``) says which
prompts are memorized; an optional split column groups them.

Example:
    >>> ps = read_prompts("memorized_laion_prompts.csv", label_column="type", positive=["MV", "TV", "RV"])
    >>> ps.prompts[:2], ps.labels[:2], ps.table.columns.tolist()
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from memviz.io.guard import check_bytes

PROMPT_KEYS = ("prompt", "caption", "text")  # looked for in this order, case-insensitively
SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv", ".parquet")
MAX_PROMPTS = 1_000_000  # a prompt list longer than this is refused before it is read whole
MAX_PROMPT_FILE_BYTES = 256 * 2**20
TRUE = {"1", "true", "yes", "y", "t", "memorized", "positive"}
FALSE = {"0", "false", "no", "n", "f", "ordinary", "negative"}


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one file, in file order, with every column the file holds.

    Attributes:
        source (str): the file it was read from (or "<given>").
        table (pandas.DataFrame): (P, ...) column ``prompt`` first, then every column of the file.
        labels (np.ndarray | None): (P,) bool, True for memorized, when a label column was given.
        splits (np.ndarray | None): (P,) str, the split of each prompt, when a split column was given.
        label_column, split_column (str | None): which columns those came from.
        duplicates (dict[str, int]): each prompt the file holds more than once, and how often
            (kept: every row is scored and counted).
    """

    source: str
    table: object
    labels: np.ndarray | None = None
    splits: np.ndarray | None = None
    label_column: str | None = None
    split_column: str | None = None
    duplicates: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def prompts(self) -> list[str]:
        """The P prompts, byte for byte."""
        return self.table["prompt"].tolist()

    def describe(self) -> str:
        """One sentence: how many prompts, labelled how, and the duplicates."""
        parts = [f"{len(self):,} prompts from {Path(self.source).name}"]
        if self.labels is not None:
            parts.append(f"{int(self.labels.sum()):,} labelled memorized by {self.label_column!r}")
        if self.splits is not None:
            parts.append(f"splits {', '.join(sorted(set(self.splits)))}")
        if self.duplicates:
            extra = sum(self.duplicates.values()) - len(self.duplicates)
            parts.append(f"{extra:,} repeats of {len(self.duplicates):,} prompts (kept)")
        return "; ".join(parts) + "."


def from_list(prompts: Sequence[str], labels: Sequence[bool] | None = None, source: str = "<given>") -> PromptSet:
    """A ``PromptSet`` of prompts given in memory (the app's text box, a notebook's list)."""
    import pandas as pd

    table = pd.DataFrame({"prompt": [str(p) for p in prompts]})
    lab = None if labels is None else np.asarray(labels, dtype=bool)
    if lab is not None and len(lab) != len(table):
        raise ValueError(f"Got {len(lab)} labels for {len(table)} prompts; give one per prompt.")
    return PromptSet(source, table, lab, duplicates=_duplicates(table["prompt"]))


def read_prompts(
    path: str | Path,
    *,
    prompt_column: str | None = None,
    label_column: str | None = None,
    positive: Sequence[str] | str | None = None,
    split_column: str | None = None,
    data: bytes | None = None,
) -> PromptSet:
    """Read a prompt file (see the module docstring for the formats).

    Args:
        prompt_column: the column (or JSON key) holding the prompt; default the first of
            ``PROMPT_KEYS`` present (case-insensitive).
        label_column: a column saying which prompts are memorized: 1/0, true/false, yes/no; or
            named classes, each value in ``positive`` (a list, or ``"MV,TV,RV"``) memorized and every
            other one ordinary.
        split_column: a column whose values group the prompts into splits (one evaluation row each).
        data: the file's bytes, when they come from an upload rather than the disk (``path`` then
            only names it and gives its suffix).

    Raises:
        ValueError: one sentence naming the file (and the line, where there is one) and what is wrong.
    """
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if label_column is None and positive:
        raise ValueError("positive names the memorized classes of a label column; give label_column too.")
    if suffix not in SUFFIXES:
        raise ValueError(f"{path.name}: a prompt file must end in {', '.join(SUFFIXES)}; got {suffix or 'no suffix'}.")
    if data is None:
        if not path.is_file():
            raise ValueError(f"No prompt file at {path}.")
        size = path.stat().st_size
        check_bytes(size, f"The prompt file {path}")
        if size > MAX_PROMPT_FILE_BYTES:
            raise ValueError(f"{path} is {size / 2**20:.0f} MiB; a prompt file may hold at most 256 MiB.")
        data = path.read_bytes()
    elif len(data) > MAX_PROMPT_FILE_BYTES:
        raise ValueError(f"{path.name} is {len(data) / 2**20:.0f} MiB; a prompt file may hold at most 256 MiB.")
    if suffix == ".parquet":
        table = _parquet(path, data)
    else:
        text = _text(path, data)
        table = {".txt": _txt, ".jsonl": _jsonl}.get(suffix, _delimited)(path, text)
    if len(table) > MAX_PROMPTS:
        raise ValueError(f"{path.name} holds {len(table):,} prompts; at most {MAX_PROMPTS:,} are read.")
    if len(table) == 0:
        raise ValueError(f"{path.name} holds no prompts.")
    column = "prompt" if suffix == ".txt" else _prompt_column(path, table, prompt_column)
    prompts = table[column]
    bad = [i for i, p in enumerate(prompts) if not (p is None or isinstance(p, str))]
    if bad:
        v = prompts.iloc[bad[0]]
        what = "a number" if isinstance(v, (int, float, np.number)) else f"a {type(v).__name__}"
        raise ValueError(f"{path.name}: the prompt of row {bad[0] + 1} in {column!r} is {what}, not text.")
    out = pd.concat(
        [pd.DataFrame({"prompt": prompts.fillna("").astype(object)}), table.drop(columns=[column])], axis=1
    ).reset_index(drop=True)
    labels = None if label_column is None else _labels(path, table, label_column, positive)
    splits = None
    if split_column is not None:
        splits = _column(path, table, split_column).astype(str).to_numpy()
    return PromptSet(str(path), out, labels, splits, label_column, split_column, _duplicates(out["prompt"]))


def _text(path: Path, data: bytes) -> str:
    """The file as UTF-8 (a BOM dropped); a byte that is not UTF-8 is named with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path.name} line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8."
        ) from None


def _txt(path: Path, text: str):
    import pandas as pd

    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if "\x00" in line:
            raise ValueError(f"{path.name} line {n} holds a NUL byte; a .txt prompt file is text, one prompt a line.")
    keep = [line[:-1] if line.endswith("\r") else line for line in lines]
    return pd.DataFrame({"prompt": [p for p in keep if p.strip() and not p.startswith("#")]})


def _jsonl(path: Path, text: str):
    import pandas as pd

    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name} line {n} is not JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path.name} line {n} is a JSON {type(row).__name__}, not an object with a prompt.")
        rows.append(row)
    return pd.DataFrame(rows)


def _delimited(path: Path, text: str):
    import pandas as pd

    head = text[: 64 * 1024]
    try:
        sep = csv.Sniffer().sniff(head.split("\n", 1)[0] or head, delimiters=",;\t|").delimiter
    except csv.Error:  # a single column: the default of the suffix
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path.name} holds no prompts.")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):  # pandas would shift the columns or drop the rest silently
                raise ValueError(
                    f"{path.name} line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)} ({sep!r}-separated); quote fields that hold {sep!r}."
                )
            rows.append(row)
    except csv.Error as exc:
        raise ValueError(f"{path.name} line {reader.line_num} is not a {sep!r}-separated row ({exc}).") from None
    if len(set(header)) != len(header):
        raise ValueError(f"{path.name} names a column twice in its header ({', '.join(header)}).")
    return pd.DataFrame(rows, columns=header, dtype=object)


def _parquet(path: Path, data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        if pf.metadata.num_rows > MAX_PROMPTS:
            raise ValueError(f"{path.name} holds {pf.metadata.num_rows:,} prompts; at most {MAX_PROMPTS:,} are read.")
        return pf.read().to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path.name} is not a readable Parquet file ({exc.__class__.__name__}).") from None


def _prompt_column(path: Path, table, given: str | None) -> str:
    if given is not None:
        return _column(path, table, given).name
    lower = {str(c).lower(): c for c in table.columns}
    for key in PROMPT_KEYS:
        if key in lower:
            return lower[key]
    raise ValueError(
        f"{path.name} has no prompt column ({', '.join(PROMPT_KEYS)}); its columns are "
        f"{', '.join(map(str, table.columns)) or 'none'}: name one with --prompt-column."
    )


def _column(path: Path, table, name: str):
    if name not in table.columns:
        raise ValueError(f"{path.name} has no column {name!r}; its columns are {', '.join(map(str, table.columns))}.")
    return table[name]


def _labels(path: Path, table, name: str, positive: Sequence[str] | None) -> np.ndarray:
    """(P,) bool from a label column: 1/0, true/false, yes/no, or each value in ``positive`` memorized."""
    values = _column(path, table, name)
    text = values.map(lambda v: "" if v is None else str(v).strip())
    if isinstance(positive, str):  # "MV,TV,RV", as on the command line
        positive = positive.split(",")
    if positive:
        named = {str(p).strip() for p in positive}
        unknown = named - set(text)
        if unknown == named:
            raise ValueError(
                f"{path.name}: no value of {name!r} is one of {', '.join(sorted(named))}; "
                f"its values are {', '.join(sorted(set(text))[:8])}."
            )
        return text.isin(named).to_numpy()
    lower = text.str.lower().map(lambda v: v[:-2] if v.endswith(".0") else v)
    other = sorted(set(lower) - TRUE - FALSE)
    if other:
        raise ValueError(
            f"{path.name}: {name!r} holds values other than 1/0, true/false ({', '.join(other[:6])}); "
            f"name the memorized ones with --positive (such as --positive {','.join(other[:3])})."
        )
    return lower.isin(TRUE).to_numpy()


def _duplicates(prompts) -> dict[str, int]:
    counts = prompts.value_counts()
    return {str(k): int(v) for k, v in counts[counts > 1].items()}


def labelled_prompts(memorized: PromptSet, ordinary: PromptSet) -> PromptSet:
    """One labelled ``PromptSet`` of two files: every prompt of ``memorized`` (label True), then every
    prompt of ``ordinary`` (False); the column ``file`` says where each came from."""
    import pandas as pd

    parts = []
    for ps in (memorized, ordinary):
        part = ps.table.copy()
        part.insert(1, "file", Path(ps.source).name)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    labels = np.r_[np.ones(len(memorized), bool), np.zeros(len(ordinary), bool)]
    source = f"{Path(memorized.source).name} + {Path(ordinary.source).name}"
    return PromptSet(source, table, labels, None, "file", None, _duplicates(table["prompt"]))
