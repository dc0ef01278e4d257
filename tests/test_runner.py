"""The one runner of dataset-wide passes: each finished batch is stored at once, a rerun resumes
from them, equal items are computed once, and a batch function that breaks the table's shape
gets one sentence."""

import numpy as np
import pytest

from memviz.io.cache import RowStore
from memviz.runner.local import run


def _square(calls):
    def fn(ids):
        calls.append(ids.tolist())
        return {"sq": ids.astype(float) ** 2, "vec": np.stack([np.full(3, i) for i in ids])}

    return fn


def test_a_pass_resumes_from_its_finished_batches():
    store, calls = RowStore("test-runner", "resume"), []

    def breaks_at_third(ids):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the driver dies mid-run
        return _square(calls)(ids)

    with pytest.raises(KeyboardInterrupt):
        run(breaks_at_third, np.arange(10), store=store, batch_size=3)
    assert calls == [[0, 1, 2], [3, 4, 5]]
    done = []
    table = run(
        _square(calls), np.arange(10), store=store, batch_size=3, on_batch=lambda d, total: done.append((d, total))
    )
    assert calls[2:] == [[6, 7, 8], [9]] and done == [(3, 4), (4, 4)]  # only the unfinished rows
    np.testing.assert_array_equal(table["id"], np.arange(10))
    np.testing.assert_array_equal(table["sq"], np.arange(10) ** 2)
    assert table["vec"].shape == (10, 3)


def test_equal_keys_are_computed_once_and_a_damaged_batch_again():
    store, calls = RowStore("test-runner", "keys"), []
    table = run(_square(calls), [5, 3, 7], keys=["a", "b", "a"], store=store, batch_size=8)
    assert calls == [[5, 3]] and table["sq"].tolist() == [25, 9, 25]  # 7 is the same item as 5
    for part in store.path.glob("part-*.npz"):
        part.write_bytes(b"cut in half")
    run(_square(calls), [5], keys=["a"], store=store)
    assert calls[-1] == [5]


def test_a_batch_function_must_return_one_row_per_id():
    with pytest.raises(ValueError, match="one row per id"):
        run(lambda ids: {"v": np.zeros(len(ids) + 1)}, np.arange(4), desc="bad")


def test_shipped_stores_are_read_behind_the_cache_and_never_trusted_blindly(tmp_path, monkeypatch):
    from memviz.io import cache
    from memviz.io.files import save_npz

    monkeypatch.setattr(cache, "SHIPPED", tmp_path / "models")
    shipped = tmp_path / "models" / "demo" / "store"
    save_npz(shipped / "whole" / "k1.npz", checksum=True, a=np.arange(3))
    save_npz(shipped / "rows" / "p" / "part-0.npz", checksum=True, _key=np.array(["x", "y"]), v=np.array([1.0, 2.0]))
    calls = []
    compute = lambda: calls.append(1) or {"a": np.zeros(3)}  # noqa: E731
    assert cache.cached("whole", "k1", compute)["a"].tolist() == [0, 1, 2] and not calls

    store = RowStore("rows", "p")
    store.write(["y", "z"], {"v": np.array([20.0, 30.0])})  # the cache wins over package data
    found, cols = store.read(["x", "y", "z", "w"])
    assert found.tolist() == [True, True, True, False] and cols["v"].tolist() == [1.0, 20.0, 30.0]

    damaged = shipped / "whole" / "k1.npz"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    assert cache.cached("whole", "k1", compute)["a"].tolist() == [0, 0, 0] and calls == [1]
    assert damaged.exists() and cache.cached("whole", "k1", compute)["a"].tolist() == [0, 0, 0] and calls == [1]

    monkeypatch.setenv("MEMVIZ_SHIPPED", "0")
    assert RowStore("rows", "p").read(["x"])[0].tolist() == [False]


def test_a_bundled_demo_opens_from_its_shipped_store_without_calling_the_model():
    from memviz.study.core import open_study

    study = open_study("demo-mnist")
    study.model.unet_calls = 0
    table = study.prepare().table()
    assert study.model.unet_calls == 0 and len(table) == study.n and table.flipd.notna().all()
    planted = study.rows[study.kind(study.rows) != "none"]  # eval-detection's sample-level spectra
    assert np.isfinite(study.spectra(planted, conditional=True)).all() and study.model.unet_calls == 0
