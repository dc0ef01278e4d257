"""Datasets with known answers: images (N, C, H, W) in [-1, 1], labels or captions,
and per-sample ground truth (LID, planted memorization) where it is known.

May import ``memviz.io`` only (the boundary's size checks); the model adapter and everything above import it."""

from memviz.data.base import ImageDataset, check_images, from_uint8, from_unit, to_unit
from memviz.data.mnist import digits, mnist5k
from memviz.data.planted import PlantedTruth, plant_memorization, planted_split

__all__ = [
    "ImageDataset",
    "PlantedTruth",
    "check_images",
    "digits",
    "from_uint8",
    "from_unit",
    "load_builtin",
    "mnist5k",
    "plant_memorization",
    "planted_split",
    "to_unit",
    "training_data",
    "BUILTIN",
]

BUILTIN = {"mnist5k": mnist5k, "digits": digits}


def training_data(meta: dict) -> tuple[ImageDataset, ImageDataset | None]:
    """The (train, test) data a model was trained on, rebuilt from its ``memviz.json``.

    Planted models rebuild their exact training set and held-out test set; models
    trained on a bundled dataset rebuild it (test is None).
    """
    if "planted" in meta:
        truth = PlantedTruth.from_dict(meta["planted"])
        train, test = planted_split(load_builtin(truth.base), truth)
        return _with_captions(train, test, meta["captions"], truth) if "captions" in meta else (train, test)
    spec = dict(meta.get("data") or {})
    name = spec.pop("name", None)
    if name is None:
        raise ValueError("This model does not say what data it was trained on; load the data yourself.")
    data = load_builtin(name, **{k: v for k, v in spec.items() if k != "resolution"})
    return (data.resized(spec["resolution"]) if "resolution" in spec else data), None


def _with_captions(train: ImageDataset, test: ImageDataset, table: dict, truth: PlantedTruth):
    """Each image's own caption (a text demo): its unique caption (planted images), or its digit's
    first template (ordinary and held-out images)."""
    from dataclasses import replace

    from memviz.data.captions import ordinary_captions, row_captions

    rows = row_captions(table, train.meta["kind"], train.labels, train.meta["group"], truth.n_ordinary)
    return (
        replace(train, captions=[r[0] for r in rows]),
        replace(test, captions=[ordinary_captions(table, int(c))[0] for c in test.labels]),
    )


def load_builtin(name: str, **kwargs) -> ImageDataset:
    """A bundled dataset by name (``mnist5k``, ``digits``, or a synthetic one)."""
    from memviz.data import synthetic

    table = {**BUILTIN, **synthetic.BUILTIN}
    if name not in table:
        raise ValueError(f"Unknown dataset {name!r}; the bundled ones are {sorted(table)}.")
    return table[name](**kwargs)
