"""Detectors: metrics by hand, Wen's score in closed form, the prompt- and sample-level
pipelines on a tiny random model and on demo-toy, and eval-detection's JSON."""

import numpy as np
import pytest
import torch

from memviz.detect import DETECTORS, auroc, detectors, prompt_scores, tpr_at_fpr, wen_score
from memviz.detect.prompts import prompt_seed
from memviz.model.closed_form import class_gaussian_model
from memviz.neighbors.index import NeighborIndex

SHAPE = (1, 8, 8)


def test_metrics_by_hand():
    pos = np.array([1, 1, 0, 0, 0], bool)
    assert auroc(pos, [5, 4, 3, 2, 1]) == 1.0 and auroc(pos, [1, 2, 3, 4, 5]) == 0.0
    assert auroc(pos, [5, 2, 3, 4, 1]) == pytest.approx(4 / 6)
    assert tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.01) == 0.5  # above every negative: only the first positive
    assert tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.34) == 0.5 and tpr_at_fpr(pos, [5, 2, 3, 4, 1], 0.67) == 1.0
    with pytest.raises(ValueError, match="both"):
        auroc(np.ones(3, bool), [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        auroc(pos, [1, 2, np.nan, 4, 5])


def test_wen_score_is_the_closed_form_guidance_norm():
    t = 0.6
    model, score = class_gaussian_model()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    ref = model.sigma(t) * (score(x, t, True) - score(x, t, False)).norm(dim=1)  # eps = -sigma s
    torch.testing.assert_close(wen_score(model, "c", x, t), ref, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="condition"):
        wen_score(model, None, x, t)


def test_prompt_scores_on_a_tiny_random_model(make_model):
    model = make_model()  # class-conditional, 3 classes + null
    index = NeighborIndex(torch.rand(40, *SHAPE) * 2 - 1)
    ps = prompt_scores(model, [0, 1, 2], index, n=2, steps=3, reps=2, sample_steps=4, n_probes=2, progress=False)
    assert ps.scores["wen"].shape == (3, 2, 2, 3) and ps.scores["jeon"].shape == (3, 2, 2, 1)  # Jeon: first step
    assert ps.scores["asthana"].shape == (3, 2, 2) and ps.calls_for("asthana", 1) == 2
    assert ps.scores["flipd_cond"].shape == (3, 2, 2) and ps.scores["calibrated_l2"].shape == (3, 2, 2)
    assert all(np.isfinite(v).all() for v in ps.scores.values())
    table = ps.table(n=1, steps=2)
    assert len(table) == 6 and table.prompt.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(table.wen, ps.scores["wen"][:, :, :1, :2].mean((2, 3)).ravel())
    np.testing.assert_allclose(table.flipd_uncond, -ps.scores["flipd_uncond"][:, :, :1].mean(2).ravel())
    assert 0 < ps.seconds_for("jeon", 1, 2) < ps.seconds_for("jeon", 2, 3)
    again = prompt_scores(model, [0, 1, 2], index, n=2, steps=3, reps=2, sample_steps=4, n_probes=2, progress=False)
    np.testing.assert_array_equal(again.scores["jeon"], ps.scores["jeon"])  # stored per prompt: read back
    with pytest.raises(ValueError, match="n = 2"):
        ps.table(n=3, steps=1)
    with pytest.raises(ValueError, match="steps"):
        prompt_scores(model, [0], index, steps=9, sample_steps=4)


def test_sample_level_detectors_on_demo_toy():
    from memviz.study.core import open_study

    study = open_study("demo-toy", n=None)
    kind = study.kind(study.rows)
    rows = np.r_[study.rows[kind == "DD-Mem"], study.rows[kind == "none"][:5]]  # the point mass: one distinct row
    score = {d.name: d.sample(study, rows, 0.05) for d in detectors("sample") if "condition" not in d.needs}
    assert set(score) == {"flipd_uncond", "nn_distance", "n_sharp_uncond", "mmh_verdict"}  # unconditional model
    assert score["nn_distance"][0] == 0 and (score["nn_distance"][1:] > 0).all()  # the point mass's copies
    assert score["n_sharp_uncond"][0] == 2  # a point mass: every direction sharp
    assert score["flipd_uncond"][0] < score["flipd_uncond"][1:].min()
    assert score["mmh_verdict"][0] == 1.0


def test_every_detector_declares_itself_and_the_cli_lists_them(capsys):
    import json

    from memviz.cli.commands import main

    assert main(["detectors", "--json", "--model", "demo-mnist"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == list(DETECTORS)
    assert all({"name", "levels", "needs", "sign", "cost", "model_calls"} <= set(d) for d in listed)
    by_name = {d["name"]: d for d in listed}
    assert by_name["wen"]["levels"] == ["prompt"] and by_name["wen"]["sign"] == 1
    assert by_name["flipd_cond"]["sign"] == -1 and by_name["n_sharp_cond"]["model_calls"] == 257  # 1 + D
    assert main(["eval-detection", "--model", "demo-mnist", "--detectors", "wen", "sharpness"]) == 2
    assert "Unknown detector 'sharpness'; the registered ones are" in capsys.readouterr().err


def test_adding_a_detector_is_one_registration(make_model):
    """A new prompt-level detector, registered, is scored by the same loop with no other change."""
    from memviz.detect import Detector, register

    register(
        Detector(
            "mean_pixel",
            ("prompt",),
            ("generation",),
            +1,
            "0",
            lambda d, p: 0,
            "a test",
            generation=lambda g: g.out.images.flatten(1).mean(1).numpy(),
        )
    )
    try:
        model = make_model()
        index = NeighborIndex(torch.rand(40, *SHAPE) * 2 - 1)
        ps = prompt_scores(
            model, [0, 1], index, n=2, steps=1, reps=1, sample_steps=3, progress=False, names=["mean_pixel", "wen"]
        )
        assert set(ps.scores) == {"mean_pixel", "wen"}
        out = model.sample(2, 1, 3, seed=prompt_seed(1, 0))  # prompt 1's seed: from its text, not its place
        np.testing.assert_allclose(ps.scores["mean_pixel"][1, 0], out.images.flatten(1).mean(1).numpy(), rtol=1e-5)
    finally:
        DETECTORS.pop("mean_pixel")


def test_a_prompt_scores_the_same_in_any_list_and_any_batch(make_model, tmp_path, monkeypatch):
    """The seed of a prompt's generations comes from its text and the base seed: the same prompt at
    another place in another list, batched with other prompts or alone, scores the same."""
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    model = make_model()
    index = NeighborIndex(torch.rand(40, *SHAPE) * 2 - 1)
    kw = dict(n=2, steps=2, reps=1, sample_steps=3, n_probes=2, progress=False, names=["wen", "flipd_cond"])
    a = prompt_scores(model, [0, 1, 2], index, batch_size=3, **kw)
    b = prompt_scores(model, [2, 0], index, batch_size=1, seed=0, **{**kw, "n_probes": 2})
    for name in ("wen", "flipd_cond"):
        np.testing.assert_allclose(b.scores[name][0], a.scores[name][2], rtol=1e-4)
        np.testing.assert_allclose(b.scores[name][1], a.scores[name][0], rtol=1e-4)
    c = prompt_scores(model, [0, 1, 2], index, seed=1, **kw)
    assert not np.allclose(c.scores["wen"], a.scores["wen"])  # the base seed still matters
    assert prompt_seed("a cat") == prompt_seed("a cat") != prompt_seed("a cat", 1)


def test_wen_from_the_sampler_equals_wen_at_the_trajectory(make_model):
    """Wen's stepwise score reads the sampler's own two outputs; it equals the score recomputed at x_t."""
    from memviz.detect.prompts import score_generations

    model = make_model()
    index = NeighborIndex(torch.rand(40, *SHAPE) * 2 - 1)
    scores, _, g = score_generations(model, 2, index, 3, 3, 4, seed=5, dets=[DETECTORS["wen"]])
    traj = model.sample(3, 2, 4, seed=5, return_trajectory=True)
    for s in range(3):
        np.testing.assert_allclose(
            scores["wen"][:, s], wen_score(model, 2, traj.trajectory[s], float(traj.ts[s])), rtol=1e-4
        )


def test_eval_detection_writes_the_rows(tmp_path):
    import json

    from memviz.cli.commands import main
    from memviz.detect import KEYS

    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval-detection",
            "--model",
            "demo-mnist",
            "--n",
            "1",
            "--steps",
            "1",
            "2",
            "--reps",
            "1",
            "--n-ordinary",
            "6",
            "--sample-steps",
            "4",
            "--json",
            str(out),
            "--scores",
            str(tmp_path / "scores.parquet"),
        ]
    )
    rows = json.loads(out.read_text())
    import pandas as pd

    from memviz.detect import auroc

    scores = pd.read_parquet(tmp_path / "scores.parquet")
    jeon1 = scores[(scores.detector == "jeon") & (scores.steps == 1)]
    assert len(jeon1) == 22 and jeon1.positive.sum() == 12  # one query per prompt at reps = 1
    assert auroc(jeon1.positive, jeon1.score) == next(
        r["auroc"] for r in rows if r["detector"] == "jeon" and r["steps"] == 1
    )
    assert rc == 0 and all(tuple(r) == KEYS for r in rows)
    prompt = [r for r in rows if r["level"] == "prompt"]
    assert {r["detector"] for r in prompt} == {d.name for d in detectors("prompt")} - {"bright-ending"}  # no attention
    assert all(r["n_pos"] == 12 and r["n_neg"] == 10 and r["split"] == "exact" for r in prompt)
    assert all(r["guidance_scale"] == 1.0 for r in prompt)  # the demo's recommended scale
    assert {r["steps"] for r in prompt if r["detector"] == "jeon"} == {1}  # its paper's protocol: the first step
    sample = [r for r in rows if r["level"] == "sample"]
    assert all(r["n_pos"] == 26 and r["n_neg"] == 6 and r["n"] is None for r in sample)
    assert all(r["seconds_per_query"] > 0 for r in prompt) and all(r["seconds_per_query"] >= 0 for r in sample)
    assert all(0 <= r["auroc_low"] <= r["auroc"] <= r["auroc_high"] <= 1 for r in rows)
    calls = {(r["detector"], r["steps"]): r["model_calls_per_query"] for r in prompt}
    assert calls["asthana", None] == 2 and calls["wen", 1] == 1 and calls["wen", 2] == 2
    assert calls["nn_distance", 4] == 4 and calls["flipd_cond", 4] > 4  # the sampler's 4 calls, FLIPD's own
    assert all(r["peak_memory_mb"] >= 0 for r in prompt)
    auc = {(r["level"], r["detector"], r["steps"]): r["auroc"] for r in rows if not r["setting"].startswith("cal")}
    assert auc["prompt", "jeon", 1] >= 0.9  # planted prompts are found even at n = 1, one step
    assert auc["sample", "nn_distance", None] > 0.6  # the 10 duplicated images sit at 0 from their copies
    assert auc["sample", "mmh_verdict", None] >= 0.9 and auc["sample", "flipd_cond", None] >= 0.9
    assert auc["sample", "n_sharp_cond", None] >= 0.9  # planted images sit in sharp peaks
    assert set(scores.columns) >= {"row", "prompt", "group"}  # every query names what it scored
    assert set(scores[scores.level == "sample"].row) <= set(range(6000))


def test_eval_detection_needs_a_planted_truth(make_model):
    from memviz.detect import eval_detection

    with pytest.raises(ValueError, match="planted"):
        eval_detection(make_model())
