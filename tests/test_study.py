"""The Study: one store per quantity, read by the app, the CLI and eval-detection alike; knobs that
never call the model; one verdict rule; training rows as identity; the runner's resume."""

import numpy as np
import pytest
import torch

from memviz.data.base import ImageDataset
from memviz.study.core import Study, analysed_rows, open_study


def _forbid(model):
    """Replace the model's forward by one that fails the test: nothing may call the model now."""

    def forward(*a, **k):
        raise AssertionError("the model was called")

    model.unet.forward = forward


@pytest.fixture(scope="module")
def tiny():
    from diffusers import DDPMScheduler

    from memviz.model.adapter import DiffusionModel
    from tests.conftest import tiny_unet

    g = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=g) * 2 - 1
    images[30:] = images[30]  # ten copies of one image: a duplicate
    kind = np.array(["none"] * 30 + ["DD-Mem"] * 10)
    data = ImageDataset("tiny", images, labels=np.arange(40) % 3, meta={"kind": kind})
    held = ImageDataset("held", torch.rand(12, 1, 8, 8, generator=g) * 2 - 1, labels=np.arange(12) % 3)

    def make():
        model = DiffusionModel(tiny_unet(4), DDPMScheduler(), meta={"class_names": ["a", "b", "c"]}, device="cpu")
        return Study(model, data, held, n=None)

    return make


def test_the_table_has_every_metric_and_duplicates_read_zero(tiny):
    study = tiny()
    t = study.prepare().table(0.05)
    assert t.row.tolist() == list(range(31))  # distinct rows: the duplicate once (row 30)
    assert set(t.columns) >= {
        "row",
        "flipd",
        "flipd_uncond",
        "lid_lpca",
        "lid_mle",
        "verdict",
        "nn_distance",
        "x",
        "y",
        "kind",
        "label",
    }
    assert t.notna().all().all()
    dup = t[t.row == 30].iloc[0]
    assert dup.copies == 10 and (t[t.row != 30].copies == 1).all()  # rows 30-39 hold one image
    assert dup.nn_distance == 0 and dup.lid_mle == 0 and dup.lid_lpca > 0  # MLE (k = 20) sees its 9 copies;
    assert t[t.row != 30].lid_mle.min() > 0  # lPCA (k = 39) sees the others too
    np.testing.assert_array_equal(t.flipd, study.flipd_grid(True)[:, study.ts.index(0.05)])


def test_a_new_study_and_any_t0_read_the_store_without_calling_the_model(tiny):
    first = tiny().prepare()
    again = tiny()  # a new model object: the store is on disk
    _forbid(again.model)
    for t0 in (0.05, 0.07, 0.2, 0.005, 0.5):
        again.table(t0)
    np.testing.assert_array_equal(again.table(0.05).to_numpy(), first.table(0.05).to_numpy())
    grid = again.flipd_grid(True)  # between grid points: linear in log t0
    ts = np.log(again.ts)
    w = (np.log(0.07) - ts[3]) / (ts[4] - ts[3])
    np.testing.assert_allclose(again.flipd(0.07), (1 - w) * grid[:, 3] + w * grid[:, 4])
    with pytest.raises(ValueError, match="outside the stored grid"):
        again.flipd(0.9)


def test_a_smaller_study_reads_what_a_larger_one_computed(tiny):
    big = tiny().prepare()
    small = Study(big.model, big.train, big.test, n=10)
    assert set(small.rows) <= set(big.rows) and 30 in small.rows  # planted rows always come first
    _forbid(small.model)
    np.testing.assert_array_equal(small.flipd(0.05), big.flipd(0.05)[np.searchsorted(big.rows, small.rows)])


def test_a_row_keeps_its_values_in_every_batch(tiny):
    """A per-row pass is stored per image: another batch of rows reads the stored ones back, and
    FLIPD's probes depend on the image alone, so a row's value is the same in any batch."""
    from memviz.lid.flipd import flipd_curve

    study = tiny()
    first = study.per_row("check", (), [4, 5], lambda x, c, keys: {"v": x.flatten(1)[:, 0].numpy()}, True)
    again = study.per_row("check", (), [5, 4, 9], lambda x, c, keys: {"v": x.flatten(1)[:, 0].numpy() + 100}, True)
    np.testing.assert_array_equal(again["v"][:2], first["v"][::-1])  # read back, not recomputed
    assert again["v"][2] == study.train.images[9].flatten()[0] + 100  # only the new row was computed
    keys = study._row_keys(False, True)
    seeds = [int(keys[r][:8], 16) for r in (3, 7)]
    together = flipd_curve(
        study.model, study.train.images[[3, 7]], (0.1,), cond=[0, 1], trace="hutchinson", n_probes=2, seed=seeds
    )
    single = flipd_curve(
        study.model, study.train.images[[7]], (0.1,), cond=[1], trace="hutchinson", n_probes=2, seed=seeds[1:]
    )
    torch.testing.assert_close(together[1], single[0])


