"""One runner for every dataset-wide pass (FLIPD grids, spectra, detector scores, generations).

A pass is a function from a batch of ids (training rows, prompts) to a table: a dict of
columns, each (len(batch), ...). ``run`` drives it: it skips the ids whose rows a ``RowStore``
already holds (each id addressed by a content key, so equal items are computed once),
hands the missing ones to a runner batch by batch, stores each finished batch at once (a
rerun resumes), reports progress, and returns the whole table in the order of the ids.

``LocalRunner`` (the default) calls the function in this process. ``RayRunner``
(``memviz.runner.ray_runner``) runs the same function on a Ray cluster: as a function that closes over
a loaded model cannot travel, a pass also names a ``Task``, a small picklable recipe whose
``build()`` returns the very same batch function (a Study opened from its paths, the same
method); each Ray actor builds it once (the model loaded once per worker). No estimator knows
which runner runs it; results come back to this process, which stores each batch as it arrives.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from memviz.io.cache import RowStore

BatchFn = Callable[[np.ndarray], dict[str, np.ndarray]]  # ids (b,) -> columns, each (b, ...)
log = logging.getLogger("memviz.runner.local")


_KEPT: dict | None = None  # what a worker process keeps between passes (None: nothing is kept)


def keep_opened() -> dict:
    """Make this process keep what passes open (``StudySpec.open`` keeps each Study, its model loaded
    once): called by a worker that runs many passes of one run. Returns what is kept."""
    global _KEPT
    _KEPT = {} if _KEPT is None else _KEPT
    return _KEPT


def worker_kept() -> dict | None:
    """What this process keeps between passes, or None where each pass opens its own (the driver)."""
    return _KEPT


class Task(Protocol):
    """A picklable recipe for a batch function, rebuilt where it runs (a Ray actor, say)."""

    def build(self) -> BatchFn:
        """The batch function; called once per worker (it may load a model)."""


class Runner(Protocol):
    def map(
        self, fn: BatchFn, batches: Iterable[np.ndarray], task: Task | None = None
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(batch, fn(batch)) for every batch, as each finishes (in any order); ``task``, when
        given, builds ``fn`` where the batches run."""


class LocalRunner:
    """Batches one after the other, in this process."""

    engine = "local"

    def map(
        self, fn: BatchFn, batches: Iterable[np.ndarray], task: Task | None = None
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        for batch in batches:
            yield batch, fn(batch)


def run(
    fn: BatchFn,
    ids: Sequence,
    keys: Sequence[str] | None = None,
    store: RowStore | None = None,
    batch_size: int = 64,
    desc: str | None = None,
    progress: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    runner: Runner | None = None,
    task: Task | None = None,
) -> dict[str, np.ndarray]:
    """The table {"id": ids, column: (N, ...)} of ``fn`` over ``ids``.

    Args:
        keys: (N,) a content key per id (default: the id itself); ids with equal keys are
            computed once, and ``store`` holds rows by key.
        store: where finished batches are kept; None computes every id.
        on_batch: ``on_batch(done, total)`` after each computed batch (rows still to compute).
        runner: ``LocalRunner()`` by default; task: how a remote runner rebuilds ``fn``.
    """
    ids = np.asarray(ids)
    keys = [str(i) for i in ids] if keys is None else [str(k) for k in keys]
    if len(keys) != len(ids):
        raise ValueError(f"Got {len(keys)} keys for {len(ids)} ids; give one per id.")
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)  # the first id of each distinct key
    distinct = list(first)
    found, columns = store.read(distinct) if store is not None else (np.zeros(len(distinct), bool), {})
    rows: dict[str, dict[str, np.ndarray]] = {
        k: {c: v[j] for c, v in columns.items()} for j, k in enumerate(np.asarray(distinct)[found])
    }
    todo = [first[k] for k, f in zip(distinct, found) if not f]
    if found.any():
        log.info("%s: reused %d of %d rows stored by an earlier run", desc or "pass", int(found.sum()), len(distinct))
    batches = [ids[todo[s : s + batch_size]] for s in range(0, len(todo), batch_size)]
    key_of = {_hashable(ids[p]): keys[p] for p in todo}
    bar = tqdm(total=len(todo), disable=not progress, desc=desc)
    done = 0
    for batch, out in (runner or LocalRunner()).map(fn, batches, task) if batches else ():
        batch_keys = [key_of[_hashable(b)] for b in batch]
        _check(out, len(batch), desc)
        if store is not None:
            store.write(batch_keys, out)
        rows.update({k: {c: v[j] for c, v in out.items()} for j, k in enumerate(batch_keys)})
        done += len(batch)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(done, len(todo))
    bar.close()
    names = next(iter(rows.values())).keys() if rows else ()
    return {"id": ids, **{c: np.stack([rows[k][c] for k in keys]) for c in names}}


def _hashable(item):
    return item.item() if isinstance(item, np.generic) else item


def _check(out: dict, n: int, desc: str | None) -> None:
    if not isinstance(out, dict) or any(len(v) != n for v in out.values()):
        raise ValueError(
            f"A pass ({desc or 'batch function'}) must return columns of one row per id; "
            f"got { ({k: len(v) for k, v in out.items()} if isinstance(out, dict) else type(out)) }."
        )
