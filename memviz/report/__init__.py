"""One audit report of a model: ``build_report`` gathers it from the Study's store (a ``Report``,
data a notebook can read), ``write_report`` writes it as self-contained HTML or as PDF.

Imports the layers below it (detect, mitigate, lid, hessian, neighbors, figures) and is handed a Study,
never importing it; only the CLI and ``memviz.ui`` import this package."""

from memviz.report.content import Report, build_report
from memviz.report.render import html_to_pdf, to_html, write_report

__all__ = ["Report", "build_report", "html_to_pdf", "to_html", "write_report"]
