"""Training: seeded, resumable, saves a loadable model; the toy demo learns its toy."""

import json

import numpy as np
import pytest
import torch

from memviz.cli.commands import main
from memviz.data import mnist5k, plant_memorization, planted_split
from memviz.model.adapter import DiffusionModel
from memviz.train.loop import TrainConfig, train

TINY = dict(block_out_channels=(8, 16), norm_num_groups=4, batch_size=8, warmup_steps=1, save_every=2)


@pytest.fixture(scope="module")
def tiny_data():
    base = mnist5k(8)
    truth = plant_memorization(base, n_duplicated=2, copies=3, images_per_prompt=(1, 1), n_test=4000)
    train_set, _ = planted_split(base, truth)
    return train_set, truth


def test_train_saves_a_loadable_class_conditional_model(tmp_path, tiny_data):
    data, truth = tiny_data
    out = train(
        data,
        tmp_path / "m",
        TrainConfig(steps=3, **TINY),
        weights=data.meta["weight"],
        meta={"planted": truth.to_dict(), "class_names": truth.class_names},
        progress=False,
    )
    model = DiffusionModel.from_pretrained(out)
    assert model.is_class_conditional and model.class_names[-1] == "memorized-01"
    assert model.null_class == len(truth.class_names)
    info = model.meta["training"]
    assert info["steps_done"] == 3 and info["images_seen"] == 24
    assert model.sample(2, cond="memorized-00", steps=2).images.shape == (2, 1, 8, 8)


def test_training_resumes_exactly(tmp_path, tiny_data):
    """A run stopped after one step (time limit) and resumed equals an uninterrupted run."""
    data, _ = tiny_data
    train(data, tmp_path / "a", TrainConfig(steps=4, **TINY), progress=False)
    train(data, tmp_path / "b", TrainConfig(steps=4, max_minutes=0, **TINY), progress=False)
    assert DiffusionModel.from_pretrained(tmp_path / "b").meta["training"]["steps_done"] == 1
    train(data, tmp_path / "b", TrainConfig(steps=4, **TINY), progress=False)
    a, b = (DiffusionModel.from_pretrained(tmp_path / p) for p in "ab")
    x = torch.randn(2, 1, 8, 8)
    assert b.meta["training"]["steps_done"] == 4
    assert torch.equal(a.eps(x, 0.5, cond=1), b.eps(x, 0.5, cond=1))


@pytest.mark.slow
def test_demo_toy_recipe_learns_the_point_mass_and_the_isolated_point(tmp_path):
    assert main(["train", "demo-toy", "--out", str(tmp_path / "toy"), "--no-progress"]) == 0
    _check_toy(DiffusionModel.from_pretrained(tmp_path / "toy"))


def _check_toy(model: DiffusionModel):
    x = model.sample(1000, steps=100, seed=0).x0.flatten(1)
    r = x.norm(dim=1)
    iso = 0.8 * torch.tensor([np.cos(np.pi / 3), np.sin(np.pi / 3)])
    assert ((r - 0.8).abs() < 0.05).float().mean() > 0.8  # the circle
    assert (r < 0.1).float().mean() > 0.02  # the point mass (5% of the data)
    assert ((x - iso).norm(dim=1) < 0.1).float().mean() > 0.002  # the isolated point (1% of what is seen)


def test_bundled_demo_toy_learned_its_toy():
    from tests.conftest import ROOT

    _check_toy(DiffusionModel.from_pretrained(ROOT / "assets" / "models" / "demo-toy"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memviz: No model at") and err.count("\n") == 1
    assert main(["train", "demo-nothing", "--out", str(tmp_path)]) == 2
    assert "Unknown recipe" in capsys.readouterr().err


def test_cli_info_and_sample(tmp_path, capsys):
    from tests.conftest import ROOT

    toy = ROOT / "assets" / "models" / "demo-toy"
    assert main(["info", str(toy)]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [2, 1, 1]
    assert main(["sample", str(toy), "--n", "4", "--steps", "3", "--out", str(tmp_path / "g.npz")]) == 0
    assert np.load(tmp_path / "g.npz")["x0"].shape == (4, 2, 1, 1)
    assert main(["sample", str(toy), "--n", "4", "--steps", "3", "--out", str(tmp_path / "g.png")]) == 2
    assert "channels" in capsys.readouterr().err
