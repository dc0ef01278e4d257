"""Hessian eigenvalue spectra of the learned log density (Jeon, Kim, No; ICML 2025):
exact for small images, Lanczos / Arnoldi for large ones, SLQ densities and summaries.
Jeon's detection score is a detector (``memviz.detect.jeon``).

May import ``memviz.io``, ``data`` and ``model`` (the score's Jacobian through the adapter only)."""

from memviz.hessian.density import SpectralDensity, slq
from memviz.hessian.operator import ScoreJacobian
from memviz.hessian.spectrum import (
    METHODS,
    TrajectorySpectra,
    affordable_method,
    density,
    spectrum,
    spectrum_at,
    trajectory_spectra,
)
from memviz.hessian.summary import default_tau, summarize, summarize_density

__all__ = [
    "METHODS",
    "ScoreJacobian",
    "SpectralDensity",
    "TrajectorySpectra",
    "affordable_method",
    "default_tau",
    "density",
    "slq",
    "spectrum",
    "spectrum_at",
    "summarize",
    "summarize_density",
    "trajectory_spectra",
]
