"""The ``memviz`` command line."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

MAX_COUNT = 10**7  # no count (images, steps, probes, repetitions) above this is meant


def _whole(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is outside {low:,}..{high:,}")
    return value


def count(text: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT."""
    return _whole(text, 1, MAX_COUNT)


def seed(text: str) -> int:
    """An argparse type: a seed from 0 to 2**63 - 1."""
    return _whole(text, 0, 2**63 - 1)


def _finite(text: str, low: float, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(
            f"{text} must be a finite number {'above' if strict else 'of at least'} {low:g}"
        )
    return value


def positive_float(text: str) -> float:
    return _finite(text, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    return _finite(text, 0.0, strict=False)


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = _finite(text, 0.0, strict=True)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train (or resume) a bundled demo recipe")
    p.add_argument("recipe", help="demo-mnist or demo-toy")
    p.add_argument("--out", type=Path, required=True, help="model folder (resumes if it holds a checkpoint)")
    p.add_argument("--steps", type=count, help="total optimizer steps (default: the recipe's)")
    p.add_argument("--max-minutes", type=positive_float, help="stop (and save) after this many minutes of this run")
    p.add_argument("--seed", type=seed)
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("sample", help="generate a grid of samples from a model folder")
    p.add_argument("model", help="a bundled demo's name or a model folder")
    p.add_argument("--cond", default=None, help="class name, class index or prompt (default: unconditional)")
    p.add_argument("--n", type=count, default=16)
    p.add_argument("--steps", type=count, default=50)
    p.add_argument("--guidance-scale", type=non_negative_float)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a .png grid of the images, or an .npz of x0, noise and seed (any model)",
    )
    p = sub.add_parser("info", help="describe a model (a bundled demo's name or a folder)")
    p.add_argument("model")
    p = sub.add_parser("compute", help="dataset-wide passes into the Study's store (what the app and eval read)")
    p.add_argument(
        "what",
        choices=["lid", "spectra", "neighbours", "embedding"],
        help="lid: FLIPD and LID*; spectra: Hessian spectra; neighbours: the neighbour index (its recall "
        "printed) and graph; embedding: the UMAP map",
    )
    p.add_argument("--model", required=True, help="a bundled demo's name or a model folder")
    p.add_argument("--data", default=None, help="an .npz or image folder (default: the model's own training data)")
    _features_argument(p)
    p.add_argument("--n", type=count, help="training images analysed (every planted one first; default: all)")
    p.add_argument(
        "--holdout",
        help="images the model never saw (folder, table or .npz): their FLIPD sets the verdict's threshold "
        "(default: the model's own held-out split; without one, the analysed images themselves)",
    )
    p.add_argument(
        "--t0", type=positive_float, default=0.05, help="lid: t0 of the reported FLIPD (inside the model's t grid)"
    )
    p.add_argument("--trace", default="hutchinson", choices=["auto", "exact", "hutchinson"])
    p.add_argument("--n-probes", type=count, default=2)
    p.add_argument("--methods", nargs="+", default=["lpca", "mle"], help="lid: LID* estimators")
    p.add_argument("--t", type=positive_float, default=0.05, help="spectra: the diffusion time of the Hessian")
    p.add_argument("--method", default=None, choices=["exact", "lanczos"], help="spectra: how (default: what D allows)")
    p.add_argument("--unconditional", action="store_true", help="spectra: without each image's condition")
    p.add_argument("--tau", type=positive_float, help="spectra: threshold of the counts (default 1 / (2 sigma_t^2))")
    p.add_argument("--out", type=Path, help="the per-sample table: .parquet, or CSV otherwise")
    _engine_arguments(p)
    p = sub.add_parser("scan", help="score a prompt file with every prompt-level detector; flag, and judge copies")
    p.add_argument("--model", required=True, help="a bundled demo's name or a model folder")
    p.add_argument("--prompts", required=True, type=Path, help="a prompt file: .txt, .jsonl, .csv/.tsv, .parquet")
    p.add_argument("--out", required=True, type=Path, help="the table: .parquet (thresholds in its metadata) or CSV")
    _prompt_file_arguments(p)
    p.add_argument(
        "--data", help="the training images (folder, table, datasets folder or .npz; default: the model's own)"
    )
    _features_argument(p)
    p.add_argument("--detectors", nargs="+", help="only these registered detectors (default: every prompt-level one)")
    p.add_argument("--n", type=count, default=4, help="generations per prompt (default 4)")
    p.add_argument("--steps", type=count, default=1, help="first sampling steps the stepwise detectors average (1)")
    p.add_argument("--sample-steps", type=count, default=50, help="the sampler's number of steps (50)")
    p.add_argument("--seed", type=seed, default=0, help="base seed; each prompt's seed comes from its text and this")
    p.add_argument("--guidance-scale", type=non_negative_float, help="w (default: the model's)")
    p.add_argument(
        "--reference",
        help="prompts trusted as ordinary (a prompt file), or training-captions (drawn from --data): "
        "each detector's threshold is set at --fpr on them and the table gets flag_<detector>",
    )
    p.add_argument("--fpr", type=fraction, default=0.01, help="false-positive rate on the reference (default 0.01)")
    p.add_argument(
        "--generate",
        type=count,
        metavar="K",
        help="generate K images of each flagged prompt (each prompt without --reference) and judge them "
        "against the training images: copy verdict, the matching training file, and an image grid",
    )
    p.add_argument("--no-progress", action="store_true")
    _engine_arguments(p)
    p = sub.add_parser("detectors", help="the registered detectors")
    p.add_argument("--json", action="store_true", help="as a JSON list of objects")
    p.add_argument("--model", help="also give each detector's model calls per query for this model")
    p = sub.add_parser(
        "eval-detection",
        help="AUROC and TPR@1%%FPR of every detector: on your labelled prompts, or on a demo's planted truth",
    )
    p.add_argument("--model", required=True, help="a bundled demo's name or a model folder")
    p.add_argument("--memorized", type=Path, help="a prompt file of prompts known to be memorized")
    p.add_argument("--ordinary", type=Path, help="a prompt file of prompts known to be ordinary")
    p.add_argument("--prompts", type=Path, help="one prompt file with a label column (--label-column)")
    _prompt_file_arguments(p)
    p.add_argument("--data", help="the training images, for the nearest-neighbour detectors (default: the model's own)")
    _features_argument(p)
    p.add_argument("--detectors", nargs="+", help="only these registered detectors (default: all)")
    p.add_argument("--n", type=count, nargs="+", default=[1, 4], help="generations per prompt")
    p.add_argument("--steps", type=count, nargs="+", default=[1, 5, 50], help="first sampling steps scored")
    p.add_argument("--reps", type=count, default=5, help="independent groups of n generations per prompt")
    p.add_argument("--sample-steps", type=count, default=50, help="the sampler's number of steps")
    p.add_argument("--n-ordinary", type=count, default=200, help="ordinary training images at sample level")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--guidance-scale",
        type=non_negative_float,
        help="w along the sampled trajectories (default: the model's; 7.5 for Stable Diffusion)",
    )
    p.add_argument(
        "--calibrate",
        type=fraction,
        nargs="?",
        const=0.5,
        metavar="FRACTION",
        help="fit the anisotropy score's weights on this fraction of the prompts (default 0.5) and "
        "report it on the others only, beside the paper's weights",
    )
    p.add_argument("--json", type=Path, help="write the rows here")
    p.add_argument("--no-progress", action="store_true")
    _engine_arguments(p)
    p.add_argument("--scores", type=Path, help="write every query's score here (.parquet or .csv), for ROC curves")
    p = sub.add_parser("mitigate", help="run remedies against memorized generations; copy rate, utility and cost")
    p.add_argument("--list", action="store_true", help="print the registered mitigations and stop")
    p.add_argument("--model", help="a bundled demo's name or a model folder")
    p.add_argument(
        "--prompts", nargs="+", help="class names or prompts, or one prompt file (.txt, .jsonl, .csv, .parquet)"
    )
    p.add_argument("--data", help="the training images copies are judged against (default: the model's own)")
    _features_argument(p)
    p.add_argument("--prompt-column", help="the prompt file's prompt column (default: prompt, caption or text)")
    p.add_argument("--methods", nargs="+", default=["all"], help="registered mitigations, or all (default)")
    p.add_argument("--n", type=count, default=16, help="generations per prompt and method")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--steps", type=count, default=50, help="sampling steps")
    p.add_argument("--guidance-scale", type=non_negative_float, help="w (default: the model's)")
    p.add_argument(
        "--gate",
        default="wen",
        help="a prompt-level detector that decides where a method is applied, "
        "or none to apply it always (default wen, the cheapest; flipd_cond "
        "misses fewer planted captions at the cost of a generation)",
    )
    p.add_argument(
        "--gate-threshold",
        type=float,
        help="flag above this score (default: calibrated on ordinary training conditions, their 95th percentile)",
    )
    p.add_argument("--knob", nargs="+", default=[], metavar="METHOD=VALUE", help="a method's setting")
    p.add_argument("--out", type=Path, help="write generations.npz and report.json here")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also trace each method's knob over 5 settings and write "
        "pareto.json (copy rate against utility, the front marked)",
    )
    p = sub.add_parser(
        "report",
        help="one audit report of a model (self-contained HTML, or PDF printed by Chromium): verdicts, "
        "prompt scan and copies, detection, mitigation, methods",
    )
    p.add_argument("--model", required=True, help="a bundled demo's name or a model folder")
    p.add_argument("--out", required=True, type=Path, help="report.html (self-contained) or report.pdf")
    p.add_argument(
        "--data", help="the training images (folder, table, datasets folder or .npz; default: the model's own)"
    )
    _features_argument(p)
    p.add_argument("--holdout", help="images the model never saw: their FLIPD sets the verdict's threshold")
    p.add_argument("--n", type=count, help="training images analysed (every planted one first; default 600)")
    p.add_argument("--t0", type=positive_float, default=0.05, help="t0 of the verdicts (inside the model's t grid)")
    p.add_argument(
        "--prompts", type=Path, help="a prompt file to scan (labels give the detection table), or a saved scan"
    )
    _prompt_file_arguments(p)
    p.add_argument(
        "--reference",
        help="prompts trusted as ordinary (a file) or training-captions, for the scan's thresholds "
        "(default: the file's ordinary-labelled prompts, else training-captions where the data have them)",
    )
    p.add_argument("--no-reference", action="store_true", help="rank the prompts without flagging them")
    p.add_argument("--detectors", nargs="+", help="the scan's detectors (default: every prompt-level one)")
    p.add_argument("--scan-n", type=count, default=4, help="generations per scanned prompt (4)")
    p.add_argument("--steps", type=count, default=1, help="first sampling steps the stepwise detectors average (1)")
    p.add_argument("--sample-steps", type=count, default=50, help="the sampler's number of steps (50)")
    p.add_argument("--generate", type=count, default=4, metavar="K", help="generations judged per flagged prompt (4)")
    p.add_argument("--mitigation", type=Path, help="the folder `memviz mitigate --out` wrote")
    p.add_argument("--detection", type=Path, help="an eval-detection JSON (default: the model folder's, if any)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--no-progress", action="store_true")
    sub.add_parser(
        "app",
        help="run the app (streamlit run app.py) with memviz's safe defaults, from anywhere; "
        "further options go to streamlit run (--server.port 8502)",
    )
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.streamlit_args = extra
    runner_log = logging.getLogger("memviz.runner.local")
    if not runner_log.handlers:  # "reused N of M rows stored by an earlier run", on stderr
        runner_log.addHandler(logging.StreamHandler(sys.stderr))
        runner_log.setLevel(logging.INFO)
    try:
        return {
            "train": _train,
            "sample": _sample,
            "info": _info,
            "compute": _compute,
            "detectors": _detectors,
            "eval-detection": _eval_detection,
            "scan": _scan,
            "mitigate": _mitigate,
            "report": _report,
            "app": _app,
        }[args.command](args)
    except ValueError as exc:  # bad input: one clear sentence, no traceback
        print(f"memviz: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("memviz: ran out of memory; analyse fewer images (--n) or a smaller batch.", file=sys.stderr)
        return 1


def _engine_arguments(p) -> None:
    g = p.add_argument_group("engine", "where the dataset-wide passes run (results land in the same store)")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: Ray Data actors (pip install 'memviz[ray]')",
    )
    g.add_argument(
        "--address",
        help="ray: an existing cluster (host:port or ray://host:port); default: a private "
        "Ray on this machine, stopped at the end",
    )
    g.add_argument("--workers", type=count, default=2, help="ray: actors, each loading the model once")
    g.add_argument("--gpus-per-worker", type=non_negative_float, default=0.0, help="ray: num_gpus of each actor")
    g.add_argument("--batch-size", type=count, help="rows per batch (both engines; default: each pass's own)")


