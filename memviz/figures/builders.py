"""Pure figure builders (no streamlit): image grids and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from memviz.io.files import atomic_path

LOG_TICKS = {"dtick": "D2"}  # every log axis: ticks at 1, 2 and 5 of each decade, never every digit


def image_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile images (B, C, H, W) in [0, 1] (a tensor or an array) into one uint8 array (H', W', 3).

    Written by hand because torchvision (which has ``make_grid``) has no CPU build here.
    """
    images = torch.as_tensor(images).detach().cpu().float().clamp(0, 1)
    b, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(
            f"Only grey (1) or RGB (3) images tile into a grid; these have {c} channels (points? save them as .npz)."
        )
    nrow = nrow or int(np.ceil(np.sqrt(b)))
    ncol = int(np.ceil(b / nrow))
    grid = torch.ones(3, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    rgb = images.expand(-1, 3, -1, -1) if c == 1 else images[:, :3]
    for k in range(b):
        r, q = divmod(k, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = rgb[k]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return arr.repeat(scale, 0).repeat(scale, 1) if scale > 1 else arr


def overlay(images: torch.Tensor, mask: np.ndarray, strength: float = 0.6) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] with a mask (B, H, W) in [0, 1] laid over them in red (where
    Bright Ending says the image is copied): (B, 3, H, W) in [0, 1]."""
    rgb = images.detach().cpu().float().clamp(0, 1)
    rgb = rgb.expand(-1, 3, -1, -1) if rgb.shape[1] == 1 else rgb[:, :3]
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if m.shape != (rgb.shape[0], *rgb.shape[2:]):
        raise ValueError(f"The mask must be (B, H, W) = {(rgb.shape[0], *rgb.shape[2:])}; got {tuple(m.shape)}.")
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    a = strength * m.clamp(0, 1)[:, None]
    return (1 - a) * rgb + a * red


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 4) -> Path:
    """Save ``image_grid(images)`` as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path, ".png") as tmp:
        Image.fromarray(image_grid(images, nrow=nrow, scale=scale)).save(tmp, format="PNG")
    return Path(path)


def spectrum_figure(spectra: dict[str, np.ndarray], tau: float | None = None, title: str | None = None, bins: int = 60):
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
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, len(ev) + 1),
                y=ev,
                mode="lines+markers",
                name=name,
                legendgroup=name,
                marker={"size": 3, "color": color},
                line={"color": color},
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Histogram(
                x=ev, nbinsx=bins, name=name, legendgroup=name, showlegend=False, opacity=0.6, marker_color=color
            ),
            row=1,
            col=2,
        )
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


def flipd_curve_figure(
    ts: np.ndarray,
    curves: dict[str, np.ndarray],
    t0: float | None = None,
    lid_star: dict[str, float] | None = None,
    title: str | None = None,
):
    """FLIPD against t (log axis) for each named curve, with t0 marked and LID* as horizontal
    lines: LID_theta next to LID* at a glance. ts: (T,); curves: name -> (T,)."""
    import plotly.graph_objects as go

    ts = np.asarray(ts, dtype=float)
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        curve = np.asarray(curve, dtype=float)
        if curve.shape != ts.shape or not np.isfinite(curve).all():
            raise ValueError(f"The curve {name!r} must be finite with one value per t ({len(ts)}).")
        fig.add_trace(
            go.Scatter(x=ts, y=curve, mode="lines+markers", name=name, line={"color": _PALETTE[i % len(_PALETTE)]})
        )
    for j, (name, value) in enumerate((lid_star or {}).items()):
        fig.add_hline(
            y=float(value),
            line_dash="dash",
            line_color=_PALETTE[(j + 3) % len(_PALETTE)],
            annotation_text=f"LID* {name} = {value:.1f}",
            annotation_position="top left",
        )
    if t0 is not None:
        fig.add_vline(x=float(t0), line_dash="dot", line_color="grey", annotation_text=f"t0 = {t0:g}")
    fig.update_xaxes(type="log", title_text="t", **LOG_TICKS)
    fig.update_yaxes(title_text="FLIPD (LID_theta)")
    fig.update_layout(title=title, template="plotly_white")
    return fig


