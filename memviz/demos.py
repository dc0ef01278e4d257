"""Recipes of the bundled demo models: the data, the planted ground truth and the
training configuration, so that ``memviz train demo-mnist`` re-trains them exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memviz.data import ImageDataset, mnist5k, plant_memorization, planted_split
from memviz.train import TrainConfig


@dataclass
class Recipe:
    data: ImageDataset
    weights: np.ndarray | None
    meta: dict
    config: TrainConfig


def demo_mnist(resolution: int = 16) -> Recipe:
    """demo-mnist: class-conditional, mnist5k at 16x16 with planted DD-Mem and OD-Mem.

    16x16 (D = 256) rather than 28x28: measured here, the same 1.1M-parameter UNet
    trains 3.8x faster per image (474 vs 125 images/s on 2 cores), the difference
    between legible digits and noise within a CPU budget; digits stay legible.
    """
    base = mnist5k(resolution)
    truth = plant_memorization(base, seed=0)
    train, _ = planted_split(base, truth)
    meta = {"name": "demo-mnist", "class_names": truth.class_names, "null_class": len(truth.class_names),
            "guidance_scale": 2.0, "data": {"name": "mnist5k", "resolution": resolution},
            "planted": truth.to_dict()}
    cfg = TrainConfig(block_out_channels=(32, 64, 64), batch_size=128, lr=1e-3, warmup_steps=500,
                      steps=40_000, ema_decay=0.9995, save_every=500)
    return Recipe(train, train.meta["weight"], meta, cfg)


RECIPES = {"demo-mnist": demo_mnist}
