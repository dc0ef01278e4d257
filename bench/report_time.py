"""Seconds (and peak RSS) of ``memviz report`` for each bundled demo, end to end through the CLI, from
the demo's shipped store (a fresh, empty MEMVIZ_CACHE) and from an empty cache with the shipped stores
turned off (MEMVIZ_SHIPPED=0: every dataset-wide pass computed), then a rerun from the cache just filled.

Class and text demos are scanned with their planted and ordinary prompts as a labelled prompt file
(``memviz.mitigate.lab.prompt_sets``), so every section of the report is filled. Each run is its own
process; timings on a shared machine are noisy, so read the ratios.

    python bench/report_time.py [--demos demo-toy demo-mnist demo-mnist-text] [--pdf] [--json out.json]
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


def _prompt_file(demo: str, folder: Path) -> Path | None:
    from memviz.mitigate.lab import prompt_sets
    from memviz.model.adapter import DiffusionModel

    model = DiffusionModel.from_pretrained(demo, lazy=True)
    if not (model.is_text_conditional or model.is_class_conditional):
        return None
    planted, ordinary = prompt_sets(model)
    path = folder / f"{demo}-prompts.jsonl"
    rows = [{"prompt": p, "memorized": 1} for p in planted] + [{"prompt": p, "memorized": 0} for p in ordinary]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _run(demo: str, out: Path, prompts: Path | None, env: dict) -> dict:
    cmd = [sys.executable, "-m", "memviz", "report", "--model", demo, "--out", str(out), "--no-progress"]
    if prompts is not None:
        cmd += ["--prompts", str(prompts), "--label-column", "memorized"]
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{demo}: {done.stderr[-2000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024), "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demos", nargs="+", default=["demo-toy", "demo-mnist", "demo-mnist-text"])
    ap.add_argument("--pdf", action="store_true", help="write the PDF instead of the HTML")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="memviz-bench-report-") as tmp:
        tmp = Path(tmp)
        for demo in args.demos:
            prompts = _prompt_file(demo, tmp)
            suffix = ".pdf" if args.pdf else ".html"
            for case, shipped in (("shipped store", "1"), ("empty cache", "0")):
                cache = tmp / f"cache-{demo}-{shipped}"
                env = {**os.environ, "MEMVIZ_CACHE": str(cache), "MEMVIZ_SHIPPED": shipped, "HF_HUB_OFFLINE": "1"}
                first = _run(demo, tmp / f"{demo}-{shipped}{suffix}", prompts, env)
                again = _run(demo, tmp / f"{demo}-{shipped}-again{suffix}", prompts, env)
                rows.append({"demo": demo, "from": case, **first, "rerun_seconds": again["seconds"]})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'demo':<16} {'from':<14} {'seconds':>8} {'rerun s':>8} {'peak MB':>8} {'size KB':>8}")
    for r in rows:
        print(
            f"{r['demo']:<16} {r['from']:<14} {r['seconds']:>8.1f} {r['rerun_seconds']:>8.1f} "
            f"{r['peak_rss_mb']:>8} {r['bytes'] // 1024:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