def _features_argument(p) -> None:
    p.add_argument(
        "--features",
        default=None,
        help="the space copies and the map are judged in: pixel (default) or the folder of a local image "
        "embedder (a transformers vision model saved with safetensors: CLIP, DINOv2, ViT, SigLIP)",
    )


def _prompt_file_arguments(p) -> None:
    g = p.add_argument_group("prompt files", "which columns hold what (every other column is kept)")
    g.add_argument("--prompt-column", help="the prompt's column or JSON key (default: prompt, caption or text)")
    g.add_argument("--label-column", help="a column saying which prompts are memorized (1/0, true/false, or classes)")
    g.add_argument(
        "--positive",
        type=lambda text: [v for v in text.split(",") if v],
        metavar="A,B",
        help="the label column's values that mean memorized (NeMo's type: --positive MV,TV,RV)",
    )
    g.add_argument("--split-column", help="a column grouping the prompts into splits (one evaluation row each)")


def _read_prompt_file(args, path: Path):
    from memviz.data.prompt_sets import read_prompts

    ps = read_prompts(
        path,
        prompt_column=args.prompt_column,
        label_column=getattr(args, "label_column", None),
        positive=getattr(args, "positive", None),
        split_column=getattr(args, "split_column", None),
    )
    print(ps.describe(), file=sys.stderr)
    return ps


