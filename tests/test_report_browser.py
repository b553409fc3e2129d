"""index.html in headless Chromium: matrix, drill-down, filters in the URL, no network.

Built from the committed sample of real results (tests/data/report/real).
Skipped, with the reason, where Playwright or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from report_fixtures import (
    HISTORY_RELEASES,
    HISTORY_VERDICTS,
    copy_real,
    history,
    miniature,
    write_expectations,
)
from test_report_shrunk import MISMATCH, record, write_record

from harness.report.aggregate import env_grid, env_release, format_view, release_grid, verdict
from harness.report.build import build_report
from harness.report.model import build_model
from harness.report.repro import repro_commands, shrink_commands
from harness.runtime.expect import Expectations

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright: pip install playwright (no browser download needed)")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the browser test needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
LOCAL = ("file:", "data:")

EMU_215 = "torch-2.15.0-py3.11-cuda-emulated"
CPU_241 = "torch-2.4.1-py3.11-cpu"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    results = copy_real(tmp / "R")
    build_report([results], tmp / "out")
    return {"url": (tmp / "out" / "index.html").as_uri(), "model": build_model([results])}


def _built(tmp, write_results):
    """A report of the results `write_results` writes, judged by the fixtures' expectations."""
    exp = write_expectations(tmp)
    build_report([write_results(tmp / "R")], tmp / "out", expectations=exp)
    return {"url": (tmp / "out" / "index.html").as_uri(), "model": build_model([tmp / "R"], Expectations.load(exp))}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return _built(tmp_path_factory.mktemp("mini"), miniature)


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    return _built(tmp_path_factory.mktemp("hist"), history)


@pytest.fixture(scope="module")
def context():
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1400, "height": 1000},
        )
        yield ctx
        ctx.close()


