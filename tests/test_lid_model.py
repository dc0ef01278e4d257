"""Model LID (FLIPD, normal bundle) against the closed form of a Gaussian on a subspace."""

import pytest
import torch
from diffusers import DDPMScheduler

from memviz.lid import flipd, flipd_curve, knee_index, normal_bundle
from memviz.model.adapter import DiffusionModel
from memviz.model.closed_form import GaussianDenoiser, gaussian_flipd, subspace_gaussian


def gaussian_model(D: int, d: int, seed: int = 0):
    mean, cov = subspace_gaussian(D, d, seed=seed)
    side = int(D**0.5)
    shape = (1, side, side) if side * side == D else (D, 1, 1)
    return DiffusionModel(GaussianDenoiser(mean, cov, shape), DDPMScheduler(), device="cpu"), mean, cov, shape


def on_manifold(mean, cov, d, n, shape, seed=1):
    """n points of the Gaussian itself (on its subspace)."""
    g = torch.Generator().manual_seed(seed)
    evals, evecs = torch.linalg.eigh(cov)
    basis, scale = evecs[:, -d:], evals[-d:].sqrt()
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    return (mean + z @ basis.T).float().view(n, *shape)


@pytest.mark.parametrize("D, d", [(16, 3), (64, 10), (25, 1)])
@pytest.mark.parametrize("t0", [0.02, 0.3])
def test_exact_flipd_matches_the_closed_form(D, d, t0):
    model, mean, cov, shape = gaussian_model(D, d)
    x = on_manifold(mean, cov, d, 4, shape)
    expected = gaussian_flipd(mean, cov, x.flatten(1), model.alpha(t0), model.sigma(t0))
    got = flipd(model, x, t0=t0, trace="exact")
    assert got.dtype == torch.float64 and got.shape == (4,)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3 * D)


def test_flipd_tends_to_the_dimension_at_small_t0():
    model, mean, cov, shape = gaussian_model(36, 5)
    x = on_manifold(mean, cov, 5, 8, shape)
    assert torch.allclose(flipd(model, x, t0=0.01, trace="exact"), torch.full((8,), 5.0, dtype=torch.float64), atol=0.5)


def test_hutchinson_is_unbiased_within_its_error():
    model, mean, cov, shape = gaussian_model(64, 6)
    x = on_manifold(mean, cov, 6, 1, shape).expand(200, *shape).contiguous()
    exact = flipd(model, x[:1], t0=0.1, trace="exact")
    est = flipd(model, x, t0=0.1, trace="hutchinson", n_probes=1, seed=0)
    se = est.std() / len(est) ** 0.5
    assert abs(est.mean() - exact[0]) < 4 * se and se > 0  # probes really vary
    few, many = (flipd(model, x[:50], t0=0.1, trace="hutchinson", n_probes=p, seed=1).std() for p in (1, 16))
    assert many < few / 2  # 16 probes: about 4x smaller spread


def test_auto_picks_exact_for_small_dimension():
    model, mean, cov, shape = gaussian_model(16, 2)
    x = on_manifold(mean, cov, 2, 2, shape)
    assert torch.equal(flipd(model, x, t0=0.05), flipd(model, x, t0=0.05, trace="exact"))


@pytest.mark.parametrize("D, d", [(16, 3), (25, 8), (9, 0)])
def test_normal_bundle_returns_the_dimension(D, d):
    if d == 0:  # a point mass: covariance tiny in every direction
        mean, cov = torch.zeros(D, dtype=torch.float64), 1e-6 * torch.eye(D, dtype=torch.float64)
        shape = (1, 3, 3)
        model = DiffusionModel(GaussianDenoiser(mean, cov, shape), DDPMScheduler(), device="cpu")
        x = torch.zeros(2, *shape)
    else:
        model, mean, cov, shape = gaussian_model(D, d)
        x = on_manifold(mean, cov, d, 2, shape)
    assert normal_bundle(model, x, t=0.01).tolist() == [d, d]


