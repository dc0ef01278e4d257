"""``DiffusionModel``: the one adapter between memviz's estimators and a diffusers model.

Everything else in memviz sees a model only through this class, in continuous time
t in [0, 1] (t = tau / T) of the variance-preserving process

    x_t = alpha(t) x_0 + sigma(t) eps,    alpha(t)^2 + sigma(t)^2 = 1,

with the noise prediction ``eps(x_t, t)`` and the score ``s(x_t, t) = -eps / sigma(t)``
(Song et al. 2021, eq. for VP SDEs). Schedulers, prediction types and latent spaces are
handled here and nowhere else; conditions in ``memviz.model.conditioning`` (inherited), the
sampling loop in ``memviz.model.sampling``, folders on disk in ``memviz.model.loading``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from memviz.data.base import to_unit
from memviz.model import sampling
from memviz.model.conditioning import Cond, Conditioning, rows_of  # noqa: F401 - Cond and rows_of: the model's API
from memviz.model.sampling import SampleOutput

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DiffusionModel(Conditioning):
    """A diffusers denoiser seen as eps(x_t, t) and score(x_t, t) in continuous time.

    Args:
        unet (UNet2DModel | UNet2DConditionModel): the denoiser.
        scheduler: the training scheduler (its ``alphas_cumprod``, ``num_train_timesteps``
            and ``prediction_type`` define the process).
        vae: the autoencoder of a latent model.
        text_encoder: the text encoder of a text-conditional model.
        tokenizer: its tokenizer.
        meta (dict, defaults to {}): memviz metadata (class names, null class, ground truth).
        device (str | torch.device): where the UNet runs; defaults to CUDA when present, else CPU.

    Example:
        >>> model = DiffusionModel.from_pretrained("demo-mnist")
        >>> x_t = torch.randn(2, *model.sample_shape)
        >>> model.score(x_t, 0.5, cond="3").shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        unet,
        scheduler,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        meta: dict | None = None,
        device: str | torch.device | None = None,
        half: bool | None = None,
    ):
        if not all(hasattr(getattr(unet, "config", None), k) for k in ("sample_size", "in_channels")):
            raise ValueError(
                f"unet must be a diffusers UNet2DModel or UNet2DConditionModel (or a module with "
                f"their call signature and config), not {type(unet).__name__}."
            )
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type {self.prediction_type!r} is not supported; use one of {PREDICTION_TYPES}."
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._unet = unet  # built on first use when lazy (memviz.model.loading.LazyUNet)
        self._unet_lock = threading.Lock()
        if self.is_built:
            self.unet = unet
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
        self.unet_calls = 0  # UNet forward calls so far (memviz.detect.cost.Meter reads it)

    # ---- what the model is ------------------------------------------------------------
    @property
    def is_built(self) -> bool:
        """False while a lazy UNet (``memviz.model.loading.LazyUNet``, which has ``load``) waits for its first use."""
        return not hasattr(self._unet, "load")

    @property
    def unet(self):
        """The denoiser, float32, in eval mode, without gradients (autograd paths need float32); a lazy
        one (``from_pretrained(lazy=True)``) is built here on first use."""
        if not self.is_built:
            with self._unet_lock:
                if not self.is_built:
                    # built in a thread of its own: the caller may be inside a torch.func transform (its
                    # state is per thread), where moving parameters to a device or dtype is refused
                    built: dict = {}

                    def build() -> None:
                        try:
                            built["unet"] = self._unet.load().to(self.device).float().eval().requires_grad_(False)
                        except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
                            built["error"] = exc

                    worker = threading.Thread(target=build, name="memviz-unet")
                    worker.start()
                    worker.join()
                    if "error" in built:
                        raise built["error"]
                    self._unet = built["unet"]
        return self._unet

    @unet.setter
    def unet(self, unet) -> None:
        self._unet = unet.to(self.device).float().eval().requires_grad_(False)

    @property
    def unet_config(self):
        """The UNet's config (attributes), read without building a lazy UNet."""
        return self._unet.config

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of x_t in the model's space."""
        size = self.unet_config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet_config.in_channels), int(h), int(w))

    @property
    def family(self) -> str | None:
        """ "sd-v1" or "sd-v2" for a Stable Diffusion checkpoint (latent, text width 768 or 1024), else None."""
        width = getattr(self.unet_config, "cross_attention_dim", None)
        if self.vae is None or width not in (768, 1024):
            return None
        return "sd-v1" if width == 768 else "sd-v2"

    @property
    def guidance_scale(self) -> float:
        """The recommended classifier-free guidance w, the one rule for every default: ``meta``'s
        value, else 7.5 for Stable Diffusion (the scale of its release and of the detection papers'
        protocol: Wen et al., Jeon et al.), else 1 (the plain conditional prediction)."""
        if "guidance_scale" in self.meta:
            return float(self.meta["guidance_scale"])
        return 7.5 if self.family else 1.0

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
        w = tau.cpu() - lo
        log_abar = (1 - w) * self._log_abar[lo] + w * self._log_abar[(lo + 1).clamp(max=self.T - 1)]
        value = fn(log_abar)
        if not isinstance(t, torch.Tensor):
            return float(value)
        return value.to(t.device, t.dtype if t.is_floating_point() else torch.float32)

    # ---- eps and score ----------------------------------------------------------------
    def eps(
        self, x_t: torch.Tensor, t: float | torch.Tensor, cond: Cond = None, guidance_scale: float | None = None
    ) -> torch.Tensor:
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
        return self.to_eps(out, x_t, t)

    def score(
        self, x_t: torch.Tensor, t: float | torch.Tensor, cond: Cond = None, guidance_scale: float | None = None
    ) -> torch.Tensor:
        """s(x_t, t) = grad log p_t(x_t) = -eps(x_t, t) / sigma(t).  x_t: (B, C, H, W)."""
        t_b = self._batch_t(t, len(x_t), x_t.device)
        return -self.eps(x_t, t_b, cond, guidance_scale) / self.sigma(t_b).view(-1, 1, 1, 1)

    def to_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
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
            return self.output(x, tau, cond)
        out_c, out_u = self.output(torch.cat([x, x]), torch.cat([tau, tau]), cond, double=True).chunk(2)
        return out_u + guidance_scale * (out_c - out_u)

    def output(self, x: torch.Tensor, tau: torch.Tensor, cond: Cond, double: bool = False) -> torch.Tensor:
        """The raw UNet output at scheduler steps tau (B,); ``double``: x holds the conditional rows
        then the same rows again, run unconditional (one batched call for guidance)."""
        unet = self.unet
        self.unet_calls += 1
        if self.half and not torch.is_grad_enabled():  # no gradient flows: a float16 copy of the UNet
            unet, x = self.unets()[-1], x.half()
        kwargs = self.unet_inputs(cond, len(x) // 2 if double else len(x), double)
        kwargs = {k: v.to(x.dtype) if v.is_floating_point() else v for k, v in kwargs.items()}
        emb = kwargs.pop("class_embedding", None)  # a given class embedding: the conditional rows' layer output
        hook = (
            None
            if emb is None
            else unet.class_embedding.register_forward_hook(
                lambda module, args, out: torch.cat([emb.to(out.dtype), out[len(emb) :]])
            )
        )
        try:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=unet is self._unet_half):
                return unet(x, tau, **kwargs).sample.float()
        finally:
            if hook is not None:
                hook.remove()

    def unets(self) -> list:
        """The UNet, and its float16 copy (made here, once) when the model runs in half precision."""
        if self.half and self._unet_half is None:
            import copy

            self._unet_half = copy.deepcopy(self.unet).half()
        return [self.unet] + ([self._unet_half] if self.half else [])

    # ---- checks -------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.sample_shape or x.ndim != 4:
            raise ValueError(
                f"x_t must have shape (B, {', '.join(map(str, self.sample_shape))}); "
                f"got {tuple(getattr(x, 'shape', ()))}."
            )

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

    # ---- sampling (memviz.model.sampling) --------------------------------------------------
    def sample(
        self, n: int, cond: Cond = None, steps: int = 50, guidance_scale=None, seed: int = 0, **kwargs
    ) -> SampleOutput:
        """``memviz.model.sampling.sample`` of this model: n generations, seeded, with its seams
        (``noise``, ``callback``, a guidance schedule)."""
        return sampling.sample(self, n, cond, steps, guidance_scale, seed, **kwargs)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Pixel images (B, C, H, W) in [-1, 1] to the model's space: the VAE posterior mean times
        ``scaling_factor`` for latent models (as Stable Diffusion's training encodes), unchanged for
        pixel models. Returns (B, C', H', W') on the CPU."""
        if not torch.is_tensor(images) or images.ndim != 4 or tuple(images.shape[1:]) != self.pixel_shape:
            raise ValueError(
                f"Images must have shape (B, {', '.join(map(str, self.pixel_shape))}) for this model; "
                f"got {tuple(getattr(images, 'shape', ()))}."
            )
        if self.vae is None:
            return images
        f = self.vae.config.scaling_factor
        return torch.cat(
            [
                self.vae.encode(images[i : i + batch_size].to(self.device)).latent_dist.mean.cpu() * f
                for i in range(0, len(images), batch_size)
            ]
        )

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space samples (B, C, H, W) to pixel images in [0, 1]."""
        if self.vae is not None:
            with torch.no_grad():
                x0 = self.vae.decode(x0.to(self.device) / self.vae.config.scaling_factor).sample.cpu()
        return to_unit(x0)

    # ---- disk ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device | None = None, lazy: bool = False
    ) -> "DiffusionModel":
        """Load a bundled demo by name ("demo-mnist") or a local diffusers folder (``model_index.json``,
        or ``unet/`` and ``scheduler/``). ``lazy``: build the UNet on first use (its config, weights'
        header and fingerprint are read now), so that what reads only stored artifacts starts seconds
        sooner.

        Local files only; safetensors weights only (pickled weights are refused, never unpickled).
        A missing or broken folder raises ``ValueError`` naming what is wrong.
        """
        from memviz.model.loading import load_components, model_path

        parts = load_components(model_path(path), lazy=lazy)
        return cls(**parts, device=device)

    def save_pretrained(self, path: str | Path) -> None:
        """Save as a diffusers folder plus ``memviz.json`` (safetensors weights)."""
        from memviz.model.loading import save_model_folder

        save_model_folder(path, self.unet, self.scheduler, self.meta)


def _check_t(t: torch.Tensor) -> None:
    # t = 0 is the first training step tau = 0, where sigma = sqrt(1 - abar_0) is still positive
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError("t must lie in [0, 1] (continuous diffusion time; tau = t * T is the scheduler step).")
