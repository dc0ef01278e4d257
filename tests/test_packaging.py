"""`pip install .` (not editable) into a fresh virtual environment, then, from an unrelated folder,
the bundled demos are found by name: the package carries them, nothing relies on a source checkout.

The environment sees this machine's packages (``--system-site-packages``) and the install is
``--no-deps``, so that the test builds and installs memviz itself without downloading torch again;
that the dependencies are declared is checked against pyproject.toml."""

import subprocess
import sys

import tomllib

from memviz.ui.serve import free_port, wait_healthy
from tests.conftest import ROOT


def test_an_installed_memviz_finds_its_demos_from_anywhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py, memviz = venv / "bin" / "python", venv / "bin" / "memviz"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = subprocess.run([str(memviz), "info", "demo-mnist"], cwd=elsewhere, capture_output=True, text=True)
    assert info.returncode == 0 and '"shape"' in info.stdout, info.stderr
    code = (
        "import memviz; s = memviz.open_study('demo-mnist'); "
        "print(memviz.__file__); print(len(s.rows)); print(s.folder)"
    )
    run = subprocess.run([str(py), "-c", code], cwd=elsewhere, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    where, n, folder = run.stdout.split()
    assert where.startswith(str(venv)) and n == "600" and folder.startswith(str(venv))  # the installed copy
    code = "from memviz.ui.nav import app_root; r = app_root(); print(r); print((r / 'pages' / 'samples.py').is_file())"
    run = subprocess.run([str(py), "-c", code], cwd=elsewhere, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    root, has_pages = run.stdout.split()
    assert root.startswith(str(venv)) and has_pages == "True"  # the app travels too
    port = free_port()
    app = subprocess.Popen(
        [str(memviz), "app", "--server.port", str(port)],
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}"), "memviz app did not start from the installed copy"
    finally:
        app.terminate()
        app.wait(10)


def test_pyproject_lists_every_runtime_dependency():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in declared["dependencies"]}
    pinned = {
        line.split("==")[0].split(">")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert pinned - {"streamlit"} <= names and "streamlit>=1.40" in declared["optional-dependencies"]["app"]
