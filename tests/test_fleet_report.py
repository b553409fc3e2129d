"""The fleet report (index.html, summary.md) from hand-made check.jsonl lines: groups, patterns, grid, escaping, size.

In process and fast: the lines are built here, as `harness.check.checker`
and `fleet_record.crash_report` write them, so no torch and no file is
needed. `fleet_lines` and `synthetic_lines` are shared with
tests/test_fleet_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from harness.check.fleet_record import FleetLine, crash_report
from harness.check.fleet_report import (
    GRID_ROWS,
    GROUP_FILES,
    MARKDOWN_LIMIT,
    RUNS_CODE,
    build_fleet,
    finding_key,
    loads_where,
    render_html,
    render_markdown,
    write_fleet_report,
)

REPO = Path(__file__).resolve().parent.parent
OLD = "torch-2.4.1-py3.11-cpu"
NEW = "torch-2.15.0-py3.11-cpu"  # sorts before OLD as text: the report must order envs by release
EVIL = "fleet/<script>alert(1)</script>.pt"
PIPE = "fleet/a|b`c\nd.pt"
ALLOWLIST_FIX = ("if you trust the file, allowlist all 1 globals it needs: import argparse; "
                 "torch.serialization.add_safe_globals([argparse.Namespace]); or torch.load(f, weights_only=False)")
CUDA_FIX = 'torch.load(f, map_location="cpu")'
MMAP_FIX = "load it with mmap=False, or re-save it with torch.save(obj, f)"
CORRUPT_FIX = "re-copy or re-download the file and compare its size and checksum with the original"


# -- building lines by hand ------------------------------------------------------


def attempt(status: str, *, wo: str = "default", mmap: bool = False, ml: str = "cpu", code: Optional[str] = None,
            fix: str = "", etype: str = "UnpicklingError", where: Optional[str] = "harness", detail: str = "",
            loader: str = "torch.load") -> dict[str, Any]:
    """One attempt as `Attempt.to_dict` writes it."""
    failed = status in ("failed", "crash", "timeout")
    return {
        "loader": loader, "options": {"map_location": ml, "weights_only": wo, "mmap": mmap, "apply": "none"},
        "status": status, "where": None if status == "not_tried" else where,
        "detail": detail or (f"{etype}: boom" if failed else "dict of 2 entries, 2 tensors"),
        "error": {"type": etype, "message": "boom"} if status == "failed" else None,
        "diagnosis": {"code": code, "summary": f"{code} happened", "fix": fix} if code else None, "seconds": 0.01,
    }


def sweep(outcome: dict[tuple[str, bool], dict[str, Any]], trust: bool = False) -> list[dict[str, Any]]:
    """check's torch.load sweep (weights_only x mmap, two map_locations); `outcome` maps (weights_only, mmap) to attempt kwargs."""
    out = []
    for ml in ("none", "cpu"):
        for wo in ("default", "true", "false"):
            for mmap in (False, True):
                if wo == "false" and not trust:
                    out.append(attempt("not_tried", wo=wo, mmap=mmap, ml=ml,
                                       detail="needs --trust: weights_only=False unpickles the file, which can run code from it"))
                    continue
                kw = dict(outcome.get((wo, mmap), outcome.get((wo, None), {"status": "loaded"})))  # type: ignore[arg-type]
                status = kw.pop("status")
                out.append(attempt(status, wo=wo, mmap=mmap, ml=ml, where="child" if wo == "false" else "harness", **kw))
    return out


def line(file: str, env: str = NEW, *, verdict: str, attempts: Optional[list] = None, fmt: str = "torch_zip",
         diagnosis: Optional[dict] = None, code_globals: tuple = (), problems: tuple = (), writer: Optional[str] = None,
         seconds: float = 0.5, trust: bool = False, summary: str = "", report: Optional[dict] = None) -> FleetLine:
    """A fleet line with the report fields the fleet report reads."""
    if report is None:
        report = {
            "path": file, "size": 1000, "format": fmt, "verdict": verdict, "attempts": attempts or [],
            "diagnosis": diagnosis, "code_globals": list(code_globals), "script_escapes": [], "problems": list(problems),
            "summary": summary or f"{verdict} here", "tensors": [], "tensors_total": 0,
            "findings": verdict != "loads" or bool(problems) or bool(code_globals),
        }
        if writer is not None:
            report["writer"] = {"releases": writer, "evidence": ["record .format_version"]}
    return FleetLine(file=file, root="fleet", env=env, size=int(report.get("size", 0)), mtime_ns=1, seconds=seconds,
                     trust=trust, checker="test", report=report)


