"""The project's contract: three layers, no hub downloads, README and CI agree."""

import re

from tests.conftest import ROOT


def _py(folder):
    return [p for p in (ROOT / folder).rglob("*.py")]


def test_library_never_imports_streamlit_outside_ui():
    offenders = [str(p.relative_to(ROOT)) for p in _py("memviz") if "ui" not in p.relative_to(ROOT).parts
                 and re.search(r"^\s*(import streamlit|from streamlit)", p.read_text(), re.M)]
    assert offenders == []


def test_no_hub_identifiers_in_code():
    hub = re.compile(r"from_pretrained\(\s*[\"'][A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+[\"']")
    offenders = [str(p) for folder in ("memviz", "app_pages", "bench") for p in _py(folder) if hub.search(p.read_text())]
    assert offenders == []


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert "streamlit run app.py" in blocks[0] and "torch==2.13.0" in (ROOT / "requirements.txt").read_text()
    assert blocks[1].strip() == "bash .ci/run"
