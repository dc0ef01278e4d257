"""``DiffusionModel``: the one adapter between memviz's estimators and a diffusers model.

Everything else in memviz sees a model only through this class, in continuous time
t in [0, 1] (t = tau / T) of the variance-preserving process

    x_t = alpha(t) x_0 + sigma(t) eps,    alpha(t)^2 + sigma(t)^2 = 1,

with the noise prediction ``eps(x_t, t)`` and the score ``s(x_t, t) = -eps / sigma(t)``
(Song et al. 2021, eq. for VP SDEs). Schedulers, prediction types, class labels,
prompts and latent spaces are handled here and nowhere else.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import diffusers
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel

from memviz._io import write_json

Cond = Union[None, int, str, Sequence[int], Sequence[str], torch.Tensor]
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
WEIGHTS = "diffusion_pytorch_model.safetensors"
META = "memviz.json"


@dataclass(frozen=True)
class SampleOutput:
    """A batch of generations and everything needed to reproduce it.

    Attributes:
        images (torch.Tensor): (n, C, H, W) in [0, 1], pixel space.
        x0 (torch.Tensor): (n, C', H', W') final sample in the model's space (latents for latent models), CPU.
        noise (torch.Tensor): (n, C', H', W') the initial noise x_T, CPU.
        seed (int), steps (int), guidance_scale (float), cond: the call's arguments.
        trajectory (torch.Tensor | None): (S, n, C', H', W') the point x_t fed to the model at
            each of the S steps, when asked for (``return_trajectory``), CPU.
        ts (torch.Tensor | None): (S,) the diffusion time t of each of those steps.
    """

    images: torch.Tensor
    x0: torch.Tensor
    noise: torch.Tensor
    seed: int
    steps: int
    guidance_scale: float
    cond: Any
    trajectory: torch.Tensor | None = None
    ts: torch.Tensor | None = None


class DiffusionModel:
    """A diffusers denoiser seen as eps(x_t, t) and score(x_t, t) in continuous time.

    Args:
        unet (UNet2DModel | UNet2DConditionModel): the denoiser.
        scheduler: the training scheduler (its ``alphas_cumprod``, ``num_train_timesteps``
            and ``prediction_type`` define the process).
        vae, text_encoder, tokenizer: for latent and text-conditional models.
        meta (dict, defaults to {}): memviz metadata (class names, null class, ground truth).
        device (str | torch.device, defaults to CUDA when present, else CPU).

    Example:
        >>> model = DiffusionModel.from_pretrained("assets/models/demo-mnist")
        >>> x_t = torch.randn(2, *model.sample_shape)
        >>> model.score(x_t, 0.5, cond="3").shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, unet, scheduler, vae=None, text_encoder=None, tokenizer=None,
                 meta: dict | None = None, device: str | torch.device | None = None, half: bool | None = None):
        if not all(hasattr(getattr(unet, "config", None), k) for k in ("sample_size", "in_channels")):
            raise ValueError(f"unet must be a diffusers UNet2DModel or UNet2DConditionModel (or a module with "
                             f"their call signature and config), not {type(unet).__name__}.")
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {self.prediction_type!r} is not supported; use one of {PREDICTION_TYPES}.")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.unet = unet.to(self.device).float().eval().requires_grad_(False)  # float32: autograd paths need it
        self.scheduler = scheduler
        self.vae = None if vae is None else vae.to(self.device).eval().requires_grad_(False)
        self.text_encoder = None if text_encoder is None else text_encoder.to(self.device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self.T = int(scheduler.config.num_train_timesteps)
        self._log_abar = torch.log(scheduler.alphas_cumprod.to(torch.float64))
        self._prompt_cache: dict[str, torch.Tensor] = {}
        # half precision where no gradient flows (sampling, encodings); autograd paths stay float32
        self.half = self.device.type == "cuda" if half is None else bool(half)
        self._unet_half = None

    # ---- what the model is ------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of x_t in the model's space."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet.config.in_channels), int(h), int(w))

    @property
    def pixel_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images: ``sample_shape`` for pixel models; for latent models the
        VAE's channels and the latent size times its downsampling factor (8 for Stable Diffusion)."""
        if self.vae is None:
            return self.sample_shape
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        _, h, w = self.sample_shape
        return (int(self.vae.config.in_channels), h * f, w * f)

    @property
    def dim(self) -> int:
        """D, the number of dimensions of x_t."""
        c, h, w = self.sample_shape
        return c * h * w

    @property
    def is_class_conditional(self) -> bool:
        return not self.is_text_conditional and getattr(self.unet.config, "num_class_embeds", None) is not None

    @property
    def is_text_conditional(self) -> bool:
        return isinstance(self.unet, UNet2DConditionModel)

    @property
    def class_names(self) -> list[str]:
        """Names of the class labels (without the null class)."""
        if not self.is_class_conditional:
            return []
        names = self.meta.get("class_names")
        return list(names) if names else [str(i) for i in range(self.null_class)]

    @property
    def null_class(self) -> int:
        """The class index that means "no condition" (classifier-free guidance)."""
        return int(self.meta.get("null_class", self.unet.config.num_class_embeds - 1))

    # ---- the noise schedule -----------------------------------------------------------
    def alpha(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """alpha(t) = sqrt(abar(t T)), abar interpolated log-linearly between integer steps."""
        return self._schedule(t, lambda log_abar: torch.exp(0.5 * log_abar))

    def sigma(self, t: float | torch.Tensor) -> float | torch.Tensor:
        """sigma(t) = sqrt(1 - alpha(t)^2)."""
        return self._schedule(t, lambda log_abar: torch.sqrt(-torch.expm1(log_abar)))

    def _schedule(self, t, fn):
        t64 = torch.as_tensor(t, dtype=torch.float64)
        _check_t(t64)
        tau = (t64 * self.T).clamp(max=self.T - 1)  # clamped at the last step
        lo = tau.floor().long().cpu()
        w = (tau.cpu() - lo)
        log_abar = (1 - w) * self._log_abar[lo] + w * self._log_abar[(lo + 1).clamp(max=self.T - 1)]
        value = fn(log_abar)
        if not isinstance(t, torch.Tensor):
            return float(value)
        return value.to(t.device, t.dtype if t.is_floating_point() else torch.float32)

    # ---- eps and score ----------------------------------------------------------------
    def eps(self, x_t: torch.Tensor, t: float | torch.Tensor, cond: Cond = None,
            guidance_scale: float | None = None) -> torch.Tensor:
        """The noise prediction eps(x_t, t | cond), differentiable in x_t.

        Args:
            x_t: (B, C, H, W) in the model's space.
            t: a float or a (B,) tensor in [0, 1].
            cond: None (unconditional), a class index or name, a prompt, a list of them
                (one per row), or a precomputed embedding.
            guidance_scale: classifier-free guidance w: eps_u + w (eps_c - eps_u); None or 1
                means the plain conditional prediction.

        Returns:
            (B, C, H, W), the eps-parametrized output, whatever the prediction type.
        """
        self._check_x(x_t)
        t = self._batch_t(t, len(x_t), x_t.device)
        out = self._guided_output(x_t, t * self.T, cond, guidance_scale)
        return self._to_eps(out, x_t, t)

    def score(self, x_t: torch.Tensor, t: float | torch.Tensor, cond: Cond = None,
              guidance_scale: float | None = None) -> torch.Tensor:
        """s(x_t, t) = grad log p_t(x_t) = -eps(x_t, t) / sigma(t).  x_t: (B, C, H, W)."""
        t_b = self._batch_t(t, len(x_t), x_t.device)
        return -self.eps(x_t, t_b, cond, guidance_scale) / self.sigma(t_b).view(-1, 1, 1, 1)

    def _to_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Convert the raw UNet output to eps (x_t = alpha x0 + sigma eps, v = alpha eps - sigma x0)."""
        a, s = (f(t).view(-1, 1, 1, 1) for f in (self.alpha, self.sigma))
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return a * out + s * x_t
        return (x_t - a * out) / s  # "sample": out is x0

    def _guided_output(self, x, tau, cond: Cond, guidance_scale: float | None) -> torch.Tensor:
        """Raw UNet output; with guidance, out_u + w (out_c - out_u) (affine, so the same in every parametrization)."""
        if guidance_scale is None or guidance_scale == 1.0 or cond is None:
            return self._raw(x, tau, cond)
        out_c, out_u = self._raw(torch.cat([x, x]), torch.cat([tau, tau]), cond, double=True).chunk(2)
        return out_u + guidance_scale * (out_c - out_u)

    def _raw(self, x, tau, cond: Cond, double: bool = False) -> torch.Tensor:
        if self.half and not torch.is_grad_enabled():  # no gradient flows: a float16 copy of the UNet
            if self._unet_half is None:
                import copy

                self._unet_half = copy.deepcopy(self.unet).half()
            with torch.autocast(self.device.type, dtype=torch.float16):
                return self._call(self._unet_half, x.half(), tau, cond, double).float()
        return self._call(self.unet, x, tau, cond, double)

    def _call(self, unet, x, tau, cond: Cond, double: bool) -> torch.Tensor:
        n = len(x) // 2 if double else len(x)
        if self.is_text_conditional:
            emb = self.encode_cond(cond, n)
            if double:
                emb = torch.cat([emb, self.encode_cond(None, n)])
            return unet(x, tau, encoder_hidden_states=emb.to(x.dtype)).sample
        if self.is_class_conditional:
            labels = self.class_labels(cond, n)
            if double:
                labels = torch.cat([labels, self.class_labels(None, n)])
            return unet(x, tau, class_labels=labels).sample
        if cond is not None:
            raise ValueError("This model is unconditional; call it with cond=None.")
        return unet(x, tau).sample

    # ---- conditions ---------------------------------------------------------------------
    def conditions_of(self, data) -> list | None:
        """Each sample's own condition in an ``ImageDataset``: its label (class models) or its
        caption (text models); None when the model or the data has none."""
        if self.is_class_conditional and data.labels is not None:
            return data.labels.tolist()
        if self.is_text_conditional and data.captions is not None:
            return list(data.captions)
        return None

    def class_labels(self, cond: Cond, n: int) -> torch.Tensor:
        """(n,) class indices for ``cond`` (None = the null class; names or indices)."""
        if not self.is_class_conditional:
            raise ValueError("This model has no class labels; pass a prompt or cond=None.")
        if cond is None:
            return torch.full((n,), self.null_class, device=self.device, dtype=torch.long)
        items = [cond] * n if isinstance(cond, (int, str)) or (torch.is_tensor(cond) and cond.ndim == 0) else list(cond)
        if len(items) != n:
            raise ValueError(f"Got {len(items)} conditions for a batch of {n}; give one, or one per row.")
        return torch.tensor([self._class_index(c) for c in items], device=self.device, dtype=torch.long)

    def _class_index(self, c) -> int:
        names = self.class_names
        if isinstance(c, str):
            if c not in names:
                raise ValueError(f"Unknown class {c!r}; this model knows {names}.")
            return names.index(c)
        c = int(c)
        if not 0 <= c < len(names):
            raise ValueError(f"Class index {c} is out of range; this model has classes 0..{len(names) - 1}.")
        return c

    def encode_cond(self, cond: Cond, n: int) -> torch.Tensor:
        """(n, L, E) encoder hidden states for a prompt, a list of prompts or an embedding."""
        if torch.is_tensor(cond):
            if cond.ndim != 3:
                raise ValueError(f"A precomputed embedding must have shape (B, L, E); got {tuple(cond.shape)}.")
            return cond.to(self.device).expand(n, -1, -1) if len(cond) == 1 else cond.to(self.device)
        prompts = [""] * n if cond is None else ([cond] * n if isinstance(cond, str) else list(cond))
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"Give one prompt string, or {n} of them, for a text-conditional model.")
        return torch.cat([self._encode_prompt(p) for p in prompts])

    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("This text-conditional model has no text encoder or tokenizer; pass a precomputed embedding.")
        if prompt not in self._prompt_cache:
            from memviz.text import encode_text

            self._prompt_cache[prompt] = encode_text(self.text_encoder, self.tokenizer, [prompt], self.device)
        return self._prompt_cache[prompt]

    # ---- checks -------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.sample_shape or x.ndim != 4:
            raise ValueError(f"x_t must have shape (B, {', '.join(map(str, self.sample_shape))}); "
                             f"got {tuple(getattr(x, 'shape', ()))}.")

    def check_points(self, x: torch.Tensor) -> None:
        """The shape check, plus finiteness: an estimate at NaN would be NaN. x: (B, C, H, W)."""
        self._check_x(x)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values; no estimate is defined at such points.")

    def _batch_t(self, t, n: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=device)
        _check_t(t)
        if t.ndim == 0:
            return t.expand(n)
        if t.shape != (n,):
            raise ValueError(f"t must be a float or a tensor of shape ({n},); got {tuple(t.shape)}.")
        return t

    # ---- sampling -----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, cond: Cond = None, steps: int = 50, guidance_scale: float | None = None,
               seed: int = 0, scheduler: str = "ddim", batch_size: int = 256, progress: bool = False,
               return_trajectory: bool = False) -> SampleOutput:
        """Generate ``n`` samples with a diffusers scheduler, reproducibly from ``seed``.

        Args:
            scheduler ("ddim" or "ddpm", defaults to "ddim"): built from the training
                scheduler's config; DDIM is deterministic (eta = 0) given the noise.
            guidance_scale: defaults to the model's recommended value (``meta``) or 1.
            return_trajectory: also keep x_t at every step (``SampleOutput.trajectory``).

        Returns:
            SampleOutput with images in [0, 1] and the initial noise.
        """
        if n < 1 or steps < 1:
            raise ValueError(f"n and steps must be positive; got n={n}, steps={steps}.")
        w = float(guidance_scale if guidance_scale is not None else self.meta.get("guidance_scale", 1.0))
        gen = torch.Generator("cpu").manual_seed(seed)
        noise = self.initial_noise(n, gen)
        sched = self._sampler(scheduler, steps)
        parts = [self._denoise(noise[i:i + batch_size], rows_of(cond, i, batch_size), w, sched, gen, progress,
                               return_trajectory) for i in range(0, n, batch_size)]
        x0 = torch.cat([p[0] for p in parts]).cpu()
        traj = torch.cat([p[1] for p in parts], dim=1) if return_trajectory else None
        ts = sched.timesteps.float().cpu() / self.T if return_trajectory else None
        return SampleOutput(self.decode(x0), x0, noise, seed, steps, w, cond, traj, ts)

    def initial_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """x_T ~ N(0, I): (n, C, H, W) on the CPU, drawn as ``sample`` draws it."""
        return torch.randn((n, *self.sample_shape), generator=generator)

    def sampling_times(self, steps: int = 50, scheduler: str = "ddim") -> torch.Tensor:
        """(steps,) the diffusion times t = tau / T of a sampler's steps, first (noisiest) first."""
        return self._sampler(scheduler, steps).timesteps.float().cpu() / self.T

    def _sampler(self, scheduler: str, steps: int):
        cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}.get(scheduler)
        if cls is None:
            raise ValueError(f"Unknown scheduler {scheduler!r}; use 'ddim' or 'ddpm'.")
        sched = cls.from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        return sched

    def _denoise(self, noise, cond, w, sched, gen, progress, keep: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sampling loop of a diffusers pipeline: for each step, the (guided) model output
        and one scheduler step. Returns x_0 and, if ``keep``, x_t at every step (S, B, ...)."""
        from tqdm.auto import tqdm

        x = noise.to(self.device) * sched.init_noise_sigma
        kept = []
        for k in tqdm(sched.timesteps, disable=not progress, desc="sample"):
            if keep:
                kept.append(x.cpu())
            tau = torch.full((len(x),), float(k), device=self.device)
            out = self._guided_output(sched.scale_model_input(x, k), tau, cond, w)
            x = sched.step(out, k, x, generator=gen).prev_sample
        return x, (torch.stack(kept) if keep else None)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Pixel images (B, C, H, W) in [-1, 1] to the model's space: the VAE posterior mean times
        ``scaling_factor`` for latent models (as Stable Diffusion's training encodes), unchanged for
        pixel models. Returns (B, C', H', W') on the CPU."""
        if not torch.is_tensor(images) or images.ndim != 4 or tuple(images.shape[1:]) != self.pixel_shape:
            raise ValueError(f"Images must have shape (B, {', '.join(map(str, self.pixel_shape))}) for this model; "
                             f"got {tuple(getattr(images, 'shape', ()))}.")
        if self.vae is None:
            return images
        f = self.vae.config.scaling_factor
        return torch.cat([self.vae.encode(images[i:i + batch_size].to(self.device)).latent_dist.mean.cpu() * f
                          for i in range(0, len(images), batch_size)])

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space samples (B, C, H, W) to pixel images in [0, 1]."""
        if self.vae is not None:
            with torch.no_grad():
                x0 = self.vae.decode(x0.to(self.device) / self.vae.config.scaling_factor).sample.cpu()
        return ((x0 + 1) / 2).clamp(0, 1)

    # ---- disk ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        use_safetensors: bool = True) -> "DiffusionModel":
        """Load a local diffusers folder (``model_index.json``, or ``unet/`` and ``scheduler/``).

        Local files only; safetensors weights only unless ``use_safetensors=False``.
        A missing or broken folder raises ``ValueError`` naming what is wrong.
        """
        from memviz.loading import load_components

        parts = load_components(Path(path), use_safetensors=use_safetensors)
        return cls(**parts, device=device)

    def save_pretrained(self, path: str | Path) -> None:
        """Save as a diffusers folder plus ``memviz.json`` (safetensors weights)."""
        save_model_folder(path, self.unet, self.scheduler, self.meta)


def save_model_folder(path: str | Path, unet, scheduler, meta: dict | None = None) -> Path:
    """Write ``unet/``, ``scheduler/``, ``model_index.json`` and ``memviz.json`` to ``path``.

    Each part is written to a temporary folder and swapped in, so a crash never leaves
    a half-written part. The folder also loads with ``diffusers.DDPMPipeline.from_pretrained``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, part in (("unet", unet), ("scheduler", scheduler)):
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=path))
        part.save_pretrained(tmp, **({"safe_serialization": True} if name == "unet" else {}))
        old = path / f".{name}.old"
        if (path / name).exists():
            (path / name).rename(old)
        tmp.rename(path / name)
        shutil.rmtree(old, ignore_errors=True)
    pipeline = "DDPMPipeline" if isinstance(unet, UNet2DModel) else "DiffusionPipeline"
    write_json(path / "model_index.json", {
        "_class_name": pipeline, "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", type(scheduler).__name__], "unet": ["diffusers", type(unet).__name__]})
    meta = dict(meta or {})
    if isinstance(unet, UNet2DModel) and unet.config.num_class_embeds is not None:
        meta.setdefault("null_class", unet.config.num_class_embeds - 1)
    write_json(path / META, meta)
    return path


def _check_t(t: torch.Tensor) -> None:
    # t = 0 is the first training step tau = 0, where sigma = sqrt(1 - abar_0) is still positive
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError("t must lie in [0, 1] (continuous diffusion time; tau = t * T is the scheduler step).")


def rows_of(cond: Cond, start: int, size: int) -> Cond:
    """The rows [start, start + size) of a per-row condition; any other condition as it is."""
    return cond[start:start + size] if _is_per_row(cond) else cond


def _is_per_row(cond: Cond) -> bool:
    """A condition with one entry per row (labels, prompts, or embeddings (B > 1, L, E)), sliced with the batch."""
    if isinstance(cond, (list, tuple)):
        return True
    return torch.is_tensor(cond) and (cond.ndim == 1 or (cond.ndim == 3 and len(cond) > 1))
