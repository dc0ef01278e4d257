import numpy as np
import pytest
import torch

from memviz.neighbors import NeighborIndex, calibrated_l2


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
