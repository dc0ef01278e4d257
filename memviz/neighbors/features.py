"""Feature spaces for neighbours and embeddings: pixels, the denoiser's own mid-block
features, an image embedder the user gives as local weights (``ImageEmbedder``: a Hugging Face
``transformers`` vision model folder such as CLIP, DINOv2, ViT or SigLIP; never downloaded), or any
extractor a user plugs in (a callable from images to vectors).

The denoiser's mid-block activations at a small t are available offline for every
model (no SSCD or CLIP weights are needed); they are the UNet's most abstract view of
an image. An embedder's vectors are l2-normalised, so l2 neighbours rank as cosine similarity
does (the rule of CLIP and SSCD retrieval; Somepalli et al. 2023 judge copies so).
"""

from __future__ import annotations

from pathlib import Path
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


PIXEL = "pixel"  # the feature space of the demos: the images themselves


class ImageEmbedder:
    """An image embedder from a local ``transformers`` folder (``config.json``, ``*.safetensors``
    weights and a ``preprocessor_config.json``): images (B, C, H, W) in [-1, 1] -> (B, F) unit vectors.

    The model class is the one the config names (``architectures``: ``CLIPVisionModelWithProjection``,
    ``Dinov2Model``, ...; ``AutoModel`` without one); the vector is its projected image embedding where
    it has one (``image_embeds``, ``get_image_features`` of a full CLIP or SigLIP), else its pooled
    output, else the first token. Images are preprocessed by the folder's own image processor (its
    resize, crop and normalisation), grayscale repeated to three channels. Safetensors only (a folder
    with only pickled weights is refused), nothing downloaded, weights checked against ``max_bytes``.

    Attributes:
        path (Path); fingerprint (str): of the config, the processor and the weights' bytes, so stored
            features are keyed by the embedder that made them; dim (int): F.

    Example:
        >>> emb = ImageEmbedder("~/models/dinov2-small")
        >>> emb(images).shape  # (B, 384)
    """

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 64):
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        from memviz.io.cache import fingerprint
        from memviz.io.files import file_sha256
        from memviz.io.guard import check_bytes

        path = check_embedder_folder(path)
        weights = sorted(path.glob("*.safetensors"))
        check_bytes(sum(f.stat().st_size for f in weights), f"The embedder's weights in {path}")
        transformers.utils.logging.disable_progress_bar()  # a local read: no "Loading weights" bar on stderr
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            arch = (getattr(config, "architectures", None) or [None])[0]
            cls = getattr(transformers, arch, None) if arch else None
            self.model = (cls or AutoModel).from_pretrained(path, local_files_only=True, use_safetensors=True)
            self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} could not be read as a transformers image model: {exc}") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.eval().to(self.device)
        self.path, self.batch_size = path, batch_size
        self.fingerprint = fingerprint(
            (path / "config.json").read_bytes(),
            (path / "preprocessor_config.json").read_bytes(),
            *[file_sha256(f) for f in weights],
        )

    @property
    def dim(self) -> int:
        """F, the length of one vector (one call on a blank image, the first time)."""
        if not hasattr(self, "_dim"):
            self._dim = int(self(torch.zeros(1, 3, 32, 32)).shape[1])
        return self._dim

    def __repr__(self) -> str:
        return f"ImageEmbedder({str(self.path)!r})"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """images: (B, C, H, W) in [-1, 1], C = 1 or 3 -> (B, F) float32 unit vectors."""
        out = []
        for s in range(0, len(images), self.batch_size):
            x = ((images[s : s + self.batch_size].float() + 1) / 2).clamp(0, 1)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            pixels = self.processor(images=list(x), return_tensors="pt", do_rescale=False)["pixel_values"]
            out.append(self._embed(pixels.to(self.device)).float().cpu())
        v = torch.cat(out)
        return torch.nn.functional.normalize(v, dim=1).numpy().astype(np.float32)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "get_image_features"):  # a full CLIP / SigLIP: the projected image embedding
            v = self.model.get_image_features(pixel_values=pixels)
            return getattr(v, "pooler_output", v) if not torch.is_tensor(v) else v
        o = self.model(pixel_values=pixels)
        for name in ("image_embeds", "pooler_output"):
            v = getattr(o, name, None)
            if v is not None:
                return v.flatten(1)
        return o.last_hidden_state[:, 0]


def check_embedder_folder(path: str | Path) -> Path:
    """``path`` if it holds a transformers image model memviz can load (config, safetensors weights,
    image processor), else one ValueError saying what is missing; reads no weights."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"The feature space {str(path)!r} is neither 'pixel' nor a folder; give an embedder's folder.")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not an image embedder folder: it has no config.json (a transformers model).")
    if not any(path.glob("*.safetensors")):
        pickled = [f.name for f in path.glob("*.bin")] + [f.name for f in path.glob("*.pt*")]
        why = f"only pickled weights ({', '.join(pickled)}), which memviz never loads" if pickled else "no weights"
        raise ValueError(f"{path} has {why}; save the embedder with safetensors (save_pretrained does by default).")
    if not (path / "preprocessor_config.json").is_file():
        raise ValueError(f"{path} has no preprocessor_config.json; save the embedder's image processor beside it.")
    return path


def feature_space(name: str | Path | None, device: str | None = None) -> ImageEmbedder | None:
    """The one reading of a feature-space argument: None or "pixel" -> None (pixels), else the
    ``ImageEmbedder`` in that folder."""
    if name is None or str(name) == PIXEL:
        return None
    return ImageEmbedder(name, device=device)
