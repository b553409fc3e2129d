"""Issue 15's done-when: a fleet of over a thousand files checked end to end, killed part-way, resumed.

The fleet (`tests.fleet_corpus`) holds every golden file (seven releases,
every format, CPU and cuda-emulated), files saved now, hostile files,
files that only stand in for checkpoints, odd names, a FIFO and symlinks
in, out of and nowhere. ``check ROOT --out OUT --workers 2`` runs as a user
runs it; the first run kills itself (SIGKILL) after 300 lines; one file
already checked changes and one not yet checked is deleted; the second run
resumes, and a third finds nothing to do.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet_corpus import build_fleet

pytestmark = pytest.mark.slow

KILL_AFTER = 300
#: The resumed fleet's output folder, for the Chromium test after the main one.
RESUMED: dict = {}
#: An mtime no copy of the corpus has: the changed file's line must carry it.
CHANGED_MTIME_NS = 1_600_000_000_123_456_789


def _check(root: Path, out: Path, *, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m harness check ROOT --out OUT --workers 2 --exclude ...``, in its own session (it may SIGKILL itself)."""
    full = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1")
    full.pop("TORCH_ROUNDTRIP_DEBUG", None)
    full.pop("TORCH_ROUNDTRIP_FLEET_KILL_AFTER", None)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", "check", str(root), "--out", str(out), "--workers", "2", "--exclude", "excluded", "-q"],
        env=full, capture_output=True, text=True, timeout=900, start_new_session=True,
    )


def _holds(writer: dict, release: str) -> bool:
    def parse(text):
        return tuple(int(n) for n in text.split(".")) if text else None

    full, first, last = parse(release), parse(writer["first"]), parse(writer["last"])
    return (first is None or full[: len(first)] >= first) and (last is None or full[: len(last)] <= last)


def test_a_fleet_killed_part_way_resumes_to_one_line_per_file(torch, golden_unpacked, tmp_path):
    from harness.check.fleet_record import FLEET_FILE, read_lines

    corpus = build_fleet(tmp_path / "corpus", golden=golden_unpacked)
    assert len(corpus) >= 1000
    root, out = corpus.root, tmp_path / "out"
    name = {rel: f"{root}/{rel}" for rel in corpus.files}  # a line's `file`: the root as given, then the path below it

    # 1. Killed part-way: the fleet SIGKILLs itself after KILL_AFTER lines.
    first = _check(root, out, env={"TORCH_ROUNDTRIP_FLEET_KILL_AFTER": str(KILL_AFTER)})
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    raw = (out / FLEET_FILE).read_text(encoding="utf-8").splitlines()
    assert len(raw) >= KILL_AFTER
    done = {line.file for line in read_lines(out / FLEET_FILE)}  # a torn last line is dropped
    assert len(done) >= KILL_AFTER - 1 and done <= set(name.values())

    # 2. Between the runs: one checked file changes, one not yet checked disappears.
    regular = [rel for rel in corpus.files if (root / rel).is_file() and not (root / rel).is_symlink()]
    changed = next(rel for rel in regular if name[rel] in done and rel.startswith("golden/"))
    os.utime(root / changed, ns=(CHANGED_MTIME_NS, CHANGED_MTIME_NS))
    deleted = next(rel for rel in reversed(regular) if name[rel] not in done and rel.startswith(("safetensors/", "scripted/", "runs/")))
    (root / deleted).unlink()

    # 3. Resumed: every walked file once, the changed one checked again, the deleted one gone.
    second = _check(root, out)
    assert second.returncode == 1, second.stderr[-3000:]  # the fleet has findings
    text = (out / FLEET_FILE).read_text(encoding="utf-8")
    lines = read_lines(out / FLEET_FILE, strict=True)
    files = [line.file for line in lines]
    expected = {name[rel] for rel in corpus.files if rel != deleted}
    assert len(files) == len(set(files)) == len(text.splitlines()), "a file has more than one line"
    assert set(files) == expected, (sorted(expected - set(files))[:5], sorted(set(files) - expected)[:5])
    by_rel = {line.file[len(str(root)) + 1:]: line for line in lines}
    assert by_rel[changed].mtime_ns == CHANGED_MTIME_NS
    assert deleted not in by_rel
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert f"{len(expected)} files" in summary and (out / "index.html").stat().st_size > 0
    # Only what the first run had not recorded, and the changed file, were checked; the rest was reused.
    assert re.search(rf"checked {len(expected) - len(done) + 1}\b", second.stderr), second.stderr[-2000:]
    assert f"reused {len(done) - 1} unchanged" in second.stderr, second.stderr[-2000:]

    # Hostile files: flagged as running code, never run (no marker anywhere).
    for rel in corpus.hostile:
        report = by_rel[rel].report
        assert report["code_globals"] or report["script_escapes"], (rel, report["summary"])
        assert report["summary"].startswith("do not load this file"), report["summary"]
    assert not [m for m in corpus.markers if m.exists()], "a hostile payload ran"
    # Links out of the tree are reported as links, never read; no line describes what is outside.
    for rel in corpus.links_out + corpus.dangling:
        report = by_rel[rel].report
        assert report["verdict"] == "not_checked" and report["format"] == "unknown" and not report["tensors"], report
    assert not [f for f in files if f.startswith(str(corpus.outside))]
    assert not [rel for rel in corpus.not_walked if rel in by_rel], "an excluded or never-walked path has a line"
    # What the bytes say about the writer holds the release that wrote each file.
    wrong = [(rel, line.report["writer"]["releases"]) for rel, line in by_rel.items()
             if rel in corpus.releases and line.report.get("writer") and not _holds(line.report["writer"], corpus.releases[rel])]
    assert not wrong, wrong[:5]
    told = [rel for rel in corpus.releases if rel in by_rel and by_rel[rel].report["format"] in ("torch_zip", "torchscript")]
    assert told and all(by_rel[rel].report.get("writer") for rel in told)

    RESUMED.update(out=out, files=len(expected))

    # 4. Nothing changed: a third run checks nothing and keeps every line as it was (compacted, perhaps reordered).
    third = _check(root, out)
    assert third.returncode == 1, third.stderr[-3000:]
    assert re.search(r"checked 0\b", third.stderr) and f"reused {len(expected)} unchanged" in third.stderr, third.stderr[-2000:]
    assert sorted((out / FLEET_FILE).read_text(encoding="utf-8").splitlines()) == sorted(text.splitlines())


@pytest.mark.browser
def test_the_resumed_fleets_report_renders_in_chromium():
    """The report of that real 1000-file fleet (not hand-made lines) opens in Chromium: no errors, every file counted."""
    if not RESUMED:
        pytest.skip("runs after test_a_fleet_killed_part_way_resumes_to_one_line_per_file, which did not run here")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"needs Chromium at {chromium} (Debian: apt-get install chromium)")
    errors: list = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((RESUMED["out"] / "index.html").as_uri())
        text = page.inner_text("body")
        headings = page.eval_on_selector_all("h2", "es => es.map(e => e.textContent)")
        browser.close()
    assert not errors, errors
    assert f"{RESUMED['files']} files" in text and "Findings" in " ".join(headings), headings
