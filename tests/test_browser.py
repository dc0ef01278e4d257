"""The app in a real browser: `streamlit run app.py` on localhost, driven by Playwright with the
system's Chromium (no browser download). Screenshots go to test-artifacts/."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DEMO_MNIST, ROOT

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: .ci/run installs it"),
              pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """A fresh `streamlit run app.py` (headless) and its base URL; its log is kept for checks."""
    port = _free_port()
    log = open(ARTIFACTS.mkdir(exist_ok=True) or ARTIFACTS / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                             "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MEMVIZ_LOG": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url, ARTIFACTS / "server.log"
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, url: str, wait_text: str, shot: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    page.get_by_text(wait_text).first.wait_for(timeout=300_000)
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception on {url}"
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    return page


def test_every_page_pick_a_sample_compare_prompts_and_export_a_png(server, browser):
    from PIL import Image

    url, log = server
    _open(browser, url, "What the model memorized", "overview").close()
    page = _open(browser, f"{url}/samples?n=300&sample=3", "Sample 3:", "samples")
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 3                     # curve, spectrum, map
    assert page.get_by_text("nearest other training images").count() >= 1    # the fourth panel
    page.get_by_role("button", name="Export").first.click()
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="PNG").first.click()
    png = Path(download.value.path())
    image = Image.open(png)
    assert image.format == "PNG" and image.size[0] > 100
    page.close()
    page = _open(browser, f"{url}/prompts?prompts=3|memorized-05", "Detectors", "prompts")
    assert page.get_by_text("memorized-05").count() >= 1 and page.locator(".js-plotly-plot").count() == 1
    page.close()
    _open(browser, f"{url}/manifold?n=300", "Click a point", "manifold").close()
    _open(browser, f"{url}/detection", "AUROC", "detection").close()
    assert "Traceback" not in log.read_text()
