"""Hessian eigenvalue spectra of the learned log density (Jeon, Kim, No; ICML 2025):
exact for small images, Lanczos / Arnoldi for large ones, SLQ densities, summaries and
Jeon's detection score."""

from memviz.hessian.density import SpectralDensity, slq
from memviz.hessian.operator import ScoreJacobian
from memviz.hessian.sharpness import jeon_score
from memviz.hessian.spectrum import (
    EXACT_MAX_DIM,
    METHODS,
    TrajectorySpectra,
    density,
    spectrum,
    spectrum_at,
    trajectory_spectra,
)
from memviz.hessian.summary import default_tau, summarize, summarize_density

__all__ = ["EXACT_MAX_DIM", "METHODS", "ScoreJacobian", "SpectralDensity", "TrajectorySpectra", "default_tau",
           "density", "jeon_score", "slq", "spectrum", "spectrum_at", "summarize", "summarize_density",
           "trajectory_spectra"]
