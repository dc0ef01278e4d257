"""The one container every dataset returns, and the checks at its boundary."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageDataset:
    """Images with their labels, captions and per-sample ground truth.

    Attributes:
        name (str): short identifier, e.g. ``"mnist5k"``.
        images (torch.Tensor): (N, C, H, W) float32 in [-1, 1].
        labels (np.ndarray | None): (N,) int64 class indices.
        captions (list[str] | None): N captions (text datasets).
        class_names (list[str] | None): the name of every class index.
        lid (np.ndarray | None): (N,) the known local intrinsic dimension of each
            sample, where it is known (synthetic data).
        source_index (np.ndarray | None): (N,) index of each sample in the base
            dataset it was built from (planted datasets).
        meta (dict): anything else worth keeping (provenance, parameters); arrays of
            length N in it are per-sample and follow ``subset``.
    """

    name: str
    images: torch.Tensor
    labels: np.ndarray | None = None
    captions: list[str] | None = None
    class_names: list[str] | None = None
    lid: np.ndarray | None = None
    source_index: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _streamed(self.images):  # a streamed set is decoded from 8-bit pixels: in range by construction
            check_images(self.images, what=f"dataset {self.name!r}")
        n = len(self.images)
        for key in ("labels", "captions", "lid", "source_index"):
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"Dataset {self.name!r} has {n} images but {len(value)} {key}; "
                    f"give one {key[:-1] if key.endswith('s') else key} per image."
                )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: np.ndarray | list[int]) -> "ImageDataset":
        """The samples at ``index`` (every per-sample field follows)."""
        index = np.asarray(index, dtype=np.int64)

        def pick(v):
            return None if v is None else ([v[i] for i in index] if isinstance(v, list) else v[index])

        n = len(self)
        meta = {
            k: v[index]
            if isinstance(v, np.ndarray) and v.shape[:1] == (n,)
            else [v[i] for i in index]
            if k == "files" and isinstance(v, list) and len(v) == n  # where each row came from
            else v
            for k, v in self.meta.items()
        }
        return replace(
            self,
            images=self.images.take(index) if _streamed(self.images) else self.images[torch.as_tensor(index)],
            labels=pick(self.labels),
            captions=pick(self.captions),
            lid=pick(self.lid),
            source_index=pick(self.source_index),
            meta=meta,
        )

    def deduplicated(self) -> "ImageDataset":
        """One row per distinct source image (the first), or per distinct image when the
        source is unknown. Per-sample arrays in ``meta`` (e.g. the planted kind) follow."""
        return self.subset(self.first_rows())

    def first_rows(self) -> np.ndarray:
        """(U,) sorted row of the first occurrence of each distinct source image (or image)."""
        return np.sort(self._distinct[0])

    def copies(self) -> np.ndarray:
        """(N,) how many rows hold each row's source image (or the identical image); 1: it is unique."""
        _, inverse, counts = self._distinct
        return counts[inverse]

    def duplicate_of(self) -> np.ndarray:
        """(N,) the first row holding each row's source image (or identical image): one id per distinct image."""
        first, inverse, _ = self._distinct
        return first[inverse]

    @cached_property  # read by copies() and duplicate_of(): np.unique over every image once; a frozen
    def _distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # dataset's rows never change
        """(first row of each distinct image, each row's distinct image, its number of rows): one rule
        of what a duplicate is, the source image when known, else identical pixels."""
        keys = (
            self.source_index
            if self.source_index is not None
            else self.images.row_hashes  # streamed: each row's content hash, computed at open
            if _streamed(self.images)
            else self.images.flatten(1).numpy()
        )
        _, first, inverse, counts = np.unique(
            keys, axis=0 if keys.ndim > 1 else None, return_index=True, return_inverse=True, return_counts=True
        )
        return first, inverse.ravel(), counts

    def resized(self, resolution: int) -> "ImageDataset":
        """The same dataset at ``resolution`` x ``resolution`` (antialiased bilinear)."""
        if resolution == self.images.shape[-1] == self.images.shape[-2]:
            return self
        if _streamed(self.images):
            raise ValueError(f"A streamed dataset is resized as it is read; open it with resolution={resolution}.")
        images = F.interpolate(
            self.images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        ).clamp(-1, 1)
        return replace(self, images=images, meta={**self.meta, "resolution": resolution})