def refused(file: str, env: str = NEW, **kw: Any) -> FleetLine:
    """weights_only refuses a global (argparse.Namespace); the allowlist proved to fix it."""
    bad = {"status": "failed", "code": "weights_only_refused", "fix": ALLOWLIST_FIX}
    return line(file, env, verdict="does_not_load", writer="torch >= 2.1",
                attempts=sweep({("default", None): bad, ("true", None): bad}), **kw)


def loads(file: str, env: str, **kw: Any) -> FleetLine:
    return line(file, env, verdict="loads", attempts=sweep({}), **kw)


def fleet_lines() -> list[FleetLine]:
    """A small fleet in two envs with every verdict, hostile and crashed files, and a file only one env checked."""
    cuda = {"status": "failed", "code": "cuda_storage_on_cpu_host", "fix": CUDA_FIX, "etype": "RuntimeError"}
    mmap = {"status": "failed", "code": "mmap_legacy_format", "fix": MMAP_FIX, "etype": "RuntimeError"}
    # The hostile file's loads fail as weights_only refusals whose fix is an allowlist: the report must not pass that on.
    evil = {"status": "failed", "code": "weights_only_refused",
            "fix": "torch.serialization.add_safe_globals([posix.system])"}
    out = []
    for name in ("ns1.pt", "ns2.pt", "ns3.pt"):
        out += [loads(f"fleet/{name}", OLD, writer="torch >= 2.1"), refused(f"fleet/{name}")]
    out += [loads("fleet/gpu.pt", OLD), line("fleet/gpu.pt", NEW, verdict="does_not_load",
                                            attempts=sweep({("default", None): cuda, ("true", None): cuda}))]
    for name in ("legacy1.pt", "legacy2.pt"):
        for env in (OLD, NEW):
            out.append(line(f"fleet/{name}", env, verdict="loads_some_ways", fmt="torch_legacy", writer="torch 1.0 - 1.5",
                            attempts=sweep({("default", True): mmap, ("true", True): mmap})))
    for env in (OLD, NEW):
        out.append(line("fleet/payload.pt", env, verdict="does_not_load", code_globals=("posix.system",),
                        attempts=sweep({("default", None): evil, ("true", None): evil})))
        out.append(line("fleet/truncated.pt", env, verdict="not_checked",
                        diagnosis={"code": "corrupt_file", "summary": "the zip archive is truncated", "fix": CORRUPT_FIX},
                        problems=("truncated or corrupt zip archive",)))
        out.append(line("fleet/model.ts", env, verdict="not_checked", fmt="torchscript", attempts=[
            attempt("not_tried", loader="torch.jit.load",
                    detail="needs --trust: torch.jit.load runs the archive's TorchScript code"),
        ]))
        out += [loads("fleet/clean1.pt", env), loads(EVIL, env), loads(PIPE, env)]
    out.append(loads("fleet/boom.pt", OLD))
    out.append(line("fleet/boom.pt", NEW, verdict="crashed", seconds=3.0, report=crash_report("fleet/boom.pt", 10, "SIGSEGV")))
    out.append(line("fleet/slow.pt", NEW, verdict="crashed", seconds=60.0,
                    report=crash_report("fleet/slow.pt", 10, "no answer in 60 s", status="timeout")))
    out.append(loads("fleet/old_only.pt", OLD, trust=True))
    return out


