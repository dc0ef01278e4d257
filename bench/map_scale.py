"""How far the Manifold page's map scales in a real browser (Playwright, the system Chromium).

For 5k, 100k and 1M synthetic points, ``bench/map_scale_app.py`` (the page's builder and widget,
WebGL) is served by Streamlit and measured as a person meets it:
- build: seconds to build the figure in Python;
- shell: from the page request to the app's first text (Streamlit's own start, the build, no plot yet);
- drawn: from the page request to plotly having drawn the plot (its traces and drag layer);
- ready: from the page request to the first hover label answered over a point (time to interactive);
- hover: median of 5 later hovers, from the mouse move to the label;
- drag: the lasso's 21 mouse moves, button down to just before its release (plotly selects as it goes);
- lasso: from releasing a lasso over the middle of the plot to the app printing how many points it
  selected (the selection's round trip through Streamlit, which opens the image grid on the page).
A size is usable when ready <= 3 s after the data, hover <= 0.2 s and lasso <= 3 s. The server runs
with the repository's .streamlit/config.toml, as the app does: a selection event must fit Streamlit's
server.maxWidgetStateSize (25 MB, about 120k selected points), the figure server.maxMessageSize (200 MB).

    python bench/map_scale.py [--sizes 5000 100000 1000000] [--timeout 180] [--json out.json]
                              [--max-message-mb MB] [--max-widget-state-mb MB] [--log server.log]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
LIMITS = {"ready_s": 3.0, "hover_s": 0.2, "lasso_s": 3.0}
APP_ERROR = "This app has encountered an error"


def _serve(options: dict[str, int], log: Path) -> tuple[subprocess.Popen, str]:
    """Streamlit serving the bench app with the repository's .streamlit/config.toml (as `streamlit run app.py`
    is), the server ``options`` on top (``{"server.maxMessageSize": 200}``); its process and URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "bench" / "map_scale_app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
            *[a for k, v in options.items() for a in (f"--{k}", str(v))],
        ],
        cwd=ROOT,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("streamlit did not start")


def _hover(page, x: float, y: float, timeout_ms: int) -> float:
    """Move the mouse off the plot and onto (x, y); seconds until a hover label shows."""
    page.mouse.move(5, 5)
    page.wait_for_function("!document.querySelector('.hoverlayer .hovertext')", timeout=timeout_ms)
    t = time.perf_counter()
    page.mouse.move(x, y)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=timeout_ms)
    return time.perf_counter() - t


def _target(page) -> tuple[float, float]:
    """Screen position of the first drawn training point (its data coordinates through the axes; the
    first point trace, as a map of many points has its density first)."""
    return tuple(
        page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot'), L = gd._fullLayout;
        const t = gd._fullData.find(d => d.type === 'scattergl');
        const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [box.left + L.xaxis.d2p(t.x[0]), box.top + L.yaxis.d2p(t.y[0])]; }""")
    )


def json_mb(n: int) -> float:
    """Megabytes of the figure's JSON (what Streamlit sends the browser), built as the app builds it."""
    sys.path.insert(0, str(ROOT / "bench"))
    from map_scale_app import figure

    return len(figure(n)[0].to_json()) / 1e6