def _streamed(images) -> bool:
    return isinstance(images, LazyRows)


class LazyRows:
    """(N, ...) float32 rows read on indexing, never held whole: a streamed image set
    (``memviz.data.stream.StreamedImages``) or rows stored on disk (``memviz.data.mapped``).

    ``rows[i]`` (an int, a slice, or an index array / tensor) reads those rows into a tensor; ``take(i)``
    is a lazy view (``ImageDataset.subset``); ``batches()`` iterates; ``flatten(1)`` reads every row into
    one (N, D) tensor a batch at a time, as a neighbour index needs it whole. ``row_hashes`` (N,): each
    row's content identity (duplicates are equal hashes). Subclasses give ``shape``, ``_read(rows)``,
    ``take`` and ``fingerprint_part`` (what ``memviz.io.cache.fingerprint`` hashes for them).
    """

    ndim = 4
    dtype = torch.float32
    batch_rows = 256  # rows read at once by batches() and flatten()
    row_hashes: np.ndarray

    @property
    def shape(self) -> torch.Size:
        raise NotImplementedError

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), ...) float32 of positions ``rows`` (int64) of this view."""
        raise NotImplementedError

    def take(self, index) -> "LazyRows":
        raise NotImplementedError

    def fingerprint_part(self) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self[np.array([int(index)])][0]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = index.numpy() if torch.is_tensor(index) else index
        return self._read(np.asarray(index, dtype=np.int64).reshape(-1))

    def batches(self, batch_size: int | None = None):
        """(rows (b,), values (b, ...)) over every row, in order."""
        step = batch_size or self.batch_rows
        for s in range(0, len(self), step):
            rows = np.arange(s, min(s + step, len(self)))
            yield rows, self[rows]

    def flatten(self, start_dim: int = 1) -> torch.Tensor:
        """(N, D): every row read, a batch at a time, into one preallocated tensor."""
        if start_dim != 1:
            raise ValueError("Rows read on indexing flatten from dimension 1 only.")
        out = torch.empty((len(self), int(np.prod(self.shape[1:]))), dtype=torch.float32)
        for rows, x in self.batches():
            out[torch.as_tensor(rows)] = x.flatten(1)
        return out

    def numpy(self) -> np.ndarray:
        return self.flatten(1).view(self.shape).numpy()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.numpy() if dtype is None else self.numpy().astype(dtype)


def check_images(images: torch.Tensor, what: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a finite float tensor (N, C, H, W) in [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = getattr(images, "shape", None)
        raise ValueError(f"{what} must be a tensor of shape (N, C, H, W); got shape {shape}.")
    if not torch.is_floating_point(images):
        raise ValueError(f"{what} must be floating point in [-1, 1]; got dtype {images.dtype}.")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise ValueError(f"{what} contain NaN or infinite values in {bad} images; clean or drop them first.")
    if len(images) and (images.min() < -1 - 1e-4 or images.max() > 1 + 1e-4):
        raise ValueError(
            f"{what} must lie in [-1, 1]; got values in [{images.min():.3g}, {images.max():.3g}] "
            "(scale 8-bit images as x / 127.5 - 1)."
        )


def from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """Map 8-bit pixels (N, C, H, W) in [0, 255] to float32 in [-1, 1]."""
    return torch.as_tensor(np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Images from the data range [-1, 1] to [0, 1] (display, generations), clamped. The one pixel-range rule,
    with ``from_unit``."""
    return ((images + 1) / 2).clamp(0, 1)


def from_unit(images: torch.Tensor) -> torch.Tensor:
    """Images from [0, 1] (generations, display) back to the data range [-1, 1]."""
    return images * 2 - 1
