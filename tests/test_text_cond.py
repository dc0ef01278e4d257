"""Text-conditional plumbing on a tiny random UNet2DConditionModel (no transformers needed)."""

from types import SimpleNamespace

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from memviz.model.adapter import DiffusionModel


class WordTokenizer:
    """Hashes words to ids; pads to model_max_length (the CLIPTokenizer call signature)."""

    model_max_length = 4

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt, padding, max_length, truncation, return_tensors):
        self.calls += 1
        rows = []
        for p in [prompt] if isinstance(prompt, str) else prompt:  # one prompt or a list, as CLIPTokenizer
            ids = [hash(w) % 50 + 1 for w in p.split()][:max_length]
            rows.append(ids + [0] * (max_length - len(ids)))
        return SimpleNamespace(input_ids=torch.tensor(rows))


class TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(64, 8)

    def forward(self, ids):
        return (self.emb(ids),)


def _model():
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
    return DiffusionModel(
        unet,
        DDPMScheduler(prediction_type="v_prediction"),
        text_encoder=TinyEncoder(),
        tokenizer=WordTokenizer(),
        device="cpu",
    )


def test_prompts_embeddings_and_guidance():
    model = _model()
    assert model.is_text_conditional and not model.is_class_conditional
    x = torch.randn(2, 1, 8, 8)
    emb = model.text_encoder(model.tokenizer("a red cat", "max_length", 4, True, "pt").input_ids)[0]
    by_hand = model.unet(x, torch.full((2,), 300.0), encoder_hidden_states=emb.expand(2, -1, -1)).sample
    a, s = model.alpha(0.3), model.sigma(0.3)
    assert torch.allclose(model.eps(x, 0.3, cond="a red cat"), a * by_hand + s * x, atol=1e-5)
    assert torch.allclose(model.eps(x, 0.3, cond=emb), model.eps(x, 0.3, cond="a red cat"), atol=1e-5)  # precomputed
    e_c, e_u = model.eps(x, 0.3, cond="a red cat"), model.eps(x, 0.3)  # unconditional = the empty prompt
    assert torch.allclose(model.eps(x, 0.3, cond="a red cat", guidance_scale=4.0), e_u + 4 * (e_c - e_u), atol=1e-4)
    calls = model.tokenizer.calls
    model.eps(x, 0.3, cond=["a red cat", "a dog"])
    assert model.tokenizer.calls == calls + 1  # "a red cat" came from the cache


def test_text_sampling_is_reproducible():
    model = _model()
    a = model.sample(2, cond=["a cat", "a dog"], steps=3, guidance_scale=3.0, seed=1)
    b = model.sample(2, cond=["a cat", "a dog"], steps=3, guidance_scale=3.0, seed=1)
    assert torch.equal(a.images, b.images) and a.images.shape == (2, 1, 8, 8)