def synthetic_lines(n: int, envs: tuple = (OLD, NEW)) -> list[FleetLine]:
    """`n` files in every env of `envs`: most load, a share stop loading in the last env, a few are hostile or truncated."""
    out = []
    for i in range(n):
        name = f"fleet/team-{i % 17}/run-{i:05d}/checkpoint-{i}.pt"
        for k, env in enumerate(envs):
            newest = k == len(envs) - 1
            if i % 50 == 0:
                out.append(line(name, env, verdict="does_not_load", code_globals=("posix.system",), attempts=sweep({})))
            elif i % 7 == 0:
                out.append(line(name, env, verdict="not_checked", diagnosis={
                    "code": "corrupt_file", "summary": "cut short", "fix": CORRUPT_FIX}, problems=("truncated",)))
            elif i % 3 == 0 and newest:
                out.append(refused(name, env))
            else:
                out.append(loads(name, env, writer="torch >= 2.1"))
    return out


def _group(fleet, verdict: str, reason: str):
    found = [g for g in fleet.groups if (g.verdict, g.reason) == (verdict, reason)]
    assert len(found) == 1, [(g.verdict, g.reason, g.format) for g in fleet.groups]
    return found[0]


def _unescape_md(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


# -- the groups -------------------------------------------------------------------


def test_files_are_grouped_by_finding_largest_first_clean_last():
    fleet = build_fleet([x for x in fleet_lines() if x.env == NEW])
    keys = [(g.verdict, g.reason, g.format, g.count) for g in fleet.groups]
    assert keys[0] == ("does_not_load", "weights_only_refused", "torch_zip", 3)
    assert keys[-1] == ("loads", "loads every way tried", "", 3)
    assert [g.count for g in fleet.groups[:-1]] == sorted((g.count for g in fleet.groups[:-1]), reverse=True)
    # two files with different diagnosis codes never share a group
    assert _group(fleet, "does_not_load", "cuda_storage_on_cpu_host").files == ("fleet/gpu.pt",)
    assert "fleet/gpu.pt" not in _group(fleet, "does_not_load", "weights_only_refused").files
    # a crash and a timeout are two findings, each with its code
    assert _group(fleet, "crashed", "check_crash").files == ("fleet/boom.pt",)
    assert _group(fleet, "crashed", "check_timeout").files == ("fleet/slow.pt",)
    assert _group(fleet, "not_checked", "corrupt_file").files == ("fleet/truncated.pt",)
    assert _group(fleet, "not_checked", "needs --trust").format == "torchscript"
    assert _group(fleet, "loads_some_ways", "mmap_legacy_format").count == 2
    # every file is in exactly one group
    listed = [f for g in fleet.groups for f in g.files]
    assert sorted(listed) == sorted(set(listed)) == list(fleet.files)


def test_the_format_is_part_of_the_finding():
    same = {"status": "failed", "code": "mmap_legacy_format", "fix": MMAP_FIX}
    fleet = build_fleet([
        line("a.pt", verdict="loads_some_ways", fmt="torch_legacy", attempts=sweep({("default", True): same})),
        line("b.pt", verdict="loads_some_ways", fmt="torch_zip", attempts=sweep({("default", True): same})),
    ])
    assert sorted((g.format, tuple(g.files)) for g in fleet.groups) == [("torch_legacy", ("a.pt",)), ("torch_zip", ("b.pt",))]


def test_a_file_that_runs_code_is_never_offered_an_allowlist():
    payload = next(x for x in fleet_lines() if x.file == "fleet/payload.pt")
    assert finding_key(payload) == ("does_not_load", RUNS_CODE, "torch_zip")
    group = _group(build_fleet([payload]), "does_not_load", RUNS_CODE)
    (fix, n), = group.fixes
    assert n == 1 and fix.startswith("do not load it unless you trust where it came from: it imports posix.system")
    assert "add_safe_globals" not in render_html(build_fleet([payload]), "t")
    # TorchScript that leaves its sandbox is the same finding, with its call named
    script = line("m.ts", verdict="not_checked", fmt="torchscript")
    script.report["script_escapes"] = [{"where": "code/m.py:3", "call": "os.system", "why": "runs a shell command"}]
    assert finding_key(script) == ("not_checked", RUNS_CODE, "torchscript")
    (fix, _), = _group(build_fleet([script]), "not_checked", RUNS_CODE).fixes
    assert fix == "do not load it unless you trust where it came from: its TorchScript code calls os.system"
    # ... while a harmless refusal keeps the allowlist the check proved
    assert _group(build_fleet([refused("x.pt")]), "does_not_load", "weights_only_refused").fixes == ((ALLOWLIST_FIX, 1),)


def test_a_group_says_who_wrote_its_files_what_loads_and_the_fix():
    fleet = build_fleet(fleet_lines())
    legacy = _group(fleet, "loads_some_ways", "mmap_legacy_format")
    assert legacy.writers == (("torch 1.0 - 1.5", 2),)
    assert legacy.loads == (
        ("loads only with mmap=0; fails with mmap=1 (mmap_legacy_format); 4 not tried with weights_only=false (needs --trust)", 2),
    )
    assert legacy.fixes == ((MMAP_FIX, 2),)
    assert legacy.envs == ((OLD, 2), (NEW, 2))  # by release, not as text
    assert _group(fleet, "does_not_load", "cuda_storage_on_cpu_host").writers == (("unknown", 1),)
    md = render_markdown(fleet, "t")
    assert "- written by: torch 1.0 - 1.5 (2 files)" in _unescape_md(md)
    assert f"- fix: {MMAP_FIX} (2 files)" in _unescape_md(md)


def test_what_loads_where():
    wo = {"status": "failed", "code": "weights_only_refused", "fix": ALLOWLIST_FIX}
    untrusted = line("a.pt", verdict="does_not_load", attempts=sweep({("default", None): wo, ("true", None): wo}))
    assert loads_where(untrusted.report) == (
        "fails every way tried (8: weights_only_refused); 4 not tried with weights_only=false (needs --trust)")
    trusted = line("a.pt", verdict="loads_some_ways", trust=True,
                   attempts=sweep({("default", None): wo, ("true", None): wo}, trust=True))
    assert loads_where(trusted.report) == (
        "loads only with weights_only=false; fails with weights_only=default|true (weights_only_refused); "
        "only in a child process (--trust)")
    mixed = line("a.pt", verdict="loads_some_ways", attempts=sweep({("default", False): wo}))
    assert loads_where(mixed.report) == "loads 6 of 8 ways; fails 2 (weights_only_refused); 4 not tried with weights_only=false (needs --trust)"
    assert loads_where(crash_report("x", 1, "SIGSEGV")) == "no load tried"


def test_totals():
    fleet = build_fleet(fleet_lines())
    totals = dict(fleet.totals())
    assert fleet.envs == (OLD, NEW)
    assert totals["files"] == "15" and totals["envs"] == "2"
    assert totals["files with findings"] == "11"  # 3 ns, gpu, 2 legacy, payload, truncated, model.ts, boom, slow
    assert totals["files that can run code when loaded"] == "1"
    assert totals["checks that crashed"] == "1" and totals["checks that timed out"] == "1"
    assert totals["files not checked in every env"] == "2"  # slow.pt (new only) and old_only.pt
    assert totals["checked with --trust"] == f"1 of {len(fleet.lines)} checks"
    assert sum(x.seconds for x in fleet.lines) == 76.0 and totals["time checking"] == "76 s (1 min 16 s)"
    assert fleet.by_verdict()[NEW] == {"loads": 3, "does_not_load": 5, "loads_some_ways": 2, "not_checked": 2, "crashed": 2}
    # a file only a crashed check saw has no known format
    assert dict(fleet.by_format()) == {"torch_zip": 11, "torch_legacy": 2, "torchscript": 1, "unknown": 1}


def test_a_later_line_of_the_same_file_and_env_wins():
    first, again = refused("a.pt"), loads("a.pt", NEW)
    fleet = build_fleet([first, again])
    assert [(g.reason, g.count) for g in fleet.groups] == [("loads every way tried", 1)]
    assert [(g.reason, g.count) for g in build_fleet([again, first]).groups] == [("weights_only_refused", 1)]


# -- several envs ------------------------------------------------------------------


def test_patterns_across_envs_say_where_files_stop_loading():
    fleet = build_fleet(fleet_lines())
    titles = [p.title for p in fleet.patterns]
    assert titles[0] == f"3 files load on {OLD} and stop loading on {NEW} (weights_only_refused)"
    assert f"1 file loads on {OLD} and stops loading on {NEW} (cuda_storage_on_cpu_host)" in titles
    assert f"1 file loads on {OLD} and was not checked in {NEW}" in titles
    assert f"1 file was not checked in {OLD} and crashes the check on {NEW} (check_timeout)" in titles
    assert "2 files load only some ways in every env (mmap_legacy_format)" in titles
    assert titles[-1] == "3 files load in every env"
    # patterns that change come first; the same finding everywhere after them
    changes = [p.changes for p in fleet.patterns]
    assert changes == sorted(changes, reverse=True)
    first = fleet.patterns[0]
    assert first.files == ("fleet/ns1.pt", "fleet/ns2.pt", "fleet/ns3.pt")
    assert first.fixes == ((NEW, ((ALLOWLIST_FIX, 3),)),)  # the fix where it breaks, and only there
    legacy = next(p for p in fleet.patterns if "mmap" in p.title)
    assert legacy.fixes == (("every env", ((MMAP_FIX, 2),)),)
    md = _unescape_md(render_markdown(fleet, "t"))
    assert f"- {NEW}: not checked in {NEW}" in md
    assert f"- {OLD}: loads\n- {NEW}: does not load: weights_only_refused" in md


def test_the_grid_has_one_row_per_file_changes_first():
    fleet = build_fleet(fleet_lines())
    page = render_html(fleet, "t")
    grid = page[page.index('<table class="grid">'):]
    header = re.findall(r'<th scope="col">([^<]*)</th>', grid[:grid.index("</thead>")])
    assert header == ["file", OLD, NEW]
    rows = re.findall(r"<tr><td class=\"file\">(.*?)</td>(.*?)</tr>", grid)
    assert len(rows) == len(fleet.files)
    assert rows[0][0] == "fleet/ns1.pt"
    cells = re.findall(r"<td class=\"c-([a-z_]+)\"[^>]*>([^<]*)</td>", rows[0][1])
    assert cells == [("loads", "✅ loads"), ("does_not_load", "❌ weights_only_refused")]
    boom = next(r for r in rows if r[0] == "fleet/boom.pt")
    assert re.findall(r">([^<]*)</td>", boom[1]) == ["✅ loads", "💥 check_crash"]
    only = next(r for r in rows if r[0] == "fleet/old_only.pt")
    assert re.findall(r">([^<]*)</td>", only[1]) == ["✅ loads", "➖ not checked"]
    legacy = next(r for r in rows if r[0] == "fleet/legacy1.pt")
    assert re.findall(r">([^<]*)</td>", legacy[1]) == ["⚠️ 4 of 8 load: mmap_legacy_format"] * 2


def test_one_env_has_no_grid_and_no_patterns():
    fleet = build_fleet([x for x in fleet_lines() if x.env == OLD])
    assert fleet.patterns == ()
    page = render_html(fleet, "t")
    assert 'class="grid"' not in page and 'id="patterns"' not in page
    assert "Across envs" not in render_markdown(fleet, "t")


# -- escaping, self-containment, size ---------------------------------------------------


def test_user_data_is_escaped_in_html():
    page = render_html(build_fleet(fleet_lines()), "<b>title</b>")
    assert "<script" not in page and "alert(1)</script>" not in page
    assert "fleet/&lt;script&gt;alert(1)&lt;/script&gt;.pt" in page
    assert "&lt;b&gt;title&lt;/b&gt;" in page and "<b>" not in page
    # a newline in a path stays on its line, as an escape
    assert "fleet/a|b`c\\nd.pt" in page and "b`c\nd" not in page


def test_user_data_is_escaped_in_markdown():
    md = render_markdown(build_fleet(fleet_lines()), "t")
    assert "fleet/\\<script\\>alert(1)\\</script\\>.pt" in md and "<script>" not in md
    row = next(r for r in md.splitlines() if r.startswith("| fleet/a"))
    # the pipe and the backtick of the name are escaped: the row still has a file cell and one cell per env
    assert row.startswith("| fleet/a\\|b\\`c\\\\nd.pt |")
    assert len(re.findall(r"(?<!\\)\|", row)) == 4
    # every table row has as many cells as its header
    for table in re.findall(r"(?:^\|.*\n)+", md, flags=re.M):
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in table.strip().splitlines()}
        assert len(widths) == 1, table


