"""A denoiser for points (the synthetic toys), as a diffusers model.

A UNet on 1x1 "images" is the wrong tool: its group norms normalize away the scale
of x, which a point mass needs. ``MLPDenoiser`` is a residual MLP with diffusers'
sinusoidal timestep embedding, a ``ModelMixin`` + ``ConfigMixin`` (so ``save_pretrained``
/ ``from_pretrained`` with safetensors work) and the UNet2DModel call signature
``(x (B, C, 1, 1), timestep, class_labels=None) -> .sample``, so ``DiffusionModel``
drives it like any UNet. Written here because diffusers ships no MLP denoiser.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput


class MLPDenoiser(ModelMixin, ConfigMixin):
    """eps_theta(x, t) for x of shape (B, in_channels, 1, 1).

    Args:
        in_channels (int): ambient dimension of the points.
        hidden (int, defaults to 256): width; depth (int, defaults to 4): residual blocks.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        hidden: int = 256,
        depth: int = 4,
        sample_size: int = 1,
        num_class_embeds: int | None = None,
    ):
        super().__init__()
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden, hidden)
        self.inp = torch.nn.Linear(in_channels, hidden)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.SiLU(), torch.nn.Linear(2 * hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden)
            )
            for _ in range(depth)
        )
        self.out = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(hidden, in_channels))

    def forward(self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True):
        b = len(sample)
        t = torch.as_tensor(timestep, device=sample.device)
        t = (t.expand(b) if t.ndim == 0 else t).to(sample.dtype)
        temb = self.time_embed(self.time_proj(t).to(sample.dtype))  # (B, hidden)
        h = self.inp(sample.flatten(1))
        for block in self.blocks:  # residual: h + f([h, temb])
            h = h + block(torch.cat([h, temb], dim=1))
        eps = self.out(h).view_as(sample)
        return UNet2DOutput(sample=eps) if return_dict else (eps,)
