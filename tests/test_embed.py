"""UMAP maps on the shared neighbour graph, cached; generated points placed without moving the map;
feature spaces."""

import numpy as np
import pytest
import torch

from tests.test_neighbors import blobs


def test_map_keeps_clusters_places_copies_next_to_originals_and_is_cached(tmp_path, monkeypatch):
    import umap

    from memviz.neighbors import embed as embed_mod

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    x = blobs(600, 16, centers=3, seed=1)
    out = embed_mod.embed(x, x[:5] + 0.01, n_neighbors=10)
    assert out.train.shape == (600, 2) and out.generated.shape == (5, 2) and np.isfinite(out.train).all()
    spread = np.ptp(out.train, axis=0).max()
    assert np.linalg.norm(out.generated - out.train[:5], axis=1).max() < 0.1 * spread  # copies land on originals
    from sklearn.metrics import silhouette_score

    assert silhouette_score(out.train, _clusters(x)) > 0.5
    monkeypatch.setattr(umap.UMAP, "fit", lambda *a, **k: pytest.fail("refitted instead of read from the cache"))
    again = embed_mod.embed(x, x[5:8] + 0.01, n_neighbors=10)
    np.testing.assert_array_equal(again.train, out.train)  # the training map does not move
    assert again.generated.shape == (3, 2)


def _clusters(x):
    from sklearn.cluster import KMeans

    return KMeans(3, n_init=4, random_state=0).fit_predict(x)


def test_bad_map_arguments():
    from memviz.neighbors.embed import fit_map

    with pytest.raises(ValueError, match="n_neighbors"):
        fit_map(blobs(20, 4), n_neighbors=30)


def test_feature_spaces(make_model):
    from memviz.neighbors.features import features

    model = make_model(num_class_embeds=None)
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    assert features(images).shape == (6, 64)
    f = features(images, "denoiser", model)
    assert f.shape[0] == 6 and f.shape[1] > 0 and f.dtype == np.float32
    assert features(images, lambda x: x.mean((2, 3))).shape == (6, 1)
    with pytest.raises(ValueError, match="model="):
        features(images, "denoiser")
    with pytest.raises(ValueError, match="finite"):
        features(images, lambda x: torch.full((6, 2), float("nan")))
    with pytest.raises(ValueError, match="extractor"):
        features(images, "sscd")
