"""The Ray engine's overhead against the local runner on one machine, start-up apart.

demo-mnist's FLIPD grid (7 t, Hutchinson, 2 probes, unconditional) over ``--n`` training images, each
run in its own process on an empty store (a probe seed no shipped store holds), alternating:

- ``local``: the local runner (torch on every core of this process);
- ``ray``: a private Ray on this machine, ``--workers`` actors of one thread each (the actor pool is
  kept for the run; each worker opens the Study once, so the model loads once per worker, inside the
  pass). ``init`` (``ray.init``) and ``actors`` (the pool's start) are the start-up, reported apart.

Prints the medians over ``--repeats`` and the overhead, median(ray pass) / median(local pass) - 1,
against the issue's limit of 25 %; writes ``--out`` (JSON).

    python bench/ray_overhead.py [--n 600] [--repeats 3] [--workers 2] [--out bench/out/ray_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LIMIT = 0.25

RUN = r"""
import json, sys, time
engine, n, seed, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import memviz
study = memviz.open_study("demo-mnist", n=n, seed=seed)
study.rows  # the selection and the content keys are the same work for both engines: done before the clock
study._row_keys(False, False)
out = {"engine": engine, "n": len(study.rows)}
if engine == "ray":
    from memviz.runner.ray_runner import RayRunner
    t = time.perf_counter()
    runner = RayRunner(workers=workers).start()
    out["init_s"] = time.perf_counter() - t
    runner._pool()
    out["actors_s"] = runner.startup_s
    study.runner = runner
t = time.perf_counter()
study.flipd_grid(conditional=False)
out["pass_s"] = time.perf_counter() - t
if engine == "ray":
    out["workers"] = runner.workers_info()
    runner.stop()
print("RESULT " + json.dumps(out))
"""


def one(engine: str, n: int, seed: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MEMVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-c", RUN, engine, str(n), str(seed), str(workers)], env=env,
                              capture_output=True, text=True)  # fmt: skip
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"{engine} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/out/ray_overhead.json")
    args = ap.parse_args()
    runs = []
    for r in range(args.repeats):
        for engine in ("local", "ray"):
            runs.append(one(engine, args.n, 1000 + r, args.workers))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "workers"}), flush=True)
    med = {
        e: {k: statistics.median(x[k] for x in runs if x["engine"] == e) for k in ("pass_s", "init_s", "actors_s")
            if all(k in x for x in runs if x["engine"] == e)}
        for e in ("local", "ray")
    }  # fmt: skip
    overhead = med["ray"]["pass_s"] / med["local"]["pass_s"] - 1
    n = runs[0]["n"]
    print(f"\nFLIPD grid of {n} images, {os.cpu_count()} CPUs, medians of {args.repeats}:")
    print(f"  local pass        {med['local']['pass_s']:7.1f} s  ({1000 * med['local']['pass_s'] / n:.1f} ms/image)")
    print(f"  ray pass          {med['ray']['pass_s']:7.1f} s  ({args.workers} workers, model loaded once each)")
    print(f"  ray start-up      {med['ray']['init_s']:7.1f} s init + {med['ray']['actors_s']:.1f} s actors (apart)")
    verdict = "within" if overhead <= LIMIT else "over"
    print(f"  overhead          {overhead:+7.1%}  ({verdict} the {LIMIT:.0%} limit)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"runs": runs, "medians": med, "overhead": overhead, "limit": LIMIT}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
