"""LID_theta and LID* on demo-mnist: planted (DD-Mem, OD-Mem) against ordinary images.

For every planted training image, ``--n-ordinary`` ordinary training images and as many
held-out test images: FLIPD (Hutchinson, ``--probes`` probes) at each t0 of a grid,
unconditional and conditioned on the image's own label, and LID* (lPCA k = 100 and 20,
MLE k = 20) from the training set as stored (duplicates included: with k below the number
of copies, that is what makes DD-Mem's LID* 0). Prints
the medians by kind and the AUROC of -FLIPD for telling planted from ordinary training
images (memorized points should have the lower LID_theta).

    python bench/lid_demo.py [--n-ordinary 200] [--probes 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from memviz.data import training_data
from memviz.lid import data_lid, flipd
from memviz.model.adapter import DiffusionModel

ROOT = Path(__file__).resolve().parents[1]
TS = (0.01, 0.05, 0.1, 0.2, 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "demo-mnist"))
    ap.add_argument("--n-ordinary", type=int, default=200)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = DiffusionModel.from_pretrained(args.model)
    train, test = training_data(model.meta)
    unique = train.deduplicated()
    kind = np.asarray(unique.meta["kind"])
    rng = np.random.default_rng(0)
    ordinary = rng.choice(np.flatnonzero(kind == "none"), args.n_ordinary, replace=False)
    pick = np.r_[np.flatnonzero(kind != "none"), ordinary]
    sample = unique.subset(pick)
    held = test.subset(rng.choice(len(test), args.n_ordinary, replace=False))
    # LID* of training images: pointwise on the stored training set, each image's own row left out;
    # of held-out images: from their neighbourhoods in the training set
    train_rows = train.first_rows()[pick]
    rows = []
    for split, data, kinds in (("train", sample, kind[pick]), ("test", held, np.full(len(held), "held-out"))):
        frame = pd.DataFrame({"split": split, "kind": kinds, "label": data.labels})
        for method, k in (("lpca", 100), ("lpca", 20), ("mle", 20)):  # k below the 40 copies: DD-Mem reads 0
            frame[f"lid_{method}_k{k}"] = (
                data_lid(train.images, method=method, k=k)[train_rows]
                if split == "train"
                else data_lid(train.images, data.images, method=method, k=k)
            )
        for t in TS:
            for name, cond in (("uncond", None), ("cond", data.labels.tolist())):
                frame[f"flipd_{name}@{t}"] = flipd(
                    model, data.images, t, cond=cond, trace="hutchinson", n_probes=args.probes
                ).numpy()
        rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    summary = table.drop(columns=["split", "label"]).groupby("kind").median()
    train_rows = table[table.split == "train"]
    planted = (train_rows.kind != "none").to_numpy()
    auroc = {c: float(roc_auc_score(planted, -train_rows[c])) for c in table if c.startswith("flipd")}
    auroc_by_kind = {
        k: {
            c: float(
                roc_auc_score(
                    train_rows.kind[train_rows.kind.isin([k, "none"])] == k,
                    -train_rows[c][train_rows.kind.isin([k, "none"])],
                )
            )
            for c in auroc
        }
        for k in ("DD-Mem", "OD-Mem")
    }
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.T.to_string(float_format=lambda v: f"{v:.1f}"))
        print("\nAUROC of -FLIPD, planted vs ordinary training images:")
        print(pd.DataFrame({"all planted": auroc, **auroc_by_kind}).to_string(float_format=lambda v: f"{v:.3f}"))
    if args.json:
        args.json.write_text(
            json.dumps({"medians": summary.T.to_dict(), "auroc": auroc, "auroc_by_kind": auroc_by_kind}, indent=2)
        )


if __name__ == "__main__":
    main()
