"""The app in a real browser: `streamlit run app.py` on localhost, driven by Playwright with the
system's Chromium (no browser download). Screenshots go to test-artifacts/."""

import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from memviz.ui.serve import free_port, wait_healthy
from tests.conftest import DEMO_MNIST, ROOT

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: .ci/run installs it"),
    pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled"),
]
ARTIFACTS = ROOT / "test-artifacts"


@contextmanager
def serve(name: str):
    """A fresh `streamlit run app.py` (headless): yields its base URL and its log file."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.log"
    with open(path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MEMVIZ_LOG": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_healthy(url):
                pytest.fail("streamlit did not start")
            yield url, path
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def server():
    with serve("server") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


# Per figure on the page: how many data points its traces hold, and which of its labels (title, legend,
# axis titles, annotations, colour bar) overlap another.
FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
    const points = (gd._fullData || []).filter(t => t.visible !== false)
        .reduce((n, t) => n + ((t.x || t.y || t.values || t.z || []).length || 0), 0);
    const parts = ['.legend', '.gtitle', '.g-xtitle', '.g-ytitle', '.g-x2title', '.g-y2title', '.annotation',
                   '.colorbar'].flatMap(s => Array.from(gd.querySelectorAll(s)).map(e => [s, e.getBoundingClientRect()]))
                   .filter(([, r]) => r.width > 0 && r.height > 0);
    const overlaps = [];
    for (let i = 0; i < parts.length; i++) for (let j = i + 1; j < parts.length; j++) {
        const [a, p] = parts[i], [b, q] = parts[j];
        if (a !== b && p.left < q.right - 1 && q.left < p.right - 1 && p.top < q.bottom - 1 && q.top < p.bottom - 1)
            overlaps.push(a + ' / ' + b);
    }
    return {points, overlaps};
})"""


def _open(browser, url: str, wait_text: str, shot: str, width: int = 1400, height: int = 1000):
    """The page at ``url`` in a window ``width`` px wide, once ``wait_text`` shows and the script is done,
    checked (``_check``) and screenshot."""
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(url)
    page.get_by_text(wait_text).first.wait_for(timeout=300_000)
    # app.py's navigation (titled pages), also for a deep link to a fresh server
    page.get_by_test_id("stSidebarNav").get_by_text("Overview", exact=True).wait_for(timeout=30_000)
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=300_000)
    _check(page, shot)
    return page


