"""Mitigations: known answers on a closed-form model with one planted point, the registry's
sentences, and the lab and CLI end to end on the bundled demos."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from memviz.mitigate import MITIGATIONS, mitigations
from memviz.model.adapter import DiffusionModel
from memviz.model.closed_form import GaussianDenoiser, GaussianMixtureDenoiser
from tests.conftest import DEMO_MNIST, DEMO_MNIST_TEXT

POINT = torch.full((4,), 0.6)  # the planted training image (D = 4)


class PlantedPoint(torch.nn.Module):
    """Exact eps of a class model whose class "c" is half a planted point (variance 1e-4) and half
    N(0, 0.05 I), and whose null class is N(0, 0.05 I): plain sampling copies the point about half
    the time, from the x_T in its basin."""

    def __init__(self):
        super().__init__()
        cov = 0.05 * torch.eye(4)
        self.c = GaussianMixtureDenoiser(
            torch.stack([POINT, torch.zeros(4)]),
            torch.stack([1e-4 * torch.eye(4), cov]),
            (1, 2, 2),
            weights=torch.tensor([0.5, 0.5]),
        )
        self.u = GaussianDenoiser(torch.zeros(4), cov, (1, 2, 2))
        self.config = SimpleNamespace(sample_size=(2, 2), in_channels=1, num_class_embeds=2)

    def forward(self, x, timestep, class_labels=None, **_):
        tau = torch.as_tensor(timestep, dtype=torch.float64).expand(len(x))
        labels = torch.ones(len(x), dtype=torch.long) if class_labels is None else class_labels
        c = (labels == 0).view(-1, 1, 1, 1).to(x)
        return SimpleNamespace(sample=c * self.c(x, tau).sample + (1 - c) * self.u(x, tau).sample)


@pytest.fixture(scope="module")
def planted():
    return DiffusionModel(PlantedPoint(), DDPMScheduler(), meta={"class_names": ["c"]}, device="cpu")


def _copies(out) -> float:
    return float(((out.x0.flatten(1) - POINT).norm(dim=1) < 0.3).float().mean())


def test_initial_noise_moves_x_T_out_of_the_planted_points_basin(planted):
    plain = MITIGATIONS["none"](planted, "c", 200, seed=0, steps=20, guidance_scale=1.0)
    chosen = MITIGATIONS["initial-noise"](planted, "c", 200, seed=0, steps=20, guidance_scale=1.0, knob=16)
    assert 0.35 < _copies(plain.out) < 0.75 and _copies(chosen.out) < 0.02
    moved = np.asarray(chosen.info["chosen_candidate"]) != 0
    assert moved.mean() > 0.3 and torch.equal(chosen.out.noise[~moved], plain.out.noise[~moved])  # kept where safe
    one = MITIGATIONS["initial-noise"](planted, "c", 8, seed=0, steps=20, guidance_scale=1.0, knob=1)
    torch.testing.assert_close(one.out.x0, plain.out.x0[:8])  # 1 candidate: the plain generation


def test_sails_gradient_steps_move_x_T_out_of_the_basin_on_its_own_sphere(planted):
    plain = MITIGATIONS["none"](planted, "c", 200, seed=0, steps=20, guidance_scale=1.0)
    moved = MITIGATIONS["initial-noise-opt"](planted, "c", 200, seed=0, steps=20, guidance_scale=1.0, knob=40)
    assert 0.35 < _copies(plain.out) < 0.75 and _copies(moved.out) < 0.02
    norms = lambda x: x.flatten(1).norm(dim=1)  # noqa: E731
    torch.testing.assert_close(norms(moved.out.noise), norms(plain.out.noise))  # still on the shell it was drawn on
    info = moved.info
    assert (
        np.median(info["moved"]) > 0.5
        and min(info["step_kept"]) > 0
        and all(e <= s for s, e in zip(info["loss_start"], info["loss_end"]))
    )
    none = MITIGATIONS["initial-noise-opt"](planted, "c", 8, seed=0, steps=20, guidance_scale=1.0, knob=0)
    torch.testing.assert_close(none.out.x0, plain.out.x0[:8])  # 0 steps: the plain generation


def test_the_guidance_switch_turns_on_after_each_rows_first_local_minimum():
    from memviz.mitigate.guidance import _Switch

    curves = torch.tensor([[5.0, 4, 3, 4, 2, 5], [5, 6, 7, 8, 9, 9.5], [5, 4, 3, 2, 1, 2]])  # (rows, steps)
    switch = _Switch(3, early=0.0, late=7.5)
    ws = []
    for k in range(curves.shape[1]):
        ws.append(switch(1 - k / 6))
        switch.step(SimpleNamespace(index=k, eps_cond=curves[:, k, None], eps_uncond=torch.zeros(3, 1)))
    assert switch.at.tolist() == [4, -1, 6]  # minima at steps 2 and 4, seen at steps 3 and 5
    assert ws[:4] == [0.0] * 4 and ws[4].tolist() == [7.5, 0.0, 0.0] and ws[5].tolist() == [7.5, 0.0, 0.0]
    assert switch.pending()  # row 1 still waits: both outputs are still needed
    done = _Switch(1, early=0.0, late=1.0)
    for k, v in enumerate([3.0, 2.0, 3.0]):
        done.step(SimpleNamespace(index=k, eps_cond=torch.tensor([[v]]), eps_uncond=torch.zeros(1, 1)))
    assert not done.pending() and done.at.tolist() == [3]
    done.step(SimpleNamespace(index=3, eps_cond=torch.tensor([[1.0]]), eps_uncond=None))  # w = 1: conditional only
    assert done.at.tolist() == [3]


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_guidance_schedule_switches_each_generation_on_its_own_cfg_norm_curve():
    """Until its switch a generation follows the early scale, so sampling at that scale throughout
    gives each row's curve, whose first local minimum k - 1 puts the switch at k + 1."""
    model = DiffusionModel.from_pretrained("demo-mnist")
    norms = []
    early = model.sample(
        8,
        cond="memorized-07",
        steps=20,
        seed=0,
        guidance_scale=lambda t: 0.0,
        batch_size=8,
        uncond=True,
        callback=lambda s: norms.append((s.eps_cond - s.eps_uncond).flatten(1).norm(dim=1)),
    )
    c = torch.stack(norms)  # (steps, n)
    expect = [
        next((k + 1 for k in range(2, 20) if c[k - 1, i] < c[k - 2, i] and c[k - 1, i] < c[k, i]), 20) for i in range(8)
    ]
    out = MITIGATIONS["guidance-schedule"](model, "memorized-07", 8, seed=0, steps=20, knob=0.0)
    assert out.info["switch_step"] == expect and any(k < 20 for k in expect)
    sizes = []
    output = model.output
    model.output = lambda x, *a, **k: sizes.append(len(x)) or output(x, *a, **k)  # the batch each step computes
    try:
        every = MITIGATIONS["guidance-schedule"](model, "memorized-07", 8, seed=0, steps=50, knob=0.0).info
    finally:
        del model.output
    last = max(every["switch_step"])
    # both outputs (16 rows) until the last row has switched, then the conditional one alone (8) at w = 1
    assert last < 50 and sizes == [16] * last + [8] * (50 - last)
    assert not torch.equal(out.out.x0, early.x0)  # guided after the switch
    flat = MITIGATIONS["guidance-schedule"](model, "3", 2, seed=0, steps=6, guidance_scale=1.0)  # the default: early 1
    assert torch.equal(flat.out.x0, model.sample(2, cond="3", steps=6, seed=0, guidance_scale=1.0).x0)  # no guidance
    assert flat.info["switch_step"] == [6, 6]  # to withhold at w = 1: plain


