"""The anisotropy and Bright Ending detectors against closed forms and planted cases, the cost
meter, the AUROC interval, and the sentences for a detector a model cannot serve."""

import numpy as np
import pytest
import torch

from memviz.detect import DETECTORS
from memviz.detect.registry import serving
from memviz.neighbors.index import NeighborIndex

SHAPE = (3, 4, 4)  # three channels: the anisotropy cosine is taken over channels, per pixel


def planted_gaussians():
    """A closed-form class model: "ordinary" is N(0, 0.8 I), close to the null class N(0, I);
    "memorized" is a near point mass N(mu, 1e-4 I), a planted copy. Returns (model, score)."""
    from diffusers import DDPMScheduler

    from memviz.model.adapter import DiffusionModel
    from memviz.model.closed_form import ClassGaussianDenoiser

    D = int(np.prod(SHAPE))
    eye = torch.eye(D, dtype=torch.float64)
    mu = torch.linspace(-0.8, 0.8, D, dtype=torch.float64)
    means = torch.stack([torch.zeros(D, dtype=torch.float64), mu, torch.zeros(D, dtype=torch.float64)])
    covs = torch.stack([0.8 * eye, 1e-4 * eye, eye])
    model = DiffusionModel(
        ClassGaussianDenoiser(means, covs, SHAPE),
        DDPMScheduler(),
        meta={"class_names": ["ordinary", "memorized"]},
        device="cpu",
    )

    def score(x, t, k):
        a, s = model.alpha(t), model.sigma(t)
        c = a**2 * covs[k] + s**2 * eye
        return -(x.flatten(1).double() - a * means[k]) @ torch.linalg.inv(c)

    return model, score


def test_anisotropy_is_the_closed_form_and_ranks_the_planted_prompt_first():
    from memviz.detect.asthana import cos_part, norm_part, weights
    from memviz.detect.prompts import Noise
    from memviz.model.sampling import sampling_times

    model, score = planted_gaussians()
    x_T = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(0))
    ts = sampling_times(model, 50)
    for k, name in ((0, "ordinary"), (1, "memorized")):
        p = Noise(model, name, x_T)
        t1, t48 = float(ts[0]), float(ts[-3])
        # eps = -sigma s, so eps_c - eps_u = -sigma (s_c - s_u): the norm at the first time
        ref = model.sigma(t1) * (score(x_T, t1, k) - score(x_T, t1, 2)).norm(dim=1)
        torch.testing.assert_close(norm_part(p), ref, rtol=1e-4, atol=1e-6)
        s_u, s_c = score(x_T, t48, 2).view(6, *SHAPE), score(x_T, t48, k).view(6, *SHAPE)
        ref_cos = torch.nn.functional.cosine_similarity(s_u, s_c - s_u, dim=1).flatten(1).mean(1)
        torch.testing.assert_close(cos_part(p), ref_cos, rtol=1e-4, atol=1e-5)
        assert p.spent.keys() == {0, 47}  # two batched calls, each computed once
    norm = {n: norm_part(Noise(model, n, x_T)).mean() for n in ("ordinary", "memorized")}
    assert norm["memorized"] > 3 * norm["ordinary"]  # the planted prompt ranks first
    g1, g2 = weights(model)
    both = DETECTORS["asthana"].noise(Noise(model, "memorized", x_T))
    p = Noise(model, "memorized", x_T)
    torch.testing.assert_close(both, g1 * norm_part(p) + g2 * cos_part(p))
    assert (g1, g2) == (2.0, 1.0)  # the documented default outside SD v1 / v2


def test_anisotropy_norm_is_wens_first_step_and_costs_two_calls(make_model):
    """The paper's norm is Wen's score at the first step of the 50-step schedule, on the same x_T;
    the three anisotropy detectors share two batched calls, and the stepwise detectors at one
    step read the same first outputs."""
    from memviz.detect.prompts import score_generations

    model = make_model()
    index = NeighborIndex(torch.rand(40, 1, 8, 8) * 2 - 1)
    dets = [DETECTORS[n] for n in ("asthana", "asthana-norm", "asthana-cos", "wen")]
    scores, costs, g = score_generations(model, 1, index, 4, 1, 8, seed=3, dets=dets)
    assert g is None  # nothing needed a generation: none was made
    np.testing.assert_allclose(scores["asthana-norm"], scores["wen"][:, 0], rtol=1e-5)
    assert costs["asthana"].calls[0] == 2 and costs["asthana-norm"].calls[0] == 1
    assert costs["asthana-cos"].calls[0] == 1 and costs["wen"].calls[0] == 1
    assert model.unet_calls == 2  # shared: two calls in all
    full, _, _ = score_generations(model, 1, index, 4, 3, 50, seed=3, dets=[DETECTORS["wen"]])
    np.testing.assert_allclose(full["wen"][:, 0], scores["wen"][:, 0], rtol=1e-5)  # from the sampler's callback


