"""Make the docs' screenshots from the bundled demos: `python scripts/docs_figures.py`.

Starts `streamlit run app.py` on a free localhost port, opens each view in the system's Chromium
(Playwright, no browser download), waits until the page's script has finished and writes
docs/img/<name>.png. Nothing in docs/img is made by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
VIEWS = {
    "overview": ("", "What the model memorized"),
    "samples": ("samples?n=300&row=42", "Row 42:"),
    "manifold": ("manifold?n=300", "Manifold"),
}


def main() -> int:
    from playwright.sync_api import sync_playwright

    from memviz.ui.serve import free_port, wait_healthy

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, 120):
            raise SystemExit("streamlit did not start")
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for name, (path, text) in VIEWS.items():
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{url}/{path}")
                page.get_by_text(text).first.wait_for(timeout=300_000)
                page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=300_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / f"{name}.png"))
                print(f"wrote {OUT / f'{name}.png'}")
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
