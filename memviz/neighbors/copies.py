"""Evidence of copying: generate, find the nearest training images, score the copies.

This is the evidence-based reference every other detector is measured against: a
generation is a copy when it sits much closer to one training image than to the rest
(Carlini et al. 2023's calibrated l2; see ``memviz.neighbors.index``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memviz.data.base import from_unit, to_unit
from memviz.model.adapter import Cond, DiffusionModel
from memviz.neighbors.index import COPY_NEIGHBORS, COPY_THRESHOLD, NeighborIndex, calibrated_l2


@dataclass(frozen=True)
class CopyEvidence:
    """Generations with their nearest training images.

    Attributes:
        images (torch.Tensor): (n, C, H, W) generations in [0, 1].
        noise (torch.Tensor): (n, C, H, W) their initial noise (reproducible from ``seed``).
        neighbors (np.ndarray): (n, k) indices into the reference, nearest first.
        distance (np.ndarray): (n, k) l2 distances in [-1, 1] pixel units (in the reference's feature space
            when it has an embedder: unit vectors, so between 0 and 2).
        calibrated (np.ndarray): (n,) calibrated l2 (small = copy).
        nearest_images (torch.Tensor): (n, C, H, W) the nearest training image of each, in [0, 1].
        is_copy (np.ndarray): (n,) calibrated < ``threshold``.
        threshold (float): the calibrated l2 below which a generation is a copy.
        seed (int): the generations' seed.
        x0 (torch.Tensor): (n, C', H', W') the generations in the model's space (latents for latent models).
    """

    images: torch.Tensor
    noise: torch.Tensor
    neighbors: np.ndarray
    distance: np.ndarray
    calibrated: np.ndarray
    nearest_images: torch.Tensor
    is_copy: np.ndarray
    threshold: float
    seed: int
    x0: torch.Tensor | None = None


def copy_evidence(
    model: DiffusionModel,
    reference: NeighborIndex,
    cond: Cond = None,
    n: int = 16,
    steps: int = 50,
    guidance_scale: float | None = None,
    seed: int = 0,
    k: int = COPY_NEIGHBORS,
    threshold: float = COPY_THRESHOLD,
) -> CopyEvidence:
    """Generate ``n`` samples for ``cond`` and measure how close each is to a training image.

    Args:
        reference: an index over the (deduplicated) training images in [-1, 1], pixel space or an
            embedder's (``NeighborIndex.with_features``).
        k: neighbours kept; the calibrated l2 uses the mean over all ``k`` (Carlini: 50).
        threshold: calibrated l2 below which a generation counts as a copy.
    """
    return evidence_of(
        model.sample(n, cond=cond, steps=steps, guidance_scale=guidance_scale, seed=seed), reference, k, threshold
    )


def evidence_of(
    out, reference: NeighborIndex, k: int = COPY_NEIGHBORS, threshold: float = COPY_THRESHOLD
) -> CopyEvidence:
    """``CopyEvidence`` of generations already made (a ``SampleOutput``)."""
    nb = reference.nearest_images(from_unit(out.images), k=k)
    cal = calibrated_l2(nb.distance, n=k)
    nearest = reference.images_of(nb.index[:, 0]).reshape(out.images.shape)
    return CopyEvidence(
        out.images,
        out.noise,
        nb.index,
        nb.distance,
        cal,
        to_unit(nearest),
        cal < threshold,
        threshold,
        out.seed,
        out.x0,
    )


def reference_statistics(reference: NeighborIndex, queries: torch.Tensor, k: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-training distance and calibrated l2 of real images ``queries`` (N, C, H, W) in [-1, 1],
    e.g. held-out test images: what a generalizing model's generations should look like.

    Returns:
        (N,) nearest distances, (N,) calibrated l2.
    """
    nb = reference.nearest_images(torch.as_tensor(queries), k=k)
    return nb.distance[:, 0], calibrated_l2(nb.distance, n=k)
