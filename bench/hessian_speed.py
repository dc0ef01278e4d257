"""Seconds per Hessian spectrum on this machine, against limits measured in the same run.

Exact spectra (all D eigenvalues, ``method="exact"``) at D = 64, 256 (demo-mnist itself)
and 784 (UNets of demo-mnist's architecture, random weights), next to two limits:
D backward passes one row at a time (the naive cost) and the same D backward passes
batched 64 at a time (what ``exact`` does through ``vmap``; its ratio to this is the
overhead). At D = 16,384 (a 4x64x64 latent, Stable Diffusion's latent shape; a random
UNet of the same architecture): Lanczos and Arnoldi with k = 20 at each end, and an SLQ
density, with their number of Hessian-vector products and the cost of one product
against one forward + backward pass.

    python bench/hessian_speed.py [--reps 3] [--skip-large] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from memviz.hessian import ScoreJacobian, density, spectrum
from memviz.model.adapter import DiffusionModel

ROOT = Path(__file__).resolve().parents[1]
T = 0.05


def demo_like(size: int, channels: int = 1) -> DiffusionModel:
    """demo-mnist's UNet architecture (1.1M parameters) at another input shape, random weights."""
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )
    return DiffusionModel(unet, DDPMScheduler(), device="cpu")


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def backward_passes(model: DiffusionModel, rows: int, passes: int) -> float:
    """One forward and ``passes`` backward passes of a batch of ``rows`` points."""
    y = (0.5 * torch.randn(rows, *model.sample_shape)).requires_grad_()
    out = model.score(y, T)
    v = torch.randn_like(out)
    for _ in range(passes):
        torch.autograd.grad(out, y, v, retain_graph=True)
    return 0.0


def exact_row(name: str, model: DiffusionModel, reps: int, batch: int = 4, chunk: int = 64) -> dict:
    d = model.dim
    x = 0.5 * torch.randn(batch, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    per_spectrum = median_time(lambda: spectrum(model, x, T, method="exact", batch_size=batch), reps) / batch
    naive = median_time(lambda: backward_passes(model, 1, 8), reps) / 8 * d  # D passes, batch 1
    batched = median_time(lambda: backward_passes(model, chunk * batch, 1), reps) * -(-d // chunk) / batch
    return {
        "case": name,
        "D": d,
        "method": "exact",
        "s_per_spectrum": per_spectrum,
        "limit_D_backward_batch1_s": naive,
        "limit_D_backward_batched_s": batched,
        "ratio_to_batched_limit": per_spectrum / batched,
    }


def krylov_rows(reps: int) -> list[dict]:
    model = demo_like(64, channels=4)
    x = 0.5 * torch.randn(1, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    y = model.alpha(T) * x
    op = ScoreJacobian(model, y, T)
    v = torch.randn_like(y)
    fb = median_time(lambda: backward_passes(model, 1, 1), reps)
    costs = {"sym": median_time(lambda: op.sym(v), reps), "rmatvec": median_time(lambda: op.rmatvec(v), reps)}
    rows = []
    for method, product in (("lanczos", "sym"), ("arnoldi", "rmatvec")):
        calls = _count(product)
        t0 = time.perf_counter()
        spectrum(model, x, T, method=method, k=20)
        rows.append(
            {
                "case": "4x64x64 random UNet",
                "D": model.dim,
                "method": f"{method} k=20",
                "s_per_spectrum": time.perf_counter() - t0,
                "products": calls["n"],
                "s_per_product": costs[product],
                "forward_backward_s": fb,
            }
        )
        _uncount(product)
    t0 = time.perf_counter()
    density(model, x, T, n_probes=8, n_steps=32)
    rows.append(
        {
            "case": "4x64x64 random UNet",
            "D": model.dim,
            "method": "SLQ 8 probes x 32 steps",
            "s_per_spectrum": time.perf_counter() - t0,
            "products": 32,
            "forward_backward_s": fb,
        }
    )
    return rows


_ORIGINAL = {}


def _count(product: str) -> dict:
    calls = {"n": 0}
    _ORIGINAL[product] = original = getattr(ScoreJacobian, product)

    def counted(self, u):
        calls["n"] += 1
        return original(self, u)

    setattr(ScoreJacobian, product, counted)
    return calls


def _uncount(product: str) -> None:
    setattr(ScoreJacobian, product, _ORIGINAL.pop(product))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true", help="leave out D = 16,384")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [
        exact_row("8x8 random UNet", demo_like(8), args.reps),
        exact_row("demo-mnist 16x16", DiffusionModel.from_pretrained(ROOT / "assets/models/demo-mnist"), args.reps),
        exact_row("28x28 random UNet", demo_like(28), args.reps),
    ]
    if not args.skip_large:
        rows += krylov_rows(args.reps)
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"threads: {torch.get_num_threads()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