def test_bright_ending_mask_and_masked_norm():
    """On demo-mnist-text: recording the attention leaves the outputs unchanged; its probabilities sum
    to 1 over tokens; with a uniform mask the masked norm is Wen's; a planted caption scores above
    an ordinary one."""
    from memviz.detect.bright_ending import masked_norm, pixel_mask
    from memviz.detect.prompts import score_generations
    from memviz.model.adapter import DiffusionModel
    from memviz.model.attention import capture_cross_attention, end_token_map

    model = DiffusionModel.from_pretrained("demo-mnist-text", device="cpu")
    x = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    plain = model.eps(x, 0.5, "a scanned seven")
    with capture_cross_attention(model) as store:
        torch.testing.assert_close(model.eps(x, 0.5, "a scanned seven"), plain)
    probs = next(iter(store.values()))
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
    assert end_token_map(model, store, "a scanned seven", 2).shape == (2, 4, 4)  # the 4 x 4 down block
    index = NeighborIndex(torch.rand(20, *model.pixel_shape) * 2 - 1)
    planted, ordinary = model.meta["captions"]["dd"][0], "a handwritten digit three"
    dets = [DETECTORS["bright-ending"], DETECTORS["wen"]]
    out = {}
    for p in (planted, ordinary):
        scores, _, g = score_generations(model, p, index, 3, 5, 10, seed=1, dets=dets)
        g.attention = torch.ones_like(g.attention)
        np.testing.assert_allclose(masked_norm(g), scores["wen"], rtol=1e-4)  # a uniform mask: Wen's norm
        out[p] = scores["bright-ending"].mean()
        assert scores["bright-ending"].shape == (3, 5)
        mask = pixel_mask(g)
        assert mask.shape == (3, 16, 16) and mask.min() >= 0 and mask.max() <= 1
    assert out[planted] > out[ordinary]


def test_a_detector_the_model_cannot_serve_gets_one_sentence(capsys):
    from memviz.cli.commands import main
    from memviz.model.adapter import DiffusionModel

    assert main(["eval-detection", "--model", "demo-mnist", "--detectors", "bright-ending"]) == 2
    err = capsys.readouterr().err
    assert "bright-ending reads the prompt's cross-attention, and this model has none" in err
    assert err.count("\n") == 1
    toy = DiffusionModel.from_pretrained("demo-toy", device="cpu")
    assert "unconditional" in DETECTORS["asthana"].unavailable(toy)
    mnist = DiffusionModel.from_pretrained("demo-mnist", device="cpu")
    assert DETECTORS["asthana"].unavailable(mnist) is None
    notes = []  # not asked by name: left out, and said once
    names = [d.name for d in serving(mnist, "prompt", None, notes)]
    serving(mnist, "prompt", None, notes)
    assert "bright-ending" not in names and "asthana" in names
    assert notes == [DETECTORS["bright-ending"].unavailable(mnist)]


def test_the_meter_counts_calls_and_nests(make_model):
    from memviz.detect.cost import Meter

    model = make_model()
    x = torch.randn(2, 1, 8, 8)
    with Meter(model) as outer:
        model.eps(x, 0.5, 1)
        with Meter(model) as inner:
            model.eps(x, 0.5, 1)
            model.eps(x, 0.5, 1)
            big = np.ones(2**24)  # 128 MiB held inside the inner span
            big += 1
        del big
    assert (outer.calls, inner.calls) == (3, 2)
    assert inner.peak_mb > 100 and outer.peak_mb >= inner.peak_mb
    assert 0 < inner.seconds <= outer.seconds


def test_auroc_interval_is_honest_at_a_perfect_ranking():
    from memviz.detect.metrics import auroc_interval

    pos = np.r_[np.ones(60, bool), np.zeros(50, bool)]
    groups = np.r_[np.repeat(np.arange(12), 5), 100 + np.repeat(np.arange(10), 5)]  # 12 and 10 prompts
    rng = np.random.default_rng(0)
    perfect = np.r_[1 + rng.random(60), rng.random(50)]
    low, high = auroc_interval(pos, perfect, groups)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))  # 10 comparisons all right: not a certainty
    chance = rng.random(110)
    low, high = auroc_interval(pos, chance, groups)
    assert low < 0.5 < high and high - low < 0.5
    assert auroc_interval(pos, chance, groups) == (low, high)  # seeded
    wide, _ = auroc_interval(pos, chance, groups, level=0.99)
    assert wide < low
