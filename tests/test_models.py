"""DiffusionModel: the schedule, the eps/score conversions, guidance, sampling, save/load."""

import json

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler

from memviz.model.adapter import DiffusionModel
from memviz.model.closed_form import GaussianDenoiser, subspace_gaussian


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2", "scaled_linear"])
def test_alpha_sigma_match_alphas_cumprod_at_integer_steps(make_model, beta_schedule):
    model = make_model(beta_schedule=beta_schedule)
    abar = model.scheduler.alphas_cumprod.double()
    k = torch.tensor([1, 7, 250, 500, 999])
    t = k.double() / model.T
    assert torch.allclose(model.alpha(t) ** 2, abar[k], rtol=1e-10)
    assert torch.allclose(model.sigma(t) ** 2, 1 - abar[k], rtol=1e-8)
    assert model.alpha(1.0) ** 2 == pytest.approx(float(abar[-1]), rel=1e-10)  # clamped at the last step
    assert isinstance(model.alpha(0.3), float) and isinstance(model.sigma(t), torch.Tensor)


def test_alpha_is_log_linear_between_steps(make_model):
    model = make_model()
    abar = model.scheduler.alphas_cumprod.double()
    t = torch.tensor(100.25 / model.T, dtype=torch.float64)
    expected = torch.exp(0.75 * torch.log(abar[100]) + 0.25 * torch.log(abar[101]))
    assert float(model.alpha(t) ** 2) == pytest.approx(float(expected), rel=1e-10)
    # alpha^2 + sigma^2 = 1 everywhere, and alpha decreases in t
    ts = torch.linspace(1e-3, 1, 257, dtype=torch.float64)
    assert torch.allclose(model.alpha(ts) ** 2 + model.sigma(ts) ** 2, torch.ones_like(ts))
    assert (model.alpha(ts).diff() < 0).all()


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_t_outside_the_unit_interval_is_refused(make_model, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_model().alpha(bad)


def test_t_zero_is_the_first_training_step(make_model):
    model = make_model()
    abar0 = float(model.scheduler.alphas_cumprod[0])
    assert model.sigma(0.0) == pytest.approx((1 - abar0) ** 0.5) and model.sigma(0.0) > 0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_eps_and_score_conversion_by_hand(make_model, prediction_type):
    model = make_model(prediction_type)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 8, 8, generator=g)
    k = torch.tensor([20, 400, 900])
    raw = model.unet(x, k.float(), class_labels=torch.tensor([0, 1, 2])).sample
    abar = model.scheduler.alphas_cumprod[k].view(-1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    by_hand = {"epsilon": raw, "v_prediction": a * raw + s * x, "sample": (x - a * raw) / s}[prediction_type]
    eps = model.eps(x, k.float() / model.T, cond=[0, "one", 2])
    assert torch.allclose(eps, by_hand, atol=1e-5)
    assert torch.allclose(model.score(x, k.float() / model.T, cond=[0, 1, 2]), -by_hand / s, atol=1e-4)


def test_v_prediction_inverts_the_forward_process(make_model):
    """If the UNet output is the true v for a known (x0, eps), eps comes back exactly."""
    model = make_model("v_prediction")
    x0, e = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    t = 0.37
    a, s = model.alpha(t), model.sigma(t)
    x_t = a * x0 + s * e
    v = a * e - s * x0
    assert torch.allclose(model.to_eps(v, x_t, torch.full((2,), t)), e, atol=1e-5)


def test_classifier_free_guidance_combines_cond_and_null(make_model):
    model = make_model()
    x = torch.randn(2, 1, 8, 8)
    e_c, e_u = model.eps(x, 0.5, cond=1), model.eps(x, 0.5)
    assert not torch.allclose(e_c, e_u)
    assert torch.allclose(model.eps(x, 0.5, cond=1, guidance_scale=3.0), e_u + 3.0 * (e_c - e_u), atol=1e-5)
    assert torch.allclose(model.eps(x, 0.5, cond=1, guidance_scale=1.0), e_c)


def test_score_is_differentiable_in_x(make_model):
    model = make_model()
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    model.score(x, 0.2, cond=0).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_score_of_a_gaussian_is_exact():
    """Through the adapter, the closed-form denoiser gives -C_t^{-1}(x - alpha mu)."""
    mean, cov = subspace_gaussian(D=16, d=3)
    model = DiffusionModel(GaussianDenoiser(mean, cov, (1, 4, 4)), DDPMScheduler(), device="cpu")
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64).float()
    for t in (0.05, 0.5, 1.0):
        a, s = model.alpha(t), model.sigma(t)
        c_t = a**2 * cov + s**2 * torch.eye(16, dtype=torch.float64)
        exact = -torch.linalg.solve(c_t, (x.flatten(1).double() - a * mean).T).T
        assert torch.allclose(model.score(x, t).flatten(1).double(), exact, rtol=1e-4, atol=1e-4 * exact.abs().max())