def test_rows_are_the_identity_and_any_row_has_a_view(tiny):
    from memviz.study.views import sample_view

    study = tiny().prepare()
    v = sample_view(study, 33, 0.05, k=5)  # a stored copy, not analysed (row 30 stands for it)
    assert v.row == 33 and np.isnan(v.values["x"]) and v.values["kind"] == "DD-Mem" and v.values["copies"] == 10
    assert v.values["nn_distance"] == 0 and v.neighbors[0] in range(30, 40) and v.distances[0] == 0
    # its 9 other copies are one tile (x10), not 5 identical ones; the rest are distinct images, farther away
    assert v.neighbor_copies[0] == 10 and len(v.neighbors) == 5 and not np.isin(v.neighbors[1:], range(30, 40)).any()
    assert np.all(v.neighbor_copies[1:] == 1) and np.all(v.distances[1:] > 0) and np.all(np.diff(v.distances) >= 0)
    assert v.values["verdict"] == sample_view(study, 30, 0.05).values["verdict"]  # same image, same verdict
    w = sample_view(study, 7, 0.05)
    assert w.values["row"] == 7 and w.eigenvalues.shape == (64,) and np.all(np.diff(w.eigenvalues) >= 0)
    torch.testing.assert_close(w.image, study.train.images[7])
    with pytest.raises(ValueError, match="does not exist"):
        sample_view(study, 40)


def test_the_selection_rule_puts_planted_rows_first():
    images = torch.zeros(20, 1, 2, 2)
    images[:, 0, 0, 0] = torch.linspace(-1, 1, 20)
    kind = np.array(["none"] * 17 + ["OD-Mem"] * 3)
    data = ImageDataset("d", images, meta={"kind": kind})
    assert set(analysed_rows(data, 5)) >= {17, 18, 19} and len(analysed_rows(data, 5)) == 5
    assert set(analysed_rows(data, 5)) <= set(analysed_rows(data, 10))
    assert len(analysed_rows(data, None)) == 20


def test_cli_spectra_fill_the_store_a_study_reads(tmp_path, capsys):
    """`memviz compute spectra` then a Study (and the Samples panel) read the same per-image
    spectra; the model is never called again."""
    from memviz.cli.commands import main

    assert main(["compute", "spectra", "--model", "demo-toy", "--n", "30", "--out", str(tmp_path / "s.csv")]) == 0
    assert "tau" in capsys.readouterr().out
    study = open_study("demo-toy", n=30)
    _forbid(study.model)
    eigenvalues = study.spectra(study.rows)
    assert eigenvalues.shape == (30, 2)
    import pandas as pd

    from memviz.hessian import default_tau, summarize

    table = pd.read_csv(tmp_path / "s.csv")
    np.testing.assert_array_equal(table.n_sharp, summarize(eigenvalues, default_tau(study.model, 0.05))["n_sharp"])
    np.testing.assert_array_equal(study.spectrum(int(study.rows[4])), eigenvalues[4])


def test_cli_compute_lid_on_the_toy(tmp_path, capsys):
    import pandas as pd

    from memviz.cli.commands import main

    out = tmp_path / "lid.csv"
    assert (
        main(
            [
                "compute",
                "lid",
                "--model",
                "demo-toy",
                "--t0",
                "0.02",
                "--trace",
                "exact",
                "--methods",
                "mle",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert len(table) == 1901  # 2,000 points, the 100 copies of the origin counted once
    assert "FLIPD threshold" in capsys.readouterr().out
    circle = table[table.label == 0] if (table.label == 0).any() else table[table.kind == "none"]
    assert 0.5 < circle.flipd.median() < 1.5 and 0.5 < circle.lid_mle.median() < 1.5
    point_mass = table[table.kind == "DD-Mem"]  # one row, LID* 0 from its 100 stored copies
    assert len(point_mass) == 1 and point_mass.lid_mle.iloc[0] == 0


def test_the_verdict_of_a_row_is_the_same_in_the_overview_the_samples_panel_and_eval_detection():
    from memviz.detect import eval_detection
    from memviz.study.views import sample_view

    overview = open_study("demo-mnist", n=40)
    table = overview.table(0.05)
    scores: list = []
    eval_detection(overview, n_ordinary=6, scores=scores, names=["mmh_verdict"], progress=False)
    assert {s["level"] for s in scores} == {"sample"} and len(scores) == 32
    for s in scores:
        verdict = table.loc[table.row == s["row"], "verdict"].iloc[0]
        assert s["score"] == float(verdict != "not memorized")
        assert sample_view(overview, s["row"], 0.05, table=table).values["verdict"] == verdict
    assert sum(s["score"] for s in scores if s["positive"]) == 26  # every planted image is flagged here


def test_no_model_and_no_data_get_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        open_study(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="expects"):
        open_study("demo-toy", ImageDataset("x", torch.zeros(3, 1, 4, 4)))


def test_the_verdict_in_words_is_the_verdict_rule_with_its_numbers():
    from memviz.lid.verdict import verdict_reason

    dd = verdict_reason(0.4, 0.0, 3.0, copies=40)
    assert "data-driven" in dd and "holds it 40 times" in dd and "0.4" in dd and "3.0" in dd
    assert "overfitting-driven" in verdict_reason(0.4, 9.8, 3.0)
    assert verdict_reason(5.0, 9.8, 3.0).endswith("not memorized.")
    assert verdict_reason(-15.3, 0.5, -15.0).startswith("LID_theta -15.3 is below")  # raw, negative values
