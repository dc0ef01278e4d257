"""Rebuild a bundled demo's shipped artifacts and its measured detection, from an empty store.

    python scripts/ship_store.py demo-mnist [--calibrate 0.5]

1. In a fresh, private store (``MEMVIZ_CACHE`` a temporary folder, ``MEMVIZ_SHIPPED=0``):
   ``memviz eval-detection`` with its defaults (and ``--calibrate``), which stores the sample-level
   FLIPD and spectra and writes ``eval_detection.json`` and ``eval_scores.parquet`` into the model
   folder, timed from a cold start so that its costs are computations; then the app's
   dataset-wide pass (``Study.prepare``: FLIPD grids, LID*, verdicts, the maps).
2. Copies the artifacts worth shipping into ``<model folder>/store`` (same layout as the cache,
   read by ``memviz.io.cache`` behind it). Not shipped: what takes under a second to recompute (the
   neighbour graph, several MB) and the prompt-level scores (the Prompts page and the harness
   compute them; the harness's own speed is what the card measures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SHIP = ("flipd", "data_lid", "umap_xy", "map_xy", "spectrum", "jeon")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a bundled demo's name")
    ap.add_argument("--calibrate", type=float, default=0.5)
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp(prefix="memviz-ship-"))
    os.environ.update(MEMVIZ_CACHE=str(store), MEMVIZ_SHIPPED="0", HF_HUB_OFFLINE="1")

    from memviz.cli.commands import main as cli
    from memviz.model.loading import model_path
    from memviz.study.core import open_study

    folder = model_path(args.model)
    start = time.perf_counter()  # the evaluation first, so that every cost it reports is a computation's
    code = cli(
        [
            "eval-detection",
            "--model",
            args.model,
            "--calibrate",
            str(args.calibrate),
            "--json",
            str(folder / "eval_detection.json"),
            "--scores",
            str(folder / "eval_scores.parquet"),
        ]
    )
    evaluated = time.perf_counter()
    if code:
        return code
    open_study(args.model).prepare()
    done = time.perf_counter()
    shipped = folder / "store"
    shutil.rmtree(shipped, ignore_errors=True)
    for kind in SHIP:
        if (store / kind).is_dir():
            shutil.copytree(store / kind, shipped / kind, ignore=shutil.ignore_patterns(".*", "*.tmp"))
    size = sum(f.stat().st_size for f in shipped.rglob("*.npz"))
    print(
        f"{args.model}: eval-detection {evaluated - start:.0f} s (cold store), then Study.prepare "
        f"{done - evaluated:.0f} s; shipped {size / 2**20:.1f} MiB in {shipped}",
        file=sys.stderr,
    )
    shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