def _check(page, shot: str) -> None:
    """No exception box, no figure without data, no overlapping labels and no image that did not load;
    then a screenshot to test-artifacts/<shot>.png."""
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).every(
        c => { const g = c.querySelector('.js-plotly-plot'); return g && g._fullData; })""",
        timeout=120_000,
    )
    page.wait_for_timeout(500)
    where = f"{page.url} at {page.viewport_size['width']} px"
    assert page.locator('[data-testid="stException"]').count() == 0, f"an exception on {where}"
    for k, fig in enumerate(page.evaluate(FIGURES_JS)):
        assert fig["points"] > 0, f"figure {k} of {where} is empty"
        assert not fig["overlaps"], f"figure {k} of {where}: overlapping {fig['overlaps']}"
    broken = page.evaluate("() => Array.from(document.images).filter(i => i.complete && !i.naturalWidth).length")
    assert broken == 0, f"{broken} images of {where} did not load"
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)


PAGES = {
    "overview": ("", "What the model memorized"),
    "samples": ("samples?n=300&row=42", "Row 42:"),
    "prompts": ("prompts?prompts=3|memorized-05", "calibrated l2:"),
    "scan": ("scan", "Press Scan to score"),
    "manifold": ("manifold?n=300&sel={sel}", "2 selected"),
    "detection": ("detection", "ROC curves"),
    "mitigation": (
        "mitigation?prompts=memorized-00|3&methods=none|guidance-schedule|unconditional&n=4",
        "Each point is one method",
    ),
}


def test_every_page_at_a_laptop_and_a_desktop_width(server, browser):
    """Screenshots of every page at 1280 and 1920 px (test-artifacts/<page>-<width>.png), a window tall
    enough for the whole page (Streamlit scrolls inside it, so a full-page shot would not); each fails
    on an exception box, an empty figure, overlapping labels or an image that did not load."""
    from memviz.study.core import open_study

    url, log = server
    sel = ",".join(map(str, open_study("demo-mnist", n=300).rows[:2]))  # two analysed rows, ringed and shown
    for name, (path, wait_text) in PAGES.items():
        page = _open(browser, f"{url}/{path.format(sel=sel)}", wait_text, f"{name}-1280", width=1280, height=3000)
        page.set_viewport_size({"width": 1920, "height": 3000})  # the same page on a wide screen
        page.wait_for_timeout(1000)
        _check(page, f"{name}-1920")
        if name == "samples":
            assert page.locator(".js-plotly-plot").count() == 3
            page.keyboard.press("ArrowRight")  # the next sample, without the mouse
            page.wait_for_function("!document.body.innerText.includes('Row 42:')", timeout=120_000)
            assert not re.search(r"row=42(&|$)", page.url)
        if name == "manifold":  # a lasso round the plot's middle
            before = re.search(r"sel=([^&]*)", page.url).group(1)
            box = page.locator(".nsewdrag").first.bounding_box()
            cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["height"] / 3
            page.mouse.move(cx - r, cy - r)
            page.mouse.down()
            for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 1)):
                page.mouse.move(x, y, steps=5)
            page.mouse.up()
            page.wait_for_function("!document.body.innerText.includes('2 selected')", timeout=120_000)
            page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=120_000)
            assert page.locator('[data-testid="stException"]').count() == 0  # the selection opens the grid
            page.wait_for_function(f"!location.href.includes('sel={before}')", timeout=60_000)  # a new selection
            assert page.get_by_text(" selected").count() >= 1
        if name == "mitigation":  # plain, then each remedy, per prompt
            assert page.get_by_text("nearest training image of each").count() == 2 * 3
        page.close()
    assert "Traceback" not in log.read_text()


def test_pick_a_sample_compare_prompts_and_export_a_png(server, browser):
    from PIL import Image

    url, log = server
    page = _open(browser, f"{url}/samples?n=300&row=42", "Row 42:", "samples")
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 3  # curve, spectrum, map
    assert page.get_by_text("nearest training images").count() >= 1  # the fourth panel
    page.get_by_role("button", name="Export").first.click()
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="PNG").first.click()
    png = Path(download.value.path())
    image = Image.open(png)
    assert image.format == "PNG" and image.size[0] > 100
    page.close()
    page = _open(browser, f"{url}/prompts?prompts=3|memorized-05", "Detectors", "prompts")
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # the spectra come after the table
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=120_000)
    assert page.get_by_text("memorized-05").count() >= 1 and page.locator(".js-plotly-plot").count() == 1
    page.close()
    assert "Traceback" not in log.read_text()


def test_scan_an_uploaded_list_then_open_a_row_on_the_prompts_page(server, browser):
    """The Scan page in Chromium: upload a labelled CSV, scan it with two cheap detectors against its
    ordinary part, read the table, thresholds and ROC curves, and pick a row to open it on the Prompts page."""
    from tests.test_app import _small_list

    url, log = server
    page = _open(browser, f"{url}/scan?model=demo-mnist-text&detectors=wen|asthana&n=2", "Press Scan to score", "scan")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": "mine.csv", "mimeType": "text/csv", "buffer": _small_list()}]
    )
    page.get_by_text("6 prompts from mine.csv").first.wait_for(timeout=60_000)
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=60_000)
    page.get_by_role("button", name="Scan", exact=True).click()
    page.get_by_text("Scored 6 of 6 prompts").first.wait_for(timeout=300_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the ROC curves
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=60_000)
    _check(page, "scan-scored")
    grid = page.locator('[data-testid="stDataFrame"]').first
    assert grid.is_visible() and page.get_by_text("wen: flag above").count() == 1
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 + 17)  # the second row's selection box
    link = page.get_by_role("link", name=re.compile("Compare on the Prompts page"))
    link.wait_for(timeout=60_000)
    prompt = link.inner_text().split(": ", 1)[1]
    link.click()
    page.get_by_text("calibrated l2:").first.wait_for(timeout=300_000)
    assert "/prompts?" in page.url and page.get_by_role("heading", name=prompt).count() >= 1
    page.close()
    assert "Traceback" not in log.read_text()


def test_ten_sessions_opening_a_fresh_server_at_once_all_render_and_load_the_model_once(browser):
    with serve("load") as (url, log):
        pages = [browser.new_page() for _ in range(10)]
        targets = [url] * 8 + [f"{url}/prompts?prompts=3|memorized-05"] * 2
        for page, target in zip(pages, targets, strict=True):
            page.goto(target, wait_until="commit")  # all ten connect at once
        for page, target in zip(pages, targets, strict=True):
            page.get_by_text("Detectors" if "prompts" in target else "What the model memorized").first.wait_for(
                timeout=480_000
            )
            assert page.locator('[data-testid="stException"]').count() == 0, target
        numbers = [p.get_by_text("calibrated l2:").all_inner_texts() for p in pages[8:]]
        assert len(numbers[0]) == 2 and numbers[0] == numbers[1]  # two sessions, one model, same answer
        for p in pages:
            p.close()
        text = log.read_text()
    assert text.count("memviz: loading model") == 1, text[-2000:]
    assert "Traceback" not in text


def _shown(page) -> list[str]:
    """What the Samples page says about the picked row: its heading, metrics and spectrum caption."""
    page.get_by_text("eigenvalues below").first.wait_for(timeout=300_000)
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=300_000)
    page.locator('[data-testid="stMetric"]').nth(1).wait_for(timeout=60_000)
    return (
        [page.get_by_role("heading", name="Row ").first.inner_text()]
        + page.locator('[data-testid="stMetric"]').all_inner_texts()
        + page.get_by_text("eigenvalues below").all_inner_texts()
    )


def test_sessions_picking_at_once_get_a_single_sessions_answers(server, browser):
    """Five sessions open the Samples page on rows never computed before (outside the analysed set too),
    at once, then all press Next at once: no error, and each shows what one session alone shows."""
    url, log = server
    rows = [4321, 17, 4321, 2222, 17]
    pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in rows]
    for page, row in zip(pages, rows, strict=True):
        page.goto(f"{url}/samples?n=300&row={row}", wait_until="commit")
    first = []
    for page, row in zip(pages, rows, strict=True):
        page.get_by_text(f"Row {row}:").first.wait_for(timeout=300_000)
        first.append(_shown(page))
    for page in pages:
        page.get_by_role("button", name="Next").click()  # all five pick again at once
    second = []
    for page, row in zip(pages, rows, strict=True):
        page.wait_for_function(f"!document.body.innerText.includes('Row {row}:')", timeout=300_000)
        second.append(_shown(page))
        assert page.locator('[data-testid="stException"]').count() == 0
    assert first[0] == first[2] and first[1] == first[4] and second[0] == second[2] and second[1] == second[4]
    for page in pages:
        page.close()
    for row, shown in ((rows[0], first[0]), (rows[3], first[3])):  # one session alone, afterwards
        page = _open(browser, f"{url}/samples?n=300&row={row}", f"Row {row}:", f"alone-{row}")
        assert _shown(page) == shown
        page.close()
    assert "Traceback" not in log.read_text()


def test_hostile_links_get_one_sentence_in_a_real_browser(server, browser):
    url, _ = server
    for query in ("model=../../../../etc&row=1", "data=/etc/passwd", "model=%2Fproc%2Fself&data=..%2F..%2F.."):
        page = _open(browser, f"{url}/samples?{query}", "outside the folders this app may open", "hostile-path")
        page.close()
    page = _open(
        browser,
        f"{url}/samples?row=-99999999999999999999&t0=nan&n=1e999&sample=-4",
        "LID_theta (FLIPD)",
        "hostile-numbers",
    )
    page.close()
    page = _open(browser, f"{url}/prompts?seed=1e99&prompts=" + "x" * 5000, "Detectors", "hostile-prompts")
    page.close()


def test_the_server_listens_on_loopback_only(server):
    """.streamlit/config.toml binds to localhost: the machine's network address does not answer."""
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no network address besides loopback")
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()
    assert "Network URL" not in log.read_text()


