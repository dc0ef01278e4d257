"""Pure figure builders (no streamlit): image grids and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memviz._io import atomic_path


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile images (B, C, H, W) in [0, 1] into one uint8 array (H', W', 3).

    Written by hand because torchvision (which has ``make_grid``) has no CPU build here.
    """
    images = images.detach().cpu().float().clamp(0, 1)
    b, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"Only grey (1) or RGB (3) images tile into a grid; these have {c} channels "
                         "(points? save them as .npz).")
    nrow = nrow or int(np.ceil(np.sqrt(b)))
    ncol = int(np.ceil(b / nrow))
    grid = torch.ones(3, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    rgb = images.expand(-1, 3, -1, -1) if c == 1 else images[:, :3]
    for k in range(b):
        r, q = divmod(k, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = rgb[k]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return arr.repeat(scale, 0).repeat(scale, 1) if scale > 1 else arr


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    """Save ``image_grid(images)`` as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path, ".png") as tmp:
        Image.fromarray(image_grid(images, nrow=nrow, scale=scale)).save(tmp, format="PNG")
    return Path(path)
