"""Train a class-conditional diffusers UNet2DModel, or a text-conditional UNet2DConditionModel,
with classifier-free guidance.

Seeded and resumable: a checkpoint (model, EMA, optimizer, scheduler, RNG, step) is
written atomically every ``save_every`` steps, and the EMA weights are exported as a
loadable model folder at the same time, so a run can be inspected while it goes on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from memviz.data.base import ImageDataset
from memviz.io.files import atomic_path
from memviz.model.loading import save_model_folder


@dataclass
class TrainConfig:
    """Hyperparameters of ``train`` (saved into the model folder)."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    class_conditional: bool = True
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 500
    steps: int = 20_000
    max_minutes: float | None = None
    ema_decay: float = 0.9995
    label_dropout: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 1000
    cross_attention_dim: int | None = None  # set: a text-conditional UNet2DConditionModel
    extra: dict = field(default_factory=dict)


def build_unet(cfg: TrainConfig, resolution: int, channels: int, num_classes: int | None) -> UNet2DModel:
    """A UNet2DModel with attention at the lowest resolution only; one extra class
    embedding (index ``num_classes``) is the null class for classifier-free guidance.

    Points (resolution 1, the synthetic toys) get an ``MLPDenoiser`` instead (same call signature).
    """
    n = len(cfg.block_out_channels)
    if resolution == 1:
        if num_classes is not None:
            raise ValueError(
                "Point data (resolution 1) trains an unconditional MLPDenoiser; set class_conditional=False."
            )
        from memviz.model.toy import MLPDenoiser

        return MLPDenoiser(in_channels=channels, hidden=cfg.block_out_channels[0], depth=cfg.layers_per_block)
    if cfg.cross_attention_dim is not None:
        return build_text_unet(cfg, resolution, channels)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        norm_num_groups=cfg.norm_num_groups,
        num_class_embeds=None if num_classes is None else num_classes + 1,
    )


def build_text_unet(cfg: TrainConfig, resolution: int, channels: int) -> UNet2DConditionModel:
    """A UNet2DConditionModel cross-attending to token embeddings at the lowest resolution and
    in the mid block only (measured here at 16x16: 1.6x the training throughput of cross-attention
    at the two lowest resolutions, 250 vs 156 images/s)."""
    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=cfg.norm_num_groups,
    )


class CaptionConditioning:
    """Text conditioning for training: every distinct caption encoded once.

    Args:
        captions: (N,) lists of captions per training row; one is drawn per step (templated
            captions), and the empty caption stands in for dropout (classifier-free guidance).
        encode: list of strings -> (n, L, E) token embeddings (``DiffusionModel.encode_cond``).
    """

    def __init__(self, captions: list[list[str]], encode):
        distinct = sorted({c for row in captions for c in row})
        where = {c: i for i, c in enumerate(distinct)}
        width = max(len(row) for row in captions)
        # (N, width) caption ids, rows with fewer captions repeat theirs
        self.options = torch.tensor([[where[row[j % len(row)]] for j in range(width)] for row in captions])
        with torch.no_grad():
            self.table = torch.cat([encode(distinct), encode([""])]).float()  # last row: the null caption
        self.null = len(distinct)

    def __call__(self, idx: torch.Tensor, drop: torch.Tensor, gen: torch.Generator) -> dict:
        col = torch.randint(0, self.options.shape[1], (len(idx),), generator=gen)
        ids = self.options[idx, col]
        ids[drop] = self.null
        return {"encoder_hidden_states": self.table[ids]}


def build_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=True,
    )