def test_the_refusal_baseline_is_the_unconditional_model(planted):
    out = MITIGATIONS["unconditional"](planted, "c", 50, seed=0, steps=20)
    torch.testing.assert_close(out.out.x0, planted.sample(50, cond=None, steps=20, seed=0).x0)
    assert _copies(out.out) == 0 < _copies(MITIGATIONS["none"](planted, "c", 50, seed=0, steps=20).out)


def test_unknown_methods_knobs_out_of_range_and_prompts_the_model_lacks_are_one_sentence(planted):
    from memviz.mitigate.lab import check_prompts

    with pytest.raises(ValueError, match="Unknown mitigation 'sail'; the registered ones are none"):
        mitigations(["sail"])
    with pytest.raises(ValueError, match=r"candidates must be a whole number in \[1, 256\]; got 0.5"):
        MITIGATIONS["initial-noise"](planted, "c", 2, knob=0.5)
    with pytest.raises(ValueError, match=r"early must be a number in \[-4, 1\]; got 2"):
        MITIGATIONS["guidance-schedule"](planted, "c", 2, knob=2)
    with pytest.raises(
        ValueError, match="random-tokens edits the prompt's words, and this model is conditioned by class labels"
    ):
        mitigations(["random-tokens"], planted)
    notes = []
    assert [m.name for m in mitigations(["all"], planted, notes)] == [
        "none",
        "guidance-schedule",
        "initial-noise",
        "initial-noise-opt",
        "unconditional",
    ]
    assert len(notes) == 3 and "has no class_embedding layer" in notes[0]
    assert "prompt-edit edits the prompt's words" in notes[1]  # a closed-form model: no embedding layer
    with pytest.raises(ValueError, match="The model has no class 'dog'; its classes are c."):
        check_prompts(planted, ["c", "dog"])


