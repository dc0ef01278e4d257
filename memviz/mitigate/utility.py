"""Utility of generations: does a mitigated generation still show what the prompt asked for?

The rule: a logistic-regression classifier (scikit-learn) trained once on the training images and
their labels (stored in the cache, keyed by the data's content), and a prompt's expected label the
one the training data attach to it: for a class model its class; for a text model the majority
label of the training rows with that caption, else the digit the prompt names ("three", "3").
Utility is the share of generations classified as that label (NaN when the prompt has none:
a planted watercolour caption, say). The copy rule is separate (``memviz.neighbors.copies``).
"""

from __future__ import annotations

import re

import numpy as np

from memviz.data.base import from_unit

MIN_IMAGES = 10  # a class with fewer distinct training images has no utility to keep (a planted prompt)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def classifier(study) -> dict[str, np.ndarray]:
    """{"coef": (L, D), "intercept": (L,), "classes": (L,)} of a multinomial logistic regression on the
    training images (pixels in [-1, 1], flattened) and labels; fitted once per data set (cached)."""
    from memviz.io.cache import cached, fingerprint

    train = study.train
    if train is None or train.labels is None:
        raise ValueError("Utility needs labelled training images; this data set has no labels.")

    def fit() -> dict[str, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        x = train.images.flatten(1).numpy().astype(np.float64)
        model = LogisticRegression(max_iter=300, C=0.1).fit(x, train.labels)
        return {
            "coef": model.coef_.astype(np.float32),
            "intercept": model.intercept_.astype(np.float32),
            "classes": model.classes_,
        }

    return cached("utility_classifier", fingerprint(train.images, train.labels, "logreg-C0.1"), fit)


def predict(study, images) -> np.ndarray:
    """(n,) predicted labels of images (n, C, H, W) in [0, 1], pixel space."""
    c = classifier(study)
    x = from_unit(images).flatten(1).numpy()
    return c["classes"][np.argmax(x @ c["coef"].T + c["intercept"], axis=1)]


def expected_labels(study, prompts: list, why: list | None = None) -> list:
    """Each prompt's expected label (int), or None when the data attach none to it; with ``why`` a
    list, the reason of each None is appended to it ("" where there is a label)."""
    model, train = study.model, study.train
    out = []
    for p in prompts:
        label = None
        if why is not None:
            why.append(_no_label_reason(study, p))
        if model.is_class_conditional:
            rows = (
                np.flatnonzero(train.labels == model.class_names.index(str(p)))
                if train is not None and train.labels is not None
                else np.zeros(0, int)
            )
            label = _label_of(train, rows)
        elif train is not None and train.captions is not None and train.labels is not None:
            rows = np.asarray([i for i, c in enumerate(train.captions) if c == p], dtype=int)
            if len(rows):
                label = _label_of(train, rows)
            else:
                named = [d for d, word in enumerate(DIGITS) if re.search(rf"\b({word}|{d})\b", str(p).lower())]
                label = named[0] if len(named) == 1 else None
        out.append(label)
    return out


def _no_label_reason(study, prompt) -> str:
    """Why utility cannot be computed for ``prompt`` ("" when it can)."""
    train = study.train
    if train is None:
        return "no training data to train the utility classifier on"
    if train.labels is None:
        return "the training data have no class labels to train the utility classifier on"
    if study.model.is_class_conditional:
        rows = np.flatnonzero(train.labels == study.model.class_names.index(str(prompt)))
    else:
        rows = np.asarray([i for i, c in enumerate(train.captions or []) if c == prompt], dtype=int)
        if len(rows) == 0:
            named = [d for d, word in enumerate(DIGITS) if re.search(rf"\b({word}|{d})\b", str(prompt).lower())]
            return "" if len(named) == 1 else "no training image carries this prompt and it names no one class"
    distinct = len(set(train.duplicate_of()[rows].tolist())) if len(rows) else 0
    if distinct < MIN_IMAGES:
        return (
            f"the prompt's training rows hold {distinct} distinct images (fewer than {MIN_IMAGES}): "
            "showing them is a copy, not utility"
        )
    return ""


def _label_of(train, rows: np.ndarray):
    """The majority label of training ``rows`` (a prompt's images), or None when they hold fewer than
    ``MIN_IMAGES`` distinct images: a planted prompt's one image, where showing it is a copy, not utility."""
    if len(rows) == 0 or len(set(train.duplicate_of()[rows].tolist())) < MIN_IMAGES:
        return None
    return int(np.bincount(train.labels[rows]).argmax())


def label_accuracy(study, images, label) -> float:
    """Share of ``images`` classified as ``label``; NaN when ``label`` is None."""
    if label is None or study.train is None or study.train.labels is None:
        return float("nan")
    return float(np.mean(predict(study, images) == label))
