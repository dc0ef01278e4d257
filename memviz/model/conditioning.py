"""Conditions of a diffusion model: class labels (with a null class for classifier-free guidance) or
prompts encoded by the model's text encoder, one per batch or one per row. ``DiffusionModel``
inherits these; nothing else in memviz turns a condition into UNet inputs."""

from __future__ import annotations

from typing import Sequence, Union

import torch

Cond = Union[None, int, str, Sequence[int], Sequence[str], torch.Tensor]


class Conditioning:
    """Mixin over ``self.unet`` (``self._unet``, ``self.is_built``, ``self.unet_config``), ``self.meta``, ``self.device``, ``self.text_encoder``, ``self.tokenizer``."""

    @property
    def is_class_conditional(self) -> bool:
        return not self.is_text_conditional and getattr(self.unet_config, "num_class_embeds", None) is not None

    @property
    def is_text_conditional(self) -> bool:
        unet = self._unet
        if not self.is_built:  # a lazy UNet (memviz.model.loading.LazyUNet): its class by name
            return unet.class_name == "UNet2DConditionModel"
        from diffusers import UNet2DConditionModel

        return isinstance(unet, UNet2DConditionModel)

    @property
    def class_names(self) -> list[str]:
        """Names of the class labels (without the null class)."""
        if not self.is_class_conditional:
            return []
        names = self.meta.get("class_names")
        return list(names) if names else [str(i) for i in range(self.null_class)]

    @property
    def null_class(self) -> int:
        """The class index that means "no condition" (classifier-free guidance)."""
        return int(self.meta.get("null_class", self.unet_config.num_class_embeds - 1))

    def conditions_of(self, data) -> list | None:
        """Each sample's own condition in an ``ImageDataset``: its label (class models) or its
        caption (text models); None when the model or the data has none."""
        if self.is_class_conditional and data.labels is not None:
            return data.labels.tolist()
        if self.is_text_conditional and data.captions is not None:
            return list(data.captions)
        return None

    def class_labels(self, cond: Cond, n: int) -> torch.Tensor:
        """(n,) class indices for ``cond`` (None = the null class; names or indices)."""
        if not self.is_class_conditional:
            raise ValueError("This model has no class labels; pass a prompt or cond=None.")
        if cond is None:
            return torch.full((n,), self.null_class, device=self.device, dtype=torch.long)
        items = [cond] * n if isinstance(cond, (int, str)) or (torch.is_tensor(cond) and cond.ndim == 0) else list(cond)
        if len(items) != n:
            raise ValueError(f"Got {len(items)} conditions for a batch of {n}; give one, or one per row.")
        return torch.tensor([self._class_index(c) for c in items], device=self.device, dtype=torch.long)

    def _class_index(self, c) -> int:
        names = self.class_names
        if isinstance(c, str):
            if c not in names:
                raise ValueError(f"Unknown class {c!r}; this model knows {names}.")
            return names.index(c)
        c = int(c)
        if not 0 <= c < len(names):
            raise ValueError(f"Class index {c} is out of range; this model has classes 0..{len(names) - 1}.")
        return c

    def encode_cond(self, cond: Cond, n: int) -> torch.Tensor:
        """(n, L, E) encoder hidden states for a prompt, a list of prompts or an embedding."""
        if torch.is_tensor(cond):
            if cond.ndim != 3:
                raise ValueError(f"A precomputed embedding must have shape (B, L, E); got {tuple(cond.shape)}.")
            return cond.to(self.device).expand(n, -1, -1) if len(cond) == 1 else cond.to(self.device)
        prompts = [""] * n if cond is None else ([cond] * n if isinstance(cond, str) else list(cond))
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"Give one prompt string, or {n} of them, for a text-conditional model.")
        return torch.cat([self._encode_prompt(p) for p in prompts])

    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError(
                "This text-conditional model has no text encoder or tokenizer; pass a precomputed embedding."
            )
        if prompt not in self._prompt_cache:
            from memviz.model.text import encode_text

            self._prompt_cache[prompt] = encode_text(self.text_encoder, self.tokenizer, [prompt], self.device)
        return self._prompt_cache[prompt]

    def class_embedding_of(self, cond: Cond) -> torch.Tensor:
        """(1, E) the class embedding a class condition feeds the UNet (a starting point to optimize)."""
        with torch.no_grad():
            return self.unet.class_embedding(self.class_labels(cond, 1)).float()

    def unet_inputs(self, cond: Cond, n: int, double: bool = False) -> dict:
        """The UNet's keyword arguments for ``cond`` over n rows; ``double``: the n conditional rows,
        then n unconditional ones (one batched call for classifier-free guidance)."""
        if self.is_text_conditional:
            emb = self.encode_cond(cond, n)
            return {"encoder_hidden_states": torch.cat([emb, self.encode_cond(None, n)]) if double else emb}
        if self.is_class_conditional:
            if torch.is_tensor(cond) and cond.is_floating_point():  # a class embedding (1 or n, E): it replaces
                width = self.unet.class_embedding.embedding_dim  # the layer's output for the n conditional rows
                if cond.ndim != 2 or cond.shape[1] != width or len(cond) not in (1, n):
                    raise ValueError(
                        f"A class embedding must have shape (1, {width}) or ({n}, {width}); got {tuple(cond.shape)}."
                    )
                null = self.class_labels(None, n)
                return {
                    "class_labels": torch.cat([null, null]) if double else null,
                    "class_embedding": cond.to(self.device).expand(n, -1),
                }
            labels = self.class_labels(cond, n)
            return {"class_labels": torch.cat([labels, self.class_labels(None, n)]) if double else labels}
        if cond is not None:
            raise ValueError("This model is unconditional; call it with cond=None.")
        return {}


def rows_of(cond: Cond, start: int, size: int) -> Cond:
    """The rows [start, start + size) of a per-row condition; any other condition as it is."""
    return cond[start : start + size] if is_per_row(cond) else cond


def is_per_row(cond: Cond) -> bool:
    """A condition with one entry per row (labels, prompts, or embeddings (B > 1, L, E) or class embeddings
    (B > 1, E)), sliced with the batch."""
    if isinstance(cond, (list, tuple)):
        return True
    return torch.is_tensor(cond) and (cond.ndim == 1 or (cond.ndim in (2, 3) and len(cond) > 1))
