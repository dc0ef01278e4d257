"""What each mitigation buys and costs on the bundled demos (``memviz.mitigate.lab.run_lab``).

For each demo: every planted prompt and as many ordinary ones (class models: the digits; text
models: one templated caption per digit), n generations each, for each seed; every registered
method that applies, behind the default gate (``wen``, calibrated on ordinary training conditions)
or ``--gate none``. Per method, over seeds (median):
- planted copy rate, plain against mitigated (target: some method at 10% or less), and the share
  of copies of the prompt's own training image (what the remedy is for; other copies are of images
  the data duplicate, which ordinary prompts copy too);
- ordinary utility as a share of the plain generation's (target: 90% or more), and the ordinary
  generations' median nearest-training distance against plain (on the data manifold, not noise);
- cost: seconds and model calls per prompt, as ratios to the plain generation, where applied, and the
  gate's own seconds (scoring every prompt once) as a ratio to the plain generation of every prompt;
- how often the gate flagged ordinary prompts and planted ones; for guidance-schedule, the share of
  generations switched to normal guidance before the last step;
- and the same copy rates and utility per kind of memorization the prompts carry (a few-image prompt,
  a duplicated image's own prompt, a duplicated image among a prompt's ordinary images): which remedy
  works on which kind.

    python bench/mitigation.py [--demos demo-mnist demo-mnist-text] [--n 16] [--seeds 0 1 2] [--json out.json]
        [--gate wen|none] [--only planted|ordinary] [--methods all] [--knob METHOD=VALUE ...]

The README's guidance-schedule rows are ``--knob guidance-schedule=0`` (the unconditional model until the
transition); at its default (1, no guidance) it is the plain generation on the demos, which sample at w = 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def run(
    demo: str,
    n: int,
    seeds: list,
    steps: int,
    gate: str,
    methods: list,
    keep: Path | None = None,
    only: str | None = None,
    knobs: dict | None = None,
) -> pd.DataFrame:
    from memviz.mitigate import MITIGATIONS
    from memviz.mitigate.lab import prompt_sets, run_lab
    from memviz.study.core import open_study

    study = open_study(demo, n=1)
    planted, ordinary = prompt_sets(study.model)
    planted, ordinary = ([] if only == "ordinary" else planted), ([] if only == "planted" else ordinary)
    if methods != ["all"]:  # the named methods this demo can take
        methods = [m for m in methods if MITIGATIONS[m].unavailable(study.model) is None]
    frames = []
    for seed in seeds:
        r = run_lab(
            study,
            planted + ordinary,
            methods,
            n=n,
            seed=seed,
            steps=steps,
            gate=gate,
            knobs={k: v for k, v in (knobs or {}).items() if k in methods or methods == ["all"]},
        )
        switched = [
            np.mean(np.asarray(i["switch_step"]) < i["steps"]) if "switch_step" in i else np.nan for i in r.rows["info"]
        ]  # guidance-schedule: the share of generations guided at all
        frames.append(
            r.rows.assign(
                demo=demo, planted=r.rows.prompt.isin(planted), threshold=r.gate.get("threshold"), switched=switched
            )
        )
        print(f"{demo} seed {seed}: done", flush=True)
        if keep is not None:  # every finished seed is kept, so a run cut short still reports what it measured
            pd.concat(frames).drop(columns=["info"]).to_json(
                keep.with_suffix(f".{demo}.partial.json"), orient="records"
            )
    return pd.concat(frames, ignore_index=True)


def _ratio(a: float, b: float) -> float:
    """a / b, NaN where b is not a positive number (no utility to keep)."""
    return a / b if b > 0 else np.nan


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (demo, method), g in rows.groupby(["demo", "method"], sort=False):
        plain = rows[(rows.demo == demo) & (rows.method == "none")]
        per_seed = []
        for seed, s in g.groupby("seed"):
            p = plain[plain.seed == seed]
            planted, ordinary = s[s.planted], s[~s.planted]
            applied = s[s.applied]
            pa = p[p.prompt.isin(applied.prompt)]
            per_seed.append(
                {
                    "planted_copy_rate_plain": p[p.planted].copy_rate.mean(),
                    "planted_copy_rate": planted.copy_rate.mean(),
                    "planted_own_copy_rate": planted.own_copy_rate.mean() if "own_copy_rate" in s else np.nan,
                    "ordinary_utility_ratio": _ratio(ordinary.utility.mean(), p[~p.planted].utility.mean()),
                    "ordinary_nn_distance": ordinary.median_nn_distance.median(),
                    "ordinary_nn_distance_plain": p[~p.planted].median_nn_distance.median(),
                    "seconds_ratio": applied.seconds.sum() / max(pa.seconds.sum(), 1e-9) if len(applied) else np.nan,
                    "calls_ratio": applied.model_calls.sum() / max(pa.model_calls.sum(), 1) if len(applied) else np.nan,
                    # the gate, scored once per prompt, against the plain generation of every prompt
                    "gate_seconds_ratio": (
                        p.gate_seconds.sum() / max(p.seconds.sum(), 1e-9) if "gate_seconds" in p else np.nan
                    ),
                    "ordinary_flagged": ordinary.flagged.mean(),
                    "planted_flagged": planted.flagged.mean(),
                    "switched": applied.switched.mean() if "switched" in s else np.nan,
                }
            )
        out.append({"demo": demo, "method": method, **pd.DataFrame(per_seed).median().to_dict()})
    return pd.DataFrame(out)


def by_kind(rows: pd.DataFrame) -> pd.DataFrame:
    """Per demo, kind of memorization (``memviz.mitigate.lab.prompt_memorization``) and method (median
    over seeds): the copy rate and own-image copy rate, plain against mitigated, the utility as a share
    of plain (where the prompts have one), and how often the method was applied. Which remedy works on
    which kind of memorization."""
    out = []
    for (demo, kind, method), g in rows.groupby(["demo", "memorization", "method"], sort=False):
        plain = rows[(rows.demo == demo) & (rows.memorization == kind) & (rows.method == "none")]
        per_seed = []
        for seed, s in g.groupby("seed"):
            p = plain[plain.seed == seed]
            per_seed.append(
                {
                    "prompts": s.prompt.nunique(),
                    "copy_rate_plain": p.copy_rate.mean(),
                    "copy_rate": s.copy_rate.mean(),
                    "own_copy_rate_plain": p.own_copy_rate.mean(),
                    "own_copy_rate": s.own_copy_rate.mean(),
                    "utility_ratio": _ratio(s.utility.mean(), p.utility.mean()),
                    "applied": s.applied.mean(),
                }
            )
        out.append({"demo": demo, "memorization": kind, "method": method, **pd.DataFrame(per_seed).median().to_dict()})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demos", nargs="+", default=["demo-mnist", "demo-mnist-text"])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--gate", default="wen")
    ap.add_argument("--methods", nargs="+", default=["all"])
    ap.add_argument(
        "--only",
        choices=["planted", "ordinary"],
        help="one prompt set (with --gate none on ordinary "
        "prompts: what a method costs where it is applied to every prompt)",
    )
    ap.add_argument("--knob", nargs="+", default=[], metavar="METHOD=VALUE", help="a method's setting (as the CLI's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    knobs = {k: float(v) for k, v in (item.split("=", 1) for item in args.knob)}
    rows = pd.concat(
        [
            run(d, args.n, args.seeds, args.steps, args.gate, args.methods, args.json, args.only, knobs)
            for d in args.demos
        ]
    )
    table, kinds = summary(rows), by_kind(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(kinds.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": table.to_dict("records"),
                    "by_kind": kinds.to_dict("records"),
                    "rows": rows.drop(columns=["info"]).to_dict("records"),
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
