"""The one adapter and the one sampler: ``DiffusionModel`` (eps, score, alpha(t), sigma(t)) over a
diffusers UNet and its scheduler (``adapter``), how a model folder is found and loaded
(``loading``), class labels, prompts and classifier-free guidance (``conditioning``, ``text``),
generation with its seams (``sampling``), reverse-mode Jacobian products (``autodiff``), the
cross-attention capture (``attention``), the toy MLP denoiser (``toy``) and denoisers in closed
form for known-answer tests (``closed_form``).

May import ``memviz.io`` and ``memviz.data``; estimators, detectors and the Study import it.
"""

from memviz.model.adapter import Cond, DiffusionModel

__all__ = ["Cond", "DiffusionModel"]
