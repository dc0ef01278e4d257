"""Speed of every LID estimator on demo-mnist, against limits measured in the same run.

- limit: the forward + backward (one vjp) throughput of the same UNet on the same batch,
  which is what one Hutchinson probe costs at best;
- FLIPD (Hutchinson, 1 probe), FLIPD (exact trace), normal bundle (K = 4D scores);
- LID* by batched lPCA (k = 100) on all of mnist5k at 28x28 against scikit-dimension's
  own ``lPCA().fit_pw`` with the same neighbours (and a check that the numbers agree).

Medians of ``--repeats`` runs; ratios are what to compare across machines.

    python bench/lid_speed.py [--batch 64] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import vjp

from memviz.data import mnist5k, training_data
from memviz.lid import data_lid, flipd, normal_bundle
from memviz.model.adapter import DiffusionModel
from memviz.neighbors.index import NeighborIndex

ROOT = Path(__file__).resolve().parents[1]


def median_rate(fn, n_items: int, repeats: int) -> float:
    """Items per second, the median over ``repeats`` timed runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n_items / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "demo-mnist"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--nb-points", type=int, default=2, help="points for the (slow) normal bundle")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-skdim", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = DiffusionModel.from_pretrained(args.model)
    train, _ = training_data(model.meta)
    x = train.images[: args.batch]
    t0, r = 0.05, {}

    def fwd_bwd():
        y = model.alpha(t0) * x
        out, fn = vjp(lambda z: model.eps(z, t0), y)
        fn(torch.ones_like(out))

    r["limit: forward+backward (samples/s)"] = median_rate(fwd_bwd, len(x), args.repeats)
    r["FLIPD hutchinson 1 probe (samples/s)"] = median_rate(
        lambda: flipd(model, x, t0, trace="hutchinson", n_probes=1, batch_size=len(x)), len(x), args.repeats
    )
    xe = x[:8]
    r["FLIPD exact (samples/s)"] = median_rate(lambda: flipd(model, xe, t0, trace="exact"), len(xe), 1)
    xn = x[: args.nb_points]
    r["normal bundle K=4D (samples/s)"] = median_rate(lambda: normal_bundle(model, xn, t=0.01), len(xn), 1)
    r["FLIPD 1 probe / limit"] = r["FLIPD hutchinson 1 probe (samples/s)"] / r["limit: forward+backward (samples/s)"]
    r["FLIPD 1 probe / normal bundle"] = r["FLIPD hutchinson 1 probe (samples/s)"] / r["normal bundle K=4D (samples/s)"]
    r.update(lpca_speed(args.repeats, args.skip_skdim))
    for k, v in r.items():
        print(f"{k:48s} {v:12.3f}" if isinstance(v, float) else f"{k:48s} {v}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


def lpca_speed(repeats: int, skip_skdim: bool) -> dict:
    """Batched lPCA (k = 100) on mnist5k (D = 784) against skdim's fit_pw on the same neighbours."""
    x = mnist5k().images.flatten(1).numpy().astype(np.float64)
    index = NeighborIndex(x)
    start = time.perf_counter()
    ours = data_lid(x, method="lpca", k=100, index=index)
    out = {"lPCA k=100 mnist5k, memviz (s)": time.perf_counter() - start, "lPCA median LID*": float(np.median(ours))}
    if not skip_skdim:
        import skdim

        knn = index.nearest(x, 101).index[:, 1:]
        start = time.perf_counter()
        ref = skdim.id.lPCA(verbose=False).fit_pw(x, precomputed_knn=knn, n_neighbors=100).dimension_pw_
        out["lPCA k=100 mnist5k, skdim fit_pw (s)"] = time.perf_counter() - start
        out["lPCA speed-up"] = out["lPCA k=100 mnist5k, skdim fit_pw (s)"] / out["lPCA k=100 mnist5k, memviz (s)"]
        out["lPCA agrees with skdim (fraction)"] = float(np.mean(ours == ref))
    return out


if __name__ == "__main__":
    main()
