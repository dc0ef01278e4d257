"""A tiny Stable Diffusion pipeline, built here with random weights (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel and a CLIPTokenizer over a vocabulary written by the test), saved
with ``save_pretrained`` and loaded through ``DiffusionModel.from_pretrained``: every estimator
runs in its latent space, end to end."""

import numpy as np
import pytest
import torch

from memviz.model.adapter import DiffusionModel
from memviz.model.closed_form import char_clip_tokenizer
from memviz.model.sampling import make_scheduler

transformers = pytest.importorskip("transformers")

PROMPTS = ["a cat on a mat", "the red door"]


def build_tiny_sd(path, prediction_type="epsilon"):
    """Save a tiny StableDiffusionPipeline (latents 4 x 8 x 8, pixels 3 x 16 x 16) to ``path``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=16,
    )
    encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=encoder,
        tokenizer=char_clip_tokenizer(path.parent / "tok"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module", params=["epsilon", "v_prediction"])
def sd(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"sd-{request.param}")
    return DiffusionModel.from_pretrained(build_tiny_sd(root / "pipe", request.param), device="cpu")


@pytest.fixture(scope="module")
def train_images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(24, 3, 16, 16, generator=g) * 2 - 1


def test_the_pipeline_loads_as_a_latent_text_model(sd, train_images):
    assert sd.is_text_conditional and sd.vae is not None
    assert sd.sample_shape == (4, 8, 8) and sd.pixel_shape == (3, 16, 16) and sd.dim == 256
    z = sd.encode(train_images[:3])
    f = sd.vae.config.scaling_factor
    torch.testing.assert_close(z, sd.vae.encode(train_images[:3]).latent_dist.mean * f)  # the posterior mean, scaled
    assert sd.decode(z).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        sd.encode(torch.zeros(1, 1, 16, 16))
    e1, e2 = sd.encode_cond(PROMPTS[0], 1), sd.encode_cond(PROMPTS[1], 1)
    assert e1.shape == (1, 16, 32) and not torch.allclose(e1, e2)
    assert PROMPTS[0] in sd._prompt_cache  # encoded once, cached
    torch.testing.assert_close(sd.encode_cond(None, 1), sd.encode_cond("", 1))  # unconditional: ""


def test_sampling_with_guidance_is_the_pipelines(sd, tmp_path):
    """model.sample equals StableDiffusionPipeline on the same initial noise: the same CFG
    (eps_u + w (eps_c - eps_u)), scheduler steps, prediction type and VAE decoding."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=make_scheduler(sd, "ddim", 4),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    ours = sd.sample(2, PROMPTS[0], steps=4, guidance_scale=7.5, seed=3)
    theirs = pipe(
        PROMPTS[0],
        num_inference_steps=4,
        guidance_scale=7.5,
        latents=ours.noise,
        output_type="pt",
        num_images_per_prompt=2,
        height=16,
        width=16,
    ).images
    torch.testing.assert_close(ours.images, theirs, rtol=1e-4, atol=1e-4)


def test_flipd_and_the_spectrum_run_in_latent_space(sd, train_images):
    from memviz.hessian.spectrum import spectrum
    from memviz.lid.flipd import flipd

    z = sd.encode(train_images[:2])
    hutch = flipd(sd, z, 0.05, cond=PROMPTS[0], trace="hutchinson", n_probes=64, seed=0)
    exact = flipd(sd, z, 0.05, cond=PROMPTS[0], trace="exact")
    assert torch.isfinite(hutch).all()
    assert (hutch - exact).abs().max() < 0.15 * sd.dim  # Hutchinson's error at 64 probes
    lz = spectrum(sd, z[:1], 0.1, PROMPTS[0], method="lanczos", k=4).numpy()[0]
    ez = spectrum(sd, z[:1], 0.1, PROMPTS[0], method="exact").numpy()[0]
    np.testing.assert_allclose(lz[[0, -1]], ez[[0, -1]], rtol=1e-4)  # the extremes agree