def test_html_is_self_contained():
    page = render_html(build_fleet(fleet_lines()), "t")
    assert "default-src 'none'" in page  # the page may load nothing, even if some text were not escaped
    for needle in ("http://", "https://", "<script", "<link", "src=", "@import", "url("):
        assert needle not in page, needle
    assert page.count("<details>") == len(build_fleet(fleet_lines()).groups) + len(build_fleet(fleet_lines()).patterns)


def test_two_thousand_files_stay_small_and_capped():
    lines = synthetic_lines(2000)
    fleet = build_fleet(lines)
    page = render_html(fleet, "t")
    assert len(page.encode()) < 3_000_000
    assert page.count('<td class="file">') == GRID_ROWS
    assert f"the first {GRID_ROWS} of 2000 files; the groups above carry the rest" in page
    biggest = fleet.groups[0]
    assert biggest.count > GROUP_FILES
    section = page[page.index('id="group-0"'):page.index('id="group-1"')]
    assert section.count("<li>fleet/team-") == GROUP_FILES
    assert f"and {biggest.count - GROUP_FILES} more" in section
    md = render_markdown(fleet, "t")
    assert len(md.encode()) <= MARKDOWN_LIMIT
    assert "and index.html carry the rest" in md or "Files x envs" not in md


def test_summary_md_stays_under_its_limit_and_says_what_it_left_out():
    # Each file a group of its own (distinct exception types) with long paths and fixes: far more than fits.
    lines = []
    for i in range(3000):
        name = f"fleet/{'deep/' * 30}file-{i}.pt"
        bad = {"status": "failed", "etype": f"Error{i}", "fix": f"fix number {i} " + "x" * 200}
        for env in (OLD, NEW):
            lines.append(line(name, env, verdict="does_not_load", attempts=sweep({("default", None): bad, ("true", None): bad})))
    fleet = build_fleet(lines)
    md = render_markdown(fleet, "t")
    assert len(md.encode("utf-8")) <= MARKDOWN_LIMIT
    assert re.search(r"And \d+ more (groups|patterns) \(\d+ files\): see index\.html\.", md) or "summary.md cut here" in md
    # a fleet that fits is shown whole
    small = render_markdown(build_fleet(fleet_lines()), "t")
    assert "more groups" not in small and "more patterns" not in small and "cut here" not in small
    assert "fleet/ns3.pt" in small
    # and the cut is real: a small limit forces the barest form
    tight = render_markdown(build_fleet(fleet_lines()), "t", limit=2500)
    assert len(tight.encode()) <= 2500


