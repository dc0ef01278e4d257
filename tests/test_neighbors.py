import numpy as np
import pytest
import torch

from memviz.neighbors.index import NeighborIndex, calibrated_l2


def test_exact_duplicates_are_found_at_distance_zero():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(100, 1, 4, 4, generator=g)
    nn = NeighborIndex(train)
    nb = nn.nearest(train[[3, 50]], k=5)
    assert list(nb.index[:, 0]) == [3, 50] and np.allclose(nb.distance[:, 0], 0, atol=1e-3)
    assert np.all(np.diff(nb.distance, axis=1) >= -1e-6)  # sorted, nearest first


def test_distances_match_brute_force():
    g = torch.Generator().manual_seed(1)
    train, queries = torch.randn(200, 8, generator=g), torch.randn(7, 8, generator=g)
    nb = NeighborIndex(train).nearest(queries, k=4)
    d = torch.cdist(queries.double(), train.double())
    ref_d, ref_i = d.sort(dim=1)
    assert np.array_equal(nb.index, ref_i[:, :4].numpy())
    assert np.allclose(nb.distance, ref_d[:, :4].numpy(), rtol=1e-4)


def test_calibrated_l2_by_hand():
    # nearest at 1, the 4 nearest at 1, 3, 3, 5 -> mean 3 -> 1 / (0.5 * 3) = 2/3
    assert calibrated_l2(np.array([[1.0, 3.0, 3.0, 5.0]]), n=4)[0] == pytest.approx(2 / 3)
    # a copy: nearest at 0 -> 0; all neighbours at 0 -> 0, not NaN
    assert calibrated_l2(np.array([[0.0, 2.0, 2.0], [0.0, 0.0, 0.0]]), n=3).tolist() == [0.0, 0.0]
    # n larger than k uses the k available
    assert calibrated_l2(np.array([[2.0, 2.0]]), n=50, alpha=1.0)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k >= 2"):
        calibrated_l2(np.array([1.0, 2.0]))


def test_bad_queries_are_refused():
    nn = NeighborIndex(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="5 dimensions but the index has 4"):
        nn.nearest(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="NaN"):
        nn.nearest(torch.full((1, 4), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        NeighborIndex(torch.zeros(0, 4))


def blobs(n=2000, d=32, centers=20, seed=0):
    """Clustered data (like images), where an IVF index has structure to exploit."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)) * 5
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_ivf_recall_against_exact_is_measured():
    from memviz.neighbors.index import recall_at_k

    x = blobs()
    q = x[:100] + 0.05
    assert recall_at_k(NeighborIndex(x), q, k=10) == 1.0
    ivf = NeighborIndex(x, kind="ivf", nprobe=4)
    r = recall_at_k(ivf, q, k=10)
    assert 0.8 <= r <= 1.0, r  # clustered data: IVF finds most neighbours
    assert recall_at_k(NeighborIndex(x, kind="ivf", nprobe=1), q, k=10) <= r
    with pytest.raises(ValueError, match="kind"):
        NeighborIndex(x, kind="annoy")


def test_copy_scores_by_hand():
    from memviz.neighbors.index import copy_scores

    s = copy_scores(np.array([[1.0, 5.0, 5.0, 9.0], [0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]]), threshold=0.5, n=4)
    assert s.nearest.tolist() == [1.0, 0.0, 3.0]
    assert s.ratio.tolist() == [0.2, 0.0, 1.0]  # two copies at 0: ratio 0, not NaN
    np.testing.assert_allclose(s.calibrated, [1 / (0.5 * 5), 0.0, 2.0])
    assert s.is_copy.tolist() == [True, True, False] and s.threshold == 0.5


def test_neighbor_graph_leaves_each_point_out_and_keeps_duplicates(tmp_path, monkeypatch):
    from memviz.neighbors import index as neighbors

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    x = np.r_[blobs(200, 8), blobs(1, 8, seed=5).repeat(3, 0)]  # the last three rows are one point, thrice
    g = neighbors.neighbor_graph(x, k=5)
    assert g.index.shape == (203, 5) and not (g.index == np.arange(203)[:, None]).any()
    assert set(g.index[200, :2]) == {201, 202} and np.allclose(g.distance[200, :2], 0)
    brute = np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1) + np.diag(np.full(203, np.inf)), 1)[:, :5]
    np.testing.assert_allclose(g.distance, brute, rtol=1e-3, atol=1e-3)
    monkeypatch.setattr(neighbors, "NeighborIndex", lambda *a, **k: pytest.fail("recomputed, not cached"))
    np.testing.assert_array_equal(neighbors.neighbor_graph(x, k=5).index, g.index)
    with pytest.raises(ValueError, match="holds 5"):
        g.first(6)


def test_lid_star_from_the_shared_graph_equals_its_own_search():
    from memviz.lid import data_lid
    from memviz.neighbors.index import neighbor_graph

    x = blobs(300, 8)
    g = neighbor_graph(x, k=30, cache=False)
    for method, k in (("lpca", 30), ("mle", 20)):
        np.testing.assert_allclose(data_lid(x, method=method, k=k, graph=g), data_lid(x, method=method, k=k))
