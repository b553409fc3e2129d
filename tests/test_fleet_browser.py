"""The fleet report's index.html in headless Chromium: groups and counts as computed, user data as text, 2000 files.

Built from the hand-made lines of tests/test_fleet_report.py. Skipped, with
the reason, where Playwright or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from test_fleet_report import EVIL, NEW, OLD, PIPE, fleet_lines, synthetic_lines

from harness.check.fleet_report import GRID_ROWS, build_fleet, write_fleet_report

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright: pip install playwright (no browser download needed)")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the browser test needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
LOCAL = ("file:", "data:")


@pytest.fixture(scope="module")
def context():
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1300, "height": 900},
        )
        yield ctx
        ctx.close()


class Tab:
    """A page that aborts any request that is not file: or data:, and keeps errors, console errors and dialogs."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.requests: list = []
        self.errors: list = []
        self.dialogs: list = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("dialog", self._dialog)
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else route.abort())

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def texts(self, selector: str) -> list:
        return self.page.eval_on_selector_all(selector, "es => es.map(e => e.textContent)")


@pytest.fixture
def tab(context):
    t = Tab(context)
    yield t
    offline = [u for u in t.requests if not u.startswith(LOCAL)]
    t.page.close()
    assert offline == [], f"the page made network requests: {offline}"
    assert t.errors == [], f"the page logged errors: {t.errors}"
    assert t.dialogs == [], f"the page opened dialogs: {t.dialogs}"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    lines = fleet_lines()
    write_fleet_report(out, lines)
    return {"url": (out / "index.html").as_uri(), "fleet": build_fleet(lines)}


def test_groups_and_counts_are_those_computed(tab, small):
    tab.page.goto(small["url"])
    fleet = small["fleet"]
    assert tab.texts("section.group h3") == [g.title for g in fleet.groups]
    assert tab.page.eval_on_selector_all("section.group", "ss => ss.map(s => +s.dataset.count)") == [g.count for g in fleet.groups]
    assert tab.texts("section.pattern h3") == [p.title for p in fleet.patterns]
    heading = tab.page.locator("section.group h3").first
    assert heading.is_visible() and heading.text_content() == "3 files do not load: weights_only_refused"
    pattern = tab.page.locator("section.pattern h3").first
    assert pattern.is_visible()
    assert pattern.text_content() == f"3 files load on {OLD} and stop loading on {NEW} (weights_only_refused)"
    # the totals and the verdict table say what the model says
    totals = dict(fleet.totals())
    assert tab.page.text_content('#totals-table td[data-k="files"]') == totals["files"] == "15"
    assert tab.page.text_content('#totals-table td[data-k="files with findings"]') == totals["files with findings"]
    for env, counts in fleet.by_verdict().items():
        shown = tab.page.eval_on_selector_all(
            f'#verdicts tr[data-env="{env}"] td', "ts => Object.fromEntries(ts.map(t => [t.dataset.verdict, +t.textContent]))")
        assert shown == {v: counts.get(v, 0) for v in fleet.verdicts()}
    # a group's files open from its summary
    files = tab.page.locator("section.group").first.locator("ul.files li")
    assert not files.first.is_visible()
    tab.page.locator("section.group").first.locator("details > summary").click()
    assert files.first.is_visible()
    assert [t.split(" (")[0] for t in files.all_text_contents()] == ["fleet/ns1.pt", "fleet/ns2.pt", "fleet/ns3.pt"]


def test_a_hostile_filename_is_shown_as_text(tab, small):
    tab.page.goto(small["url"])
    assert tab.page.evaluate("document.scripts.length") == 0
    cell = tab.page.locator("table.grid td.file", has_text="alert(1)")
    assert cell.count() == 1 and cell.is_visible()
    assert cell.text_content() == EVIL
    pipe = tab.page.locator("table.grid td.file", has_text="fleet/a|b")
    assert pipe.text_content() == PIPE.replace("\n", "\\n")
    # no element came from the name: the only elements with "script" in them are none
    assert tab.page.evaluate("document.querySelectorAll('script, img, iframe, object, embed, link').length") == 0


def test_two_thousand_files_render(tab, tmp_path):
    lines = synthetic_lines(2000)
    write_fleet_report(tmp_path, lines)
    fleet = build_fleet(lines)
    tab.page.goto((tmp_path / "index.html").as_uri())  # within Playwright's default timeout
    assert tab.page.eval_on_selector_all("section.group", "ss => ss.map(s => +s.dataset.count)") == [g.count for g in fleet.groups]
    assert tab.page.locator("table.grid tbody tr").count() == GRID_ROWS
    note = tab.page.locator("#grid-note")
    note.scroll_into_view_if_needed()
    assert note.is_visible() and note.text_content() == f"the first {GRID_ROWS} of 2000 files; the groups above carry the rest"
