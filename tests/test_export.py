"""Export: self-contained HTML, CSV/Parquet, the figure pack, and static images through the
system's Chromium (one kaleido server), with a clear message when there is no browser."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from memviz.figures import export
from memviz.figures.builders import spectrum_figure

FIG = spectrum_figure({"a": np.linspace(-30, 2, 64)}, tau=16.0)
needs_browser = pytest.mark.skipif(export.browser_path() is None, reason="no Chrome/Chromium: .ci/run installs one")


def test_html_is_self_contained():
    html = export.figure_bytes(FIG, "html").decode()
    assert "<html>" in html and "Plotly.newPlot" in html and 'src="https://cdn' not in html


def test_tables_round_trip():
    frame = pd.DataFrame({"i": [1, 2], "flipd": [0.5, np.nan]})
    assert pd.read_csv(io.BytesIO(export.table_bytes(frame, "csv"))).shape == (2, 2)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(export.table_bytes(frame, "parquet"))), frame)
    with pytest.raises(ValueError, match="fmt"):
        export.table_bytes(frame, "xlsx")


def test_without_a_browser_static_export_says_what_to_install(monkeypatch):
    monkeypatch.setattr(export, "browser_path", lambda: None)
    assert export.static_export_status() == (False, export.INSTALL_HINT)
    with pytest.raises(ValueError, match="apt-get install chromium"):
        export.figure_bytes(FIG, "png")
    grid = np.zeros((5, 7, 3), dtype=np.uint8)
    grid[1, 2] = 255
    z = zipfile.ZipFile(
        io.BytesIO(export.figure_pack({"spectrum": FIG}, settings={"t": 0.05}, images={"generations": grid}))
    )
    assert sorted(z.namelist()) == ["generations.png", "settings.json", "spectrum.html"]  # the rest still works
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(z.read("generations.png")))), grid)  # no browser
    assert "chromium" in json.loads(z.read("settings.json"))["note"]


@needs_browser
def test_static_formats_are_valid_files():
    from PIL import Image

    png = export.figure_bytes(FIG, "png", width=600, height=300, scale=1)
    assert Image.open(io.BytesIO(png)).size == (600, 300)
    assert export.figure_bytes(FIG, "svg").lstrip().startswith(b"<svg")
    assert export.figure_bytes(FIG, "pdf").startswith(b"%PDF")
    z = zipfile.ZipFile(io.BytesIO(export.figure_pack({"s": FIG}, {"t": pd.DataFrame({"a": [1]})}, {"t0": 0.05})))
    assert sorted(z.namelist()) == ["s.html", "s.pdf", "s.png", "s.svg", "settings.json", "t.csv", "t.parquet"]
    assert json.loads(z.read("settings.json")) == {"t0": 0.05}
