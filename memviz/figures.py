"""Pure figure builders (no streamlit): image grids and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memviz._io import atomic_path


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile images (B, C, H, W) in [0, 1] into one uint8 array (H', W', 3).

    Written by hand because torchvision (which has ``make_grid``) has no CPU build here.
    """
    images = images.detach().cpu().float().clamp(0, 1)
    b, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"Only grey (1) or RGB (3) images tile into a grid; these have {c} channels "
                         "(points? save them as .npz).")
    nrow = nrow or int(np.ceil(np.sqrt(b)))
    ncol = int(np.ceil(b / nrow))
    grid = torch.ones(3, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    rgb = images.expand(-1, 3, -1, -1) if c == 1 else images[:, :3]
    for k in range(b):
        r, q = divmod(k, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = rgb[k]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return arr.repeat(scale, 0).repeat(scale, 1) if scale > 1 else arr


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    """Save ``image_grid(images)`` as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path, ".png") as tmp:
        Image.fromarray(image_grid(images, nrow=nrow, scale=scale)).save(tmp, format="PNG")
    return Path(path)


def spectrum_figure(spectra: dict[str, np.ndarray], tau: float | None = None, title: str | None = None,
                    bins: int = 60):
    """Hessian spectra side by side: sorted eigenvalues (left) and their histogram (right), with
    -tau and +tau marked. A pure builder: data in, ``plotly.graph_objects.Figure`` out.

    Args:
        spectra: name -> (m,) real eigenvalues (for instance one sample, or a planted and an ordinary one).
        tau: the threshold of the counts (``memviz.hessian.default_tau``), or None for no marks.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("sorted eigenvalues", "histogram"), horizontal_spacing=0.1)
    for i, (name, ev) in enumerate(spectra.items()):
        ev = np.sort(np.asarray(ev, dtype=float).ravel())
        if not np.isfinite(ev).all():
            raise ValueError(f"The spectrum {name!r} has NaN or infinite values.")
        color = _PALETTE[i % len(_PALETTE)]
        fig.add_trace(go.Scatter(x=np.arange(1, len(ev) + 1), y=ev, mode="lines+markers", name=name, legendgroup=name,
                                 marker={"size": 3, "color": color}, line={"color": color}), row=1, col=1)
        fig.add_trace(go.Histogram(x=ev, nbinsx=bins, name=name, legendgroup=name, showlegend=False, opacity=0.6,
                                   marker_color=color), row=1, col=2)
    if tau is not None:
        for sign in (-1, 1):
            fig.add_hline(y=sign * tau, line_dash="dot", line_color="grey", row=1, col=1)
            fig.add_vline(x=sign * tau, line_dash="dot", line_color="grey", row=1, col=2)
    fig.update_layout(barmode="overlay", title=title, template="plotly_white", legend_title_text="")
    fig.update_xaxes(title_text="index", row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue", row=1, col=1)
    fig.update_xaxes(title_text="eigenvalue", row=1, col=2)
    fig.update_yaxes(title_text="count", row=1, col=2)
    return fig


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
