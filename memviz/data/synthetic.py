"""Synthetic data whose local intrinsic dimension is known at every point.

- ``toy_mmh``: the Manifold Memorization Hypothesis figure in miniature (Ross, Kamkari
  et al., ICLR 2025, Fig. 1): points on a circle (LID* = 1) concentrated in von Mises
  arcs, one isolated training point on an empty arc (LID* = 1 but a model overfits it:
  OD-Mem), and a point mass at the origin (many copies, LID* = 0: DD-Mem).
- ``affine_union``: Gaussians on random affine subspaces of dimensions ``dims`` in R^D,
  each point's LID being its subspace's dimension.

Points are stored as images (N, C, H, W): (N, ambient, 1, 1) for the toy, (N, 1, s, s)
with D = s^2 for the union, so that diffusers UNets and every estimator take them as is.
"""

from __future__ import annotations

import numpy as np
import torch

from memviz.data.base import ImageDataset

TOY_NAMES = ["circle", "isolated", "point mass"]


def toy_mmh(n: int = 2000, ambient: int = 2, n_point_mass: int = 100, seed: int = 0) -> ImageDataset:
    """The MMH toy in R^2 (or embedded in R^3 by a fixed rotation when ``ambient=3``).

    Returns:
        ImageDataset: images (n, ambient, 1, 1) in [-1, 1]; labels 0 circle, 1 isolated,
        2 point mass; ``lid`` 1, 1, 0; ``meta["kind"]`` "none", "OD-Mem", "DD-Mem".
    """
    if ambient not in (2, 3):
        raise ValueError(f"ambient must be 2 or 3; got {ambient}.")
    if not 0 <= n_point_mass < n - 1:
        raise ValueError(f"n_point_mass must lie in [0, n - 1); got {n_point_mass} for n = {n}.")
    rng = np.random.default_rng(seed)
    n_circle = n - n_point_mass - 1
    centres = rng.choice([0.0, 2 * np.pi / 3, 4 * np.pi / 3], size=n_circle)  # von Mises mixture
    theta = rng.vonmises(centres, 30.0)  # narrow arcs: the gaps between them hold no data
    iso = np.pi / 3  # midway between two arcs, where the density is exp(-15) of the peak
    pts = 0.8 * np.c_[np.cos(np.r_[theta, iso]), np.sin(np.r_[theta, iso])]
    pts = np.r_[pts, np.zeros((n_point_mass, 2))]
    labels = np.r_[np.zeros(n_circle), [1], 2 * np.ones(n_point_mass)].astype(np.int64)
    if ambient == 3:
        q, _ = np.linalg.qr(np.random.default_rng(1234).normal(size=(3, 3)))
        pts = np.c_[pts, np.zeros(len(pts))] @ q.T * 0.99
    lid = np.array([1.0, 1.0, 0.0])[labels]
    kind = np.array(["none", "OD-Mem", "DD-Mem"])[labels]
    images = torch.as_tensor(pts, dtype=torch.float32).view(n, ambient, 1, 1)
    return ImageDataset(
        "toy-mmh",
        images,
        labels=labels,
        class_names=TOY_NAMES,
        lid=lid,
        meta={"kind": kind, "ambient": ambient, "seed": seed},
    )


def affine_union(dims: tuple[int, ...] = (2, 4, 8, 16), side: int = 8, n_per: int = 500, seed: int = 0) -> ImageDataset:
    """Gaussians N(b_i, U_i U_i^T) on random affine subspaces of dimension d_i in R^(side^2).

    The whole set is rescaled by one constant into [-1, 1] (a global scaling keeps every LID).

    Returns:
        ImageDataset: images (len(dims) * n_per, 1, side, side); labels = the component;
        ``lid`` = its dimension.
    """
    D = side * side
    if any(d < 1 or d > D for d in dims):
        raise ValueError(f"Every dimension must lie in [1, {D}] for side {side}; got {dims}.")
    rng = np.random.default_rng(seed)
    parts, labels, lid, means, covs = [], [], [], [], []
    for i, d in enumerate(dims):
        basis, _ = np.linalg.qr(rng.normal(size=(D, d)))  # (D, d) orthonormal columns
        offset = rng.uniform(-0.5, 0.5, size=D)
        parts.append(offset + rng.normal(size=(n_per, d)) @ basis.T * 0.5)
        means.append(offset)
        covs.append(0.25 * basis @ basis.T)
        labels += [i] * n_per
        lid += [d] * n_per
    x = np.concatenate(parts)
    scale = 1.0 / (np.abs(x).max() * 1.0001)
    images = torch.as_tensor(x * scale, dtype=torch.float32).view(-1, 1, side, side)
    # the exact distribution of each component after scaling, for closed-form denoisers
    meta = {"dims": list(dims), "seed": seed, "means": np.stack(means) * scale, "covs": np.stack(covs) * scale**2}
    return ImageDataset(
        f"affine-union-D{D}",
        images,
        labels=np.asarray(labels),
        lid=np.asarray(lid, float),
        class_names=[f"d={d}" for d in dims],
        meta=meta,
    )


BUILTIN = {"toy-mmh": toy_mmh, "affine-union": affine_union}