def train(
    data: ImageDataset,
    out_dir: str | Path,
    cfg: TrainConfig,
    weights: np.ndarray | None = None,
    meta: dict | None = None,
    progress: bool = True,
    text: CaptionConditioning | None = None,
) -> Path:
    """Train on ``data`` (labels optional) and save the EMA model to ``out_dir``.

    Args:
        data: images (N, C, H, W) in [-1, 1]; with labels, the model is class-conditional.
        weights: (N,) relative sampling weights (planted oversampling), or uniform.
        meta: extra metadata written into ``memviz.json`` (ground truth, data spec).
        text: caption conditioning (with ``cfg.cross_attention_dim`` set): a text-conditional model.

    Returns:
        the model folder, loadable with ``DiffusionModel.from_pretrained``.
    """
    out_dir = Path(out_dir)
    ckpt = out_dir / ".train" / "checkpoint.pt"
    if (text is None) != (cfg.cross_attention_dim is None):
        raise ValueError("A text-conditional model needs both cfg.cross_attention_dim and captions (text=...).")
    conditional = cfg.class_conditional and data.labels is not None and text is None
    num_classes = len(data.class_names or np.unique(data.labels)) if conditional else None
    torch.manual_seed(cfg.seed)  # the initial weights are part of the seeded run
    unet = build_unet(cfg, data.images.shape[-1], data.images.shape[1], num_classes)
    scheduler = build_scheduler(cfg)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_sched = get_cosine_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"step": 0, "seconds": 0.0}
    if ckpt.exists():  # resume
        saved = _load_checkpoint(ckpt)
        unet.load_state_dict(saved["unet"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        lr_sched.load_state_dict(saved["lr_sched"])
        gen.set_state(saved["gen"])
        state = saved["state"]
    w = torch.ones(len(data)) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    labels = torch.as_tensor(data.labels) if conditional else None
    abar = scheduler.alphas_cumprod
    t_start = time.time()
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not progress, desc="train")
    while state["step"] < cfg.steps:
        loss = _train_step(unet, opt, data.images, labels, w, abar, cfg, gen, num_classes, text)
        lr_sched.step()
        ema.step(unet.parameters())
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        elapsed = state["seconds"] + time.time() - t_start
        out_of_time = cfg.max_minutes is not None and elapsed > 60 * cfg.max_minutes
        if state["step"] % cfg.save_every == 0 or state["step"] == cfg.steps or out_of_time:
            state_now = {**state, "seconds": elapsed}
            _save_checkpoint(ckpt, unet, ema, opt, lr_sched, gen, state_now)
            _export(out_dir, unet, ema, scheduler, cfg, state_now, meta)
        if out_of_time:
            break
    bar.close()
    return out_dir


def _train_step(unet, opt, images, labels, w, abar, cfg: TrainConfig, gen, num_classes, text=None) -> float:
    """One step of the DDPM loss ||eps - eps_theta(alpha x + sigma eps, t, c)||^2 (Ho et al. 2020, Alg. 1)."""
    idx = torch.multinomial(w, cfg.batch_size, replacement=True, generator=gen)
    x0 = images[idx]
    t = torch.randint(0, cfg.num_train_timesteps, (len(idx),), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    a = abar[t].sqrt().view(-1, 1, 1, 1).float()
    xt = a * x0 + (1 - a**2).sqrt() * eps
    kwargs = {}
    if labels is not None:  # label dropout to the null class (index num_classes) for CFG
        c = labels[idx].clone()
        c[torch.rand(len(idx), generator=gen) < cfg.label_dropout] = num_classes
        kwargs = {"class_labels": c}
    elif text is not None:  # caption dropout to the empty caption
        kwargs = text(idx, torch.rand(len(idx), generator=gen) < cfg.label_dropout, gen)
    target = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - (1 - a**2).sqrt() * x0}[cfg.prediction_type]
    loss = (unet(xt, t, **kwargs).sample - target).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
    opt.step()
    return float(loss.detach())


def _load_checkpoint(path: Path) -> dict:
    """A training checkpoint, read with ``weights_only=True``: tensors and plain values only, so a
    checkpoint from someone else cannot run code."""
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unpickler refusal or a damaged file: one sentence
        raise ValueError(
            f"The checkpoint {path} holds more than tensors and plain values, or is damaged "
            f"({exc.__class__.__name__}); delete it to train from the start."
        ) from None
    if not isinstance(saved, dict) or not {"unet", "ema", "opt", "lr_sched", "gen", "state"} <= set(saved):
        raise ValueError(f"The checkpoint {path} is not a memviz training checkpoint; delete it to start over.")
    return saved


def _save_checkpoint(path: Path, unet, ema, opt, lr_sched, gen, state: dict) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(
            {
                "unet": unet.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "lr_sched": lr_sched.state_dict(),
                "gen": gen.get_state(),
                "state": state,
            },
            tmp,
        )


def _export(out_dir: Path, unet, ema, scheduler, cfg: TrainConfig, state: dict, meta) -> None:
    """Save the EMA weights as a model folder (the live weights stay untouched)."""
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        training = {
            **asdict(cfg),
            "steps_done": state["step"],
            "train_seconds": round(state["seconds"], 1),
            "images_seen": state["step"] * cfg.batch_size,
        }
        save_model_folder(out_dir, unet, scheduler, {**(meta or {}), "training": training})
    finally:
        ema.restore(unet.parameters())
