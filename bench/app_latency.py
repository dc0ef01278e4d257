"""App latency in a real browser (Playwright, the system Chromium) on the bundled demo.

1. Cold start: a fresh `streamlit run app.py` with an empty cache, to the first complete
   Overview (the dataset-wide artifacts are computed then), and the same with a warm disk
   cache (a second server start).
2. Warm pick-to-panels: on the Samples page, type a training row and wait until its four
   panels are drawn (three plotly charts and the neighbour strip): p50 and p95 over 20 picks,
   first with each picked image's spectrum computed on the pick, then again after the n_sharp
   pass has cached every analysed image's spectrum (the expensive artifact; a pick then only
   reads it), and over 20 steps with the Next button.
3. One PNG export with the kaleido server warm: click Export, then PNG, to the finished download.

    python bench/app_latency.py [--picks 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the server helper lives with the browser tests
from tests.test_browser import CHROMIUM, serve  # noqa: E402


def cold_start(browser, label: str) -> float:
    with serve(f"bench-{label}") as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(url)
        page.get_by_text("Detectors against the planted ground truth").wait_for(timeout=900_000)
        seconds = time.perf_counter() - t0
        page.close()
    return seconds


def _drawn(page, i: int) -> None:
    page.get_by_text(f"Row {i}:").wait_for(timeout=120_000)  # this row's rerun has begun
    page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=120_000)  # and finished
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=120_000)
    page.get_by_text("nearest training images").wait_for(timeout=120_000)


def _picks(page, rows) -> list[float]:
    box = page.get_by_test_id("stNumberInputField")
    times = []
    for i in rows:
        t0 = time.perf_counter()
        box.fill(str(i))
        box.press("Enter")
        _drawn(page, i)
        times.append(time.perf_counter() - t0)
    return times


def _steps(page, n: int) -> list[float]:
    box = page.get_by_test_id("stNumberInputField")
    times = []
    for _ in range(n):
        before = box.input_value()
        t0 = time.perf_counter()
        page.get_by_role("button", name="Next").click()
        page.wait_for_function(
            "b => document.querySelector('[data-testid=stNumberInputField]').value !== b", arg=before
        )
        _drawn(page, int(box.input_value()))
        times.append(time.perf_counter() - t0)
    return times


def picks_and_export(browser, n_picks: int) -> tuple[dict, list[float]]:
    with serve("bench-warm") as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        from memviz.study.core import open_study

        analysed = open_study("demo-mnist", n=600).rows  # training rows, as the page lists them
        page.goto(f"{url}/samples?n=600&row={analysed[0]}")
        page.get_by_text(f"Row {analysed[0]}:").wait_for(timeout=900_000)
        rows = np.random.default_rng(0).choice(analysed, 2 * n_picks, replace=False)
        times = {"spectrum_on_pick": _picks(page, rows[:n_picks])}
        button = page.get_by_role("button", name="Add the sharpness count")
        button.click()
        button.wait_for(state="detached", timeout=1_800_000)  # the pass is done
        page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=120_000)
        times["spectra_cached"] = _picks(page, rows[n_picks:])
        times["next_button"] = _steps(page, n_picks)
        exports = []
        for _ in range(3):  # the first starts the kaleido server
            page.get_by_role("button", name="Export").first.click()
            t0 = time.perf_counter()
            with page.expect_download(timeout=120_000) as dl:
                page.get_by_role("button", name="PNG").first.click()
            dl.value.path()
            exports.append(time.perf_counter() - t0)
            page.keyboard.press("Escape")
        page.close()
    return times, exports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--picks", type=int, default=20)
    ap.add_argument("--skip-cold", action="store_true", help="only the warm picks and the export")
    ap.add_argument("--cold-only", action="store_true", help="only the cold starts")
    ap.add_argument("--repeats", type=int, default=1, help="cold starts, each on a fresh empty cache (median)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if CHROMIUM is None:
        raise SystemExit("No system Chromium: apt-get install chromium.")
    from playwright.sync_api import sync_playwright

    os.environ["MEMVIZ_CACHE"] = tempfile.mkdtemp(prefix="memviz-bench-")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        cold = warm_disk = float("nan")
        colds = []
        if not args.skip_cold:
            for _ in range(args.repeats):
                os.environ["MEMVIZ_CACHE"] = tempfile.mkdtemp(prefix="memviz-bench-")
                colds.append(cold_start(browser, "cold"))
                print(f"cold start: {colds[-1]:.1f} s", flush=True)
            cold = statistics.median(colds)
            warm_disk = cold_start(browser, "warm-disk")
            print(f"start with a warm disk cache: {warm_disk:.1f} s", flush=True)
        if args.cold_only:
            browser.close()
            print(json.dumps({"cold_start_s": colds, "start_with_disk_cache_s": warm_disk}))
            return
        picks, exports = picks_and_export(browser, args.picks)
        browser.close()
    out = {"cold_start_s": cold, "cold_starts_s": colds, "start_with_disk_cache_s": warm_disk}
    for name, times in picks.items():
        out[f"pick_to_panels_p50_s[{name}]"] = statistics.median(times)
        out[f"pick_to_panels_p95_s[{name}]"] = float(np.quantile(times, 0.95))
    out |= {"png_export_first_s": exports[0], "png_export_warm_s": statistics.median(exports[1:]), "picks": picks}
    for k, v in out.items():
        print(f"{k}: {v if isinstance(v, (list, dict)) else round(v, 3)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
