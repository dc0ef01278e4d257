"""Detectors: metrics by hand, Wen's score in closed form, the prompt- and sample-level
pipelines on a tiny random model and on demo-toy, and eval-detection's JSON."""

import numpy as np
import pytest
import torch

from memviz.detect import auroc, prompt_scores, sample_scores, tpr_at_fpr, wen_score
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex
from memviz.testing import class_gaussian_model
from tests.conftest import ROOT

SHAPE = (1, 8, 8)


def test_metrics_by_hand():
    pos = np.array([1, 1, 0, 0, 0], bool)
    assert auroc(pos, [5, 4, 3, 2, 1]) == 1.0 and auroc(pos, [1, 2, 3, 4, 5]) == 0.0
    assert auroc(pos, [5, 2, 3, 4, 1]) == pytest.approx(4 / 6)
    assert tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.01) == 0.5   # above every negative: only the first positive
    assert tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.34) == 0.5 and tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.67) == 1.0
    with pytest.raises(ValueError, match="both"):
        auroc(np.ones(3, bool), [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        auroc(pos, [1, 2, np.nan, 4, 5])


def test_wen_score_is_the_closed_form_guidance_norm():
    t = 0.6
    model, score = class_gaussian_model()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    ref = model.sigma(t) * (score(x, t, True) - score(x, t, False)).norm(dim=1)      # eps = -sigma s
    torch.testing.assert_close(wen_score(model, "c", x, t), ref, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="condition"):
        wen_score(model, None, x, t)


def test_prompt_scores_on_a_tiny_random_model(make_model):
    model = make_model()                                               # class-conditional, 3 classes + null
    index = NeighborIndex(torch.rand(40, *SHAPE) * 2 - 1)
    ps = prompt_scores(model, [0, 1, 2], index, n=2, steps=3, reps=2, sample_steps=4, n_probes=2, progress=False)
    assert ps.scores["wen"].shape == (3, 2, 2, 3) and ps.scores["jeon"].shape == (3, 2, 2, 3)
    assert ps.scores["flipd_cond"].shape == (3, 2, 2) and ps.scores["calibrated_l2"].shape == (3, 2, 2)
    assert all(np.isfinite(v).all() for v in ps.scores.values())
    table = ps.table(n=1, steps=2)
    assert len(table) == 6 and table.prompt.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(table.wen, ps.scores["wen"][:, :, :1, :2].mean((2, 3)).ravel())
    np.testing.assert_allclose(table.flipd_uncond, -ps.scores["flipd_uncond"][:, :, :1].mean(2).ravel())
    assert 0 < ps.seconds_for("jeon", 1, 2) < ps.seconds_for("jeon", 2, 3)
    with pytest.raises(ValueError, match="n = 2"):
        ps.table(n=3, steps=1)
    with pytest.raises(ValueError, match="steps"):
        prompt_scores(model, [0], index, steps=9, sample_steps=4)


def test_sample_scores_on_demo_toy():
    from memviz.data import training_data

    model = DiffusionModel.from_pretrained(ROOT / "assets" / "models" / "demo-toy")
    train, _ = training_data(model.meta)
    kind = np.asarray(train.meta["kind"])
    rows = np.r_[np.flatnonzero(kind == "DD-Mem")[:3], np.flatnonzero(kind == "none")[:5]]
    frame, sec = sample_scores(model, train, rows)
    assert frame.kind.tolist() == ["DD-Mem"] * 3 + ["none"] * 5
    assert (frame.nn_distance[:3] == 0).all() and (frame.nn_distance[3:] > 0).all()   # the point mass's copies
    assert (frame.n_sharp_uncond[:3] == 2).all()                        # a point mass: every direction sharp
    assert (frame.flipd_uncond[:3] < frame.flipd_uncond[3:].min()).all()
    assert "flipd_cond" not in frame and "jeon_sample" not in frame    # unconditional model
    assert set(sec) >= {"flipd_uncond", "n_sharp_uncond"}


def test_eval_detection_writes_the_rows(tmp_path):
    import json

    from memviz.cli import main
    from memviz.detect import KEYS

    out = tmp_path / "eval.json"
    rc = main(["eval-detection", "--model", str(ROOT / "assets" / "models" / "demo-mnist"), "--n", "1",
               "--steps", "1", "2", "--reps", "1", "--n-ordinary", "6", "--sample-steps", "4", "--json", str(out),
               "--scores", str(tmp_path / "scores.parquet")])
    rows = json.loads(out.read_text())
    import pandas as pd

    from memviz.detect import auroc

    scores = pd.read_parquet(tmp_path / "scores.parquet")
    jeon1 = scores[(scores.detector == "jeon") & (scores.steps == 1)]
    assert len(jeon1) == 22 and jeon1.positive.sum() == 12          # one query per prompt at reps = 1
    assert auroc(jeon1.positive, jeon1.score) == next(r["auroc"] for r in rows
                                                      if r["detector"] == "jeon" and r["steps"] == 1)
    assert rc == 0 and all(tuple(r) == KEYS for r in rows)
    prompt = [r for r in rows if r["level"] == "prompt"]
    assert {r["detector"] for r in prompt} == {"wen", "jeon", "flipd_cond", "flipd_uncond", "nn_distance",
                                              "calibrated_l2"}
    assert all(r["n_pos"] == 12 and r["n_neg"] == 10 for r in prompt)
    sample = [r for r in rows if r["level"] == "sample"]
    assert all(r["n_pos"] == 26 and r["n_neg"] == 6 and r["n"] is None for r in sample)
    assert all(0 <= r["auroc"] <= 1 and r["seconds"] >= 0 for r in rows)
    jeon = next(r for r in prompt if r["detector"] == "jeon" and r["steps"] == 1)
    assert jeon["auroc"] >= 0.9                       # planted prompts are found even at n = 1, one step


def test_eval_detection_needs_a_planted_truth(make_model):
    from memviz.detect import eval_detection

    with pytest.raises(ValueError, match="planted"):
        eval_detection(make_model())