def test_seeds_reproduce():
    m = MITIGATIONS["initial-noise"]
    model = DiffusionModel(PlantedPoint(), DDPMScheduler(), meta={"class_names": ["c"]}, device="cpu")
    a, b = (m(model, "c", 6, seed=3, steps=10, guidance_scale=1.0, knob=4) for _ in range(2))
    c = m(model, "c", 6, seed=4, steps=10, guidance_scale=1.0, knob=4)
    assert torch.equal(a.out.x0, b.out.x0) and not torch.equal(a.out.x0, c.out.x0)


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_the_cli_writes_every_prompt_and_method_with_the_gates_decision(tmp_path, capsys):
    from memviz.cli.commands import main

    out = tmp_path / "lab"
    args = [
        "mitigate",
        "--model",
        "demo-mnist",
        "--prompts",
        "3",
        "memorized-00",
        "--methods",
        "all",
        "--n",
        "3",
        "--steps",
        "8",
        "--knob",
        "initial-noise=2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipped: random-tokens edits the prompt's words" in err
    report = json.loads((out / "report.json").read_text())
    rows = {(r["prompt"], r["method"]): r for r in report["rows"]}
    methods = ("none", "embedding-opt", "guidance-schedule", "initial-noise", "initial-noise-opt", "unconditional")
    assert set(rows) == {(p, m) for p in ("3", "memorized-00") for m in methods}
    assert rows["memorized-00", "none"]["copy_rate"] == 1.0 and rows["memorized-00", "none"]["flagged"]
    assert rows["memorized-00", "none"]["memorization"] == "OD-Mem"
    assert rows["3", "none"]["memorization"] == "DD-Mem among ordinary"  # one of its images is duplicated
    assert not rows["3", "none"]["flagged"] and not rows["3", "initial-noise"]["applied"]  # the gate left it alone
    assert rows["3", "initial-noise"]["copy_rate"] == rows["3", "none"]["copy_rate"]
    assert rows["memorized-00", "initial-noise"]["model_calls"] > rows["memorized-00", "none"]["model_calls"]
    assert rows["3", "none"]["utility"] >= 2 / 3 and rows["memorized-00", "none"]["utility"] is None  # no label to keep
    assert report["gate"]["detector"] == "wen" and report["gate"]["threshold"] > 0
    with np.load(out / "generations.npz", allow_pickle=False) as z:
        assert z["images"].shape == (2 * len(methods) * 3, 1, 16, 16) and z["images"].dtype == np.float32
        assert 0 <= z["images"].min() and z["images"].max() <= 1 and list(z["method"][:3]) == ["none"] * 3
        assert list(z["prompt"][:3]) == ["3"] * 3
    again = tmp_path / "again"
    assert main(args[:-1] + [str(again)]) == 0  # seeds reproduce, end to end
    with np.load(out / "generations.npz") as a, np.load(again / "generations.npz") as b:
        assert np.array_equal(a["images"], b["images"])
    assert (
        main(
            [
                "mitigate",
                "--model",
                "demo-mnist",
                "--prompts",
                "3",
                "--methods",
                "random-tokens",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert main(["mitigate", "--list"]) == 0 and "initial-noise" in capsys.readouterr().out


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_random_tokens_edit_a_text_prompt_reproducibly():
    model = DiffusionModel.from_pretrained("demo-mnist-text")
    a = MITIGATIONS["random-tokens"](model, "a handwritten digit three", 2, seed=1, steps=4, knob=3)
    b = MITIGATIONS["random-tokens"](model, "a handwritten digit three", 2, seed=1, steps=4, knob=3)
    words = a.info["prompt"].split()
    assert (
        a.info["prompt"] == b.info["prompt"]
        and len(words) == 4 + 3
        and words[:4] == ["a", "handwritten", "digit", "three"]
    )
    assert torch.equal(a.out.images, b.out.images)


@pytest.mark.slow  # about a minute: Adam steps through the UNet's backward pass
@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
@pytest.mark.parametrize("name, prompt", [("demo-mnist-text", "a handwritten digit three"), ("demo-mnist", "3")])
def test_embedding_opt_lowers_the_first_steps_cfg_norm_to_its_target(name, prompt):
    """Text models: the encoder states; class models: the class embedding (the adapter's seam)."""
    model = DiffusionModel.from_pretrained(name)
    a = MITIGATIONS["embedding-opt"](model, prompt, 2, seed=0, steps=10, knob=0.8)
    assert a.info["norm_end"] < 0.8 * a.info["norm_start"] and 0 < a.info["steps"] < 50
    b = MITIGATIONS["embedding-opt"](model, prompt, 2, seed=0, steps=10, knob=0.8)
    assert torch.equal(a.out.images, b.out.images)  # seeds reproduce
    if model.is_class_conditional:  # the embedding seam is exact
        x = torch.randn(2, *model.sample_shape)
        torch.testing.assert_close(
            model.eps(x, 0.5, cond=model.class_embedding_of(prompt), guidance_scale=2.0),
            model.eps(x, 0.5, cond=prompt, guidance_scale=2.0),
        )
        with pytest.raises(ValueError, match=r"A class embedding must have shape \(1, 128\) or \(2, 128\)"):
            model.eps(x, 0.5, cond=torch.zeros(1, 7))


@pytest.mark.slow  # six lab runs
@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_the_sweep_traces_a_knob_and_marks_the_pareto_front(tmp_path):
    from memviz.cli.commands import main

    assert (
        main(
            [
                "mitigate",
                "--model",
                "demo-mnist",
                "--prompts",
                "memorized-00",
                "3",
                "--methods",
                "guidance-schedule",
                "--n",
                "2",
                "--steps",
                "6",
                "--gate",
                "none",
                "--sweep",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "pareto.json").read_text())
    assert [r["method"] for r in rows] == ["none"] + ["guidance-schedule"] * 5
    assert [r["knob"] for r in rows[1:]] == sorted(r["knob"] for r in rows[1:]) and any(r["front"] for r in rows)
    best = min(rows, key=lambda r: (r["copy_rate"], -r["utility"]))
    assert best["front"]  # the least copying row is on the front


def test_the_pareto_front_keeps_only_the_undominated():
    from memviz.mitigate.lab import pareto_front

    copy = [1.0, 0.1, 0.1, 0.5, 0.0, 0.2]
    util = [1.0, 0.9, 0.8, 0.5, float("nan"), 0.95]
    assert pareto_front(copy, util).tolist() == [True, True, False, False, False, True]


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_utility_labels_and_the_gates_calibration_leave_planted_prompts_out():
    """A planted prompt has no label to keep (its one image: showing it is a copy), on class and text
    models alike; the gate calibrates on ordinary training conditions only."""
    from memviz.data.captions import ordinary_captions, planted_prompts
    from memviz.mitigate.lab import calibration_prompts
    from memviz.mitigate.utility import expected_labels
    from memviz.study.core import open_study

    study = open_study("demo-mnist", n=1)
    assert expected_labels(study, ["3", "memorized-00"]) == [3, None]
    text = open_study("demo-mnist-text", n=1)
    table = text.model.meta["captions"]
    planted = planted_prompts(table)
    assert expected_labels(text, [ordinary_captions(table, 7)[0], planted[0], planted[-1], "a scanned three"]) == [
        7,
        None,
        None,
        3,
    ]
    calib = calibration_prompts(text, k=200)
    assert not set(calib) & set(planted) and len(calib) == 10  # one caption per digit in its data


class OneWordEncoder(torch.nn.Module):
    """A text encoder that passes only the tokens of one word on (every other state is 0): the CFG norm
    depends on that word alone, so its attribution is the only one that is not exactly 0."""

    def __init__(self, vocab: int, keep: list[int]):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, 8)
        self.register_buffer("keep", torch.tensor(keep))

    def forward(self, ids):
        v = self.emb(ids)
        return (v * torch.isin(ids, self.keep)[..., None],)


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_prompt_edit_attributes_the_cfg_norm_to_the_one_word_it_depends_on():
    """Known answer: the encoder hides every word but "memorization" (two WordPiece tokens), so only
    that word's attribution is non-zero, both its pieces count, and it is the word dropped."""
    from diffusers import UNet2DConditionModel

    from memviz.mitigate.prompt_edit import drop_words, token_attribution
    from memviz.model.text import minilm

    _, tok = minilm(16)
    pieces = tok("memorization", add_special_tokens=False).input_ids
    assert len(pieces) == 2
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    model = DiffusionModel(
        unet, DDPMScheduler(), text_encoder=OneWordEncoder(len(tok), pieces), tokenizer=tok, device="cpu"
    )
    prompt = "a photo of memorization in a quiet zyxwv orchard"
    scores = token_attribution(model, prompt, torch.randn(3, 1, 8, 8), 0.9)
    assert [w for w, _ in scores] == prompt.split()
    assert [a > 0 for _, a in scores] == [w == "memorization" for w in prompt.split()]
    assert drop_words(scores, 1) == ("a photo of in a quiet zyxwv orchard", [3])
    assert len(drop_words(scores, 16)[0].split()) == 1  # at least one word is kept
    out = MITIGATIONS["prompt-edit"](model, prompt, 2, seed=0, steps=3, knob=1)
    assert (
        out.info["dropped"] == ["memorization"]
        and out.info["dropped_at"] == [3]
        and out.cond == "a photo of in a quiet zyxwv orchard"
    )


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_prompt_edit_drops_content_words_of_a_planted_caption_reproducibly():
    from memviz.data.captions import planted_prompts

    model = DiffusionModel.from_pretrained("demo-mnist-text")
    prompt = planted_prompts(model.meta["captions"])[0]
    a, b = (MITIGATIONS["prompt-edit"](model, prompt, 2, seed=1, steps=4, knob=2) for _ in range(2))
    assert a.info == b.info and torch.equal(a.out.images, b.out.images)
    assert len(a.info["dropped"]) == 2 and len(a.cond.split()) == len(prompt.split()) - 2
    assert not set(a.info["dropped"]) & {"of", "the", "a", "at", "for"}  # function words carry little


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_a_shared_memo_judges_the_plain_generation_and_the_gate_once():
    from memviz.mitigate.lab import run_lab
    from memviz.study.core import open_study

    study = open_study("demo-mnist", n=1)
    memo = {}
    first = run_lab(study, ["3"], ["guidance-schedule"], n=2, steps=3, memo=memo)
    calls = study.model.unet_calls
    again = run_lab(study, ["3"], ["guidance-schedule"], n=2, steps=3, memo=memo, knobs={"guidance-schedule": 0.2})
    assert not first.rows.flagged.any() and study.model.unet_calls == calls  # nothing flagged: no call at all
    cols = ["copy_rate", "median_nn_distance", "utility", "gate_score", "gate_seconds", "gate_model_calls"]
    assert (
        (first.rows.gate_model_calls > 0).all()
        and first.rows[cols].equals(again.rows[cols])
        and np.array_equal(first.images, again.images)
    )
    assert again.gate["threshold"] == first.gate["threshold"]


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_own_copies_are_copies_of_the_prompts_own_training_images():
    """A planted prompt copies its own image every time; the unconditional model does not, and whatever
    copies it makes are of other training images (own_copy_rate 0, whatever copy_rate says)."""
    from memviz.mitigate.lab import reference_conditions, run_lab
    from memviz.study.core import open_study

    study = open_study("demo-mnist", n=1)
    conds = reference_conditions(study)
    assert len(conds) == len(study.reference.reference) and (conds == "memorized-00").sum() == 1
    rows = run_lab(study, ["memorized-00"], ["unconditional"], n=4, steps=20, gate="none").rows.set_index("method")
    assert rows.loc["none", "own_copy_rate"] == rows.loc["none", "copy_rate"] == 1.0
    assert rows.loc["unconditional", "own_copy_rate"] == 0.0


@pytest.mark.skipif(not DEMO_MNIST_TEXT.exists(), reason="demo-mnist-text is not bundled")
def test_each_prompt_is_named_by_the_memorization_its_training_rows_plant():
    from memviz.mitigate.lab import prompt_memorization
    from memviz.study.core import open_study

    study = open_study("demo-mnist-text", n=1)
    table = study.model.meta["captions"]
    prompts = [table["dd"][0], table["od"][0], "a handwritten digit three", "a drawing of the figure three"]
    assert prompt_memorization(study, prompts) == ["DD-Mem", "OD-Mem", "none", "unseen"]
    assert prompt_memorization(SimpleNamespace(train=None, model=study.model), prompts[:1]) == ["unknown"]
    mixed = SimpleNamespace(
        model=study.model, train=study.train, kind=lambda rows: np.where(np.asarray(rows) % 2 == 0, "OD-Mem", "none")
    )  # a prompt holding OD-Mem and ordinary rows
    assert prompt_memorization(mixed, ["a handwritten digit three"]) == ["mixed"]