class Tab:
    """A page that records every request, aborts any that is not file: or data:, and keeps JS errors."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.requests: list = []
        self.errors: list = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else route.abort())

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait("!!(window.__report && window.__report.ready)")

    def wait(self, expression: str, timeout: float = 30.0) -> None:
        # Polled from here: the page's CSP forbids the eval that wait_for_function uses.
        end = time.monotonic() + timeout
        while not self.page.evaluate(expression):
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def query(self) -> dict:
        return {k: v[0] for k, v in parse_qs(urlparse(self.page.url).query).items()}

    def rows(self) -> list:
        return self.page.eval_on_selector_all("#rows tr.row", "rs => rs.map(r => r.className.split(' ')[1].slice(2))")


@pytest.fixture
def tab(context):
    t = Tab(context)
    yield t
    offline = [u for u in t.requests if not u.startswith(LOCAL)]
    t.page.close()
    assert offline == [], f"the page made network requests: {offline}"
    assert t.errors == [], f"the page logged errors: {t.errors}"


def test_matrix_shows_every_env(tab, real):
    tab.open(real["url"])
    model = real["model"]
    cols = tab.page.eval_on_selector_all("#matrix-table thead th[scope=col]", "ths => ths.map(t => t.textContent)")
    rows = tab.page.eval_on_selector_all("#matrix-table tbody th[scope=row]", "ths => ths.map(t => t.textContent)")
    assert cols == model.targets == ["torch-2.4.1-py3.11-cpu", "torch-2.15.0-py3.11-cpu"]
    assert rows == model.sources
    assert sorted(set(rows) | set(cols)) == sorted(model.envs)
    assert len(model.envs) == 4
    assert tab.page.query_selector("#releases-section") is None  # two releases: the views above suffice


def test_page_aggregates_agree_with_python(tab, real):
    tab.open(real["url"])
    model = real["model"]
    want = {f"{s} -> {t}": {k: v for k, v in c.to_dict().items() if k != "total"} for (s, t), c in env_grid(model.cells).items()}
    assert tab.page.evaluate("window.__report.matrixCounts()") == want
    verdicts = {f"{f} {s} -> {t}": verdict(c).value for (f, s, t), c in format_view(model.cells).items()}
    assert tab.page.evaluate("window.__report.formatVerdicts()") == verdicts
    # the cells that the sample is known for
    assert verdicts[f"exported torch-2.15.0-py3.11-cpu -> {CPU_241}"] == "regression"
    assert verdicts["torchscript torch-2.4.1-py3.11-cpu -> torch-2.15.0-py3.11-cpu"] == "safe"
    shown = tab.page.get_attribute(f'#format-table td[data-format="exported"][data-source="{EMU_215}"][data-target="torch-2.15.0-py3.11-cpu"]', "data-verdict")
    assert shown == "known incompatible"


def test_click_a_failing_cell_shows_its_diagnosis_and_reproduction(tab, real):
    tab.open(real["url"])
    cell = tab.page.locator(f'#matrix-table td.mx[data-source="{EMU_215}"][data-target="{CPU_241}"]')
    assert cell.get_attribute("data-worst") == "error"
    cell.click()
    assert tab.query() == {"source": EMU_215, "target": CPU_241}
    model = real["model"]
    pair = [(k, r) for k, r in zip(model.keys, model.cells) if r.source == EMU_215 and r.target == CPU_241]
    assert tab.page.text_content("#count") == f"{len(pair)} of {len(model.cells)} cells match"
    kinds = tab.rows()
    assert kinds[:2] == ["regression", "regression"] and "expected" in kinds
    # an expected failure shows its diagnosis and fix in the list...
    row = tab.page.locator("#rows tr.row", has_text="cuda_storage_on_cpu_host").first
    assert 'torch.load(f, map_location="cpu")' in row.locator("td.diag").text_content()
    # ... and in full when opened, with the commands that reproduce it
    row.click()
    detail = tab.page.locator("#rows tr.detail")
    text = detail.text_content()
    assert "the file holds storages saved on a CUDA device and this env has no GPU" in text
    assert "cuda-storages-need-map-location" in text
    key = tab.page.text_content("#rows tr.detail dl.cell dd code")
    nox, python = repro_commands(CPU_241, key)
    assert detail.locator("pre.repro-nox").text_content() == nox
    assert detail.locator("pre.repro-python").text_content() == python
    assert key in {k for k, _ in pair}
    # an expected failure is not offered a shrink (a regression or a mismatch is: below)
    assert detail.locator("pre.shrink-nox").count() == 0
    detail.scroll_into_view_if_needed()
    tab.page.screenshot(path=str(_reports() / "report-browser.png"))
    tab.page.locator("#rows tr.row.c-regression").first.click()
    detail = tab.page.locator("#rows tr.detail")
    key = tab.page.text_content("#rows tr.detail dl.cell dd code")
    nox, python = shrink_commands(CPU_241, key)
    assert detail.locator("pre.shrink-nox").text_content() == nox
    assert detail.locator("pre.shrink-python").text_content() == python
    assert tab.page.evaluate("i => window.__report.shrink(i)", int(detail.get_attribute("data-for"))) == [nox, python]


def test_filters_live_in_the_url(tab, context, real):
    tab.open(real["url"])
    model = real["model"]
    tab.page.check('#filters input[name="outcome"][value="regression"]')
    assert tab.query() == {"outcome": "regression"}
    regressions = [r for r in model.cells if r.regression]
    assert tab.rows() == ["regression"] * len(regressions)
    tab.page.select_option('#filters select[name="format"]', "exported")
    assert tab.query() == {"outcome": "regression", "format": "exported"}
    assert len(tab.rows()) == sum(r.format == "exported" for r in regressions)
    # the format filter narrows the format view to its row, and the matrix counts to the format
    assert tab.page.eval_on_selector_all("#format-table tbody th", "ths => ths.map(t => t.textContent)") == ["exported"]
    assert tab.page.text_content("#matrix-note") == "counts include only cells with format=exported"
    exported = env_grid([r for r in model.cells if r.format == "exported"])
    for (s, t), c in exported.items():
        shown = tab.page.eval_on_selector_all(
            f'#matrix-table td.mx[data-source="{s}"][data-target="{t}"] .n', "ns => Object.fromEntries(ns.map(n => [n.dataset.k, +n.textContent]))",
        )
        assert shown == {k: c[k] for k in ("pass", "expected", "regression", "mismatch", "skip")}
    assert tab.page.eval_on_selector_all("#selection .chip", "cs => cs.map(c => c.firstChild.textContent.trim())") == ["outcome: regression", "format: exported"]
    # a copied link shows the same view
    other = Tab(context)
    try:
        other.open(tab.page.url)
        assert other.rows() == tab.rows()
        assert other.page.is_checked('#filters input[name="outcome"][value="regression"]')
        assert other.page.input_value('#filters select[name="format"]') == "exported"
        assert [u for u in other.requests if not u.startswith(LOCAL)] == [] and other.errors == []
    finally:
        other.page.close()
    tab.page.click('#selection button[data-clear="format"]')
    assert tab.query() == {"outcome": "regression"}
    assert tab.page.text_content("#matrix-note") == ""
    tab.page.click("#clear-filters")
    assert tab.query() == {}
    assert len(tab.rows()) == 100


def test_text_search_and_paging(tab, real):
    tab.open(real["url"])
    n = len(real["model"].cells)
    assert len(tab.rows()) == 100 < n  # one page, never every row
    tab.page.click('#pager button[data-page="next"]')
    assert tab.query() == {"page": "2"}
    assert len(tab.rows()) == n - 100
    tab.page.fill('#filters input[name="q"]', "no item named 'version'")
    tab.wait("new URLSearchParams(location.search).get('q') === \"no item named 'version'\"")
    details = tab.page.eval_on_selector_all("#rows td.det", "ts => ts.map(t => t.textContent)")
    assert details and all("no item named 'version'" in d for d in details)
    assert "page" not in tab.query()


def test_mismatch_and_generated_case_details(tab, mini):
    tab.open(mini["url"])
    tab.page.check('#filters input[name="outcome"][value="mismatch"]')
    assert tab.rows() == ["mismatch"]
    tab.page.click("#rows tr.row")
    diffs = tab.page.eval_on_selector_all("#rows table.diffs tbody td", "ts => ts.map(t => t.textContent)")
    assert diffs == ["fc.weight", "bits", "0x3f80", "0x3f81", "[0, 1]"]
    tab.page.uncheck('#filters input[name="outcome"][value="mismatch"]')
    tab.page.select_option('#filters select[name="case"]', "gen_7")
    tab.page.click("#rows tr.row")
    spec = tab.page.text_content("#rows pre.spec")
    assert '"name": "gen_7"' in spec and '"origin": "generated"' in spec
    assert "python -m harness replay spec.json" in tab.page.text_content("#rows tr.detail")


def test_a_shrunk_cell_shows_its_shrink(tab, tmp_path):
    exp = write_expectations(tmp_path)
    write_record(tmp_path / "out" / "shrunk", record(*MISMATCH))
    build_report([miniature(tmp_path / "R")], tmp_path / "out", expectations=exp)
    tab.open((tmp_path / "out" / "index.html").as_uri())
    # the section's link shows the cell, opened, with the shrink beside it
    tab.page.click("#shrunk-section a.cells-link")
    assert tab.rows() == ["mismatch"]
    detail = tab.page.locator("#rows tr.detail")
    assert detail.locator("pre.shrink-nox").text_content() == shrink_commands(*MISMATCH)[0]
    shown = dict(zip(
        detail.locator("dl.shrunk-result dt").all_text_contents(), detail.locator("dl.shrunk-result dd").all_text_contents(),
    ))
    assert shown["status"] == "done: no smaller candidate fails the same way"
    assert shown["steps"] == "120 steps (9 accepted) in 3.0 s: 40.0 steps/s"
    assert shown["load options"] == "apply=none;map_location=cpu;mmap=0;weights_only=default"
    assert shown["reproduction"] == "spec.json · save.py · load.py · README.md"
    # its links resolve, from the page, to the files beside the record
    hrefs = detail.locator("dl.shrunk-result a").evaluate_all("as => as.map(a => a.href)")
    assert len(hrefs) == 4 and all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs)
    assert [Path(unquote(urlparse(h).path)).name for h in hrefs] == ["spec.json", "save.py", "load.py", "README.md"]


def _reports() -> Path:
    out = REPO / "reports"
    out.mkdir(exist_ok=True)
    return out


def _shown_rows(tab) -> list:
    """(category, format, source release, target release) of each listed row, as the page words them."""
    out = []
    for kind, pair, fmt in tab.page.eval_on_selector_all(
        "#rows tr.row", "rs => rs.map(r => [r.className.split(' ')[1].slice(2), r.children[1].textContent, r.children[3].textContent])",
    ):
        # "golden 1.13.1 py3.10 cpu → 1.8.1 py3.8 cpu"
        source, target = (side.removeprefix("golden ").split(" ")[0] for side in pair.split(" → "))
        out.append((kind, fmt, source, target))
    return out


def test_release_grid_click_shows_that_release_pair(tab, hist):
    tab.open(hist["url"])
    model = hist["model"]
    # the page folds envs into releases as release_grid does
    want = {f"{f} {s} -> {t}": verdict(c).value for (f, s, t), c in release_grid(model.cells).items()}
    assert want == {f"{f} {s} -> {t}": v for (f, s, t), v in HISTORY_VERDICTS.items()}
    assert tab.page.evaluate("window.__report.releaseVerdicts()") == want
    # one grid per format, releases in numeric order both ways
    assert tab.page.eval_on_selector_all("#releasegrid table.rg caption", "cs => cs.map(c => c.textContent)") == ["state_dict", "full_model", "torchscript"]
    grid = '#releasegrid table.rg[data-format="state_dict"]'
    assert tab.page.eval_on_selector_all(f"{grid} thead th[scope=col]", "ths => ths.map(t => t.textContent)") == list(HISTORY_RELEASES)
    assert tab.page.eval_on_selector_all(f"{grid} tbody th[scope=row]", "ths => ths.map(t => t.textContent)") == list(HISTORY_RELEASES)
    # the failing cell: golden 1.13.1 files load different in 1.8.1
    cell = tab.page.locator(f'{grid} td.rg[data-source-release="1.13.1"][data-target-release="1.8.1"]')
    assert cell.get_attribute("data-verdict") == "corrupts"
    assert "v-corrupts" in cell.get_attribute("class").split()
    assert cell.text_content().startswith("≠")
    assert cell.get_attribute("title") == "state_dict saved by torch 1.13.1, loaded by torch 1.8.1: corrupts (1 pass, 0 expected, 0 regression, 1 mismatch, 0 skip)"
    cell.click()
    assert tab.query() == {"format": "state_dict", "source_release": "1.13.1", "target_release": "1.8.1"}
    pair = [r for r in model.cells if r.format == "state_dict" and env_release(r.source) == "1.13.1" and env_release(r.target) == "1.8.1"]
    assert len({r.source for r in pair}) == 2  # the golden and the live 1.13.1 env
    assert tab.page.text_content("#count") == f"{len(pair)} of {len(model.cells)} cells match"
    assert _shown_rows(tab) == [("mismatch", "state_dict", "1.13.1", "1.8.1"), ("pass", "state_dict", "1.13.1", "1.8.1")]
    assert tab.page.text_content("#rows tr.row td:nth-child(2)") == "golden 1.13.1 py3.10 cpu → 1.8.1 py3.8 cpu"
    assert tab.page.eval_on_selector_all("#selection .chip", "cs => cs.map(c => c.firstChild.textContent.trim())") == ["torch 1.13.1 → 1.8.1", "format: state_dict"]
    # another release cell replaces the pair
    known = tab.page.locator(f'{grid} td.rg[data-source-release="2.4.1"][data-target-release="2.15.0"]')
    assert "v-known-issues" in known.get_attribute("class").split()
    known.click()
    shown = _shown_rows(tab)
    assert len(shown) == 4 and {s[1:] for s in shown} == {("state_dict", "2.4.1", "2.15.0")}
    assert [s[0] for s in shown] == ["expected", "pass", "pass", "pass"]
    # one pair at a time: an env pair from the matrix replaces a release pair, and the other way round
    env_pair = {"source": "torch-1.4.0-py3.8-cpu", "target": "torch-2.4.1-py3.11-cpu"}
    tab.page.click(f'#matrix-table td.mx[data-source="{env_pair["source"]}"][data-target="{env_pair["target"]}"]')
    assert tab.query() == {"format": "state_dict", **env_pair}
    known.click()
    assert tab.query() == {"format": "state_dict", "source_release": "2.4.1", "target_release": "2.15.0"}
    tab.page.click('#selection button[data-clear="releases"]')
    assert tab.query() == {"format": "state_dict"}
