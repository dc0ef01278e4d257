"""Prompts per second of ``memviz scan`` with the first-step detectors (wen at step 1, asthana on
pure noise) on the text demo, against the limit measured in the same run: one batched
conditional + unconditional UNet call per prompt (what the cheapest detector cannot go below).

    python bench/scan_speed.py [--prompts 200] [--repeats 3]

Medians over repeats, each from an empty cache (a fresh MEMVIZ_CACHE per repeat).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=4)
    args = ap.parse_args()
    import memviz
    from memviz.data.captions import ordinary_captions
    from memviz.detect.scan import scan
    from memviz.model.sampling import initial_noise

    study = memviz.open_study("demo-mnist-text", n=1)
    table = study.model.meta["captions"]
    prompts = [f"{ordinary_captions(table, i % 10)[i % 5]} number {i}" for i in range(args.prompts)]
    model = study.model
    x = initial_noise(model, args.n, torch.Generator().manual_seed(0))
    tau = torch.full((2 * args.n,), float(model.T - 1))
    limit, rate = [], []
    for _ in range(args.repeats):
        os.environ["MEMVIZ_CACHE"] = tempfile.mkdtemp(prefix="memviz-bench-")
        model._prompt_cache.clear()
        start = time.perf_counter()
        with torch.no_grad():
            for p in prompts:  # the limit: one batched (cond + uncond) call per prompt, its encoding included
                model.output(torch.cat([x, x]), tau, p, double=True)
        limit.append(args.prompts / (time.perf_counter() - start))
        model._prompt_cache.clear()
        result = scan(study, prompts, names=["wen", "asthana"], n=args.n, steps=1, progress=False)
        rate.append(result.settings["prompts_per_second"])
    lim, got = statistics.median(limit), statistics.median(rate)
    print(f"prompts: {args.prompts}, n = {args.n}, detectors wen (step 1) + asthana, {torch.get_num_threads()} threads")
    print(f"one UNet call per prompt (limit): {lim:.1f} prompts/s (median of {args.repeats})")
    print(f"memviz scan:                       {got:.1f} prompts/s (median of {args.repeats})")
    print(f"ratio scan / limit:                {got / lim:.2f}")


if __name__ == "__main__":
    main()
