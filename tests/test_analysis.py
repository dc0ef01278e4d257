"""The app's library layer: the browse table and one sample's side-by-side view."""

import numpy as np
import pytest
import torch

from memviz.analysis import browse, sample_view
from memviz.data.base import ImageDataset


@pytest.fixture(scope="module")
def tiny(request):
    from diffusers import DDPMScheduler

    from memviz.models import DiffusionModel
    from tests.conftest import tiny_unet

    model = DiffusionModel(tiny_unet(4), DDPMScheduler(), meta={"class_names": ["a", "b", "c"]}, device="cpu")
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 1, 8, 8, generator=g) * 2 - 1)
    images[30:] = images[30]                                   # ten copies of one image: a duplicate
    kind = np.array(["none"] * 30 + ["DD-Mem"] * 10)
    data = ImageDataset("tiny", images, labels=np.arange(40) % 3, meta={"kind": kind})
    return model, data


def test_browse_table_has_every_metric_and_reads_the_cache_second_time(tiny, monkeypatch):
    model, data = tiny
    b = browse(model, data, t0=0.05)
    t = b.table
    assert len(t) == 40 and set(t.columns) >= {"flipd", "flipd_uncond", "lid_lpca", "lid_mle", "verdict",
                                                "nn_distance", "x", "y", "kind", "label"}
    assert b.curves["uncond"].shape == (40, 6) and b.curves["cond"].shape == (40, 6)
    np.testing.assert_array_equal(t.flipd, b.curves["cond"][:, 2])            # t0 = 0.05 is the third time
    assert (t.nn_distance[30:] == 0).all() and (t.lid_mle[30:] == 0).all()   # the duplicates
    assert t.notna().all().all()
    import umap

    monkeypatch.setattr(umap.UMAP, "fit", lambda *a, **k: pytest.fail("the map must come from the cache"))
    monkeypatch.setattr("memviz.lid.runner._flipd_curves", lambda *a, **k: pytest.fail("FLIPD recomputed"))
    again = browse(model, data, t0=0.05)
    np.testing.assert_array_equal(again.table.to_numpy(), t.to_numpy())
    with pytest.raises(ValueError, match="grid"):
        browse(model, data, t0=0.03)


def test_sample_view_slices_the_artifacts(tiny):
    model, data = tiny
    b = browse(model, data, t0=0.05)
    v = sample_view(model, b, 31, k=5)
    assert v.index == 31 and v.row["kind"] == "DD-Mem" and v.eigenvalues.shape == (64,)
    assert np.all(np.diff(v.eigenvalues) >= 0) and v.tau > 0
    assert set(v.neighbors[:5]) <= set(range(30, 40)) and np.allclose(v.distances, 0)  # its copies first
    torch.testing.assert_close(v.neighbor_images[0], data.images[30])
    np.testing.assert_allclose(v.curves["cond"], b.curves["cond"][31])
    with pytest.raises(ValueError, match="does not exist"):
        sample_view(model, b, 40)


def test_duplicates_read_lid_star_zero_from_the_stored_set(tiny):
    model, data = tiny
    rows = np.r_[np.arange(30), 30]                                  # distinct images: one copy of the duplicate
    b = browse(model, data.subset(rows), t0=0.05, stored=(data, rows))
    assert b.table.lid_mle.iloc[-1] == 0 and b.table.nn_distance.iloc[-1] == 0   # its nine other copies count
    alone = browse(model, data.subset(rows), t0=0.05)
    assert alone.table.lid_mle.iloc[-1] > 0                          # without them it looks ordinary


def test_sharpness_counts_batch_by_batch_with_progress(tiny):
    from memviz.analysis import sharpness_counts

    model, data = tiny
    b = browse(model, data, t0=0.05)
    seen = []
    counts = sharpness_counts(model, b, batch=16, on_batch=lambda done, n: seen.append((done, n)))
    assert counts.shape == (40,) and seen == [(16, 40), (32, 40), (40, 40)]
    assert counts[31] == int((sample_view(model, b, 31).eigenvalues < -sample_view(model, b, 31).tau).sum())


def test_a_picked_image_reads_its_spectrum_from_the_dataset_pass(tiny, monkeypatch):
    """One cache per image: after sharpness_counts, sample_view computes no spectrum, and the
    cached spectrum equals a fresh one under the image's label."""
    from memviz.analysis import sharpness_counts
    from memviz.hessian.spectrum import spectrum

    model, data = tiny
    b = browse(model, data, t0=0.05)
    sharpness_counts(model, b)
    fresh = spectrum(model, data.images[7:8], 0.05, [int(data.labels[7])], "exact").numpy()[0]
    monkeypatch.setattr("memviz.hessian.runner.spectrum", lambda *a, **k: pytest.fail("recomputed"))
    np.testing.assert_allclose(sample_view(model, b, 7).eigenvalues, fresh, rtol=1e-5, atol=1e-6)


def test_cached_rows_computes_only_the_missing_rows(tmp_path, monkeypatch):
    from memviz.cache import cached_rows

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    asked = []

    def compute(missing):
        asked.append(missing.tolist())
        return np.stack([np.full(3, float(i)) for i in missing])

    first = cached_rows("rows", ["a", "b"], compute)
    both = cached_rows("rows", ["x", "a", "y", "b"], compute)   # x, y new; a, b stored (at positions 0, 1 before)
    assert asked == [[0, 1], [0, 2]]
    np.testing.assert_array_equal(both[[1, 3]], first)
    np.testing.assert_array_equal(both[[0, 2]], [[0.0] * 3, [2.0] * 3])
    (tmp_path / "rows" / "a.npz").write_bytes(b"broken")          # a corrupt entry is computed again
    cached_rows("rows", ["a"], compute)
    assert asked[-1] == [0]
