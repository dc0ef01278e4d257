"""Asthana and Belagiannis (ICLR 2026): memorization from the anisotropy of the guidance
direction, on pure noise, with forward passes only.

For x_T ~ N(0, I) and the 50-step schedule tau_1 > ... > tau_50 of the sampler (DDIM):
- the norm, at the first time tau_1 (the paper's code keeps Jeon's name "hvp" for it, but
  its Hessian-vector product is commented out: it is Wen's first-step norm)

      norm(x_T, c) = || eps(x_T, tau_1 | c) - eps(x_T, tau_1 | null) ||;

  for v-prediction models (SD v2) their score difference, i.e. the same norm / sigma(tau_1)^2;
- the cosine, on the same x_T at the third-to-last time tau_48, between the unconditional
  output and the guidance direction, per pixel over the channels, then averaged over pixels

      cos(x_T, c) = mean_{h,w} cos( o_u[:, h, w], o_c[:, h, w] - o_u[:, h, w] ),

  with o the model's own prediction (eps, or v for v-prediction models), as in their code;
- the score g1 * norm + g2 * cos, with the paper's weights per model family (their
  ``detect_eval.py``): SD v1 (1, 2), SD v2 (1, 0.1), and for any other model their third
  setting (2, 1), memviz's documented default; ``memviz eval-detection --calibrate`` fits
  them on a calibration split of prompts instead.
Each part costs one batched conditional-and-unconditional call: 2 calls a query.
"""

from __future__ import annotations

import torch

from memviz.detect.registry import Detector, register

WEIGHTS = {"sd-v1": (1.0, 2.0), "sd-v2": (1.0, 0.1), "other": (2.0, 1.0)}
PAPER = "Asthana and Belagiannis, ICLR 2026"


def weights(model) -> tuple[float, float]:
    """(g1, g2) of the combined score for this model's family (``DiffusionModel.family``; ``WEIGHTS``)."""
    return WEIGHTS[model.family or "other"]


def norm_part(p) -> torch.Tensor:
    """(m,) ||eps_c - eps_u|| at the first time (/ sigma^2 for v-prediction). p: a ``Noise``."""
    out_c, out_u, x, t = p.outputs(0)
    t_b = torch.full((len(x),), t)
    diff = p.model.to_eps(out_c, x, t_b) - p.model.to_eps(out_u, x, t_b)
    scale = p.model.sigma(t) ** 2 if p.model.prediction_type == "v_prediction" else 1.0
    return diff.flatten(1).double().norm(dim=1) / scale


def cos_part(p) -> torch.Tensor:
    """(m,) pixel-averaged channel cosine of o_u and o_c - o_u at the third-to-last time. p: a ``Noise``."""
    out_c, out_u, _, _ = p.outputs(-3)
    cos = torch.nn.functional.cosine_similarity(out_u.double(), (out_c - out_u).double(), dim=1)  # (m, H, W)
    return cos.flatten(1).mean(1)


def combined(p) -> torch.Tensor:
    """(m,) g1 * norm + g2 * cos with the family's weights."""
    g1, g2 = weights(p.model)
    return g1 * norm_part(p) + g2 * cos_part(p)


_NEEDS = ("condition", "pure noise", "unconditional output")
register(
    Detector(
        "asthana",
        ("prompt",),
        _NEEDS,
        +1,
        "2 batched (conditional + unconditional) forward calls",
        lambda d, p: 2,
        PAPER + " (g1 norm + g2 cosine)",
        noise=combined,
    )
)
register(
    Detector(
        "asthana-norm",
        ("prompt",),
        _NEEDS,
        +1,
        "1 batched forward call",
        lambda d, p: 1,
        PAPER + " (the norm at the first step)",
        noise=norm_part,
    )
)
register(
    Detector(
        "asthana-cos",
        ("prompt",),
        _NEEDS,
        +1,
        "1 batched forward call",
        lambda d, p: 1,
        PAPER + " (the cosine at the third-to-last step)",
        noise=cos_part,
    )
)
