"""Feature spaces for neighbours and embeddings: pixels, the denoiser's own mid-block
features, or any extractor a user plugs in (a callable from images to vectors).

The denoiser's mid-block activations at a small t are available offline for every
model (no SSCD or CLIP weights are needed); they are the UNet's most abstract view of
an image.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from memviz.model.adapter import DiffusionModel

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) in [-1, 1] -> (B, F)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Pixels as they are: (B, C, H, W) -> (B, C H W)."""
    return images.flatten(1).float()


def denoiser_features(model: DiffusionModel, t: float = 0.1, cond=None, batch_size: int = 256) -> FeatureExtractor:
    """An extractor returning the UNet's mid-block output at y = alpha(t) x (no noise added),
    flattened: (B, C, H, W) -> (B, F). Unconditional (the null class / empty prompt) by default."""
    mid = getattr(model.unet, "mid_block", None)
    if mid is None:
        raise ValueError(f"{type(model.unet).__name__} has no mid_block; pass your own feature extractor.")

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(images), batch_size):
            x = images[s : s + batch_size].to(model.device, torch.float32)
            kept = []
            handle = mid.register_forward_hook(lambda _m, _i, o: kept.append(o[0] if isinstance(o, tuple) else o))
            try:
                model.eps(model.alpha(t) * x, t, cond)
            finally:
                handle.remove()
            out.append(kept[0].flatten(1).cpu())
        return torch.cat(out)

    return extract


def features(
    images: torch.Tensor, extractor: FeatureExtractor | str = "pixel", model: DiffusionModel | None = None
) -> np.ndarray:
    """(N, F) float32 features of images (N, C, H, W): "pixel", "denoiser" (needs ``model``) or a callable."""
    if extractor == "pixel":
        fn = pixel_features
    elif extractor == "denoiser":
        if model is None:
            raise ValueError("Denoiser features need the model; pass model=.")
        fn = denoiser_features(model)
    elif callable(extractor):
        fn = extractor
    else:
        raise ValueError(f"extractor must be 'pixel', 'denoiser' or a callable; got {extractor!r}.")
    out = fn(images)
    out = out.detach().cpu().numpy() if torch.is_tensor(out) else np.asarray(out)
    if out.ndim != 2 or len(out) != len(images) or not np.isfinite(out).all():
        raise ValueError(f"A feature extractor must return finite (N, F) vectors; got shape {out.shape}.")
    return np.ascontiguousarray(out, dtype=np.float32)
