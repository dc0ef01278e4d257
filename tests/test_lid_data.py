"""LID* of the data: agreement with scikit-dimension, known dimensions, duplicates, bad input."""

import numpy as np
import pytest
import skdim
import torch

from memviz.data.synthetic import affine_union
from memviz.lid import calibrate_threshold, data_lid, mmh_verdict
from memviz.neighbors.index import NeighborIndex


@pytest.fixture(scope="module")
def union():
    return affine_union(dims=(2, 4, 8), side=8, n_per=150, seed=0)


def test_batched_lpca_equals_skdim(union):
    x = union.images.flatten(1).numpy().astype(np.float64)
    nb = NeighborIndex(x).nearest(x, 31)
    knn = nb.index[:, 1:]  # self left out, as skdim's own kNN does
    ref = skdim.id.lPCA(verbose=False).fit_pw(x, precomputed_knn=knn, n_neighbors=30).dimension_pw_
    ours = data_lid(x, method="lpca", k=30)
    assert np.array_equal(ours, ref)


def test_mle_equals_skdim(union):
    x = union.images.flatten(1).numpy().astype(np.float64)
    nb = NeighborIndex(x).nearest(x, 21)
    ref = skdim.id.MLE().fit(x, precomputed_knn_arrays=(nb.distance[:, 1:], nb.index[:, 1:])).dimension_pw_
    assert np.allclose(data_lid(x, method="mle", k=20), ref, rtol=1e-4)


@pytest.mark.parametrize("method, tol", [("lpca", 0.5), ("mle", 1.5), ("twonn", 1.5)])
def test_known_dimensions_of_the_union(union, method, tol):
    lid = data_lid(union.images, method=method, k=40 if method != "mle" else 20)
    for d in (2, 4, 8):
        med = np.median(lid[union.lid == d])
        assert abs(med - d) <= tol * max(1, d / 4), (method, d, med)


def test_queries_use_the_reference_neighbourhoods(union):
    x = union.images.flatten(1)
    q = x[:5] + 1e-4
    lid_q = data_lid(x, q, method="lpca", k=30)
    assert lid_q.shape == (5,) and np.all(lid_q == 2)


@pytest.mark.parametrize("method", ["lpca", "mle", "twonn"])
def test_duplicates_have_lid_zero_not_nan(method):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(1, 16, generator=g).expand(30, 16), torch.rand(200, 16, generator=g)])
    lid = data_lid(x, method=method, k=10)
    assert np.isfinite(lid).all()
    assert np.all(lid[:30] == 0) and np.median(lid[30:]) > 3


def test_bad_input():
    x = torch.rand(10, 4)
    with pytest.raises(ValueError, match="k = 10 must lie in"):
        data_lid(x, k=10)
    with pytest.raises(ValueError, match="at least 3"):
        data_lid(x[:2], k=1)
    with pytest.raises(ValueError, match="NaN"):
        data_lid(torch.full((10, 4), float("nan")), k=3)
    with pytest.raises(ValueError, match="Unknown LID"):
        data_lid(x, method="magic", k=3)


def test_mmh_verdict():
    v = mmh_verdict([0.1, 0.2, 5.0, 5.0], [0.0, 7.0, 0.0, 7.0], model_threshold=1.0, data_threshold=1.0)
    assert v.tolist() == ["DD-Mem", "OD-Mem", "not memorized", "not memorized"]
    assert calibrate_threshold(np.arange(101.0), 0.05) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="same shape"):
        mmh_verdict([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        mmh_verdict([np.nan], [1.0])
