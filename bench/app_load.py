"""Many users at once: browser sessions picking samples on one `streamlit run app.py` (loopback).

1. A fresh server on the bundled demo with an empty cache; one page opens the Overview, so that
   the dataset-wide pass is done before the timing starts (bench/app_latency.py times it).
2. One session alone picks --picks training rows on the Samples page (each pick: type the row,
   wait until its heading, metrics, spectrum caption and plots are drawn), rows that nobody
   picked before (each computes its spectrum, and, outside the analysed set, its FLIPD curves).
3. --sessions sessions (10) open the Samples page at once and each picks --picks rows at once:
   half of them rows the single session picked (their answers must be identical), half new rows
   shared between sessions (computed while others wait on the server-wide lock).
4. One session alone re-picks the new rows: the answers must equal what the sessions saw.

Reported: success rate (picks drawn without an error, within the timeout), p50/p95 pick latency
alone and at once, the server's peak resident memory (the process and its children, sampled
every 0.2 s) alone and at once, and the number of answers that differ (must be 0).

    python bench/app_load.py [--sessions 10] [--picks 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the server helper lives with the browser tests
from tests.test_browser import CHROMIUM, serve  # noqa: E402

TIMEOUT_MS = 600_000


class PeakMemory:
    """Peak resident memory (MiB) of the process listening on ``port`` and its children."""

    def __init__(self, port: int):
        self.pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _serves(p, port))
        self.peak, self._stop = 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_tree(self.pid))
            time.sleep(0.2)

    def reset(self) -> float:
        peak, self.peak = self.peak, _rss_tree(self.pid)
        return peak

    def stop(self) -> None:
        self._stop.set()


def _serves(proc: Path, port: int) -> bool:
    try:
        cmd = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd


def _rss_tree(pid: int) -> float:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


async def _shown(page, row: int) -> str:
    """What the page says about ``row`` once drawn: heading, metrics, spectrum caption, neighbours."""
    await page.get_by_text(f"Row {row}:").first.wait_for(timeout=TIMEOUT_MS)
    await page.locator('[data-test-script-state="notRunning"]').wait_for(timeout=TIMEOUT_MS)
    await page.get_by_text("eigenvalues below").first.wait_for(timeout=TIMEOUT_MS)
    await page.locator('[data-testid="stMetric"]').nth(1).wait_for(timeout=TIMEOUT_MS)
    await page.locator(".js-plotly-plot").nth(2).wait_for(timeout=TIMEOUT_MS)
    if await page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"an exception on row {row}")
    parts = [await page.get_by_role("heading", name=f"Row {row}:").first.inner_text()]
    parts += await page.locator('[data-testid="stMetric"]').all_inner_texts()
    parts += await page.get_by_text("eigenvalues below").all_inner_texts()
    parts += await page.get_by_text("nearest training images").all_inner_texts()
    return "\n".join(parts)


async def session(browser, url: str, rows: list[int], start: int, barrier: asyncio.Barrier | None):
    """Open the Samples page on ``start``, then pick ``rows`` one after another: ({row: text}, latencies, errors)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    answers, times, errors = {}, [], 0
    try:
        await page.goto(f"{url}/samples?n=600&row={start}")
        await _shown(page, start)
        box = page.get_by_test_id("stNumberInputField")
        if barrier is not None:
            await barrier.wait()  # every session picks at once
        for row in rows:
            t0 = time.perf_counter()
            try:
                await box.fill(str(row))
                await box.press("Enter")
                answers[row] = await _shown(page, row)
                times.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted as a failed pick
                print(f"  pick of row {row} failed: {str(exc).splitlines()[0]}", flush=True)
                errors += 1
    finally:
        await page.close()
    return answers, times, errors


async def run(n_sessions: int, n_picks: int) -> dict:
    from playwright.async_api import async_playwright

    from memviz.study.core import open_study

    study = open_study("demo-mnist", n=600)
    analysed = set(int(r) for r in study.rows)
    rng = np.random.default_rng(0)
    fresh = [int(r) for r in rng.permutation(len(study.train)) if int(r) not in analysed][: 3 * n_picks]
    fresh += [int(r) for r in rng.choice(sorted(analysed), 3 * n_picks, replace=False)]
    fresh = [int(r) for r in rng.permutation(fresh)]
    alone_rows, shared_rows = fresh[:n_picks], fresh[n_picks:]
    start = int(min(analysed))
    with serve("bench-load") as (url, log):
        memory = PeakMemory(int(url.rsplit(":", 1)[1]))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            warm = await browser.new_page()
            await warm.goto(url)
            await warm.get_by_text("Detectors against the planted ground truth").wait_for(timeout=TIMEOUT_MS)
            await warm.close()
            await session(browser, url, [], start, None)  # the Samples page once, untimed
            memory.reset()
            alone, alone_times, alone_errors = await session(browser, url, alone_rows, start, None)
            peak_alone = memory.reset()
            barrier = asyncio.Barrier(n_sessions)
            plans = [
                [
                    alone_rows[(i + j) % n_picks] if j % 2 else shared_rows[(i + j) % len(shared_rows)]
                    for j in range(n_picks)
                ]
                for i in range(n_sessions)
            ]
            t0 = time.perf_counter()
            results = await asyncio.gather(*(session(browser, url, plan, start, barrier) for plan in plans))
            wall = time.perf_counter() - t0
            peak_many = memory.reset()
            seen = sorted({r for plan in plans for r in plan if r in shared_rows})
            after, _, after_errors = await session(browser, url, seen, start, None)
            await browser.close()
        memory.stop()
        traceback = "Traceback" in log.read_text()
    many_times = [t for _, times, _ in results for t in times]
    picks = n_sessions * n_picks
    failed = sum(e for _, _, e in results)
    differ = sum(
        answer != (alone.get(row) or after.get(row)) for answers, _, _ in results for row, answer in answers.items()
    )
    return {
        "sessions": n_sessions,
        "picks_per_session": n_picks,
        "success_rate": (picks - failed) / picks,
        "answers_that_differ": differ,
        "alone_pick_p50_s": statistics.median(alone_times),
        "alone_pick_p95_s": float(np.quantile(alone_times, 0.95)),
        "at_once_pick_p50_s": statistics.median(many_times),
        "at_once_pick_p95_s": float(np.quantile(many_times, 0.95)),
        "at_once_wall_s": wall,
        "peak_memory_alone_mib": peak_alone,
        "peak_memory_at_once_mib": peak_many,
        "errors_alone": alone_errors + after_errors,
        "traceback_in_server_log": traceback,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--picks", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if CHROMIUM is None:
        raise SystemExit("No system Chromium: apt-get install chromium.")
    os.environ["MEMVIZ_CACHE"] = tempfile.mkdtemp(prefix="memviz-bench-")
    out = asyncio.run(run(args.sessions, args.picks))
    for k, v in out.items():
        print(f"{k}: {round(v, 3) if isinstance(v, float) else v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
