"""The report at 100,000 cells: generation time, page time-to-interactive, filter time.

Prints the figures and writes them to reports/report-perf.json; the bounds
asserted are generous (a shared CI machine is slow and noisy) and catch only
a report that stopped scaling: seconds of page work, every row in the DOM,
a page of many megabytes per thousand cells.

Run it alone with ``pytest tests/test_report_perf.py -s -m slow``, or as a
script: ``python tests/test_report_perf.py [N]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_fixtures import synthetic  # noqa: E402

from harness.report.build import build_report  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

N = 100_000
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parent.parent


def measure(n: int, work: Path) -> dict:
    """Build a report of `n` synthetic cells and time it, then time the page in Chromium."""
    from playwright.sync_api import sync_playwright

    results = synthetic(work / "R", n)
    start = time.perf_counter()
    built = build_report([results], work / "out")
    figures: dict = {"cells": n, "build_s": round(time.perf_counter() - start, 2)}
    for name in ("index.html", "results.json", "junit.xml", "summary.md"):
        figures[f"{name}_bytes"] = (work / "out" / name).stat().st_size
    figures["regressions"] = built.totals["regression"]

    def poll(page, expression: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not page.evaluate(expression):
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.01)

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = ctx.new_page()
        t = time.perf_counter()
        page.goto((work / "out" / "index.html").as_uri())
        poll(page, "!!(window.__report && window.__report.ready)")
        figures["open_wall_ms"] = round((time.perf_counter() - t) * 1000)
        timings = page.evaluate("window.__report.timings")
        figures["time_to_interactive_ms"] = round(timings["readyMs"])
        figures["script_ms"] = round(timings["scriptMs"])
        figures["dom_rows"] = page.eval_on_selector_all("#rows tr", "rs => rs.length")
        figures["dom_elements"] = page.evaluate("document.getElementsByTagName('*').length")

        def timed(action, name: str) -> None:
            renders = page.evaluate("window.__report.renders")
            t = time.perf_counter()
            action()
            poll(page, f"window.__report.renders > {renders}")
            figures[f"{name}_wall_ms"] = round((time.perf_counter() - t) * 1000)
            figures[f"{name}_render_ms"] = round(page.evaluate("window.__report.lastRenderMs"), 1)

        timed(lambda: page.check('#filters input[name="outcome"][value="regression"]'), "filter_outcome")
        timed(lambda: page.select_option('#filters select[name="format"]', "state_dict"), "filter_format")
        timed(lambda: page.click('#pager button[data-page="next"]'), "next_page")
        timed(lambda: page.fill('#filters input[name="q"]', "cuda device"), "filter_text")
        timed(lambda: page.click("#clear-filters"), "clear_filters")
        timed(lambda: page.click("#matrix-table td.mx >> nth=5"), "matrix_click")
        # the synthetic run spans four releases, so the page shows its release grids
        timed(lambda: page.click("#releasegrid td.rg >> nth=5"), "release_click")
        figures["dom_rows_after"] = page.eval_on_selector_all("#rows tr", "rs => rs.length")
        ctx.close()
    return figures


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Chromium at {CHROMIUM}")
def test_report_scales_to_100k_cells(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="needs Playwright")
    figures = measure(N, tmp_path)
    print("\nreport performance:", json.dumps(figures, indent=1))
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports" / "report-perf.json").write_text(json.dumps(figures, indent=1) + "\n")
    assert figures["build_s"] < 120
    assert figures["time_to_interactive_ms"] < 10_000
    for name in ("filter_outcome", "filter_format", "next_page", "filter_text", "clear_filters", "matrix_click", "release_click"):
        assert figures[f"{name}_render_ms"] < 2_000, name
    assert figures["dom_rows"] <= 100 and figures["dom_rows_after"] <= 101  # a page (+ an open detail row)
    assert figures["dom_elements"] < 20_000
    assert figures["index.html_bytes"] < 200 * N  # 200 bytes a cell at most


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(n, Path(tmp)), indent=1))