# One colour per MMH verdict (and per planted kind, which names the same two kinds), on every page and
# in every figure; the second entry is Streamlit's name for the same colour (badges and text).
VERDICT_COLOURS = {
    "not memorized": ("#a3a8b8", "gray"),
    "none": ("#a3a8b8", "gray"),
    "OD-Mem": ("#ff8c00", "orange"),
    "DD-Mem": ("#d62728", "red"),
    "not analysed": ("#dcdce6", "light gray"),
}
MAP_POINT_SIZE = {
    10_000: 5,
    100_000: 3,
}  # up to this many points: marker size (smaller beyond, so a dense map stays legible)
MAP_DRAW_MAX = 50_000  # points drawn one by one; beyond, the density of all of them and a seeded sample of this many
DENSITY_BINS = 200  # cells per axis of that density


def map_view(
    xy: np.ndarray, region: tuple | None = None, draw_max: int = MAP_DRAW_MAX, keep=None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """What a map of ``xy`` (N, 2) shows: (the indices inside ``region`` (x0, x1, y0, y1), all when None;
    the indices drawn one by one: every shown point up to ``draw_max``, else ``draw_max`` of them, the
    shown ones of ``keep`` (highlighted points, rare verdicts) and a seeded sample of the rest). Both sorted."""
    xy = np.asarray(xy)
    inside = np.ones(len(xy), bool) if region is None else _in_box(xy, region[:2], region[2:])
    shown = np.flatnonzero(inside)
    if len(shown) <= draw_max:
        return shown, shown
    wanted = np.zeros(len(xy), bool)
    if keep is not None and len(keep):
        keep = np.asarray(keep, dtype=np.int64)
        wanted[keep[(keep >= 0) & (keep < len(xy))]] = True  # masks, not set operations: 10 ms at a million
    kept, rest = np.flatnonzero(wanted & inside), np.flatnonzero(~wanted & inside)
    sample = np.random.default_rng(seed).choice(rest, max(draw_max - len(kept), 0), replace=False)
    return shown, np.sort(np.r_[kept, sample])


def _in_box(xy: np.ndarray, x, y) -> np.ndarray:
    """(N,) whether each point of ``xy`` (N, 2) lies in the box spanned by the x and y values (any order)."""
    return (xy[:, 0] >= min(x)) & (xy[:, 0] <= max(x)) & (xy[:, 1] >= min(y)) & (xy[:, 1] <= max(y))


def points_in_selection(xy: np.ndarray, selection: dict | None) -> np.ndarray:
    """(k,) sorted indices of the points of ``xy`` (N, 2) inside a Plotly selection event's boxes and
    lassos (``{"box": [{"x": [x0, x1], "y": [y0, y1]}], "lasso": [{"x": [...], "y": [...]}]}``),
    drawn or not: a lasso over a map drawn as a density and a sample selects every point it encloses.
    Polygons are tested by matplotlib's ``Path.contains_points``."""
    from matplotlib.path import Path as Polygon

    xy = np.asarray(xy, dtype=np.float64)
    selection = selection if isinstance(selection, dict) else {}
    hit = np.zeros(len(xy), bool)
    for box in selection.get("box") or []:
        x, y = box.get("x") or [], box.get("y") or []
        if len(x) >= 2 and len(y) >= 2:
            hit |= _in_box(xy, x, y)
    for lasso in selection.get("lasso") or []:
        x, y = lasso.get("x") or [], lasso.get("y") or []
        if len(x) >= 3 and len(x) == len(y):
            hit |= Polygon(np.column_stack([x, y])).contains_points(xy)
    return np.flatnonzero(hit)


def map_figure(
    xy: np.ndarray,
    color: np.ndarray | None = None,
    color_name: str = "",
    generated: np.ndarray | None = None,
    highlight: np.ndarray | None = None,
    hover: dict[str, np.ndarray] | None = None,
    title: str | None = None,
    index: np.ndarray | None = None,
    region: tuple | None = None,
    draw_max: int = MAP_DRAW_MAX,
):
    """The UMAP map, drawn with WebGL (``Scattergl``) so that hundreds of thousands of points stay
    interactive: training points coloured by a number (one trace, a colour bar) or by a label (one
    trace per value, verdicts in ``VERDICT_COLOURS``), generated points on top, highlighted ones ringed.
    Every point carries its global index as ``customdata[:, 0]`` (training 0..N-1, generated N..N+Q-1),
    because Plotly's point indices are per trace.

    Beyond ``draw_max`` shown points (a million, say) the map is an overview (``map_view``): the density
    of every shown point as a grey image under a seeded sample of ``draw_max`` points drawn as usual,
    so the browser gets a few MB whatever N is; ``region`` (x0, x1, y0, y1) shows only the points inside
    it, every one of them once they are few enough (detail on zoom). ``fig.layout.meta`` says
    {"total", "shown", "drawn"}.

    Args:
        xy: (N, 2) training coordinates; color: (N,) numbers or labels; generated: (Q, 2);
        highlight: global indices to ring; hover: name -> (N,) numbers shown on hover (sent as
            typed arrays, not N strings); index: (N,) what the hover calls each point (default 0..N-1).
    """
    import plotly.graph_objects as go

    xy_all = np.asarray(xy, dtype=np.float32)  # float32 throughout: half the bytes sent; indices exact to 16.7M
    gen = np.zeros((0, 2)) if generated is None else np.asarray(generated, dtype=float)
    n = len(xy_all)
    names = list(hover or {})
    columns = [np.arange(n), np.arange(n) if index is None else np.asarray(index)]
    for name in names:
        columns.append(np.asarray(hover[name], dtype=float))
        if len(columns[-1]) != n:
            raise ValueError(f"Give one hover value per training point ({n}); {name!r} has {len(columns[-1])}.")
    if color is not None and len(color) != n:
        raise ValueError(f"Give one colour value per training point ({n}); got {len(color)}.")
    keep = np.zeros(0, np.int64) if highlight is None else np.asarray(highlight, dtype=np.int64)
    if color is not None and not np.issubdtype(np.asarray(color).dtype, np.number) and n > draw_max:
        import pandas as pd

        codes, _ = pd.factorize(np.asarray(color))  # hashing, not sorting a million strings
        rare = np.flatnonzero(np.bincount(codes + 1)[codes + 1] < n // 100)  # the rare verdicts matter: all drawn
        keep = np.union1d(keep, rare[: draw_max // 2])
    shown, drawn = map_view(xy_all, region, draw_max, keep=keep)
    xy = xy_all[drawn]
    custom = np.column_stack([c[drawn] for c in columns]).astype(np.float32)
    color = None if color is None else np.asarray(color)[drawn]
    template = "row %{customdata[1]:d}" + "".join(f"<br>{m} %{{customdata[{j + 2}]:.3~g}}" for j, m in enumerate(names))
    size = next((s for limit, s in sorted(MAP_POINT_SIZE.items()) if len(drawn) <= limit), 2)
    marker = {"size": size, "opacity": 0.8 if len(drawn) <= 10_000 else 0.6}
    traces = [] if len(drawn) == len(shown) else [_density(xy_all[shown])]
    if color is None:
        traces.append(
            go.Scattergl(
                x=xy[:, 0],
                y=xy[:, 1],
                name="training",
                marker=marker | {"color": "#1f77b4"},
                customdata=custom,
                hovertemplate=template + "<extra></extra>",
            )
        )
    else:
        if np.issubdtype(color.dtype, np.number):
            traces.append(
                go.Scattergl(
                    x=xy[:, 0],
                    y=xy[:, 1],
                    name="training",
                    customdata=custom,
                    showlegend=False,
                    marker=marker
                    | {
                        "color": color,
                        "colorscale": "Viridis",
                        "showscale": True,
                        "colorbar": {"title": {"text": color_name, "side": "right"}, "thickness": 12},
                    },
                    hovertemplate=template + f"<br>{color_name} %{{marker.color:.3~g}}<extra></extra>",
                )
            )
        else:
            values, codes = np.unique(color.astype(str), return_inverse=True)
            order = sorted(range(len(values)), key=lambda v: (values[v] not in VERDICT_COLOURS, values[v]))
            for k, v in enumerate(order):
                keep = codes == v
                hue = VERDICT_COLOURS.get(values[v], (_PALETTE[k % len(_PALETTE)],))[0]
                traces.append(
                    go.Scattergl(
                        x=xy[keep, 0],
                        y=xy[keep, 1],
                        name=values[v],
                        customdata=custom[keep],
                        marker=marker | {"color": hue},
                        hovertemplate=template + f"<br>{color_name} {values[v]}<extra></extra>",
                    )
                )
    fig = go.Figure([t.update(mode="markers") if isinstance(t, go.Scattergl) else t for t in traces])
    if len(gen):
        fig.add_trace(
            go.Scattergl(
                x=gen[:, 0],
                y=gen[:, 1],
                mode="markers",
                name="generated",
                marker={"size": 9, "symbol": "x", "color": "#111111"},
                customdata=np.arange(n, n + len(gen))[:, None],
                hovertemplate="generated %{customdata[0]}<extra></extra>",
            )
        )
    if highlight is not None and len(highlight):
        everything = np.vstack([xy_all, gen])
        h = np.asarray(highlight, dtype=int)
        fig.add_trace(
            go.Scatter(
                x=everything[h, 0],
                y=everything[h, 1],
                mode="markers",
                name="selected",
                marker={"size": 16, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "black"}},
                customdata=h[:, None],
                hoverinfo="skip",
            )
        )
    # UMAP's axes carry no units: no tick labels, small titles, and the legend above the plot, clear of both
    fig.update_xaxes(title_text="UMAP 1", showticklabels=False, title_standoff=4)
    fig.update_yaxes(title_text="UMAP 2", showticklabels=False, title_standoff=4, scaleanchor=None)
    fig.update_layout(
        title=title,
        template="plotly_white",
        dragmode="lasso",
        hovermode="closest",
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.0,
            "xanchor": "right",
            "x": 1,
            "itemsizing": "constant",
        },
        margin={"l": 30, "r": 10, "t": 80 if title else 40, "b": 30},
        meta={"total": n, "shown": len(shown), "drawn": len(drawn)},
    )
    if region is not None:
        fig.update_xaxes(range=sorted(region[:2]))
        fig.update_yaxes(range=sorted(region[2:]))
    return fig


def _density(xy: np.ndarray):
    """The density of points (N, 2) as a grey heat map (log counts, empty cells transparent) under the
    drawn sample; hover and selection pass through it to the points."""
    import plotly.graph_objects as go

    counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=DENSITY_BINS)
    z = np.where(counts > 0, np.log1p(counts), np.nan).T.astype(np.float32)
    return go.Heatmap(
        z=z,
        x=((xe[:-1] + xe[1:]) / 2).astype(np.float32),
        y=((ye[:-1] + ye[1:]) / 2).astype(np.float32),
        colorscale=[[0, "#e8e8ee"], [1, "#3a3a48"]],
        showscale=False,
        hoverinfo="skip",
        name="density of all points",
        showlegend=False,
    )


def selected_indices(selection: dict) -> np.ndarray:
    """Global indices of the points a Plotly selection event holds (click, box or lasso), from
    their ``customdata``; the event's own point indices are per trace and would mix traces."""
    points = (selection or {}).get("points", []) if isinstance(selection, dict) else []
    out = [_first(p.get("customdata")) for p in points]
    return np.unique(np.asarray([int(v) for v in out if v is not None], dtype=np.int64))


def _first(customdata):
    """A point's first ``customdata`` value: a list, a number, or (typed arrays, as ``map_figure`` sends
    them) a dict keyed by column "0", "1", ..."""
    if isinstance(customdata, dict):
        return customdata.get("0", customdata.get(0))
    return customdata[0] if isinstance(customdata, (list, tuple)) else customdata


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str | None = None):
    """ROC curves: name -> (fpr, tpr, auroc), with the chance diagonal and 1% FPR marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{name} (AUROC {auc:.3f})",
                line={"color": _PALETTE[i % len(_PALETTE)], "shape": "hv"},
            )
        )
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"}))
    fig.add_vline(x=0.01, line_dash="dot", line_color="grey", annotation_text="1% FPR")
    fig.update_layout(
        title=title, template="plotly_white", xaxis_title="false positive rate", yaxis_title="true positive rate"
    )
    return fig


def cost_figure(rows, title: str | None = None):
    """AUROC against seconds per query (log), one point per detector and setting, with its 95%
    interval as an error bar: the cheapest good detector sits top left.

    Args:
        rows: a pandas.DataFrame of eval-detection rows (``memviz.detect.KEYS``) of one level and split.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, part) in enumerate(rows.groupby("detector", sort=False)):
        label = [f"n = {n}" if n == n and n is not None else "" for n in part.n]
        label = [f"{a}, {s:g} steps" if s == s and s is not None else a for a, s in zip(label, part.steps)]
        label = [
            f"{a}, {st}" if st else a
            for a, st in zip(label, part.setting.astype(object).where(part.setting.notna(), ""))
        ]
        fig.add_trace(
            go.Scatter(
                x=part.seconds_per_query.clip(lower=1e-4),
                y=part.auroc,
                mode="markers",
                name=name,
                text=label,
                marker={
                    "color": _PALETTE[i % len(_PALETTE)],
                    "size": 9,
                    "symbol": ["circle", "square", "diamond", "triangle-up", "x", "star"][i // len(_PALETTE) % 6],
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": part.auroc_high - part.auroc,
                    "arrayminus": part.auroc - part.auroc_low,
                    "thickness": 1,
                },
                hovertemplate="%{fullData.name}<br>%{text}<br>AUROC %{y:.3f}<br>%{x:.3g} s per query<extra></extra>",
            )
        )
    fig.add_hline(
        y=0.5, line_dash="dot", line_color="grey", annotation_text="chance", annotation_position="bottom right"
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="seconds per query (log)",
        yaxis_title="AUROC (95% interval)",
        xaxis=dict(type="log", **LOG_TICKS),
        yaxis_range=[-0.02, 1.05],
    )
    return fig


def pareto_figure(rows, title: str | None = None):
    """Copy rate against utility, one point per mitigation and knob setting (its mean over the prompts;
    utility over those with a label to keep), a method's settings joined in knob order (a sweep), and
    the Pareto front (no other point copies less and keeps more) dotted: the best sit bottom right.

    Args:
        rows: a pandas.DataFrame of ``memviz.mitigate.lab`` rows (method, knob, copy_rate, utility,
            seconds, model_calls), or a ``sweep`` table (the same columns, one row per setting).
    """
    import plotly.graph_objects as go

    from memviz.mitigate.lab import pareto_front

    rows = rows.assign(knob=rows["knob"] if "knob" in rows else None)
    per = (
        rows.assign(setting=rows.knob.astype(float))
        .groupby(["method", "setting"], sort=False, dropna=False)
        .agg(
            copy_rate=("copy_rate", "mean"),
            utility=("utility", "mean"),
            seconds=("seconds", "sum"),
            calls=("model_calls", "sum"),
        )
        .reset_index()
    )
    swept = per.method.duplicated(keep=False)
    per["name"] = [f"{m} {v:g}" if w and v == v else m for m, v, w in zip(per.method, per.setting, swept)]
    # points that coincide share one label (the first one's, naming them all), placed inside the axes
    spot = list(zip(per.utility.round(3), per.copy_rate.round(3)))
    names: dict = {}
    for at, name in zip(spot, per.name):
        names.setdefault(at, []).append(name)
    per["label"] = [", ".join(names[at]) if names[at][0] == name else "" for at, name in zip(spot, per.name)]
    fig = go.Figure()
    for i, (name, g) in enumerate(per.groupby("method", sort=False)):
        g = g.sort_values("setting")
        fig.add_trace(
            go.Scatter(
                x=g.utility,
                y=g.copy_rate,
                mode="lines+markers+text" if len(g) > 1 else "markers+text",
                name=name,
                text=g.label,
                textposition=["top left" if u > 0.7 else "top right" for u in g.utility],
                marker={"size": 10 if len(g) > 1 else 12, "color": _PALETTE[i % len(_PALETTE)]},
                customdata=np.stack([g.seconds, g.calls], axis=1),
                hovertext=g.name,
                hovertemplate="%{hovertext}<br>copy rate %{y:.0%}<br>utility %{x:.0%}<br>%{customdata[0]:.3g} s, "
                "%{customdata[1]:.0f} model calls<extra></extra>",
            )
        )
    edge = per[pareto_front(per.copy_rate, per.utility)].sort_values("utility")
    if len(edge) > 1:
        fig.add_trace(
            go.Scatter(
                x=edge.utility,
                y=edge.copy_rate,
                mode="lines",
                name="Pareto front",
                line={"dash": "dot", "color": "grey"},
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="utility (share showing the prompt's label)",
        yaxis_title="copy rate",
        xaxis_range=[-0.05, 1.05],
        yaxis_range=[-0.05, 1.1],
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        showlegend=False,
    )
    return fig


def attribution_figure(attribution: list, dropped_at: list | None = None, title: str | None = None):
    """Each word's share of the memorization score's gradient (``memviz.mitigate.prompt_edit``), in
    prompt order, the dropped words in red: which words a copy hangs on.

    Args:
        attribution: [(word, attribution)] in prompt order; dropped_at: the dropped words' positions.
    """
    import plotly.graph_objects as go

    words = [w for w, _ in attribution]
    a = np.asarray([v for _, v in attribution], dtype=float)
    share = a / a.sum() if a.sum() > 0 else a
    gone = set(dropped_at or [])
    fig = go.Figure(
        go.Bar(
            x=[f"{i + 1}. {w}" for i, w in enumerate(words)],
            y=share,
            marker_color=[_PALETTE[1] if i in gone else "#9aa5b1" for i in range(len(words))],
            hovertemplate="%{x}<br>%{y:.1%} of the attribution<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="word (red: dropped)",
        yaxis_title="share of attribution",
        yaxis_tickformat=".0%",
        showlegend=False,
    )
    return fig
