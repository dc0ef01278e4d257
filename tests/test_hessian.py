"""Hessian spectra against closed forms (Gaussians), exact against Krylov methods on a tiny
random UNet, the memory guard, summaries, SLQ, Jeon's score, trajectories and the cache."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from torch.func import vjp

from memviz.detect.jeon import jeon_score
from memviz.hessian import (
    ScoreJacobian,
    default_tau,
    density,
    spectrum,
    spectrum_at,
    summarize,
    summarize_density,
    trajectory_spectra,
)
from memviz.model.adapter import DiffusionModel
from memviz.model.autodiff import jacobian
from memviz.model.closed_form import (
    GaussianDenoiser,
    class_gaussian_model,
    gaussian_hessian_eigenvalues,
    subspace_gaussian,
)

SHAPE = (1, 8, 8)


def gaussian_model(D=64, d=8, off_variance=1e-3, seed=0):
    mean, cov = subspace_gaussian(D, d, off_variance=off_variance, seed=seed)
    return DiffusionModel(GaussianDenoiser(mean, cov, SHAPE), DDPMScheduler(), device="cpu"), cov


def points(n=3, seed=0):
    return 0.5 * torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def ends(ev, k):
    return torch.cat([ev[..., :k], ev[..., -k:]], dim=-1)


@pytest.mark.parametrize("t", [0.02, 0.2, 0.7])
def test_exact_spectrum_is_the_closed_form(t):
    model, cov = gaussian_model()
    ref = gaussian_hessian_eigenvalues(cov, model.alpha(t), model.sigma(t))  # -(alpha^2 Sigma + sigma^2 I)^-1
    ev = spectrum(model, points(), t, method="exact")
    assert ev.shape == (3, 64) and ev.dtype == torch.float64
    torch.testing.assert_close(ev, ref.expand(3, -1), rtol=2e-5, atol=1e-6)  # float32 precision
    torch.testing.assert_close(
        spectrum(model, points(), t, method="exact", noise=True), ref.expand(3, -1), rtol=2e-5, atol=1e-6
    )  # a Gaussian's Hessian is the same everywhere


def test_lanczos_and_arnoldi_match_the_closed_form_at_the_ends():
    model, cov = gaussian_model()
    t, k = 0.05, 5
    ref = ends(gaussian_hessian_eigenvalues(cov, model.alpha(t), model.sigma(t)), k)
    lz = spectrum(model, points(2), t, method="lanczos", k=k)
    assert lz.shape == (2, 2 * k)
    torch.testing.assert_close(lz, ref.expand(2, -1), rtol=1e-4, atol=1e-4)
    ar = spectrum(model, points(2), t, method="arnoldi", k=k)
    assert ar.is_complex()
    torch.testing.assert_close(ar.real, ref.expand(2, -1), rtol=1e-4, atol=1e-4)
    assert ar.imag.abs().max() < 1e-4  # symmetric: real eigenvalues


def test_exact_with_k_keeps_the_ends_and_auto_picks_exact():
    model, cov = gaussian_model()
    full = spectrum(model, points(1), 0.1)  # auto: D = 64 is small
    assert full.shape == (1, 64)
    torch.testing.assert_close(spectrum(model, points(1), 0.1, method="exact", k=4), ends(full, 4))


@pytest.fixture(scope="module")
def unet_model():
    from tests.conftest import tiny_unet

    return DiffusionModel(tiny_unet(num_class_embeds=None), DDPMScheduler(), device="cpu")


def test_matvec_is_the_exact_jacobian_product_through_attention(unet_model):
    y = points(2, seed=1)
    op = ScoreJacobian(unet_model, y, 0.3)
    _, f = vjp(lambda z: unet_model.score(z, 0.3), y)
    j = jacobian(f, y)  # (B, D, D)
    v = torch.randn(2, *SHAPE)
    torch.testing.assert_close(
        op.matvec(v).flatten(1), torch.einsum("bij,bj->bi", j, v.flatten(1)), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        op.rmatvec(v).flatten(1), torch.einsum("bij,bi->bj", j, v.flatten(1)), rtol=1e-4, atol=1e-4
    )
    assert (j - j.transpose(1, 2)).abs().max() > 1e-3  # a learned score: not symmetric, so sym matters


def test_lanczos_matches_exact_on_a_random_unet(unet_model):
    x, t, k = points(2, seed=2), 0.3, 4
    exact = spectrum(unet_model, x, t, method="exact")
    lz = spectrum(unet_model, x, t, method="lanczos", k=k)
    scale = exact.abs().max()
    assert ((lz - ends(exact, k)).abs() / scale).max() < 1e-4


def test_arnoldi_matches_the_eigenvalues_of_the_unsymmetrized_jacobian(unet_model):
    x, t, k = points(1, seed=3), 0.3, 3
    full = spectrum(unet_model, x, t, method="exact", k=None).numpy()
    op_ev = ScoreJacobian(unet_model, model_point(unet_model, x, t), t, need_matvec=False)
    j = jacobian(op_ev._vjp, op_ev.y)[0].double().numpy()
    dense = np.sort_complex(np.linalg.eigvals(j))  # sorted by real part
    ar = spectrum(unet_model, x, t, method="arnoldi", k=k)[0].numpy()
    assert np.abs(ar.real[0] - dense.real[0]) < 1e-3 * np.abs(dense).max()  # the extreme real parts
    assert np.abs(ar.real[-1] - dense.real[-1]) < 1e-3 * np.abs(dense).max()
    assert not np.allclose(dense.real, full)  # Arnoldi's H is not the symmetrized one


def model_point(model, x, t):
    return model.alpha(t) * x


class Untouchable(torch.nn.Module):
    """A model too large for an exact spectrum, which fails if it is ever called."""

    def __init__(self):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(sample_size=256, in_channels=3, num_class_embeds=None)

    def forward(self, *a, **k):
        raise AssertionError("the network must not run before the memory check")


def test_exact_refuses_a_dimension_too_large_before_any_work(monkeypatch):
    model = DiffusionModel(Untouchable(), DDPMScheduler(), device="cpu")
    x = torch.zeros(1, 3, 256, 256)
    with pytest.raises(ValueError, match="lanczos"):
        spectrum(model, x, 0.1, method="exact")
    model.unet.config.sample_size = 16  # D = 768: affordable in time, not in this memory
    monkeypatch.setattr("memviz.hessian.exact.available_memory", lambda device: 2**20)
    with pytest.raises(ValueError, match="GiB.*lanczos"):
        spectrum(model, torch.zeros(1, 3, 16, 16), 0.1, method="exact")


def test_bad_arguments_get_one_sentence(unet_model):
    x = points(1)
    with pytest.raises(ValueError, match="method"):
        spectrum(unet_model, x, 0.1, method="power")
    with pytest.raises(ValueError, match="k must be"):
        spectrum(unet_model, x, 0.1, method="lanczos", k=40)
    with pytest.raises(ValueError, match="shape"):
        spectrum(unet_model, torch.zeros(1, 2, 8, 8), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        spectrum(unet_model, torch.full((1, *SHAPE), float("nan")), 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        spectrum(unet_model, x, 1.5)
    with pytest.raises(ValueError, match="complex"):
        summarize(spectrum(unet_model, x, 0.3, method="arnoldi", k=2), 1.0)


def test_summaries_count_the_codimension_and_the_dimension():
    D, d, t = 64, 8, 0.05
    model, cov = gaussian_model(D, d, off_variance=1e-6)
    ev = spectrum(model, points(2), t)
    s = summarize(ev, default_tau(model, t))
    assert s["n_sharp"].tolist() == [D - d] * 2 and s["n_flat"].tolist() == [d] * 2
    ref = gaussian_hessian_eigenvalues(cov, model.alpha(t), model.sigma(t))
    np.testing.assert_allclose(s["trace"], float(ref.sum()), rtol=1e-5)
    np.testing.assert_allclose(s["lambda_min"], float(ref[0]), rtol=1e-5)


def test_slq_density_estimates_counts_trace_and_extremes():
    D, d, t = 64, 8, 0.05
    model, cov = gaussian_model(D, d, off_variance=1e-6)
    ref = gaussian_hessian_eigenvalues(cov, model.alpha(t), model.sigma(t)).numpy()
    dens = density(model, points(2), t, n_probes=32, n_steps=24)
    s = summarize_density(dens, default_tau(model, t))
    np.testing.assert_allclose(s["n_sharp"], D - d, atol=4)  # Rademacher probes: a few eigenvalues of noise
    np.testing.assert_allclose(s["trace"], ref.sum(), rtol=0.05)
    np.testing.assert_allclose(s["lambda_min"], ref[0], rtol=1e-4)
    np.testing.assert_allclose(s["lambda_max"], ref[-1], rtol=1e-3)
    grid = np.linspace(ref[0] - 5, ref[-1] + 5, 4001)
    np.testing.assert_allclose(np.trapezoid(dens.pdf(grid), grid), 1.0, atol=1e-3)


def test_jeon_score_matches_its_closed_form():
    t = 0.9
    model, score = class_gaussian_model()
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    s_delta = score(x, t, True) - score(x, t, False)
    h_c_minus_h_u = (score(x + s_delta.view_as(x).float(), t, True) - score(x, t, True)) - (
        score(x + s_delta.view_as(x).float(), t, False) - score(x, t, False)
    )  # affine scores: H s exactly
    ref = h_c_minus_h_u.norm(dim=1)  # ||H_c s_d - H_u s_d||
    torch.testing.assert_close(jeon_score(model, "c", x_t=x, t=t), ref, rtol=1e-4, atol=1e-6)
    default = jeon_score(model, 0, n=3, seed=0)  # x_T as sample() draws it, t = T
    assert default.shape == (3,) and torch.isfinite(default).all()
    with pytest.raises(ValueError, match="condition"):
        jeon_score(model, None)


def test_trajectory_spectra_are_taken_where_the_sampler_passes(unet_model):
    out = trajectory_spectra(unet_model, n=2, steps=6, at=(0, 5), method="exact", k=3, seed=4)
    assert out.eigenvalues.shape == (2, 2, 6) and out.images.shape == (2, *SHAPE)
    assert out.ts[0] > out.ts[1] and out.steps.tolist() == [0, 5]
    sample = unet_model.sample(2, steps=6, seed=4, return_trajectory=True)
    torch.testing.assert_close(sample.trajectory[0], sample.noise)  # step 0 is x_T
    ref = spectrum_at(unet_model, sample.trajectory[5], float(sample.ts[5]), method="exact", k=3)
    torch.testing.assert_close(out.eigenvalues[1], ref)


def test_spectrum_figure_shows_every_spectrum_and_tau():
    from memviz.figures.builders import spectrum_figure

    fig = spectrum_figure({"planted": -np.linspace(30, 20, 50), "ordinary": np.linspace(-30, 2, 50)}, tau=16.0)
    assert [tr.type for tr in fig.data] == ["scatter", "histogram", "scatter", "histogram"]
    assert fig.data[0].y[0] == -30 and len(fig.data[2].y) == 50
    lines = [(s.type, s.x0, s.y0) for s in fig.layout.shapes]
    assert {y for _, x, y in lines if x == 0} == {-16.0, 16.0} and {x for _, x, y in lines if y == 0} == {-16.0, 16.0}
    with pytest.raises(ValueError, match="NaN"):
        spectrum_figure({"bad": np.array([np.nan])})
