"""Planted memorization: a training set whose memorized samples are known.

Two kinds are planted, after the Manifold Memorization Hypothesis (Ross, Kamkari
et al., ICLR 2025):

- **DD-Mem** (data-driven): ``n_duplicated`` ordinary images, each stored ``copies``
  times in the training set under its own class. The data itself has LID* = 0 there.
- **OD-Mem** (overfitting-driven): ``len(images_per_prompt)`` extra labels ("planted
  prompts", like the memorized captions of LAION), each tied to one or a few images
  that the data stores once (LID* stays that of ordinary digits) but the training
  sampler shows ``oversample`` times as often, as repeated epochs on a small
  fine-tuning set would. The model overfits them.

A held-out test set (never trained on) gives the generalization reference. The
ground truth is a small JSON-able record (``PlantedTruth``) that travels with the
model, so the exact training set can be rebuilt from the base dataset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from memviz.data.base import ImageDataset

KINDS = ("none", "DD-Mem", "OD-Mem")


@dataclass(frozen=True)
class PlantedTruth:
    """Which training samples are memorized by construction, and how.

    Attributes:
        base (str): name of the base dataset (``"mnist5k"``).
        resolution (int): image side the model was trained at.
        class_names (list[str]): names of every label; ordinary classes first, then
            the planted prompts.
        n_ordinary (int): labels below this are ordinary prompts.
        train_source (list[int]): (N,) base index of every training sample.
        train_label (list[int]): (N,) label of every training sample.
        train_kind (list[str]): (N,) one of ``KINDS``.
        train_group (list[int]): (N,) planted group id (the duplicated image's number,
            or the prompt's label), -1 for ordinary samples.
        train_weight (list[float]): (N,) relative sampling weight used in training.
        test_source (list[int]): base indices held out for testing.
        params (dict): the builder's arguments, for the model card.
    """

    base: str
    resolution: int
    class_names: list[str]
    n_ordinary: int
    train_source: list[int]
    train_label: list[int]
    train_kind: list[str]
    train_group: list[int]
    train_weight: list[float]
    test_source: list[int]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def memorized_prompts(self) -> list[int]:
        """Labels of the planted (memorized) prompts."""
        return list(range(self.n_ordinary, len(self.class_names)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlantedTruth":
        missing = [k for k in cls.__dataclass_fields__ if k not in d and k != "params"]
        if missing:
            raise ValueError(f"Planted ground truth is missing {missing}; re-create it with plant_memorization.")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def plant_memorization(
    base: ImageDataset,
    n_duplicated: int = 10,
    copies: int = 40,
    images_per_prompt: Sequence[int] = (1,) * 8 + (2,) * 4,
    oversample: float = 10.0,
    n_test: int = 1000,
    seed: int = 0,
) -> PlantedTruth:
    """Choose the planted sets of a base labelled dataset and return the ground truth.

    Steps: 1. hold out ``n_test`` images; 2. pick ``n_duplicated`` DD-Mem images, spread
    over the classes; 3. pick the OD-Mem images of each planted prompt; 4. lay out the
    training set (ordinary images once, DD images ``copies`` times, OD images once
    under their prompt's label with weight ``oversample``).
    """
    if base.labels is None or base.class_names is None:
        raise ValueError(f"plant_memorization needs a labelled dataset; {base.name!r} has no labels.")
    n_od = int(sum(images_per_prompt))
    if n_test + n_duplicated + n_od >= len(base):
        raise ValueError(
            f"{base.name!r} has {len(base)} images, too few for {n_test} test, "
            f"{n_duplicated} duplicated and {n_od} planted-prompt images."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(base))  # 1.
    test, rest = np.sort(order[:n_test]), order[n_test:]
    dd = _spread_over_classes(rest, base.labels, n_duplicated)  # 2.
    od = [i for i in rest if i not in set(dd)][:n_od]  # 3.
    n_ordinary = len(base.class_names)
    prompt_names = [f"memorized-{p:02d}" for p in range(len(images_per_prompt))]
    od_label = np.repeat(n_ordinary + np.arange(len(images_per_prompt)), images_per_prompt)
    ordinary = np.sort([i for i in rest if i not in set(dd) and i not in set(od)])
    rows: list[tuple[int, int, str, int, float]] = []  # 4.
    rows += [(int(i), int(base.labels[i]), "none", -1, 1.0) for i in ordinary]
    rows += [(int(i), int(base.labels[i]), "DD-Mem", g, 1.0) for g, i in enumerate(dd) for _ in range(copies)]
    rows += [(int(i), int(lab), "OD-Mem", int(lab), float(oversample)) for i, lab in zip(od, od_label)]
    src, lab, kind, group, weight = (list(c) for c in zip(*rows))
    return PlantedTruth(
        base=base.name,
        resolution=int(base.images.shape[-1]),
        class_names=list(base.class_names) + prompt_names,
        n_ordinary=n_ordinary,
        train_source=src,
        train_label=lab,
        train_kind=kind,
        train_group=group,
        train_weight=weight,
        test_source=[int(i) for i in test],
        params=dict(
            n_duplicated=n_duplicated,
            copies=copies,
            images_per_prompt=list(images_per_prompt),
            oversample=oversample,
            n_test=n_test,
            seed=seed,
        ),
    )


def _spread_over_classes(candidates: np.ndarray, labels: np.ndarray, n: int) -> list[int]:
    """The first ``n`` candidates taken round-robin over the classes."""
    by_class = {c: [i for i in candidates if labels[i] == c] for c in np.unique(labels)}
    picked: list[int] = []
    while len(picked) < n:
        for c in sorted(by_class):
            if by_class[c] and len(picked) < n:
                picked.append(int(by_class[c].pop(0)))
    return picked


def planted_split(base: ImageDataset, truth: PlantedTruth) -> tuple[ImageDataset, ImageDataset]:
    """Rebuild the (train, test) datasets of ``truth`` from its base dataset.

    Returns:
        train: the training set with the planted labels; ``meta["kind"]``,
            ``meta["group"]`` and ``meta["weight"]`` hold the per-sample ground truth.
        test: the held-out images with their ordinary labels.
    """
    if base.name != truth.base:
        raise ValueError(f"This ground truth was planted in {truth.base!r}, not {base.name!r}.")
    base = base.resized(truth.resolution)
    train = base.subset(truth.train_source)
    truth_meta = {
        "kind": np.asarray(truth.train_kind),
        "group": np.asarray(truth.train_group),
        "weight": np.asarray(truth.train_weight, dtype=np.float64),
    }
    train = ImageDataset(
        f"{base.name}-planted",
        train.images,
        labels=np.asarray(truth.train_label, dtype=np.int64),
        class_names=truth.class_names,
        source_index=np.asarray(truth.train_source),
        meta={**base.meta, **truth_meta},
    )
    test = base.subset(truth.test_source)
    test = ImageDataset(
        f"{base.name}-test",
        test.images,
        labels=test.labels,
        class_names=truth.class_names,
        source_index=np.asarray(truth.test_source),
        meta=dict(base.meta),
    )
    return train, test
