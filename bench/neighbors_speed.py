"""Nearest-neighbour search and UMAP maps: speed, and the recall of the approximate index.

Queries per second of exact (flat) and IVF FAISS search at 5k, 100k and 1M random vectors
of dimension 784 (k = 50, as the calibrated l2 needs), with IVF's recall@10 against the
exact index; the same recall on real images (mnist5k at 28x28), where clusters give IVF
something to exploit. UMAP (on the shared neighbour graph) for 5k and 50k points, cold
(fit) and cached (read back from the cache).

    python bench/neighbors_speed.py [--sizes 5000 100000 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from memviz.neighbors.index import NeighborIndex, recall_at_k

D, K, Q = 784, 50, 200


def search_rows(n: int, rng) -> list[dict]:
    x = rng.standard_normal((n, D), dtype=np.float32)
    q = x[rng.choice(n, Q, replace=False)] + 0.1 * rng.standard_normal((Q, D), dtype=np.float32)
    rows = []
    for kind in ("flat", "ivf"):
        t0 = time.perf_counter()
        index = NeighborIndex(x, kind=kind)
        build = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            index.nearest(q, K)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "n": n,
                "index": kind,
                "build_s": build,
                "queries_per_s": Q / float(np.median(times)),
                "recall_at_10": recall_at_k(index, q[:50], 10) if kind == "ivf" else 1.0,
            }
        )
    return rows


def mnist_recall() -> dict:
    from memviz.data.mnist import mnist5k

    x = mnist5k(28).images.flatten(1).numpy()
    return {
        "n": len(x),
        "index": "ivf (mnist5k, 28x28)",
        "recall_at_10": recall_at_k(NeighborIndex(x, "ivf"), x[:500] + 0.01, 10),
    }


def blobs(n: int, d: int, centers: int, seed: int) -> np.ndarray:
    """Clustered points (like images, unlike uniform noise): Gaussian blobs around random centres."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d), dtype=np.float32) * 5
    return c[rng.integers(0, centers, n)] + rng.standard_normal((n, d), dtype=np.float32)


def umap_rows(sizes=(5000, 50000)) -> list[dict]:
    from memviz.neighbors.embed import fit_map

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MEMVIZ_CACHE"] = cache
        for n in sizes:
            x = blobs(n, D, centers=30, seed=n)
            t0 = time.perf_counter()
            fit_map(x)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            fit_map(x)
            rows.append({"n": n, "umap_cold_s": cold, "umap_cached_s": time.perf_counter() - t0})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 100000, 1000000])
    ap.add_argument("--umap-sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import pandas as pd

    rng = np.random.default_rng(0)
    search = [r for n in args.sizes for r in search_rows(n, rng)] + [mnist_recall()]
    print(pd.DataFrame(search).to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)
    print()
    maps = umap_rows(args.umap_sizes)
    print(pd.DataFrame(maps).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.json:
        args.json.write_text(json.dumps({"search": search, "umap": maps}, indent=2))


if __name__ == "__main__":
    main()
