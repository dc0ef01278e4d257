"""Where the bundled demo models are: one rule for the checkout and the installed wheel.

In a source checkout they live in the top-level ``assets/models/``; the wheel carries the same
folder inside the package as ``memviz/assets/models/`` (hatch's ``force-include``), so
``pip install .`` finds them from anywhere.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def _bundled() -> Path:
    installed = _PACKAGE / "assets" / "models"  # the wheel's copy
    return installed if installed.is_dir() else _PACKAGE.parent / "assets" / "models"  # the checkout's


BUNDLED: Path = _bundled()