def test_write_fleet_report_writes_both_files(tmp_path):
    out = tmp_path / "report"
    write_fleet_report(out, fleet_lines(), title="our checkpoints")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.md"]  # no temp file left behind
    assert "<title>our checkpoints</title>" in (out / "index.html").read_text(encoding="utf-8")
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# our checkpoints\n")


def test_an_empty_fleet_renders():
    fleet = build_fleet([])
    assert "0 files checked in 0 envs" in render_html(fleet, "t")
    assert render_markdown(fleet, "t").startswith("# t\n")


def test_it_needs_only_the_standard_library(tmp_path):
    # nox's own environment renders the merged grid: no torch, numpy, xxhash or Jinja there.
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"torch", "numpy", "xxhash", "jinja2", "safetensors", "hypothesis"}}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from pathlib import Path
from harness.check.fleet_record import FleetLine, crash_report
from harness.check.fleet_report import write_fleet_report
report = crash_report("a.pt", 1, "SIGSEGV")
write_fleet_report(Path({str(tmp_path)!r}), [FleetLine("a.pt", ".", "torch-2.4.1-py3.11-cpu", 1, 1, 1.0, False, "c", report)])
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "check\\_crash" in (tmp_path / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("label", ["odd-label", "torch-2.10.0-py3.11-cpu", "torch-2.9.1-py3.11-cpu", "torch-2.9.1-py3.10-cpu"])
def test_envs_are_ordered_by_release(label):
    envs = build_fleet([loads("a.pt", e) for e in (label, OLD, NEW)]).envs
    assert envs == ((OLD, NEW, label) if label == "odd-label" else (OLD, label, NEW))