def _say_data_notes(study) -> None:
    """What the data readers resized, skipped or could not match, on stderr."""
    for data in (study.train, study.test):
        for note in [] if data is None else data.meta.get("notes", []):
            print(f"data: {note}", file=sys.stderr)


@contextmanager
def _engine(args, opener: Callable[..., "object"]):
    """The Study ``opener(runner=...)`` opens, with the runner the arguments ask for (a Ray one started
    first, so that it also reads a streamed dataset); its data notes said; a private Ray stopped at the end."""
    if args.engine == "local":
        if args.address:
            raise ValueError("--address needs --engine ray.")
        study = opener(runner=None)
        _say_data_notes(study)
        study.batch_size = args.batch_size
        yield study
        return
    from memviz.runner.ray_runner import RayRunner

    with RayRunner(args.address, args.workers, args.gpus_per_worker) as runner:
        study = opener(runner=runner)
        _say_data_notes(study)
        if study.spec is None:
            raise ValueError("--engine ray needs the model as a bundled demo's name or a folder.")
        study.batch_size = args.batch_size
        yield study
        if runner.startup_s:
            info = runner.workers_info()
            print(
                f"ray: {len(info)} workers started in {runner.startup_s:.1f} s (apart from the passes); "
                f"each opened the model {max(i['opened'] for i in info)} time(s) for "
                f"{max(i['built'] for i in info)} pass(es)",
                file=sys.stderr,
            )


