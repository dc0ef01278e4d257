"""Datasets with known answers: images (N, C, H, W) in [-1, 1], labels or captions,
and per-sample ground truth (LID, planted memorization) where it is known."""

from memviz.data.base import ImageDataset, check_images, from_uint8, to_unit
from memviz.data.mnist import digits, mnist5k
from memviz.data.planted import PlantedTruth, plant_memorization, planted_split

__all__ = ["ImageDataset", "PlantedTruth", "check_images", "digits", "from_uint8", "load_builtin",
           "mnist5k", "plant_memorization", "planted_split", "to_unit", "BUILTIN"]

BUILTIN = {"mnist5k": mnist5k, "digits": digits}


def load_builtin(name: str, **kwargs) -> ImageDataset:
    """A bundled dataset by name (``mnist5k``, ``digits``, or a synthetic one)."""
    from memviz.data import synthetic

    table = {**BUILTIN, **synthetic.BUILTIN}
    if name not in table:
        raise ValueError(f"Unknown dataset {name!r}; the bundled ones are {sorted(table)}.")
    return table[name](**kwargs)
