"""The evidence itself as a detector: the distance from a generation to its nearest training
image, and Carlini et al.'s calibrated l2 (USENIX Security 2023); at sample level, the distance
from a training image to the nearest other one (which only sees stored duplicates). No model call."""

from __future__ import annotations

from memviz.detect.registry import Detector, register

register(
    Detector(
        "nn_distance",
        ("prompt", "sample"),
        ("generation", "training images"),
        -1,
        "0",
        lambda d, p: 0,
        "nearest-neighbour l2 (pixels)",
        generation=lambda g: g.copies.distance[:, 0],
        sample=lambda study, rows, t0: study.nn_distance(rows),
    )
)
register(
    Detector(
        "calibrated_l2",
        ("prompt",),
        ("generation", "training images"),
        -1,
        "0",
        lambda d, p: 0,
        "Carlini et al., USENIX Security 2023, section 4.2",
        generation=lambda g: g.copies.calibrated,
    )
)
