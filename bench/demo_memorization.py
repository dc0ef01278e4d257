"""Does a planted demo (demo-mnist, demo-mnist-text) really memorize its planted set, and only it?

For each ordinary prompt (digit) and each planted memorized prompt, generate n images and
measure the distance of each to its nearest training image (plain l2 in [-1, 1] pixel
units and Carlini et al.'s calibrated l2, n = 50, alpha = 0.5), next to the same figures
for the held-out test images (real digits the model never saw: what generalization looks
like). Text models: each planted image's unique caption, and for every digit one templated
caption seen in training and one never seen. Prints a table; ``--json`` writes it.

    python bench/demo_memorization.py [--model demo-mnist] [--n 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memviz.data import PlantedTruth, training_data
from memviz.model.adapter import DiffusionModel
from memviz.neighbors.copies import copy_evidence, reference_statistics
from memviz.neighbors.index import NeighborIndex

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
    for k, (name, cond, kind, own) in enumerate(_prompts(model, truth, dd_sources)):
        t0 = time.perf_counter()
        ev = copy_evidence(
            model,
            index,
            cond=cond,
            n=args.n,
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            seed=args.seed + k,
            threshold=args.threshold,
        )
        rows.append(
            {
                "prompt": name,
                "kind": kind,
                "n": args.n,
                "nearest_l2_median": float(np.median(ev.distance[:, 0])),
                "calibrated_l2_median": float(np.median(ev.calibrated)),
                "copies": float(ev.is_copy.mean()),
                # planted prompts: copies of their own images; ordinary prompts: copies of a duplicated (DD-Mem) image
                "copies_of_planted": float((ev.is_copy & np.isin(source[ev.neighbors[:, 0]], list(own))).mean()),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    d, cal = reference_statistics(index, test.images)
    rows.append(
        {
            "prompt": "held-out test images",
            "kind": "reference",
            "n": len(test),
            "nearest_l2_median": float(np.median(d)),
            "calibrated_l2_median": float(np.median(cal)),
            "copies": float((cal < args.threshold).mean()),
            "copies_of_planted": 0.0,
            "seconds": 0.0,
        }
    )
    return pd.DataFrame(rows)


def _prompts(model, truth, dd_sources) -> list[tuple]:
    """(name, cond, kind, the training sources a copy should come from) for every prompt."""
    src, lab, kind = (np.asarray(v) for v in (truth.train_source, truth.train_label, truth.train_kind))
    if "captions" not in model.meta:
        return [
            (
                name,
                label,
                "planted (OD-Mem)" if label >= truth.n_ordinary else "ordinary",
                set(src[lab == label].tolist()) if label >= truth.n_ordinary else dd_sources,
            )
            for label, name in enumerate(model.class_names)
        ]
    from memviz.data.captions import ordinary_captions

    table, group = model.meta["captions"], np.asarray(truth.train_group)
    out = [
        (c, c, "planted (DD-Mem)", set(src[(kind == "DD-Mem") & (group == g)].tolist()))
        for g, c in enumerate(table["dd"])
    ]
    out += [
        (c, c, "planted (OD-Mem)", set(src[lab == truth.n_ordinary + j].tolist())) for j, c in enumerate(table["od"])
    ]
    for which, what in (("templates", "ordinary"), ("unseen_templates", "ordinary, unseen caption")):
        out += [
            (c, c, what, dd_sources) for c in (ordinary_captions(table, d, which)[0] for d in range(truth.n_ordinary))
        ]
    return out


if __name__ == "__main__":
    main()
