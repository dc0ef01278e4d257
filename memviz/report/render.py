"""A ``Report`` as one self-contained HTML file, and that file printed to PDF by Chromium.

Self-contained: images are PNG data URIs, figures inline SVG (kaleido, through the system's
Chromium) or, where no browser is installed, Plotly divs with plotly.js inlined once; the page
loads nothing from any host, so it opens offline and prints the same. The PDF is Chromium's own
print of that page (``--print-to-pdf``, the Debian package; never a downloaded browser), with CSS
that keeps every figure, image row and table row on one page. Templating is Jinja2's (autoescaped:
a prompt's text is shown, never run).
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from memviz.figures.builders import image_grid
from memviz.figures.export import browser_path, for_print, png_bytes, static_export_status, svg_text
from memviz.io.files import atomic_path

TEMPLATE = Path(__file__).with_name("template.html")
PDF_TIMEOUT = 180  # seconds Chromium may take to print a report
FORMATS = (".html", ".pdf")


def to_html(rep) -> str:
    """The report as one HTML document (str)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.globals["zip"] = zip
    env.filters["pct"] = lambda v: "n/a" if _missing(v) else f"{float(v):.0%}"
    static, _ = static_export_status()
    figures, first = {}, True
    for name, fig in rep.figures.items():
        fig = for_print(fig)
        if static:
            figures[name] = svg_text(fig)
        else:  # no browser: an interactive div, plotly.js inlined once (still no request to any host)
            figures[name] = fig.to_html(full_html=False, include_plotlyjs=first, include_mathjax=False)
            first = False
    return env.from_string(TEMPLATE.read_text()).render(
        r=rep,
        figures={k: _markup(v) for k, v in figures.items()},
        table=lambda frame, **kw: _markup(_table(frame, **kw)),
        img=lambda images, nrow=None, scale=3: _data_uri(images, nrow, scale),
        numbers=_markup(json.dumps(rep.headline, sort_keys=True).replace("</", "<\\/")),
    )


def write_report(rep, path: str | Path) -> Path:
    """Write ``rep`` to ``path``: ``.html`` (self-contained) or ``.pdf`` (Chromium prints the HTML). Atomic."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"A report is .html or .pdf; got {path.name!r}.")
    html = to_html(rep)
    if path.suffix.lower() == ".html":
        with atomic_path(path, ".html") as tmp:
            Path(tmp).write_text(html, encoding="utf-8")
        return path
    with atomic_path(path, ".pdf") as tmp:
        Path(tmp).write_bytes(html_to_pdf(html))
    return path


def html_to_pdf(html: str) -> bytes:
    """``html`` printed to PDF by the system's Chromium (headless, every host unresolvable, so the
    print can fetch nothing); ValueError in one sentence when there is no browser."""
    browser = browser_path()
    if browser is None:
        raise ValueError(
            "A PDF report is printed by Chrome or Chromium: `apt-get install chromium`; .html works without."
        )
    with tempfile.TemporaryDirectory(prefix="memviz-report-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=PDF_TIMEOUT, env={**os.environ, "HOME": tmp})
        except subprocess.TimeoutExpired:
            raise ValueError(f"Chromium did not print the report within {PDF_TIMEOUT} s.") from None
        if not pdf.exists() or pdf.stat().st_size == 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise ValueError(f"Chromium could not print the report ({last[:200]}).")
        return pdf.read_bytes()


# ---- helpers ------------------------------------------------------------------------------------
def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v, digits: int = 3) -> str:
    """A number as the report prints it: integers with separators, floats to ``digits`` significant places."""
    if _missing(v):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10 ** (1 - digits) else f"{v:.2e}"
    return str(v)


def _table(frame, digits: int = 3, max_chars: int = 160) -> str:
    """A DataFrame as an HTML table (text escaped; long text cut with an ellipsis, numbers by ``_num``)."""
    if frame is None or len(frame) == 0:
        return "<p class='unknown'>(no rows)</p>"

    def cell(v):
        if isinstance(v, str):
            return v if len(v) <= max_chars else v[: max_chars - 1] + "…"
        return _num(v, digits)

    return frame.map(cell).to_html(index=False, escape=True, classes="data", border=0, na_rep="n/a")


def _data_uri(images, nrow=None, scale: int = 3) -> str:
    """(B, C, H, W) in [0, 1] tiled in one row (or ``nrow``) as a PNG data URI."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    grid = image_grid(images, nrow=nrow or len(images), scale=scale)
    return "data:image/png;base64," + base64.b64encode(png_bytes(grid)).decode()


def _markup(text: str):
    import markupsafe

    return markupsafe.Markup(text)