def _train(args) -> int:
    from memviz.train.loop import train
    from memviz.train.recipes import RECIPES

    if args.recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {args.recipe!r}; choose one of {sorted(RECIPES)}.")
    recipe = RECIPES[args.recipe]()
    cfg = recipe.config
    cfg.steps = args.steps or cfg.steps
    cfg.max_minutes = args.max_minutes
    cfg.seed = cfg.seed if args.seed is None else args.seed
    text = None
    if recipe.captions is not None:
        from memviz.model.text import encode_text, packaged_text_encoder
        from memviz.train.loop import CaptionConditioning

        encoder, tokenizer = packaged_text_encoder(recipe.meta["text_encoder"])
        text = CaptionConditioning(recipe.captions, lambda p: encode_text(encoder, tokenizer, p))
    train(
        recipe.data, args.out, cfg, weights=recipe.weights, meta=recipe.meta, progress=not args.no_progress, text=text
    )
    print(f"saved {args.out}")
    return 0


def _sample(args) -> int:
    import numpy as np

    from memviz.figures.builders import save_grid
    from memviz.io.files import save_npz
    from memviz.model.adapter import DiffusionModel

    model = DiffusionModel.from_pretrained(args.model)
    cond = (
        int(args.cond)
        if args.cond is not None
        and args.cond.isdigit()
        and model.is_class_conditional
        and args.cond not in model.class_names
        else args.cond
    )
    if args.out.suffix not in (".png", ".npz"):
        raise ValueError(f"--out must end in .png or .npz; got {args.out.name}.")
    out = model.sample(args.n, cond=cond, steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed)
    if args.out.suffix == ".png":
        save_grid(out.images, args.out)
    else:
        save_npz(args.out, x0=out.x0.numpy(), noise=out.noise.numpy(), seed=np.int64(out.seed))
    print(f"saved {args.out}")
    return 0


