"""Reading data at scale: the streamed content pass on this process against Ray Data, and the latents
store's throughput and memory against N.

1. Content pass (every image decoded once and hashed: a streamed set's identity). ``--images`` RGB PNGs
   of ``--side`` pixels, written once as one Parquet table and as ``--shards`` WebDataset shards; each run
   in its own process on an empty store: ``local`` (``open_stream``) and ``ray`` (``open_stream(engine=
   "ray")`` on a private Ray of this machine's CPUs; ``ray.init`` reported apart). Medians of
   ``--repeats``, alternating; images/s and the ratio ray / local.
2. Latents store (``memviz.data.mapped``): Stable-Diffusion-shaped rows (4 x 64 x 64 float32, 64 KiB) for
   each N in ``--latents``, filled by a NumPy function (the VAE's cost apart): build MB/s, a full
   pass's MB/s, a random batch of 64 rows, and the peak RSS of build and pass (``ru_maxrss`` growth
   over the process's start), which should not grow with N.

    python bench/ingest.py [--images 20000] [--side 32] [--shards 8] [--latents 2000 8000] [--out bench/out/ingest.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CONTENT = r"""
import json, sys, time
path, engine = sys.argv[1], sys.argv[2]
from memviz.data.stream import open_stream
out = {"engine": engine}
runner = None
if engine == "ray":
    from memviz.runner.ray_runner import RayRunner
    t = time.perf_counter()
    runner = RayRunner(workers=1).start()
    out["init_s"] = time.perf_counter() - t
    import memviz.data.stream as st
    st.ray_data_pays = lambda: True  # Ray Data itself, as on a cluster (on one machine the rule hashes here)
t = time.perf_counter()
data = open_stream(path, engine=engine)
out["pass_s"], out["n"] = time.perf_counter() - t, len(data)
if runner is not None:
    runner.stop()
print("RESULT " + json.dumps(out))
"""

LATENTS = r"""
import json, resource, sys, time
import numpy as np
from memviz.data.mapped import mapped_rows
n = int(sys.argv[1])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = rss()
fill = lambda rows: np.broadcast_to(rows[:, None, None, None].astype(np.float32), (len(rows), 4, 64, 64)).copy()
t = time.perf_counter()
z = mapped_rows("latents", "bench", n, fill)
build_s, build_rss = time.perf_counter() - t, rss() - start
t = time.perf_counter()
total = sum(float(x[:, 0, 0, 0].sum()) for _, x in z.batches(256))
pass_s = time.perf_counter() - t
assert total == float(np.arange(n).sum())
rng = np.random.default_rng(0)
t = time.perf_counter()
for _ in range(20):
    z[np.sort(rng.choice(n, 64, replace=False))]
random_s = (time.perf_counter() - t) / 20
mb = n * 4 * 64 * 64 * 4 / 1e6
print("RESULT " + json.dumps({"n": n, "mb": mb, "build_mb_s": mb / build_s, "pass_mb_s": mb / pass_s,
                              "random64_ms": 1e3 * random_s, "build_rss_mb": build_rss / 1e6,
                              "peak_rss_mb": (rss() - start) / 1e6}))
"""


def _run(code: str, *args: str, cache: str) -> dict:
    env = {**os.environ, "MEMVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"run failed ({args}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def _sources(root: Path, n: int, side: int, shards: int) -> dict[str, Path]:
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    table = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in pngs]})
    table.cast_column("image", datasets.Image()).to_parquet(str(root / "images.parquet"))
    (root / "shards").mkdir()
    per = -(-n // shards)
    for s in range(shards):
        with tarfile.open(root / "shards" / f"part-{s:05d}.tar", "w") as tar:
            for i in range(s * per, min(n, (s + 1) * per)):
                info = tarfile.TarInfo(f"{i:07d}.png")
                info.size = len(pngs[i])
                tar.addfile(info, io.BytesIO(pngs[i]))
    return {"parquet": root / "images.parquet", "webdataset": root / "shards"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--latents", type=int, nargs="+", default=[2000, 8000])
    ap.add_argument("--out", type=Path, default=Path("bench/out/ingest.json"))
    args = ap.parse_args()
    result: dict = {"cpus": os.cpu_count(), "images": args.images, "side": args.side, "content": {}, "latents": []}
    with tempfile.TemporaryDirectory() as tmp:
        sources = _sources(Path(tmp), args.images, args.side, args.shards)
        for fmt, path in sources.items():
            runs: dict[str, list[dict]] = {"local": [], "ray": []}
            for _ in range(args.repeats):
                for engine in runs:
                    with tempfile.TemporaryDirectory() as cache:
                        runs[engine].append(_run(CONTENT, str(path), engine, cache=cache))
            med = {e: statistics.median(r["pass_s"] for r in rs) for e, rs in runs.items()}
            row = {
                "local_s": med["local"],
                "ray_s": med["ray"],
                "ray_init_s": statistics.median(r["init_s"] for r in runs["ray"]),
                "local_images_s": args.images / med["local"],
                "ray_images_s": args.images / med["ray"],
                "ratio": med["ray"] / med["local"],
            }
            result["content"][fmt] = row
            print(f"content pass, {fmt}: local {row['local_s']:.1f} s ({row['local_images_s']:.0f} img/s), "
                  f"ray {row['ray_s']:.1f} s ({row['ray_images_s']:.0f} img/s), ray/local {row['ratio']:.2f}, "
                  f"ray.init {row['ray_init_s']:.1f} s apart")  # fmt: skip
    for n in args.latents:
        with tempfile.TemporaryDirectory() as cache:
            row = _run(LATENTS, str(n), cache=cache)
        result["latents"].append(row)
        print(f"latents N={n} ({row['mb']:.0f} MB): build {row['build_mb_s']:.0f} MB/s, pass {row['pass_mb_s']:.0f} "
              f"MB/s, 64 random rows {row['random64_ms']:.1f} ms, RSS growth build {row['build_rss_mb']:.0f} MB, "
              f"peak {row['peak_rss_mb']:.0f} MB")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