def test_conditions_are_checked(make_model):
    model = make_model()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="Unknown class 'seven'"):
        model.eps(x, 0.5, cond="seven")
    with pytest.raises(ValueError, match="out of range"):
        model.eps(x, 0.5, cond=3)  # index 3 is the null class, not a named class
    with pytest.raises(ValueError, match="one per row"):
        model.eps(x, 0.5, cond=[0, 1, 2])
    with pytest.raises(ValueError, match="unconditional"):
        make_model(num_class_embeds=None).eps(x, 0.5, cond=1)
    with pytest.raises(ValueError, match=r"shape \(B, 1, 8, 8\)"):
        model.eps(torch.randn(2, 1, 9, 9), 0.5)


def test_sampling_is_reproducible_from_the_seed(make_model):
    model = make_model()
    a = model.sample(3, cond="two", steps=4, seed=7)
    b = model.sample(3, cond="two", steps=4, seed=7)
    c = model.sample(3, cond="two", steps=4, seed=8)
    assert a.images.shape == (3, 1, 8, 8) and 0 <= a.images.min() and a.images.max() <= 1
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(a.noise, torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(7)))
    assert (a.seed, a.steps) == (7, 4)
    assert model.sample(2, cond=[0, 1], steps=2, guidance_scale=2.0).images.shape == (2, 1, 8, 8)
    assert torch.allclose(
        model.sample(5, steps=3, seed=1, batch_size=2).images, model.sample(5, steps=3, seed=1).images, atol=1e-5
    )  # chunking changes only float rounding


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_save_load_round_trip_gives_identical_outputs(make_model, tmp_path, prediction_type):
    model = make_model(prediction_type)
    model.save_pretrained(tmp_path / "m")
    loaded = DiffusionModel.from_pretrained(tmp_path / "m", device="cpu")
    x = torch.randn(2, 1, 8, 8)
    assert loaded.prediction_type == prediction_type and loaded.class_names == model.class_names
    assert torch.equal(loaded.eps(x, 0.3, cond=1), model.eps(x, 0.3, cond=1))
    assert torch.equal(loaded.sample(2, steps=3).images, model.sample(2, steps=3).images)
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert DDPMPipeline.from_pretrained(tmp_path / "m", local_files_only=True).unet is not None  # plain diffusers too


def test_save_replaces_an_existing_model_whole(make_model, tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    make_model("v_prediction").save_pretrained(tmp_path / "m")
    assert DiffusionModel.from_pretrained(tmp_path / "m").prediction_type == "v_prediction"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "memviz.json",
        "model_index.json",
        "scheduler",
        "unet",
    ]