def measure(browser, url: str, n: int, timeout_s: float = 180) -> dict:
    """One size's row; ``timeout_s`` bounds each of its three steps (loading to the first hover,
    the five hovers, the lasso), and a step past it makes the row an error."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    deadline, step, out = 0.0, "load", {"points": n}

    def left() -> int:  # milliseconds left to the current step: loading, the hovers, the lasso
        return max(1, int((deadline - time.perf_counter()) * 1000))

    try:
        t0 = time.perf_counter()
        deadline = t0 + timeout_s
        page.goto(f"{url}/?n={n}")
        page.wait_for_function("() => document.body.innerText.includes('built in')", timeout=left())
        shell = time.perf_counter() - t0
        page.wait_for_selector(".js-plotly-plot .gl-canvas-context, .js-plotly-plot canvas", timeout=left())
        page.wait_for_function(
            "() => { const g = document.querySelector('.js-plotly-plot');"
            " return g && g._fullData && g._fullData.length && g.querySelector('.nsewdrag'); }",
            timeout=left(),
        )
        out |= {"shell_s": shell, "drawn_s": time.perf_counter() - t0}
        x, y = _target(page)
        while True:  # the first hover: until the WebGL picking answers (tries of 0.3 s, so as not to overshoot)
            try:
                _hover(page, x, y, 300)
                break
            except Exception:
                if time.perf_counter() > deadline:
                    raise
        out["ready_s"] = time.perf_counter() - t0
        out["build_s"] = float(re.search(r"built in ([\d.]+) s", page.evaluate("document.body.innerText")).group(1))
        deadline, step = time.perf_counter() + timeout_s, "hover"
        out["hover_s"] = statistics.median(_hover(page, x, y, left()) for _ in range(5))
        box = page.locator(".nsewdrag").first.bounding_box()
        cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 4
        step, drag = "lasso", time.perf_counter()
        page.mouse.move(cx - r, cy - r)
        page.mouse.down()
        for px, py in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 1)):
            page.mouse.move(px, py, steps=5)
        t = time.perf_counter()
        deadline, out["drag_s"] = t + timeout_s, t - drag
        page.mouse.up()
        # the app prints a plain-text marker of its own; an app error ends the wait at once
        page.wait_for_function(
            f"() => {{ const s = document.body.innerText;"
            f" return s.includes('BENCH-SELECTED') || s.includes('{APP_ERROR}'); }}",
            timeout=left(),
        )
        out["lasso_s"] = time.perf_counter() - t
        text = page.evaluate("document.body.innerText")
        if APP_ERROR in text:
            raise RuntimeError("the app raised on the selection (see the streamlit log)")
        found = re.search(r"BENCH-SELECTED (\d+)( \(workaround\))?", text)
        out |= {"selected": int(found.group(1)), "workaround": bool(found.group(2))}
    except Exception as exc:  # a size past the browser's reach is a result, not a crash
        out["error"] = f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        page.close()
    out["usable"] = "error" not in out and all(out[k] <= v for k, v in LIMITS.items())
    return out


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000, 1_000_000])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timeout", type=float, default=180, help="seconds each step of a size may take (default 180)")
    ap.add_argument(
        "--max-message-mb", type=int, help="server.maxMessageSize, MB to the browser (default: the app's, 200)"
    )
    ap.add_argument(
        "--max-widget-state-mb",
        type=int,
        help="server.maxWidgetStateSize, MB from the browser, which a selection event must fit (default 25)",
    )
    ap.add_argument(
        "--log",
        type=Path,
        default=Path(tempfile.gettempdir()) / "map_scale_streamlit.log",
        help="the Streamlit server's output (default: map_scale_streamlit.log in the temp folder)",
    )
    args = ap.parse_args()
    if CHROMIUM is None:
        raise SystemExit("no system Chromium (apt-get install -y chromium)")
    options = {
        k: v
        for k, v in (
            ("server.maxMessageSize", args.max_message_mb),
            ("server.maxWidgetStateSize", args.max_widget_state_mb),
        )
        if v is not None
    }
    proc, url = _serve(options, args.log)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            measure(browser, url, 1000, 60)  # warm the server and the browser's plotly.js
            for n in args.sizes:
                seen = args.log.stat().st_size
                rows.append(measure(browser, url, n, args.timeout) | {"json_mb": json_mb(n)})
                with args.log.open() as f:  # the server's word on a failure, e.g. a selection past its limit
                    f.seek(seen)
                    said = [line.split(" ", 2)[-1].strip() for line in f if "exceeds" in line or "Error" in line]
                if "error" in rows[-1] and said:
                    rows[-1]["error"] += f"; server: {said[0][:200]}"
                print(json.dumps(rows[-1]), flush=True)
            browser.close()
    finally:
        proc.terminate()
    print(f"\nlimits: {LIMITS}; server options: {options or 'the app config'}")
    cols = (
        ("json_mb", "JSON MB", ".1f"),
        ("build_s", "build s", ".2f"),
        ("ready_s", "ready s", ".2f"),
        ("hover_s", "hover s", ".3f"),
        ("drag_s", "drag s", ".2f"),
        ("lasso_s", "lasso s", ".2f"),
        ("selected", "selected", ",d"),
    )
    print(f"{'points':>10} " + " ".join(f"{h:>8}" for _, h, _ in cols) + "  usable")
    for r in rows:
        cells = " ".join(f"{r[k]:>8{f}}" if k in r else f"{'-':>8}" for k, _, f in cols)
        print(f"{r['points']:>10,} {cells}  {r['usable']}" + (f"  ({r['error']})" if "error" in r else ""))
    if any(r.get("workaround") for r in rows):
        print(
            "(the app read the selection through its own workaround: memviz.figures.builders.selected_indices cannot"
            " read customdata rows that come back as dicts)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
