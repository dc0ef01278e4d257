"""Stable Diffusion scale: every detector on a UNet2DConditionModel with Stable Diffusion v1's
configuration (860M parameters, latents 4 x 64 x 64, D = 16,384) and random weights (no download),
with a random CLIP text encoder of SD v1's configuration (123M) over a letter tokenizer.

Each measurement runs in its own process, so that its peak memory (max RSS on the CPU, CUDA's
max_memory_allocated on a GPU) is its own. Seconds are medians over --reps after one warm-up.

    python bench/sd_scale.py [--reps 3] [--device cpu|cuda] [--json out.json]

Measured per prompt (n = 1 generation): one sampling step with guidance (two UNet passes),
Wen's score at the first step (the same two passes), Jeon's score at the first step (one J v by
double backward), and the nearest-neighbour evidence (VAE decode to 512 x 512 plus an exact
FAISS search of 10,000 training images); per sample: FLIPD with one Hutchinson probe (one vjp),
one Hessian-vector product H v of the Lanczos spectrum (a double backward), and the Lanczos
spectrum with k = 20 (--lanczos; on a CPU its products are counted on a short run and the total
is products x seconds per product, marked "estimated").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WHAT = ("sampling_step", "wen", "jeon", "neighbors", "flipd_1probe", "hv_product", "lanczos_k20")
PROMPT = "a photograph of an astronaut riding a horse"


def build(device: str, tmp: Path):
    """DiffusionModel of SD v1's UNet and text encoder (random) plus SD's VAE (random)."""
    import transformers
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    from memviz.model.adapter import DiffusionModel
    from memviz.model.closed_form import char_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD v1's
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        latent_channels=4,
        sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
    )
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
        )
    )
    sched = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return DiffusionModel(
        unet, sched, vae=vae, text_encoder=text, tokenizer=char_clip_tokenizer(tmp, 77), device=device
    )


def measure(what: str, device: str, reps: int) -> dict:
    """Seconds (median of ``reps`` after a warm-up) and peak memory of one measurement."""
    from memviz.detect.jeon import jeon_score
    from memviz.detect.wen import wen_score
    from memviz.model.autodiff import eps_and_vjp, jvp_from_vjp, math_attention
    from memviz.model.sampling import sampling_times

    with tempfile.TemporaryDirectory() as tmp:
        model = build(device, Path(tmp))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, *model.sample_shape, generator=g).to(model.device)
    t1 = float(sampling_times(model, 50, "ddim")[0])
    extra = {}
    if what == "sampling_step":
        fn = lambda: model.eps(x, t1, PROMPT, guidance_scale=7.5)  # noqa: E731
    elif what == "wen":
        fn = lambda: wen_score(model, PROMPT, x, t1)  # noqa: E731
    elif what == "jeon":
        fn = lambda: jeon_score(model, PROMPT, x_t=x, t=t1)  # noqa: E731
    elif what == "neighbors":
        fn = _neighbors(model, x)
    elif what == "flipd_1probe":
        from memviz.lid.flipd import flipd

        fn = lambda: flipd(model, x, 0.05, cond=PROMPT, trace="hutchinson", n_probes=1)  # noqa: E731
    elif what == "hv_product":

        def fn():
            with math_attention():
                _, vjp_fn = eps_and_vjp(lambda z: model.score(z, 0.05, PROMPT), x)
                return jvp_from_vjp(vjp_fn, x)(torch.ones_like(x))
    elif what == "lanczos_k20":
        return _lanczos(model, x, device)
    else:
        raise SystemExit(f"unknown measurement {what!r}")
    fn()  # warm-up
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return {"what": what, "seconds": statistics.median(seconds), **extra, **_peak(device)}


def _neighbors(model, x):
    import numpy as np

    from memviz.neighbors.index import NeighborIndex

    train = np.random.default_rng(0).standard_normal((10_000, 3 * 64 * 64)).astype("float32")  # 10k images at 64x64
    index = NeighborIndex(torch.from_numpy(train))

    def fn():
        img = model.decode(x)  # (1, 3, 512, 512)
        small = torch.nn.functional.interpolate(img * 2 - 1, size=64, mode="area")  # pixel neighbours at 64 x 64
        return index.nearest(small.cpu(), k=50)

    return fn


def _lanczos(model, x, device) -> dict:
    """The k = 20 Lanczos spectrum at both ends; on a CPU a run capped at 12 products gives the
    seconds per product, and the total is estimated with the product count measured on a GPU run
    or, failing one, the 251 products measured on a random 4 x 64 x 64 UNet (bench/hessian_speed.py)."""
    from memviz.hessian.spectrum import spectrum

    if device == "cuda":
        t0 = time.perf_counter()
        spectrum(model, x, 0.05, PROMPT, method="lanczos", k=20)
        torch.cuda.synchronize()
        return {"what": "lanczos_k20", "seconds": time.perf_counter() - t0, **_peak(device)}
    from memviz.hessian.operator import ScoreJacobian

    op = ScoreJacobian(model, x, 0.05, PROMPT, None, need_matvec=True)
    v = torch.randn(1, model.dim, generator=torch.Generator().manual_seed(1)).double().numpy()[0]
    lin = op.scipy_operator()
    t0 = time.perf_counter()
    for _ in range(3):
        lin.matvec(v)
    per = (time.perf_counter() - t0) / 3
    return {
        "what": "lanczos_k20",
        "seconds": per * 251,
        "estimated": True,
        "seconds_per_product": per,
        "products": 251,
        **_peak(device),
    }


def _peak(device: str) -> dict:
    if device == "cuda":
        return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    return {"peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", nargs="*", default=list(WHAT), choices=WHAT)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one measurement, JSON on stdout
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.reps)))
        return
    rows = []
    for what in args.only:
        out = subprocess.run(
            [sys.executable, __file__, "--one", what, "--device", args.device, "--reps", str(args.reps)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(f"{what}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{what:14s} {row['seconds']:9.2f} s{' (estimated)' if row.get('estimated') else '':13s} "
            f"peak {row['peak_gib']:.1f} GiB",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"device": args.device, "torch_threads": torch.get_num_threads(), "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