def _app(args) -> int:
    """``streamlit run`` on the app (the checkout's, or the copy the wheel carries), its
    ``.streamlit/config.toml`` passed as flags so the safe defaults hold whatever folder it starts in."""
    import os
    import subprocess

    import tomllib

    try:
        from memviz.ui.nav import app_root
    except ImportError:
        raise ValueError('the app needs streamlit: pip install "memviz[app]".') from None
    root = app_root()
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    flags = [
        f"--{section}.{key}={str(value).lower() if isinstance(value, bool) else value}"
        for section, table in config.items()
        for key, value in table.items()
    ]
    cmd = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), *flags, *args.streamlit_args]
    if os.name == "posix":  # become the server: a supervisor's SIGTERM reaches it, and no orphan is left behind
        sys.stdout.flush()
        os.execv(sys.executable, cmd)
    return subprocess.call(cmd)


def _info(args) -> int:
    import json

    from memviz.model.adapter import DiffusionModel

    model = DiffusionModel.from_pretrained(args.model)
    print(
        json.dumps(
            {
                "shape": model.sample_shape,
                "prediction_type": model.prediction_type,
                "T": model.T,
                "classes": model.class_names,
                "training": model.meta.get("training", {}),
            },
            indent=2,
        )
    )
    return 0


def _compute(args) -> int:
    from memviz.study.core import open_study

    def opener(runner):
        return open_study(
            args.model,
            args.data,
            n=args.n,
            n_probes=args.n_probes,
            trace=args.trace,
            holdout=args.holdout,
            features=args.features,
            runner=runner,
        )

    with _engine(args, opener) as study:
        passes = {
            "lid": _compute_lid,
            "spectra": _compute_spectra,
            "neighbours": _compute_neighbours,
            "embedding": _compute_embedding,
        }
        table = passes[args.what](args, study)
    if args.out:
        from memviz.io.files import atomic_path

        with atomic_path(args.out, args.out.suffix) as tmp:
            if args.out.suffix == ".parquet":
                table.to_parquet(tmp, index=False)
            else:
                table.to_csv(tmp, index=False)
        print(f"saved {args.out}")
    return 0


def _compute_spectra(args, study):
    import pandas as pd

    from memviz.hessian.summary import default_tau, summarize

    tau = args.tau or default_tau(study.model, args.t)
    rows = study.rows
    eigenvalues = study.spectra(
        rows,
        args.t,
        conditional=False if args.unconditional else None,
        method=args.method,
        on_batch=lambda done, n: print(f"spectra: {done:,} of {n:,} images", flush=True),
    )
    table = pd.concat(
        [pd.DataFrame({"row": rows, "kind": study.kind(rows)}), pd.DataFrame(summarize(eigenvalues, tau))], axis=1
    )
    print(
        table.groupby("kind").median(numeric_only=True).drop(columns="row").to_string(float_format=lambda v: f"{v:.2f}")
    )
    print(f"t = {args.t}, tau = {tau:.2f}")
    return table