TITLES = {
    "overview": "memviz",
    "samples": "Samples",
    "prompts": "Prompts",
    "scan": "Scan",
    "manifold": "Manifold",
    "detection": "Detection",
    "mitigation": "Mitigation",
}


@pytest.mark.parametrize("name", list(TITLES))
def test_a_deep_link_to_a_fresh_server_shows_the_page_inside_the_app(browser, name):
    """Before any session has called st.navigation, Streamlit runs pages/<name>.py on its own for /<name>;
    the page's frame() puts the app's navigation around it (every page listed, titled as app.py names them)."""
    with serve(f"deep-{name}") as (url, _):
        page = browser.new_page()
        page.goto(f"{url}/{'' if name == 'overview' else name}")
        nav = page.get_by_test_id("stSidebarNav")
        for title in ("Overview", "Samples", "Prompts", "Scan", "Manifold", "Detection", "Mitigation"):
            nav.get_by_text(title, exact=True).wait_for(timeout=60_000)
        page.locator("h1", has_text=TITLES[name]).first.wait_for(timeout=120_000)
        assert nav.get_by_text("app", exact=True).count() == 0 and nav.get_by_text(name, exact=True).count() == 0
        assert page.url.split("?")[0].rstrip("/") == f"{url}/{'' if name == 'overview' else name}".rstrip("/")
        page.close()
