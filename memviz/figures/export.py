"""Export for papers: figures as PNG, SVG, PDF (kaleido with the system's Chrome or Chromium)
and self-contained HTML; tables as CSV and Parquet; a zip "figure pack" of a view with the
JSON settings that made it. Pure functions returning bytes, so the app offers them as
downloads and a notebook writes them to disk.

Static export starts one kaleido browser server for the whole process (``kaleido.start_sync_server``)
instead of one browser per figure. Without a browser on the machine, ``static_export_status``
says what to install, and HTML, CSV and Parquet still work.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import zipfile
from typing import Any

import numpy as np

FIGURE_FORMATS = ("png", "svg", "pdf", "html")
TABLE_FORMATS = ("csv", "parquet")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "Static export (PNG, SVG, PDF) needs Chrome or Chromium: `apt-get install chromium` (or any "
    "Chrome); HTML, CSV and Parquet work without it."
)
_server_lock = threading.Lock()
_server_started = False


def browser_path() -> str | None:
    """The browser kaleido will drive: $BROWSER_PATH, or the first of ``BROWSERS`` on the PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.exists(env):
        return env
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def static_export_status() -> tuple[bool, str]:
    """(available, a sentence for the user)."""
    path = browser_path()
    return (True, f"Static export uses {path}.") if path else (False, INSTALL_HINT)


def figure_bytes(
    fig, fmt: str = "png", width: int | None = None, height: int | None = None, scale: float = 2.0
) -> bytes:
    """The figure in ``fmt`` (one of ``FIGURE_FORMATS``); HTML is self-contained (plotly.js inlined)."""
    fmt = fmt.lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"fmt must be one of {FIGURE_FORMATS}; got {fmt!r}.")
    if fmt == "html":
        return fig.to_html(include_plotlyjs=True, full_html=True).encode()
    ok, message = static_export_status()
    if not ok:
        raise ValueError(message)
    _ensure_server()
    import warnings

    import plotly.io as pio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "kopts is ignored if using a server": the server is the point
        return pio.to_image(fig, format=fmt, width=width, height=height, scale=scale)


def table_bytes(frame, fmt: str = "csv") -> bytes:
    """A pandas.DataFrame as CSV or Parquet bytes."""
    fmt = fmt.lower()
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"fmt must be one of {TABLE_FORMATS}; got {fmt!r}.")


def figure_pack(
    figures: dict[str, Any],
    tables: dict[str, Any] | None = None,
    settings: dict | None = None,
    formats: tuple[str, ...] = FIGURE_FORMATS,
    images: dict[str, Any] | None = None,
) -> bytes:
    """A zip of every figure in every format (static ones only when a browser is present), every
    table as CSV and Parquet, every image grid ((H, W, 3) uint8, ``figures.image_grid``) as PNG,
    and ``settings.json`` (the parameters that made the view)."""
    static_ok, message = static_export_status()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, fig in figures.items():
            for fmt in formats:
                if fmt == "html" or static_ok:
                    z.writestr(f"{name}.{fmt}", figure_bytes(fig, fmt))
        for name, frame in (tables or {}).items():
            for fmt in TABLE_FORMATS:
                z.writestr(f"{name}.{fmt}", table_bytes(frame, fmt))
        for name, grid in (images or {}).items():
            z.writestr(f"{name}.png", png_bytes(grid))
        meta = dict(settings or {})
        if not static_ok:
            meta["note"] = message
        z.writestr("settings.json", json.dumps(meta, indent=2, default=str))
    return buf.getvalue()


SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def for_print(fig, width: int = 760, height: int = 430):
    """A copy of a builder's figure made for paper: WebGL traces (``Scattergl``) redrawn as SVG
    scatters (vectors in the PDF, not a raster of a canvas), each trace told apart by a marker
    symbol and a line dash as well as its colour (readable in black and white), a fixed size and
    a legend below the plot, so that labels do not cover the data."""
    import plotly.graph_objects as go

    out = go.Figure(layout=fig.layout)
    for i, trace in enumerate(fig.data):
        spec = trace.to_plotly_json()
        if spec.get("type") == "scattergl":
            spec["type"] = "scatter"
        trace = go.Figure({"data": [spec]}).data[0]
        if spec.get("type") == "scatter":
            mode = trace.mode or "markers"
            if "markers" in mode and trace.marker.symbol is None:
                trace.marker.symbol = SYMBOLS[i % len(SYMBOLS)]
            if "lines" in mode and trace.line.dash is None:
                trace.line.dash = DASHES[i % len(DASHES)]
        out.add_trace(trace)
    out.update_layout(
        width=width,
        height=height,
        font={"size": 12},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
    )
    return out


def svg_text(fig) -> str:
    """The figure as an inline ``<svg>`` element (kaleido), without its XML prologue."""
    text = figure_bytes(fig, "svg").decode()
    return text[text.find("<svg") :]


def png_bytes(grid) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes (PIL; no browser needed)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(grid, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _ensure_server() -> None:
    """Start kaleido's browser server once per process (thread-safe): later exports reuse it."""
    global _server_started
    with _server_lock:
        if _server_started:
            return
        import kaleido

        path = browser_path()
        if path:
            os.environ.setdefault("BROWSER_PATH", path)  # choreographer reads it
        kaleido.start_sync_server(silence_warnings=True)
        _server_started = True