def _broken(tmp_path, make_model, what):
    path = tmp_path / "m"
    make_model().save_pretrained(path)
    if what == "no unet":
        import shutil

        shutil.rmtree(path / "unet")
    elif what == "pickle weights":
        (path / "unet" / "diffusion_pytorch_model.safetensors").rename(path / "unet" / "diffusion_pytorch_model.bin")
    elif what == "no weights":
        (path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    elif what == "bad json":
        (path / "unet" / "config.json").write_text("{not json")
    elif what == "truncated weights":
        f = path / "unet" / "diffusion_pytorch_model.safetensors"
        f.write_bytes(f.read_bytes()[:100])
    elif what == "no scheduler config":
        (path / "scheduler" / "scheduler_config.json").unlink()
    elif what == "wrong model class":
        cfg = json.loads((path / "unet" / "config.json").read_text())
        (path / "unet" / "config.json").write_text(json.dumps({**cfg, "_class_name": "AutoencoderKL"}))
    return path


@pytest.mark.parametrize(
    "what, message",
    [
        ("no unet", "unet/ folder is missing"),
        ("pickle weights", "pickled weights"),
        ("no weights", "no .safetensors weights"),
        ("bad json", "not readable JSON"),
        ("truncated weights", "Could not load UNet2DModel"),
        ("no scheduler config", "no scheduler_config.json"),
        ("wrong model class", "holds a AutoencoderKL"),
    ],
)
@pytest.mark.parametrize("lazy", [False, True])
def test_broken_folders_get_one_clear_sentence(tmp_path, make_model, what, message, lazy):
    path = _broken(tmp_path, make_model, what)
    with pytest.raises(ValueError, match=message) as info:
        DiffusionModel.from_pretrained(path, lazy=lazy)  # lazy: named when opened, not at the first model call
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("name, cond", [("demo-mnist", "3"), ("demo-mnist-text", "a digit"), ("demo-toy", None)])
def test_a_lazy_model_is_the_same_model_built_on_first_use(name, cond):
    """What the app's first page reads (shape, conditions, fingerprint: the keys of the shipped
    artifacts) comes from the files; the UNet is built at the first model call, and then agrees."""
    import sys

    from memviz.io.cache import model_fingerprint

    lazy, eager = DiffusionModel.from_pretrained(name, lazy=True), DiffusionModel.from_pretrained(name)
    for what in ("sample_shape", "dim", "is_text_conditional", "is_class_conditional", "class_names", "guidance_scale"):
        assert getattr(lazy, what) == getattr(eager, what), what
    assert model_fingerprint(lazy) == model_fingerprint(eager) and hasattr(lazy._unet, "load")  # not built yet
    import subprocess

    code = (
        f"import sys; from memviz.model.adapter import DiffusionModel; from memviz.io.cache import model_fingerprint; "
        f"m = DiffusionModel.from_pretrained({name!r}, lazy=True); model_fingerprint(m); m.class_names; "
        "print('diffusers.models.unets' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )  # the UNet package is not even imported
    from memviz.hessian.spectrum import spectrum
    from memviz.lid.flipd import flipd_curve

    x = torch.randn(3, *lazy.sample_shape)
    # first use inside torch.func's Hessian, as a pick's spectrum is (moving weights is refused in there)
    torch.testing.assert_close(spectrum(lazy, x[:1], 0.1, cond=cond), spectrum(eager, x[:1], 0.1, cond=cond))
    conds = None if cond is None else [cond] * 3
    torch.testing.assert_close(flipd_curve(lazy, x, (0.1,), cond=conds), flipd_curve(eager, x, (0.1,), cond=conds))
    assert not hasattr(lazy._unet, "load") and "diffusers.models.unets" in sys.modules
    torch.testing.assert_close(lazy.eps(x, 0.4, cond=cond), eager.eps(x, 0.4, cond=cond), rtol=0, atol=0)


def test_missing_and_non_folder_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        DiffusionModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        DiffusionModel.from_pretrained(tmp_path / "file.txt")


def test_the_sampler_starts_from_given_noise_and_shows_every_step(make_model):
    from memviz.model.sampling import Step

    model = make_model()
    out = model.sample(3, cond=1, steps=4, seed=2)
    again = model.sample(3, cond=1, steps=4, seed=9, noise=out.noise)  # DDIM: the noise decides
    torch.testing.assert_close(again.images, out.images)
    ddpm = model.sample(3, cond=1, steps=4, seed=2, scheduler="ddpm")
    torch.testing.assert_close(
        model.sample(3, cond=1, steps=4, seed=2, scheduler="ddpm", noise=ddpm.noise).images, ddpm.images
    )
    with pytest.raises(ValueError, match=r"noise must be x_T of shape \(3, 1, 8, 8\)"):
        model.sample(3, cond=1, steps=4, noise=torch.zeros(2, 1, 8, 8))
    seen: list[Step] = []
    model.sample(3, cond=1, steps=4, seed=2, callback=seen.append, uncond=True, batch_size=2)
    assert [(s.index, s.rows) for s in seen] == [(i, slice(0, 2)) for i in range(4)] + [
        (i, slice(2, 3)) for i in range(4)
    ]
    first = seen[0]
    torch.testing.assert_close(first.x_t, out.noise[:2])
    torch.testing.assert_close(first.eps_cond, model.eps(first.x_t, first.t, cond=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first.eps_uncond, model.eps(first.x_t, first.t), rtol=1e-5, atol=1e-5)


def test_a_guidance_schedule_is_a_callable_of_t(make_model):
    model = make_model()
    constant = model.sample(2, cond=0, steps=5, seed=1, guidance_scale=3.0)
    torch.testing.assert_close(
        model.sample(2, cond=0, steps=5, seed=1, guidance_scale=lambda t: 3.0).images, constant.images
    )
    ws = []
    late = model.sample(
        2,
        cond=0,
        steps=5,
        seed=1,
        guidance_scale=lambda t: 0.0 if t > 0.5 else 3.0,
        callback=lambda s: ws.append((s.t, s.guidance_scale)),
    )
    assert [w for t, w in ws] == [0.0 if t > 0.5 else 3.0 for t, _ in ws] and {0.0, 3.0} == {w for _, w in ws}
    assert not torch.allclose(late.images, constant.images)


def test_schedulers_are_built_as_diffusers_builds_them_without_importing_every_scheduler(tmp_path):
    """The same config (so the same fingerprint, the key of every stored artifact) as from_config."""
    from diffusers import DDIMScheduler

    from memviz.model.loading import _scheduler_from_config

    DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "scheduler_config.json").read_text()) | {"a_compatible_class_key": 3}
    for c in (config, config | {"_use_default_values": ["beta_end"], "beta_end": 0.5}):  # defaults the file names
        ours, theirs = _scheduler_from_config(DDIMScheduler, c), DDIMScheduler.from_config(c)
        assert dict(ours.config) == dict(theirs.config) and torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    with pytest.raises(ValueError, match="does not build a DDIMScheduler"):
        _scheduler_from_config(DDIMScheduler, config | {"beta_schedule": "no-such-schedule"})
