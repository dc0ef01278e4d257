"""Hessian spectra on demo-mnist: planted (DD-Mem, OD-Mem) against ordinary images and prompts.

Sample level: for every planted training image, ``--n-ordinary`` ordinary training images
and as many held-out test images, the exact spectrum (D = 256) at each t of a grid,
unconditional and conditioned on the image's label; prints the median summaries by kind
and the AUROC of n_sharp (the count of eigenvalues below -tau, tau = 1 / (2 sigma_t^2)),
of -lambda_max, of -trace and, conditioned, of Jeon's score, for planted against ordinary
training images (memorized points sit in sharper peaks). Prompt level: Jeon's score at
the first sampling step (mean of ``--n`` generations) for the 12 planted prompts against
the 10 digit classes.

Spectra are read through the Study's per-image store (shared with the app and ``memviz compute
spectra``), so a second run is fast.

    python bench/hessian_demo.py [--n-ordinary 100] [--n 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from memviz.data.planted import PlantedTruth
from memviz.detect import DETECTORS
from memviz.detect.jeon import jeon_score
from memviz.hessian import default_tau, summarize
from memviz.model.adapter import DiffusionModel
from memviz.study.core import open_study

ROOT = Path(__file__).resolve().parents[1]
TS = (0.02, 0.05, 0.2)


def sample_level(model, n_ordinary: int) -> tuple[pd.DataFrame, dict]:
    study = open_study(model, n=None)
    kind = study.kind(study.rows)
    rng = np.random.default_rng(0)
    pick = np.r_[study.rows[kind != "none"], rng.choice(study.rows[kind == "none"], n_ordinary, False)]
    held = rng.choice(len(study.test), n_ordinary, replace=False)
    frames, auroc = [], {}
    for t in TS:
        for conditional in (False, True):
            for split, rows, kinds in (
                ("train", pick, study.kind(pick)),
                ("test", held, np.full(len(held), "held-out")),
            ):
                ev = study.spectra(rows, t, conditional, held_out=split == "test")
                s = pd.DataFrame(summarize(ev, default_tau(model, t)))
                if conditional and split == "train":
                    s["jeon"] = DETECTORS["jeon"].sample(study, rows, t)
                frames.append(s.assign(t=t, conditional=conditional, split=split, kind=kinds))
            rows = frames[-2]
            planted = (rows.kind != "none").to_numpy()
            scores = {"n_sharp": rows.n_sharp, "-lambda_max": -rows.lambda_max, "-trace": -rows.trace}
            if "jeon" in rows:
                scores["jeon"] = rows.jeon
            for name, v in scores.items():
                auroc[f"{name} t={t} {'cond' if conditional else 'uncond'}"] = float(roc_auc_score(planted, v))
    return pd.concat(frames, ignore_index=True), auroc


def prompt_level(model, n: int) -> tuple[pd.DataFrame, float]:
    truth = PlantedTruth.from_dict(model.meta["planted"])
    rows = [
        {
            "prompt": name,
            "planted": label >= truth.n_ordinary,
            "jeon": float(jeon_score(model, label, n=n, seed=label).mean()),
        }
        for label, name in enumerate(model.class_names)
    ]
    table = pd.DataFrame(rows)
    return table, float(roc_auc_score(table.planted, table.jeon))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "demo-mnist"))
    ap.add_argument("--n-ordinary", type=int, default=100)
    ap.add_argument("--n", type=int, default=4, help="generations per prompt for Jeon's score")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = DiffusionModel.from_pretrained(args.model)
    table, auroc = sample_level(model, args.n_ordinary)
    prompts, prompt_auroc = prompt_level(model, args.n)
    medians = table.groupby(["t", "conditional", "kind"])[
        ["n_sharp", "n_flat", "lambda_min", "lambda_max", "trace", "jeon"]
    ].median()
    with pd.option_context("display.width", 250, "display.max_rows", 100):
        print(medians.to_string(float_format=lambda v: f"{v:.1f}"))
        print("\nAUROC, planted vs ordinary training images:")
        print(pd.Series(auroc).to_string(float_format=lambda v: f"{v:.3f}"))
        print(
            f"\nJeon's score at the first step, n = {args.n}: planted prompts median "
            f"{prompts[prompts.planted].jeon.median():.1f}, digits {prompts[~prompts.planted].jeon.median():.1f}; "
            f"prompt-level AUROC {prompt_auroc:.3f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "auroc": auroc,
                    "prompt_auroc_jeon": prompt_auroc,
                    "prompts": prompts.to_dict("records"),
                    "medians": json.loads(medians.reset_index().to_json(orient="records")),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
