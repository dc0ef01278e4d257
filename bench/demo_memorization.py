"""Does demo-mnist really memorize its planted set, and only it?

For each ordinary prompt (digit) and each planted memorized prompt, generate n images and
measure the distance of each to its nearest training image (plain l2 in [-1, 1] pixel
units and Carlini et al.'s calibrated l2, n = 50, alpha = 0.5), next to the same figures
for the held-out test images (real digits the model never saw: what generalization looks
like). Prints a table; ``--json`` writes it.

    python bench/demo_memorization.py [--model assets/models/demo-mnist] [--n 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memviz.data import PlantedTruth, training_data
from memviz.memorization import copy_evidence, reference_statistics
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "demo-mnist"))
    ap.add_argument("--n", type=int, default=16, help="generations per prompt")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance-scale", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.5, help="calibrated l2 below which a generation is a copy")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    table = run(args)
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        args.json.write_text(json.dumps(table.to_dict(orient="records"), indent=2))


def run(args) -> pd.DataFrame:
    model = DiffusionModel.from_pretrained(args.model)
    train, test = training_data(model.meta)
    truth = PlantedTruth.from_dict(model.meta["planted"])
    unique = train.deduplicated()  # duplicates removed, or they hide each other in the calibrated l2
    index, source = NeighborIndex(unique.images), unique.source_index
    dd_sources = set(np.asarray(truth.train_source)[np.asarray(truth.train_kind) == "DD-Mem"].tolist())
    rows = []
    for label, name in enumerate(model.class_names):
        t0 = time.perf_counter()
        ev = copy_evidence(model, index, cond=label, n=args.n, steps=args.steps,
                           guidance_scale=args.guidance_scale, seed=args.seed + label, threshold=args.threshold)
        nearest_source = source[ev.neighbors[:, 0]]
        planted = label >= truth.n_ordinary
        own = {s for s, lab in zip(truth.train_source, truth.train_label) if lab == label} if planted else dd_sources
        rows.append({
            "prompt": name, "kind": "planted (OD-Mem)" if planted else "ordinary", "n": args.n,
            "nearest_l2_median": float(np.median(ev.distance[:, 0])),
            "calibrated_l2_median": float(np.median(ev.calibrated)),
            "copies": float(ev.is_copy.mean()),
            # planted prompts: copies of their own images; ordinary prompts: copies of a duplicated (DD-Mem) image
            "copies_of_planted": float((ev.is_copy & np.isin(nearest_source, list(own))).mean()),
            "seconds": round(time.perf_counter() - t0, 2),
        })
    d, cal = reference_statistics(index, test.images)
    rows.append({"prompt": "held-out test images", "kind": "reference", "n": len(test),
                 "nearest_l2_median": float(np.median(d)), "calibrated_l2_median": float(np.median(cal)),
                 "copies": float((cal < args.threshold).mean()), "copies_of_planted": 0.0, "seconds": 0.0})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
