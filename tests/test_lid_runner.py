"""The dataset-wide LID runner: cached on disk, keyed by model, data and parameters."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from memviz.data import ImageDataset
from memviz.lid import runner
from memviz.lid.runner import compute_lid, lid_table
from memviz.models import DiffusionModel
from memviz.testing import GaussianDenoiser, subspace_gaussian


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "cache"))
    mean, cov = subspace_gaussian(16, 3)
    model = DiffusionModel(GaussianDenoiser(mean, cov, (1, 4, 4)), DDPMScheduler(), device="cpu")
    g = torch.Generator().manual_seed(0)
    x = (mean + torch.randn(60, 16, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T)
    x = (x / x.abs().max()).float().view(60, 1, 4, 4)
    return model, ImageDataset("g", x, labels=np.zeros(60, dtype=np.int64))


def test_second_call_reads_the_cache(setup, monkeypatch, tmp_path):
    model, data = setup
    kw = dict(ts=[0.02, 0.2], trace="exact", methods=("lpca",), progress=False)
    first = compute_lid(model, data, **kw)
    assert first.flipd.shape == (60, 2) and first.data_lid["lpca"].shape == (60,)
    assert len(list((tmp_path / "cache" / "flipd").glob("*.npz"))) == 1
    monkeypatch.setattr(runner, "flipd", lambda *a, **k: pytest.fail("recomputed"))
    second = compute_lid(model, data, **kw)
    assert np.array_equal(first.flipd, second.flipd)
    with pytest.raises(BaseException):  # another parameter, another key: computes (and fails here)
        compute_lid(model, data, **{**kw, "ts": [0.05]})


def test_flipd_at_picks_the_nearest_cached_t0(setup):
    model, data = setup
    res = compute_lid(model, data, ts=[0.01, 0.1, 0.5], trace="exact", methods=(), progress=False)
    assert np.array_equal(res.flipd_at(0.09), res.flipd[:, 1])
    assert res.flipd_at("knee").shape == (60,)


def test_lid_table_and_mismatched_data(setup):
    model, data = setup
    table, thr = lid_table(model, data, data.subset(np.arange(20)), ts=[0.05], trace="exact",
                           methods=("lpca",), progress=False)
    assert list(table.split.value_counts().sort_index()) == [20, 60]
    assert set(table.verdict) <= {"not memorized", "OD-Mem", "DD-Mem"} and np.isfinite(thr)
    bad = ImageDataset("b", torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError, match="model expects"):
        compute_lid(model, bad, progress=False)


def test_cli_compute_lid_on_the_toy(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from memviz.cli import main
    from tests.conftest import ROOT

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "lid.csv"
    assert main(["compute", "lid", "--model", str(ROOT / "assets" / "models" / "demo-toy"), "--ts", "0.02",
                 "--t0", "0.02", "--trace", "exact", "--methods", "mle", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 1901  # 2,000 points, the 100 copies of the origin counted once
    assert "FLIPD threshold" in capsys.readouterr().out
    circle = table[table.label == 0]
    assert 0.5 < circle.flipd.median() < 1.5 and 0.5 < circle.lid_mle.median() < 1.5
    # the point mass is one row, but its LID* comes from the 100 stored copies: 0 (DD-Mem)
    point_mass = table[table.kind == "DD-Mem"]
    assert len(point_mass) == 1 and point_mass.lid_mle.iloc[0] == 0


def test_lid_table_reads_lid_star_from_the_stored_copies(setup):
    """A duplicated image is one row of the table, but its LID* comes from its stored copies: 0."""
    model, data = setup
    copies = data.images[:1].expand(30, -1, -1, -1)
    stored = ImageDataset("dup", torch.cat([copies, data.images[1:]]), labels=np.zeros(89, dtype=np.int64))
    table, _ = lid_table(model, stored, ts=[0.05], trace="exact", methods=("mle",), progress=False)
    assert len(table) == 60
    assert table.lid_mle.iloc[0] == 0 and table.lid_mle.iloc[1:].median() > 1