def test_every_detector_and_a_two_prompt_comparison(sd, train_images):
    from memviz.data.base import ImageDataset
    from memviz.detect.prompts import prompt_scores
    from memviz.study.core import open_study
    from memviz.study.views import compare_prompts

    study = open_study(sd, ImageDataset("pixels", train_images))
    index = study.reference  # pixel-space neighbours
    ps = prompt_scores(sd, PROMPTS, index, n=2, steps=2, reps=1, sample_steps=3, n_probes=2, progress=False)
    table = ps.table(2, 2)
    assert set(table.prompt) == set(PROMPTS) and table.drop(columns="prompt").notna().all().all()
    assert {"wen", "jeon", "flipd_cond", "flipd_uncond", "nn_distance", "calibrated_l2"} <= set(ps.scores)
    results = compare_prompts(study, PROMPTS, n=2, steps=3, seed=0)
    assert [r.prompt for r in results] == PROMPTS
    for r in results:
        assert r.evidence.images.shape == (2, 3, 16, 16) and r.evidence.x0.shape == (2, 4, 8, 8)
        assert np.isfinite([r.scores[k] for k in ("wen", "jeon", "flipd_cond", "calibrated_l2")]).all()
        assert r.eigenvalues.shape == (256,)
    again = compare_prompts(study, PROMPTS, n=2, steps=3, seed=0)  # seeded: reproducible
    torch.testing.assert_close(again[0].evidence.images, results[0].evidence.images)


def test_half_precision_only_where_no_gradient_flows(sd):
    """On CUDA the UNet samples in float16; autograd paths (vjps) stay float32. Checked on the
    CPU by asking for it: the no-grad output is close to float32 and the vjp is unchanged."""
    from memviz.model.autodiff import eps_and_vjp

    y = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = sd.eps(y, 0.3, PROMPTS[0])
    _, vjp_full = eps_and_vjp(lambda x: sd.eps(x, 0.3, PROMPTS[0]), y)
    sd.half = True
    try:
        with torch.no_grad():
            half = sd.eps(y, 0.3, PROMPTS[0])
        _, vjp_half = eps_and_vjp(lambda x: sd.eps(x, 0.3, PROMPTS[0]), y)
        v = torch.ones_like(y)
        assert sd._unet_half is not None and next(sd._unet_half.parameters()).dtype == torch.float16
        assert next(sd.unet.parameters()).dtype == torch.float32
        torch.testing.assert_close(half, full, rtol=0.05, atol=0.02)
        torch.testing.assert_close(vjp_half(v)[0], vjp_full(v)[0])
    finally:
        sd.half = False


def test_dense_work_at_stable_diffusion_scale_is_refused_on_cpu():
    """D = 16,384 (4 x 64 x 64): an exact spectrum or trace is refused up front, naming the cheaper method."""
    from diffusers import DDPMScheduler

    from memviz.hessian.spectrum import spectrum
    from memviz.lid.flipd import flipd
    from tests.test_hessian import Untouchable

    model = DiffusionModel(Untouchable(), DDPMScheduler(), device="cpu")
    model.unet.config.in_channels, model.unet.config.sample_size = 4, 64
    z = torch.zeros(1, 4, 64, 64)
    with pytest.raises(ValueError, match="lanczos"):
        spectrum(model, z, 0.1, method="exact")
    with pytest.raises(ValueError, match="hutchinson"):
        flipd(model, z, 0.1, trace="exact")


def test_a_study_and_a_sample_view_in_latent_space(sd, train_images, monkeypatch):
    """The Study on a latent model: pixel images in, estimates on their latents (cached
    encodings), pixels out for display; conditional curves under each image's caption."""
    from memviz.data.base import ImageDataset
    from memviz.study.core import open_study
    from memviz.study.views import sample_view

    data = ImageDataset("pixels", train_images, captions=[PROMPTS[i % 2] for i in range(len(train_images))])
    study = open_study(sd, data, n=None)
    assert study._space().images.shape == (24, 4, 8, 8) and study.conditional
    torch.testing.assert_close(study._space().images[:2], sd.encode(train_images[:2]))
    from memviz.data.mapped import MappedRows

    assert isinstance(study._space().images, MappedRows)  # stored once on disk, read a batch at a time
    monkeypatch.setattr(sd, "encode", lambda x: pytest.fail("encoded twice"))
    again = open_study(sd, data, n=None)._space()
    torch.testing.assert_close(again.images[np.arange(24)], study._space().images[np.arange(24)])
    np.testing.assert_array_equal(again.first_rows(), data.first_rows())
    monkeypatch.undo()
    table = study.prepare().table(0.05)
    assert table[["flipd", "lid_mle", "x"]].notna().all().all()
    v = sample_view(study, 3)
    assert v.image.shape == (3, 16, 16) and v.neighbor_images.shape[1:] == (3, 16, 16)
    assert set(v.curves) == {"uncond", "cond"} and v.eigenvalues.shape == (256,) and v.spectrum_note is None
    monkeypatch.setattr("memviz.model.autodiff.DENSE_MAX_DIM", 100)  # as D = 16,384 on a CPU: no spectrum on pick
    monkeypatch.setattr(study, "spectra", lambda *a, **k: pytest.fail("hours on a CPU"))
    far = sample_view(study, 4)
    assert far.eigenvalues.shape == (0,) and "GPU" in far.spectrum_note
