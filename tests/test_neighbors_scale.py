"""Neighbours at scale: one exact-vs-approximate rule, an approximate index kept on disk with its
measured recall (and whose neighbours equal the exact ones where it claims recall 1), a damaged
index file rebuilt, UMAP fitted on a sample beyond a size, and the CLI passes."""

import subprocess
import sys

import numpy as np
import pytest

from memviz.neighbors import index as nindex


def _clusters(n=4000, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d)) * 4
    return (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_one_rule_chooses_exact_search_up_to_flat_max():
    assert nindex.index_kind(nindex.FLAT_MAX) == "flat" and nindex.index_kind(nindex.FLAT_MAX + 1) == "hnsw"
    x = _clusters(300)
    assert nindex.NeighborIndex(x, "auto").kind == "flat" and nindex.stored_index(x).recall == 1.0
    with pytest.raises(ValueError, match="kind must be one of"):
        nindex.NeighborIndex(x, "annoy")


def test_the_approximate_index_is_stored_with_its_recall_and_read_back(monkeypatch):
    x = _clusters()
    built = nindex.stored_index(x, kind="hnsw")
    assert built.kind == "hnsw" and not built.from_store and built.recall_sample == 1000
    queries = x[np.random.default_rng(0).choice(len(x), 1000, replace=False)]
    assert built.recall == pytest.approx(nindex.recall_at_k(built, queries, 10))  # what it claims is measured
    assert built.recall >= 0.99
    exact = nindex.NeighborIndex(x).nearest(queries, 10)
    found = built.nearest(queries, 10)
    same = np.mean([set(a) == set(b) for a, b in zip(exact.index, found.index)])
    assert same >= built.recall - 0.01  # whole neighbour lists agree about as often as recall says
    if built.recall == 1.0:
        np.testing.assert_array_equal(np.sort(found.index, 1), np.sort(exact.index, 1))

    def no_build(*a, **k):
        raise AssertionError("rebuilt although the store holds it")

    monkeypatch.setattr(nindex, "_build", no_build)
    again = nindex.stored_index(x, kind="hnsw")
    assert again.from_store and again.recall == built.recall
    np.testing.assert_array_equal(again.nearest(queries[:50], 10).index, found.index[:50])


def test_a_shallow_search_deepens_until_its_measured_recall_reaches_the_target(monkeypatch):
    x = np.random.default_rng(3).random((5000, 32)).astype(np.float32)  # uniform: hard for a graph index
    monkeypatch.setattr(nindex, "HNSW_EF_SEARCH", 1)  # recall@10 about 0.82 at this depth
    monkeypatch.setattr(nindex, "RECALL_TARGET", 0.99)
    built = nindex.stored_index(x, kind="hnsw")
    queries = x[np.random.default_rng(0).choice(len(x), 1000, replace=False)]
    assert nindex.search_depth(built) in (2, 4, 8, 16, 32) and built.recall >= 0.99
    assert built.recall == pytest.approx(nindex.recall_at_k(built, queries, 10))  # measured at the depth kept
    shallow = nindex.NeighborIndex(x, "hnsw")
    assert nindex.recall_at_k(shallow, queries, 10) < 0.99  # the deepening did the work
    again = nindex.stored_index(x, kind="hnsw")
    assert again.from_store and nindex.search_depth(again) == nindex.search_depth(built)
    monkeypatch.setattr(nindex, "RECALL_TARGET", 1.5)  # unreachable: the depth stops at its cap
    monkeypatch.setattr(nindex, "EF_SEARCH_MAX", 8)
    capped = nindex.stored_index(x, kind="hnsw")
    assert nindex.search_depth(capped) == 8 and capped.recall < 1.5
    ivf = nindex.stored_index(x, kind="ivf")  # IVF deepens its nprobe, at most to every cell
    assert nindex.search_depth(ivf) == ivf.index.nlist and ivf.recall == pytest.approx(1.0)


def test_recall_counts_any_of_tied_duplicates():
    x = np.repeat(np.random.default_rng(4).normal(size=(50, 8)).astype(np.float32), 20, axis=0)  # 20 copies each
    exact = nindex.NeighborIndex(x)

    class Shuffled:  # returns other rows among the tied copies, as an approximate index may
        reference = exact.reference

        def nearest(self, q, k):
            nb = exact.nearest(q, k)
            return nindex.Neighbors((nb.index // 20) * 20 + (nb.index + 7) % 20, nb.distance)

    assert nindex.recall_at_k(Shuffled(), x[::20], 10) == 1.0
    assert nindex.recall_at_k(Shuffled(), x[::20] + 5.0, 10) == 1.0


def test_a_damaged_index_file_is_rebuilt_never_read():
    from memviz.io.cache import cache_dir

    x = _clusters(1500, seed=1)
    first = nindex.stored_index(x, kind="hnsw")
    files = sorted((cache_dir() / "faiss_index").glob("*.faiss"))
    target = max(files, key=lambda f: f.stat().st_mtime)
    target.write_bytes(target.read_bytes()[:100] + b"\0" * 64)  # cut short and overwritten
    again = nindex.stored_index(x, kind="hnsw")
    assert not again.from_store and again.recall == pytest.approx(first.recall)
    assert nindex.stored_index(x, kind="hnsw").from_store  # written whole again


def test_umap_beyond_its_fit_size_is_fitted_on_a_sample_and_places_the_rest():
    from memviz.neighbors.embed import fit_map

    x = _clusters(900, d=16, seed=2)
    x[-1] = x[0]  # a copy of a point (the first is in the sample or placed beside its copy)
    m = fit_map(x, n_neighbors=10, fit_max=300)
    pick = np.sort(np.random.default_rng(0).choice(len(x), 300, replace=False))
    alone = fit_map(x[pick], n_neighbors=10, fit_max=300)
    np.testing.assert_allclose(m.xy[pick], alone.xy)  # the sample keeps the coordinates of its own fit
    assert m.xy.shape == (900, 2) and np.isfinite(m.xy).all()
    spread = np.ptp(alone.xy, axis=0).max()
    assert np.linalg.norm(m.xy[-1] - m.xy[0]) < 0.05 * spread  # the copy lands on the original


@pytest.mark.parametrize("what", ["neighbours", "embedding"])
def test_cli_computes_neighbours_and_the_embedding(what, tmp_path):
    out = tmp_path / f"{what}.csv"
    done = subprocess.run(
        [sys.executable, "-m", "memviz", "compute", what, "--model", "demo-mnist", "--n", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 60 and table.row.is_unique
    if what == "neighbours":
        assert "neighbour index: flat over" in done.stdout and "exact search (recall 1)" in done.stdout
        assert (table.nn_distance >= 0).all() and (table.nearest_row != table.row).all()
    else:
        assert {"x", "y"} <= set(table) and np.isfinite(table[["x", "y"]].to_numpy()).all()