def _compute_neighbours(args, study):
    import time

    import pandas as pd

    from memviz.neighbors.index import RECALL_TARGET, search_depth

    start = time.perf_counter()
    index = study.reference
    how = "read from the store" if index.from_store else "built"
    recall = (
        "exact search (recall 1)"
        if index.kind == "flat"
        else f"recall@10 against exact search {index.recall:.3f} on {index.recall_sample:,} sampled images "
        f"at search depth {search_depth(index)}"
        + ("" if index.recall >= RECALL_TARGET else f", below the {RECALL_TARGET} target at the depth's cap")
    )
    print(
        f"neighbour index: {index.kind} over {len(index):,} distinct training images "
        f"({index.reference.shape[1]:,}-d), {recall}; {how} in {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    rows = study.rows
    graph = study._graph()
    table = pd.DataFrame(
        {
            "row": rows,
            "kind": study.kind(rows),
            "nearest_row": graph.index[rows, 0],
            "nn_distance": study.nn_distance(),
            "copies": study.copies(),
        }
    )
    print(f"neighbour graph: {graph.k} neighbours of each of {len(graph.index):,} training images in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    print(table.groupby("kind")[["nn_distance", "copies"]].median().to_string(float_format=lambda v: f"{v:.2f}"))
    return table


def _compute_embedding(args, study):
    import time

    import pandas as pd

    start = time.perf_counter()
    xy = study.embedding()
    rows = study.rows
    print(f"UMAP map of {len(rows):,} analysed training images in {time.perf_counter() - start:.1f} s")
    return pd.DataFrame({"row": rows, "kind": study.kind(rows), "x": xy[:, 0], "y": xy[:, 1]})


def _compute_lid(args, study):
    study.prepare(lambda f, what: print(f"{f:4.0%} {what}", flush=True))
    table = study.table(args.t0)
    for m in args.methods:
        table[f"lid_{m}"] = study.lid_data(m)
    print(
        table.groupby("kind")[[c for c in table if c == "flipd" or c.startswith("lid_")]]
        .median()
        .to_string(float_format=lambda v: f"{v:.2f}")
    )
    print(study.threshold_source(args.t0))
    print(table["verdict"].value_counts().to_string())
    return table


def _detectors(args) -> int:
    import json

    from memviz.detect import DETECTORS

    dim = None
    if args.model:
        from memviz.model.adapter import DiffusionModel

        dim = DiffusionModel.from_pretrained(args.model).dim
    described = [d.describe(dim) for d in DETECTORS.values()]
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        for d in described:
            print(f"{d['name']:16} {'/'.join(d['levels']):14} {'+' if d['sign'] > 0 else '-'}  {d['cost']}")
    return 0


def _labelled_args(args):
    """The labelled PromptSet eval-detection reads, or None for the model's planted truth."""
    from memviz.data.prompt_sets import labelled_prompts

    if (args.memorized is None) != (args.ordinary is None):
        raise ValueError("--memorized and --ordinary go together: give both prompt files.")
    if args.memorized is not None:
        if args.prompts is not None or args.label_column:
            raise ValueError("Give --memorized and --ordinary, or --prompts with --label-column, not both.")
        return labelled_prompts(_read_prompt_file(args, args.memorized), _read_prompt_file(args, args.ordinary))
    if args.prompts is not None:
        if not args.label_column:
            raise ValueError(
                "--prompts needs --label-column (which prompts are memorized), or use --memorized/--ordinary."
            )
        return _read_prompt_file(args, args.prompts)
    if args.label_column or args.positive or args.split_column:
        raise ValueError("--label-column, --positive and --split-column describe a prompt file; give --prompts.")
    return None


def _eval_detection(args) -> int:
    import pandas as pd

    from memviz.detect import KEYS, detectors, eval_detection
    from memviz.detect.scan import registry_direction
    from memviz.io.files import write_json
    from memviz.study.core import open_study

    dets = detectors(names=args.detectors)  # an unknown name: one sentence listing them, before anything loads
    labelled = _labelled_args(args)
    scores: list[dict] = []
    with _engine(
        args, lambda runner: open_study(args.model, args.data, features=args.features, runner=runner)
    ) as study:
        if labelled is None and "planted" not in study.model.meta:
            raise ValueError(
                "This model has no planted ground truth; give your own labelled prompts: --memorized FILE "
                "--ordinary FILE, or --prompts FILE --label-column COLUMN."
            )
        notes: list[str] = []
        rows = eval_detection(
            study,
            n=args.n,
            steps=args.steps,
            reps=args.reps,
            n_ordinary=args.n_ordinary,
            sample_steps=args.sample_steps,
            seed=args.seed,
            scores=scores,
            names=args.detectors,
            calibrate=args.calibrate,
            guidance_scale=args.guidance_scale,
            notes=notes,
            labelled=labelled,
            progress=not args.no_progress,
        )
    shown = sorted({r["detector"] for r in rows}, key=[d.name for d in dets].index)
    print("direction (from the registry): " + "; ".join(f"{d} {registry_direction(d)} = memorized" for d in shown))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    table = pd.DataFrame(rows, columns=list(KEYS)).astype({"n": "Int64", "steps": "Int64"})
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_colwidth", 60):
        print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
    if args.json:
        write_json(args.json, rows)
        print(f"saved {args.json}")
    if args.scores:
        from memviz.figures.export import table_bytes
        from memviz.io.files import atomic_path

        with atomic_path(args.scores) as tmp:
            tmp.write_bytes(table_bytes(pd.DataFrame(scores), "parquet" if args.scores.suffix == ".parquet" else "csv"))
        print(f"saved {args.scores}")
    return 0


def _scan(args) -> int:
    import pandas as pd

    from memviz.detect import detectors
    from memviz.detect.scan import (
        TRAINING_CAPTIONS,
        describe_thresholds,
        registry_direction,
        save_scan,
        scan,
        scan_copies,
    )
    from memviz.figures.builders import save_grid
    from memviz.study.core import open_study

    if args.detectors:
        detectors(names=args.detectors)  # an unknown name: one sentence, before anything loads
    if args.out.suffix not in (".parquet", ".csv", ".tsv"):
        raise ValueError(f"--out is a .parquet or .csv table; got {args.out.name}.")
    prompts = _read_prompt_file(args, args.prompts)
    reference = None
    if args.reference == TRAINING_CAPTIONS:
        reference = TRAINING_CAPTIONS
    elif args.reference:
        from memviz.data.prompt_sets import read_prompts

        reference = read_prompts(args.reference, prompt_column=args.prompt_column)
        print(f"reference: {reference.describe()}", file=sys.stderr)

    def opener(runner):
        return open_study(args.model, args.data, n=1, features=args.features, runner=runner)

    with _engine(args, opener) as study:
        result = scan(
            study,
            prompts,
            names=args.detectors,
            n=args.n,
            steps=args.steps,
            sample_steps=args.sample_steps,
            seed=args.seed,
            reference=reference,
            fpr=args.fpr,
            guidance_scale=args.guidance_scale,
            progress=not args.no_progress,
            batch_size=args.batch_size,
        )
        grid = None
        if args.generate:
            which = "flagged" if result.thresholds else "all"
            grid = scan_copies(
                study,
                result,
                k=args.generate,
                which=which,
                steps=args.sample_steps,
                seed=args.seed,
                guidance_scale=args.guidance_scale,
                progress=not args.no_progress,
            )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    table = result.table
    skipped = table.note.str.startswith("not scored")
    cut = table.note.str.startswith("read as")
    print(
        f"scored {int((~skipped).sum()):,} of {len(table):,} prompts in {result.settings['seconds']:.1f} s "
        f"({result.settings['prompts_per_second']:.2f} prompts/s); {int(skipped.sum())} not scored, "
        f"{int(cut.sum())} cut to the encoder's length (see the note column)"
    )
    for line in describe_thresholds(result):
        print(f"threshold: {line}")
    if result.thresholds:
        print(f"flagged: {int(table.flagged.sum()):,} of {len(table):,} prompts by any detector")
    first = result.detectors[0]
    sign = 1 if registry_direction(first) == "higher" else -1
    top = table.assign(_o=sign * table[first]).sort_values("_o", ascending=False, na_position="last").head(10)
    cols = ["prompt", *result.detectors[:4]] + (["flagged"] if result.thresholds else [])
    if args.generate:
        cols += ["copies", "nearest_file"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 50):
        print(f"top prompts by {first}:")
        print(top[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for path in save_scan(result, args.out):
        print(f"saved {path}")
    if grid is not None and len(grid):
        k = args.generate
        path = args.out.with_name(args.out.stem + ".copies.png")
        save_grid(grid.flatten(0, 1), path, nrow=2 * k, scale=2)
        judged = table[table.copies.notna()]
        print(
            f"copies: {int(judged.copies.sum()):,} of {len(judged) * k:,} generations of {len(judged)} prompts copy "
            f"a training image (calibrated l2 < {result.settings['copies']['threshold']}); grid: each row {k} "
            f"generations, then their nearest training images"
        )
        print(f"saved {path}")
    elif args.generate:
        print("copies: no prompt was flagged, so none was generated.")
    return 0


def _mitigate(args) -> int:
    import numpy as np

    from memviz.data.prompt_sets import SUFFIXES as PROMPT_SUFFIXES
    from memviz.io.files import save_npz, write_json
    from memviz.mitigate import MITIGATIONS
    from memviz.mitigate.lab import run_lab

    if args.list:
        for m in MITIGATIONS.values():
            d = m.describe()
            knob = (
                ""
                if d["knob"] is None
                else f"{d['knob']['name']} in {d['knob']['range']} (default {d['knob']['default']:g})"
            )
            print(f"{d['name']:18} changes the {d['changes']:20} {knob:34} {d['cost']}")
        return 0
    missing = [name for name, v in (("--model", args.model), ("--prompts", args.prompts), ("--out", args.out)) if not v]
    if missing:
        raise ValueError(f"memviz mitigate needs {', '.join(missing)} (or --list).")
    knobs = {}
    for item in args.knob:
        name, _, value = item.partition("=")
        try:
            knobs[name] = float(value)
        except ValueError:
            raise ValueError(f"--knob takes METHOD=VALUE, such as initial-noise=16; got {item!r}.") from None
    from memviz.study.core import open_study

    prompts = args.prompts
    if len(prompts) == 1 and Path(prompts[0]).suffix.lower() in PROMPT_SUFFIXES and Path(prompts[0]).is_file():
        prompts = _read_prompt_file(args, Path(prompts[0])).prompts
    study, memo = (
        open_study(args.model, args.data, n=1, features=args.features),
        {},
    )  # memo: the sweep reuses the plain generations and gates
    _say_data_notes(study)
    result = run_lab(
        study,
        prompts,
        args.methods,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        gate=args.gate,
        threshold=args.gate_threshold,
        knobs=knobs,
        memo=memo,
    )
    for note in result.notes:
        print(f"skipped: {note}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    save_npz(
        args.out / "generations.npz",
        images=result.images,
        prompt=result.prompt.astype(str),
        method=result.method.astype(str),
    )
    rows = result.rows.replace({np.nan: None}).to_dict("records")
    write_json(
        args.out / "report.json",
        {
            "model": args.model,
            "n": args.n,
            "seed": args.seed,
            "steps": args.steps,
            "gate": result.gate,
            "skipped": result.notes,
            "rows": rows,
        },
    )
    shown = result.rows[
        [
            "prompt",
            "memorization",
            "method",
            "applied",
            "copy_rate",
            "median_nn_distance",
            "utility",
            "seconds",
            "model_calls",
        ]
    ]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for prompt, why in result.rows.drop_duplicates("prompt")[["prompt", "utility_note"]].itertuples(index=False):
        if why:
            print(f"utility of {str(prompt)[:60]!r} is NaN: {why}", file=sys.stderr)
    print(f"wrote {args.out / 'generations.npz'} and {args.out / 'report.json'}")
    if args.sweep:
        from memviz.mitigate.lab import sweep

        front = sweep(
            study,
            prompts,
            args.methods,
            n=args.n,
            seed=args.seed,
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            gate=args.gate,
            threshold=result.gate.get("threshold"),
            memo=memo,
        )
        write_json(args.out / "pareto.json", front.replace({np.nan: None}).to_dict("records"))
        print(front.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"wrote {args.out / 'pareto.json'}")
    return 0


def _report(args) -> int:
    import time

    from memviz.detect import detectors
    from memviz.report import build_report, write_report
    from memviz.study.core import DEFAULT_N, open_study

    if args.out.suffix.lower() not in (".html", ".pdf"):
        raise ValueError(f"--out is a .html or .pdf report; got {args.out.name}.")
    if args.detectors:
        detectors(names=args.detectors)
    if args.mitigation is not None and not args.mitigation.exists():
        raise ValueError(f"--mitigation {args.mitigation} does not exist.")
    start = time.perf_counter()
    prompts = None
    if args.prompts is not None:
        prompts = _saved_scan(args.prompts) or _read_prompt_file(args, args.prompts)
    reference = None if args.no_reference else "auto"
    if args.reference and not args.no_reference:
        from memviz.data.prompt_sets import read_prompts
        from memviz.detect.scan import TRAINING_CAPTIONS

        reference = (
            TRAINING_CAPTIONS
            if args.reference == TRAINING_CAPTIONS
            else read_prompts(args.reference, prompt_column=args.prompt_column)
        )
    study = open_study(args.model, args.data, n=args.n or DEFAULT_N, holdout=args.holdout, features=args.features)
    _say_data_notes(study)
    rep = build_report(
        study,
        prompts=prompts,
        reference=reference,
        mitigation=args.mitigation,
        detection=args.detection,
        t0=args.t0,
        n=args.scan_n,
        steps=args.steps,
        k=args.generate,
        seed=args.seed,
        detectors=args.detectors,
        sample_steps=args.sample_steps,
        progress=not args.no_progress,
    )
    write_report(rep, args.out)
    print(rep.summary)
    for section, text in rep.unknown.items():
        print(f"unknown ({section}): {text}", file=sys.stderr)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _saved_scan(path: Path):
    """A table ``memviz scan`` wrote (Parquet with its metadata, or CSV with its .json beside it), else None."""
    from memviz.detect.scan import read_scan

    side = path.with_name(path.name + ".json")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            saved = b"memviz_scan" in (pq.read_schema(path).metadata or {})
        except Exception:  # not a Parquet file: the prompt reader says what is wrong, in one sentence
            return None
        return read_scan(path) if saved else None
    return read_scan(path) if path.suffix in (".csv", ".tsv") and side.exists() else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
