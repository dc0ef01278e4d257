"""Accuracy of every LID estimator on data whose LID is known.

Data: ``affine_union`` (Gaussians on random affine subspaces of dimensions 2, 4, 8, 16)
in R^D for several D. Model LID (FLIPD exact, FLIPD Hutchinson, normal bundle) is taken
from the *exact* denoiser of that mixture (``memviz.model.closed_form.GaussianMixtureDenoiser``),
so the figures measure the estimators, not a training run. LID* (lPCA, MLE, TwoNN, ESS)
is taken from the samples. Reports MAE and the concordance index (the fraction of pairs
of points with different true LID that an estimator orders correctly, as in the FLIPD
paper's tables), by D.

    python bench/lid_accuracy.py [--D 64 256] [--n-per 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler

from memviz.data.synthetic import affine_union
from memviz.lid import data_lid, flipd, normal_bundle
from memviz.model.adapter import DiffusionModel
from memviz.model.closed_form import GaussianMixtureDenoiser


def concordance_index(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Fraction of pairs with truth_i < truth_j where estimate_i < estimate_j (ties: 1/2)."""
    t, e = np.asarray(truth), np.asarray(estimate)
    i, j = np.triu_indices(len(t), k=1)
    pairs = t[i] != t[j]
    i, j = i[pairs], j[pairs]
    sign = np.sign(t[j] - t[i]) * np.sign(e[j] - e[i])
    return float(((sign > 0) + 0.5 * (sign == 0)).mean())


def run(D: int, n_per: int, t0: float, seed: int = 0) -> list[dict]:
    side = int(round(D**0.5))
    data = affine_union(dims=(2, 4, 8, 16), side=side, n_per=n_per, seed=seed)
    means = torch.as_tensor(data.meta["means"])
    covs = torch.as_tensor(data.meta["covs"]) + 1e-6 * torch.eye(D, dtype=torch.float64)
    model = DiffusionModel(GaussianMixtureDenoiser(means, covs, (1, side, side)), DDPMScheduler(), device="cpu")
    x, truth = data.images, data.lid
    # name -> (estimator of the points at `keep`, stride of the subsample `keep`): the slow ones run on a subsample
    estimators = {
        "FLIPD exact": (lambda q: flipd(model, q, t0, trace="exact").numpy(), 1),
        "FLIPD Hutchinson (1 probe)": (lambda q: flipd(model, q, t0, trace="hutchinson", n_probes=1).numpy(), 1),
        "normal bundle": (lambda q: normal_bundle(model, q, t=t0).numpy(), 4 if D > 100 else 1),
        "lPCA (k=50)": (lambda q: data_lid(x, method="lpca", k=50), 1),
        "MLE (k=20)": (lambda q: data_lid(x, method="mle", k=20), 1),
        "TwoNN (k=50)": (lambda q: data_lid(x, method="twonn", k=50), 1),
        "ESS (k=50)": (lambda q: data_lid(x, q, method="ess", k=50), 8),  # one skdim fit per point, ~0.4 s each
    }
    rows = []
    for name, (fn, stride) in estimators.items():
        start = time.perf_counter()
        keep = np.arange(0, len(x), stride)
        est = np.asarray(fn(x[keep]), dtype=float)
        est = est[keep] if len(est) == len(x) and stride > 1 else est
        t = truth[keep]
        rows.append(
            {
                "D": D,
                "estimator": name,
                "n": len(keep),
                "mae": float(np.abs(est - t).mean()),
                "concordance": concordance_index(t, est),
                **{f"median d={d}": float(np.median(est[t == d])) for d in (2, 4, 8, 16)},
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--D", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--n-per", type=int, default=50, help="points per component")
    ap.add_argument("--t0", type=float, default=0.01)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    table = pd.DataFrame([row for D in args.D for row in run(D, args.n_per, args.t0)])
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.json:
        args.json.write_text(json.dumps(table.to_dict(orient="records"), indent=2))


if __name__ == "__main__":
    main()
