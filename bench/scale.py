"""Growth with N: seconds and peak RSS of each dataset-wide pass on synthetic image sets of 10^3 to
10^5 images (and 10^6 with ``--big``), each pass in its own process so that its peak is its own.

    python bench/scale.py [--sizes 1000 10000 100000] [--big] [--flipd-max 10000] [--out bench/out/scale]

The images: 16x16 grayscale PNGs (demo-mnist's shape) in one Parquet file of bytes per N, streamed
(``memviz.data.stream``). Passes:

- ``read``: open the stream (the content pass: every image decoded once, its SHA-256 kept);
- ``flipd``: demo-mnist's FLIPD grid (7 t, Hutchinson, 2 probes), unconditional, through the Study on
  the streamed set, up to ``--flipd-max`` images (the per-image cost is what the projection uses);
- ``neighbours``: the Study's reference index (flat up to ``FLAT_MAX``, HNSW above, with its
  recall@10) and 10 neighbours of 10,000 queries;
- ``umap``: the map (fitted on a sample beyond ``MAP_FIT_MAX``, the rest placed).

Prints a table and a projection to 10^6 images on 8 GPUs from the measured per-image FLIPD cost and
the GPU speedup ``--gpu-speedup`` (default: the ratio bench/sd_scale.py measured, given on the command
line; none is assumed without it); writes ``<out>.json`` and ``<out>.png`` (log-log curves).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDE = 16


def make_parquet(n: int, path: Path, seed: int = 0) -> None:
    """``n`` 16x16 grayscale PNGs (blurred blobs on 50 templates, so neighbours mean something) as bytes."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (50, SIDE, SIDE)).astype(np.float32)
    writer, chunk = None, 50_000
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        pix = templates[rng.integers(0, 50, m)] * 0.7 + rng.integers(0, 256, (m, SIDE, SIDE)) * 0.3
        cells = []
        for p in pix.astype(np.uint8):
            buf = io.BytesIO()
            Image.fromarray(p).save(buf, "PNG", compress_level=1)
            cells.append({"bytes": buf.getvalue(), "path": None})
        table = pa.table({"image": cells})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


PASS = r"""
import json, resource, sys, time
import numpy as np
what, path, n_flipd = sys.argv[1], sys.argv[2], int(sys.argv[3])
from memviz.data.stream import open_stream
start = time.perf_counter()
data = open_stream(path, resolution=16, channels=1)
out = {"n": len(data)}
if what == "read":
    out["seconds"] = time.perf_counter() - start
else:
    import memviz
    study = memviz.open_study("demo-mnist", data if what != "flipd" else data.subset(np.arange(min(n_flipd, len(data)))), n=None)
    start = time.perf_counter()
    if what == "flipd":
        study.flipd_grid(conditional=False)
        out["n"] = len(study.rows)
    elif what == "neighbours":
        nn = study.reference
        q = np.asarray(data.images[np.arange(min(10_000, len(data)))].flatten(1))
        nn.nearest(q, 10)
        from memviz.neighbors.index import search_depth
        out.update(kind=nn.kind, recall=nn.recall, depth=search_depth(nn))
    elif what == "umap":
        from memviz.neighbors.embed import fit_map
        fit_map(np.asarray(data.images.flatten(1)), n_neighbors=15)
    out["seconds"] = time.perf_counter() - start
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


def run_pass(what: str, path: Path, n_flipd: int, cache: str) -> dict:
    env = {**os.environ, "MEMVIZ_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", PASS, what, str(path), str(n_flipd)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--big", action="store_true", help="add 10^6 images")
    ap.add_argument("--flipd-max", type=int, default=10_000)
    ap.add_argument("--passes", nargs="+", default=["read", "flipd", "neighbours", "umap"])
    ap.add_argument("--gpu-speedup", type=float, default=None, help="measured GPU/CPU per-image speedup")
    ap.add_argument("--out", default="bench/out/scale")
    args = ap.parse_args()
    sizes = args.sizes + ([1_000_000] if args.big else [])
    work = Path(tempfile.mkdtemp(prefix="memviz-scale-"))
    rows = []
    for n in sizes:
        path = work / f"{n}.parquet"
        start = time.perf_counter()
        make_parquet(n, path)
        print(
            f"N = {n:>9,}: made in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e6:.0f} MB)", flush=True
        )
        cache = str(work / f"cache-{n}")
        for what in args.passes:
            if what == "flipd" and n > args.flipd_max and any(r["pass"] == "flipd" for r in rows):
                continue  # linear per image: measured up to --flipd-max
            r = {"pass": what, "N": n, **run_pass(what, path, args.flipd_max, cache)}
            rows.append(r)
            print("   ", json.dumps(r), flush=True)
    print()
    print(f"{'pass':<11}{'N':>10}{'seconds':>10}{'ms/image':>10}{'peak RSS MB':>13}  note")
    for r in rows:
        if "error" in r:
            print(f"{r['pass']:<11}{r['N']:>10,}  failed: {r['error']}")
            continue
        note = f"{r['kind']}, recall@10 {r['recall']:.3f}" if "kind" in r else ""
        print(f"{r['pass']:<11}{r['n']:>10,}{r['seconds']:>10.1f}{1e3 * r['seconds'] / r['n']:>10.2f}"
              f"{r['peak_rss_mb']:>13.0f}  {note}")  # fmt: skip
    flipd = [r for r in rows if r["pass"] == "flipd" and "error" not in r]
    if flipd:
        per = flipd[-1]["seconds"] / flipd[-1]["n"]
        print(f"\nFLIPD: {per * 1e3:.1f} ms per image on {os.cpu_count()} CPUs: 10^6 images take "
              f"{per * 1e6 / 3600:.1f} h here")  # fmt: skip
        if args.gpu_speedup:
            print(
                f"on 8 GPUs at the measured {args.gpu_speedup:.0f}x per GPU: {per * 1e6 / args.gpu_speedup / 8 / 60:.1f} min"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(1, 2, subplot_titles=("seconds", "peak RSS (MB)"))
        for what in args.passes:
            got = [r for r in rows if r["pass"] == what and "error" not in r]
            for col, key in ((1, "seconds"), (2, "peak_rss_mb")):
                fig.add_trace(go.Scatter(x=[r["n"] for r in got], y=[r[key] for r in got], name=what,
                                         legendgroup=what, showlegend=col == 1, mode="lines+markers"), 1, col)  # fmt: skip
        fig.update_xaxes(type="log", title="N images")
        fig.update_yaxes(type="log")
        fig.update_layout(width=1000, height=420, template="simple_white")
        fig.write_image(str(out.with_suffix(".png")))
    except Exception as exc:  # noqa: BLE001 - a plot is a bonus; the table and JSON are the result
        print(f"(no plot: {exc})")
    print(f"wrote {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