def test_knee_of_a_curve_with_a_plateau():
    import numpy as np

    ts = np.geomspace(0.005, 0.5, 16)
    curve = np.where(np.arange(16) < 8, 5.0, 5.0 + 40 * (np.arange(16) - 7) ** 2)[None]
    assert knee_index(ts, curve)[0] in (7, 8, 9)
    model, mean, cov, shape = gaussian_model(16, 3)
    x = on_manifold(mean, cov, 3, 2, shape)
    c = flipd_curve(model, x, ts=[0.01, 0.1], trace="exact")
    assert c.shape == (2, 2) and torch.allclose(c[:, 0], flipd(model, x, t0=0.01, trace="exact"))
    knee = flipd(model, x, t0="knee", trace="exact")  # the plateau at d = 3, left as t0 grows
    assert knee.shape == (2,) and (knee - 3).abs().max() < 0.6
    falling = np.where(np.arange(16) < 8, 5.0, 5.0 - 0.5 * (np.arange(16) - 7) ** 2)[None]
    assert knee_index(ts, falling)[0] in (7, 8, 9)


def test_bad_input():
    model, mean, cov, shape = gaussian_model(16, 2)
    with pytest.raises(ValueError, match="NaN"):
        flipd(model, torch.full((1, *shape), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        flipd(model, torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="'knee'"):
        flipd(model, torch.zeros(1, *shape), t0="elbow")
    with pytest.raises(ValueError, match="trace must be"):
        flipd(model, torch.zeros(1, *shape), trace="approx")


def test_flipd_runs_through_a_real_unet(make_model):
    """The plumbing on a tiny random UNet: exact and Hutchinson agree in expectation."""
    model = make_model()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    exact = flipd(model, x, t0=0.1, cond=1, trace="exact")
    hutch = torch.stack([flipd(model, x, t0=0.1, cond=1, trace="hutchinson", n_probes=64, seed=s) for s in range(2)])
    assert torch.isfinite(exact).all() and torch.isfinite(hutch).all()
    assert torch.allclose(hutch.mean(0), exact, rtol=0.1, atol=5.0)


def test_mixture_of_subspaces_gives_each_component_its_dimension():
    from memviz.data.synthetic import affine_union
    from memviz.model.closed_form import GaussianMixtureDenoiser

    data = affine_union(dims=(2, 5), side=4, n_per=3, seed=0)
    covs = torch.as_tensor(data.meta["covs"]) + 1e-6 * torch.eye(16, dtype=torch.float64)
    model = DiffusionModel(
        GaussianMixtureDenoiser(torch.as_tensor(data.meta["means"]), covs, (1, 4, 4)), DDPMScheduler(), device="cpu"
    )
    lid = flipd(model, data.images, t0=0.01, trace="exact")
    assert torch.allclose(lid, torch.as_tensor(data.lid), atol=0.5)
    assert normal_bundle(model, data.images, t=0.01).tolist() == data.lid.astype(int).tolist()


def test_trained_toy_model_gives_the_known_dimensions():
    """The bundled demo-toy (trained, not exact): the circle reads 1, the point mass 0."""
    import numpy as np

    from tests.conftest import ROOT

    model = DiffusionModel.from_pretrained(ROOT / "assets" / "models" / "demo-toy")
    arcs = torch.tensor([[0.8 * np.cos(a), 0.8 * np.sin(a)] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)])
    pts = torch.cat([arcs, torch.zeros(1, 2)]).float().view(4, 2, 1, 1)
    lid = flipd(model, pts, t0=0.02, trace="exact")
    assert torch.all((lid[:3] > 0.5) & (lid[:3] < 1.5)), lid
    assert abs(float(lid[3])) < 0.5, lid
    assert normal_bundle(model, pts, t=0.01).tolist() == [1, 1, 1, 0]
