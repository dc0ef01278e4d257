"""Figures and their export: pure builders from arrays and tables to plotly figures and image grids,
the app's and the report's alike (``builders``), and export for papers (``export``: PNG, SVG, PDF
through kaleido with the system's Chromium, self-contained HTML, CSV, Parquet, a zipped figure pack).

May import any computational layer (data, the Study's tables, mitigation results); never streamlit.
"""
