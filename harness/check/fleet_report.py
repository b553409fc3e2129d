"""The fleet report: ``index.html`` and ``summary.md`` from the lines of ``check.jsonl``.

Its reader upgrades torch for a team and asks which stored checkpoints
break on the new release, and what the fix is for each. So the report
groups files by *finding* (verdict, reason, format), largest first, each
group with the releases that wrote its files, what loads where and the fix;
with lines from several envs it also groups files by their *pattern*
across the envs ("37 files load on torch-2.4.1-py3.11-cpu and stop loading
on torch-2.15.0-py3.11-cpu (weights_only_refused)") and draws the
file x env grid. `build_fleet` computes all of it from `FleetLine`s;
`render_html` and `render_markdown` only lay it out.

Standard library only: it runs in nox's own environment (``nox -s check``
merges every env's lines) and in every torch env, Python 3.8 included.
Everything a line carries came from a file someone else wrote (paths,
global names, messages), so every such text is escaped where it is
rendered, and the HTML is self-contained: inline CSS, no script, and a
content security policy that forbids any load.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Tuple

from harness.check.findings import Attempt, printable
from harness.check.fleet_record import FleetLine, latest
from harness.check.sniff import FILE_FORMATS
from harness.runtime.env import env_sort_key
from harness.runtime.fileio import write_text

__all__ = [
    "GRID_ROWS",
    "GROUP_FILES",
    "MARKDOWN_LIMIT",
    "RUNS_CODE",
    "Cell",
    "Fleet",
    "Group",
    "Pattern",
    "build_fleet",
    "finding_key",
    "grid_files",
    "loads_where",
    "render_html",
    "render_markdown",
    "write_fleet_report",
]

#: Files listed per group in index.html (the rest are counted).
GROUP_FILES = 50
#: Rows of the file x env grid in index.html (the groups carry the rest).
GRID_ROWS = 500
#: The most bytes summary.md may take: it is posted as a CI job summary (GitHub takes 1 MiB per step, a person far less).
MARKDOWN_LIMIT = 60_000
#: The reason of a file whose loading can run code from it (a code global, or TorchScript that escapes).
RUNS_CODE = "runs code"
#: The group of files without findings; it comes last.
LOADS_EVERY_WAY = "loads every way tried"

# Verdicts in the order reports list them, and how a sentence says each (one file, several).
_VERDICTS = ("loads", "loads_some_ways", "does_not_load", "not_checked", "crashed")
_VERDICT_WORDS = {
    "loads": "loads",
    "loads_some_ways": "loads some ways",
    "does_not_load": "does not load",
    "not_checked": "not checked",
    "crashed": "crashed",
}
_VERBS = {
    "loads": ("loads", "load"),
    "loads_some_ways": ("loads only some ways", "load only some ways"),
    "does_not_load": ("does not load", "do not load"),
    "not_checked": ("is not checked", "are not checked"),
    "crashed": ("crashes the check", "crash the check"),
    "stops": ("stops loading", "stop loading"),
    "missing": ("was not checked", "were not checked"),
}
# One symbol per verdict in the grid, so a column reads at a glance.
_SYMBOLS = {"loads": "✅", "loads_some_ways": "⚠️", "does_not_load": "❌", "not_checked": "❔", "crashed": "💥"}
_MISSING_SYMBOL = "➖"
# Distinct texts shown per group for writers, loads and fixes (the rest are counted).
_TOP = 5
# Characters of one user-supplied text kept in summary.md (index.html keeps them whole).
_MD_CLIP = 300


# -- what is wrong with one file -------------------------------------------------


def _attempts(report: dict[str, Any]) -> list[Attempt]:
    out = []
    for a in report.get("attempts") or []:
        if isinstance(a, dict):
            out.append(Attempt.from_dict(a))
    return out


def _runs_code(report: dict[str, Any]) -> bool:
    return bool(report.get("code_globals") or report.get("script_escapes"))


def _reason(report: dict[str, Any], attempts: list[Attempt]) -> str:
    """Why a file is in its group: a diagnosis code where there is one, else a short phrase.

    A file that can run code is that first: its loads fail under
    weights_only for the same reason as a harmless file's, but its fix is
    never an allowlist. Then what the bytes say about the whole file (an LFS
    pointer, a page, a truncated copy, a crashed check), then the first
    failed load's diagnosis (or exception type).
    """
    if _runs_code(report):
        return RUNS_CODE
    diagnosis = report.get("diagnosis") or {}
    if diagnosis.get("code"):
        return str(diagnosis["code"])
    for a in attempts:
        if a.failed:
            return _code(a)
    if report.get("problems"):
        return "inconsistent file"
    waiting = [a for a in attempts if a.status == "not_tried"]
    if waiting and not any(a.status == "loaded" for a in attempts):
        return "needs --trust" if all(a.detail.startswith("needs --trust") for a in waiting) else "not tried"
    if report.get("format") == "unknown":
        return "unknown format"
    return str(report.get("verdict", "not_checked"))


def finding_key(line: FleetLine) -> tuple[str, str, str]:
    """The group a line falls in: (verdict, reason, format); ``loads every way tried`` for a file without findings."""
    return _facts(line).key


def _fix(report: dict[str, Any], attempts: list[Attempt]) -> str:
    """What the reader does about the file: the diagnosis's fix (with the allowlist the check proved), or why there is none."""
    if _runs_code(report):
        # Never the allowlist its refused loads suggest: that would let the code run.
        what = [str(g) for g in report.get("code_globals") or []]
        if what:
            more = f" and {len(what) - 3} more" if len(what) > 3 else ""
            return (f"do not load it unless you trust where it came from: it imports {', '.join(what[:3])}{more}, "
                    "which runs code; never allowlist these globals")
        escape = (report.get("script_escapes") or [{}])[0]
        return f"do not load it unless you trust where it came from: its TorchScript code calls {escape.get('call', '?')}"
    diagnosis = report.get("diagnosis") or {}
    if diagnosis.get("fix"):
        return str(diagnosis["fix"])
    for a in attempts:
        if a.failed and a.diagnosis and a.diagnosis.get("fix"):
            return str(a.diagnosis["fix"])
    if any(a.failed for a in attempts):
        return "no known fix: the load's own error is in check.jsonl"
    if report.get("problems"):
        # The bytes contradict themselves (sizes, records): what is wrong is in the file's problems, the same fix for all.
        return "re-copy or re-save it from the original; check --trust tries its loads in a child process, never in yours"
    if report.get("verdict") == "not_checked" and any(a.detail.startswith("needs --trust") for a in attempts):
        return "check it again with --trust if you trust the file (its loads then run in a child process)"
    return ""


def _values(a: Attempt) -> dict[str, str]:
    values = {"loader": a.loader}
    for k, v in a.options.items():
        values[k] = str(int(v)) if isinstance(v, bool) else str(v)
    return values


def _separating(these: list[dict[str, str]], those: list[dict[str, str]], keys: list[str]) -> list[str]:
    """``key=v1|v2`` for each option whose values in `these` never occur in `those`: what sets them apart."""
    out = []
    for k in keys:
        mine = list(dict.fromkeys(v.get(k, "") for v in these))
        theirs = {v.get(k, "") for v in those}
        if theirs.isdisjoint(mine):
            out.append(f"{k}={'|'.join(mine)}")
    return out


def _code(a: Attempt) -> str:
    """A failed load's reason: its diagnosis code, else its exception type, else how it ended (crash, timeout)."""
    return str((a.diagnosis or {}).get("code") or (a.error or {}).get("type") or a.status)


def loads_where(report: dict[str, Any]) -> str:
    """Which loads worked and which failed, as a phrase: the options that tell them apart, and why the rest were not tried."""
    return _loads_where(_attempts(report))


def _loads_where(attempts: list[Attempt]) -> str:
    if not attempts:
        return "no load tried"
    values = [_values(a) for a in attempts]
    # Only the options that vary tell loads apart (a safetensors load has `device`, a torch.load `map_location`).
    keys = [k for k in dict.fromkeys(k for v in values for k in v) if len({v.get(k) for v in values}) > 1]
    status = [a.status if a.status in ("loaded", "not_tried", "skip") else "failed" if a.failed else a.status for a in attempts]
    loaded = [v for v, st in zip(values, status) if st == "loaded"]
    failed = [v for v, st in zip(values, status) if st == "failed"]
    codes = ", ".join(dict.fromkeys(_code(a) for a in attempts if a.failed))
    parts = []
    if loaded and not failed:
        parts.append(f"loads every way tried ({len(loaded)})")
    elif loaded:
        sep = _separating(loaded, failed, keys)
        if sep:
            parts.append(f"loads only with {' '.join(sep)}; fails with {' '.join(_separating(failed, loaded, keys))} ({codes})")
        else:
            parts.append(f"loads {len(loaded)} of {len(loaded) + len(failed)} ways; fails {len(failed)} ({codes})")
    elif failed:
        parts.append(f"fails every way tried ({len(failed)}: {codes})")
    if loaded and all(a.where == "child" for a, st in zip(attempts, status) if st == "loaded"):
        parts.append("only in a child process (--trust)")
    reasons: dict[str, list[dict[str, str]]] = {}
    heads = [a.detail.split(":", 1)[0] if st == "not_tried" else None for a, st in zip(attempts, status)]
    for v, head in zip(values, heads):
        if head is not None:
            reasons.setdefault(head, []).append(v)
    for why, these in reasons.items():
        rest = [v for v, head in zip(values, heads) if head != why]
        sep = _separating(these, rest, keys) if rest else []
        parts.append(f"{len(these)} not tried{' with ' + ' '.join(sep) if sep else ''} ({why})")
    skipped = status.count("skip")
    if skipped:
        parts.append(f"{skipped} skipped (this torch lacks the option)")
    return "; ".join(parts)


def _writer(report: dict[str, Any]) -> str:
    writer = report.get("writer")
    if isinstance(writer, dict) and writer.get("releases"):
        return str(writer["releases"])
    return "unknown"


def _format_name(fmt: str) -> str:
    return FILE_FORMATS.get(fmt, fmt) if fmt else ""


def _top(counter: Counter) -> list[tuple[str, int]]:
    """A counter's entries, most common first, ties in first-seen order."""
    order = {k: i for i, k in enumerate(counter)}
    return sorted(counter.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# -- the model -----------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What the report says about one line, worked out once (a fleet has thousands, each shown several times)."""

    key: tuple[str, str, str]
    fix: str
    loads: str
    writer: str


def _facts(line: FleetLine) -> _Facts:
    attempts = _attempts(line.report)
    key = ("loads", LOADS_EVERY_WAY, "") if not line.findings else (
        line.verdict, _reason(line.report, attempts), str(line.report.get("format", "unknown")))
    return _Facts(key, _fix(line.report, attempts), _loads_where(attempts), _writer(line.report))


Counted = Tuple[Tuple[str, int], ...]  # distinct texts, each with how many files, most first


def _counted(pairs: Iterable[tuple[str, str]]) -> Counted:
    """(text, file) pairs as distinct texts with how many files each, most first."""
    return tuple(_top(Counter(text for text, _ in dict.fromkeys(pairs))))


@dataclass(frozen=True)
class Group:
    """Files that share a finding: one (verdict, reason, format), in one env or several.

    `writers`, `loads` and `fixes` are the distinct texts over the group's
    files (the releases that wrote them, what loads where, the fix), each
    with how many files; `envs` is how many files each env puts here.
    """

    verdict: str
    reason: str
    format: str
    files: tuple[str, ...]
    envs: Counted
    writers: Counted
    loads: Counted
    fixes: Counted
    file_envs: dict[str, tuple[str, ...]]  # file -> the envs where it has this finding
    example: tuple[str, str]  # a file and its one-line summary

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def clean(self) -> bool:
        """Whether this is the group of files without findings."""
        return self.reason == LOADS_EVERY_WAY

    @property
    def title(self) -> str:
        n = self.count
        if self.clean:
            return f"{_n_files(n)} {'loads' if n == 1 else 'load'} every way tried"
        verb = _VERBS.get(self.verdict, (self.verdict, self.verdict))[0 if n == 1 else 1]
        if self.verdict == "loads":
            verb += ", with findings"
        return f"{_n_files(n)} {verb}: {self.reason}"


def _group(key: tuple[str, str, str], lines: list[FleetLine], facts: dict[tuple[str, str], _Facts]) -> Group:
    file_envs: dict[str, list[str]] = {}
    for line in lines:
        file_envs.setdefault(line.file, []).append(line.env)
    envs = sorted(_counted((line.env, line.file) for line in lines), key=lambda kv: env_sort_key(kv[0]))
    return Group(
        verdict=key[0], reason=key[1], format=key[2], files=tuple(file_envs), envs=tuple(envs),
        writers=_counted((facts[line.key].writer, line.file) for line in lines),
        loads=_counted((facts[line.key].loads, line.file) for line in lines),
        fixes=_counted((facts[line.key].fix, line.file) for line in lines),
        file_envs={f: tuple(e) for f, e in file_envs.items()},
        example=(lines[0].file, str(lines[0].report.get("summary", ""))),
    )


@dataclass(frozen=True)
class Cell:
    """One file in one env, as the grid and the patterns see it (None: the env has no line for it)."""

    verdict: str
    reason: str
    findings: bool

    @property
    def clean(self) -> bool:
        return self.verdict == "loads" and not self.findings

    @property
    def text(self) -> str:
        if self.clean:
            return "loads"
        return f"{_VERDICT_WORDS.get(self.verdict, self.verdict)}: {self.reason}"


def _cell(line: FleetLine, facts: Optional[_Facts] = None) -> Cell:
    return Cell(line.verdict, (facts.key if facts else finding_key(line))[1], line.findings)


def _cell_short(line: Optional[FleetLine]) -> tuple[str, str]:
    """(verdict class, grid text) of one grid cell: a symbol and a word or two."""
    if line is None:
        return ("missing", f"{_MISSING_SYMBOL} not checked")
    verdict = line.verdict
    symbol = _SYMBOLS.get(verdict, "❔")
    cell = _cell(line)
    if cell.clean:
        return (verdict, f"{symbol} loads")
    if verdict == "loads_some_ways":
        attempts = _attempts(line.report)
        tried = [a for a in attempts if a.status == "loaded" or a.failed]
        loaded = sum(1 for a in tried if a.status == "loaded")
        return (verdict, f"{symbol} {loaded} of {len(tried)} load: {cell.reason}")
    if verdict == "loads":
        return (verdict, f"⚠️ loads: {cell.reason}")
    return (verdict, f"{symbol} {cell.reason}")


@dataclass(frozen=True)
class Pattern:
    """Files that fare the same in every env: one `Cell` (or None, not checked there) per env of the fleet."""

    envs: tuple[str, ...]
    cells: tuple[Optional[Cell], ...]
    files: tuple[str, ...]
    fixes: tuple[tuple[str, Counted], ...]  # (envs, ((fix, files), ...)) where the files do not load cleanly

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def changes(self) -> bool:
        """Whether the files fare differently in some env (what an upgrade asks about)."""
        return len(set(self.cells)) > 1

    @property
    def clean(self) -> bool:
        return all(c is not None and c.clean for c in self.cells)

    @property
    def title(self) -> str:
        """``37 files load on A and stop loading on B (weights_only_refused)``: runs of envs alike, in release order."""
        n = self.count
        one = 0 if n == 1 else 1
        runs: list[tuple[Optional[Cell], list[str]]] = []
        for env, cell in zip(self.envs, self.cells):
            if runs and runs[-1][0] == cell:
                runs[-1][1].append(env)
            else:
                runs.append((cell, [env]))
        clauses = []
        for i, (cell, envs) in enumerate(runs):
            every = len(runs) == 1 and len(envs) > 1
            on, inside = ("in every env", "in every env") if every else (f"on {_and(envs)}", f"in {_and(envs)}")
            if cell is None:
                clauses.append(f"{_VERBS['missing'][one]} {inside}")
                continue
            before = runs[i - 1][0] if i else None
            if cell.clean:
                clauses.append(f"{_VERBS['loads'][one]} {on}")
                continue
            stops = cell.verdict == "does_not_load" and before is not None and before.verdict in ("loads", "loads_some_ways")
            key = "stops" if stops else cell.verdict
            verb = _VERBS.get(key, (key, key))
            findings = ", with findings" if cell.verdict == "loads" else ""
            clauses.append(f"{verb[one]}{findings} {on} ({cell.reason})")
        return f"{n} {'file' if n == 1 else 'files'} {_and(clauses)}"


def _n_files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _and(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class Fleet:
    """Everything the fleet report shows, computed once for both renderings."""

    lines: tuple[FleetLine, ...]  # one per (env, file), the latest
    envs: tuple[str, ...]  # in release order
    files: tuple[str, ...]  # sorted
    groups: tuple[Group, ...]  # largest first, files without findings last
    patterns: tuple[Pattern, ...]  # several envs only: changing patterns first, then by size; clean last
    by_file: dict[str, dict[str, FleetLine]]  # file -> env -> line

    def totals(self) -> list[tuple[str, str]]:
        """(what, how many) for the top of the report."""
        lines = self.lines
        first = {f: next(iter(per.values())) for f, per in self.by_file.items()}
        findings = sum(1 for per in self.by_file.values() if any(line.findings for line in per.values()))
        code = sum(1 for per in self.by_file.values() if any(_runs_code(line.report) for line in per.values()))
        crashed = Counter(str((line.report.get("diagnosis") or {}).get("code", "")) for line in lines if line.verdict == "crashed")
        seconds = sum(line.seconds for line in lines)
        size = sum(max(line.size, 0) for line in first.values())
        missing = sum(1 for per in self.by_file.values() if len(per) < len(self.envs))
        out = [
            ("files", str(len(self.files))),
            ("envs", str(len(self.envs))),
            ("files with findings", str(findings)),
            ("files that can run code when loaded", str(code)),
            ("checks that crashed", str(crashed.get("check_crash", 0))),
            ("checks that timed out", str(crashed.get("check_timeout", 0))),
            ("checked with --trust", f"{sum(1 for line in lines if line.trust)} of {len(lines)} checks"),
            ("time checking", _duration(seconds)),
            ("size", _bytes(size)),
        ]
        if len(self.envs) > 1:
            out.insert(2, ("files not checked in every env", str(missing)))
        return out

    def by_verdict(self) -> dict[str, Counter]:
        """env -> verdict -> files."""
        table: dict[str, Counter] = {env: Counter() for env in self.envs}
        for line in self.lines:
            table[line.env][line.verdict] += 1
        return table

    def verdicts(self) -> list[str]:
        seen = {line.verdict for line in self.lines}
        return [v for v in _VERDICTS if v in seen] + sorted(seen - set(_VERDICTS))

    def by_format(self) -> list[tuple[str, int]]:
        return _top(Counter(self._format(f) for f in self.files))

    def by_writer(self) -> list[tuple[str, int]]:
        return _top(Counter(_writer(self._first(f).report) for f in self.files))

    def _first(self, file: str) -> FleetLine:
        # A crashed check knows no format: prefer an env whose check finished.
        per = self.by_file[file]
        return next((line for line in per.values() if line.verdict != "crashed"), next(iter(per.values())))

    def _format(self, file: str) -> str:
        return str(self._first(file).report.get("format", "unknown"))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:.0f} s ({hours} h {minutes} min)" if hours else f"{seconds:.0f} s ({minutes} min {rest} s)"


def _bytes(size: int) -> str:
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"


def build_fleet(lines: Sequence[FleetLine]) -> Fleet:
    """The report's model of `lines` (from one env or several; of several lines per (env, file) the last counts)."""
    kept = latest(lines)
    envs = tuple(sorted({line.env for line in kept}, key=env_sort_key))
    by_file: dict[str, dict[str, FleetLine]] = {}
    for line in kept:
        by_file.setdefault(line.file, {})[line.env] = line
    for file, per in by_file.items():
        by_file[file] = {env: per[env] for env in envs if env in per}
    facts = {line.key: _facts(line) for line in kept}
    members: dict[tuple[str, str, str], list[FleetLine]] = {}
    for line in kept:
        members.setdefault(facts[line.key].key, []).append(line)
    groups = [_group(key, ls, facts) for key, ls in members.items()]
    rank = {v: i for i, v in enumerate(_VERDICTS)}
    groups.sort(key=lambda g: (g.clean, -g.count, rank.get(g.verdict, len(rank)), g.reason, g.format))
    patterns: list[Pattern] = []
    if len(envs) > 1:
        shared: dict[tuple[Optional[Cell], ...], list[str]] = {}
        for file, per in sorted(by_file.items()):
            cells = tuple(_cell(per[env], facts[per[env].key]) if env in per else None for env in envs)
            shared.setdefault(cells, []).append(file)
        for cells, files in shared.items():
            # The fixes per env where the files do not load cleanly; envs with the same fixes share one entry.
            fixes: dict[Counted, list[str]] = {}
            for env, cell in zip(envs, cells):
                if cell is not None and not cell.clean:
                    fixes.setdefault(_counted((facts[(env, f)].fix, f) for f in files), []).append(env)
            where = [("every env" if len(on) == len(envs) else _and(on), items) for items, on in fixes.items()]
            patterns.append(Pattern(envs, cells, tuple(files), tuple(where)))
        patterns.sort(key=lambda p: (p.clean, not p.changes, -p.count, p.title))
    return Fleet(tuple(kept), envs, tuple(sorted(by_file)), tuple(groups), tuple(patterns), by_file)


def grid_files(fleet: Fleet) -> list[str]:
    """The files in the grid's order: pattern by pattern (changes first), so its first rows are the ones to read."""
    if fleet.patterns:
        return [f for p in fleet.patterns for f in p.files]
    return [f for g in fleet.groups for f in g.files]


# -- HTML ----------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1b1f24}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}h3{font-size:1.05em;margin:.2em 0}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
section.group,section.pattern{border:1px solid #d0d7de;border-left:6px solid #8c959f;border-radius:4px;padding:.5em 1em;margin:.8em 0}
section.v-loads.clean{border-left-color:#1a7f37}section.v-loads_some_ways{border-left-color:#bf8700}
section.v-does_not_load,section.v-crashed{border-left-color:#cf222e}section.v-not_checked{border-left-color:#6e7781}
section.runs-code{border-left-color:#8250df;background:#fbf7ff}section.pattern.changes{border-left-color:#cf222e}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:.4em 0}dt{font-weight:600;color:#57606a}dd{margin:0}
dd ul{margin:0;padding-left:1.2em}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:0 .2em;word-break:break-all}
details{margin:.3em 0}summary{cursor:pointer;color:#0969da}ul.files{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.count{font-weight:700}.muted{color:#57606a}table.grid td{white-space:nowrap}table.grid td.file{white-space:normal;word-break:break-all}
td.c-loads{background:#dafbe1}td.c-loads_some_ways{background:#fff8c5}td.c-does_not_load,td.c-crashed{background:#ffebe9}
td.c-not_checked,td.c-missing{background:#f6f8fa}
"""


def _e(text: Any) -> str:
    """User data as HTML text: on one line, every markup character escaped."""
    return html.escape(printable(str(text)), quote=True)


def _counted_html(items: Counted, code: bool = False) -> str:
    shown = items[:_TOP]
    rows = []
    for text, n in shown:
        body = f"<code>{_e(text)}</code>" if code and text else (_e(text) if text else '<span class="muted">none known</span>')
        rows.append(f"<li>{body} <span class=\"muted\">({_n_files(n)})</span></li>")
    if len(items) > len(shown):
        rest = sum(n for _, n in items[len(shown):])
        rows.append(f'<li class="muted">and {len(items) - len(shown)} more ({_n_files(rest)})</li>')
    return "<ul>" + "".join(rows) + "</ul>"


def _files_html(files: Sequence[str], file_envs: Optional[dict[str, tuple[str, ...]]]) -> str:
    shown = files[:GROUP_FILES]
    items = []
    for f in shown:
        where = f' <span class="muted">({_e(", ".join(file_envs[f]))})</span>' if file_envs else ""
        items.append(f"<li>{_e(f)}{where}</li>")
    more = f'<p class="muted more">and {len(files) - len(shown)} more</p>' if len(files) > len(shown) else ""
    noun = "file" if len(files) == 1 else "files"
    return f'<details><summary>the {len(files)} {noun}</summary><ul class="files">{"".join(items)}</ul>{more}</details>'


def _group_html(i: int, g: Group, several: bool) -> str:
    classes = f"group v-{_e(g.verdict)}" + (" clean" if g.clean else "") + (" runs-code" if g.reason == RUNS_CODE else "")
    rows = []
    if g.format:
        rows.append(("format", f"{_e(_format_name(g.format))} <code>{_e(g.format)}</code>"))
    rows.append(("written by", _counted_html(g.writers)))
    rows.append(("what loads", _counted_html(g.loads)))
    if not g.clean:
        rows.append(("fix", _counted_html(g.fixes, code=True)))
        rows.append(("for example", f"{_e(g.example[0])}: {_e(g.example[1])}"))
    if several:
        rows.append(("envs", _counted_html(g.envs)))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<section class="{classes}" id="group-{i}" data-count="{g.count}" data-verdict="{_e(g.verdict)}" '
        f'data-reason="{_e(g.reason)}" data-format="{_e(g.format)}">'
        f'<h3 class="group-title">{_e(g.title)}</h3><dl>{body}</dl>{_files_html(g.files, g.file_envs if several else None)}</section>'
    )


def _pattern_html(i: int, p: Pattern) -> str:
    rows = []
    for env, cell in zip(p.envs, p.cells):
        text = f"not checked in {env}" if cell is None else cell.text
        rows.append(f"<tr><th scope=\"row\">{_e(env)}</th><td>{_e(text)}</td></tr>")
    fixes = "".join(f"<dt>fix on {_e(env)}</dt><dd>{_counted_html(items, code=True)}</dd>" for env, items in p.fixes)
    classes = "pattern" + (" changes" if p.changes else "") + (" clean" if p.clean else "")
    return (
        f'<section class="{classes}" id="pattern-{i}" data-count="{p.count}">'
        f'<h3 class="pattern-title">{_e(p.title)}</h3><table class="cells">{"".join(rows)}</table>'
        f'{"<dl>" + fixes + "</dl>" if fixes else ""}{_files_html(p.files, None)}</section>'
    )


def _grid_html(fleet: Fleet) -> str:
    files = grid_files(fleet)
    head = "".join(f'<th scope="col">{_e(env)}</th>' for env in fleet.envs)
    rows = []
    for f in files[:GRID_ROWS]:
        per = fleet.by_file[f]
        cells = []
        for env in fleet.envs:
            line = per.get(env)
            kind, text = _cell_short(line)
            title = _e(line.report.get("summary", "")[:300]) if line is not None else f"no line from {_e(env)}"
            cells.append(f'<td class="c-{kind}" title="{title}">{_e(text)}</td>')
        rows.append(f'<tr><td class="file">{_e(f)}</td>{"".join(cells)}</tr>')
    note = ""
    if len(files) > GRID_ROWS:
        note = f'<p class="muted" id="grid-note">the first {GRID_ROWS} of {len(files)} files; the groups above carry the rest</p>'
    return f'<table class="grid"><thead><tr><th scope="col">file</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>{note}'


def _verdict_table_html(fleet: Fleet) -> str:
    verdicts = fleet.verdicts()
    table = fleet.by_verdict()
    head = "".join(f'<th scope="col">{_VERDICT_WORDS.get(v, _e(v))}</th>' for v in verdicts)
    rows = []
    for env in fleet.envs:
        cells = "".join(f'<td class="n" data-verdict="{_e(v)}">{table[env].get(v, 0)}</td>' for v in verdicts)
        rows.append(f'<tr data-env="{_e(env)}"><th scope="row">{_e(env)}</th>{cells}</tr>')
    return f'<table id="verdicts"><thead><tr><th scope="col">env</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _pairs_html(table_id: str, items: list[tuple[str, int]], name: Any) -> str:
    rows = "".join(f'<tr><th scope="row">{name(k)}</th><td class="n">{n}</td></tr>' for k, n in items)
    return f'<table id="{table_id}"><tbody>{rows}</tbody></table>'


def render_html(fleet: Fleet, title: str) -> str:
    """index.html: self-contained (inline CSS, no script, no network), readable at thousands of files."""
    several = len(fleet.envs) > 1
    totals = "".join(f'<tr><th scope="row">{k}</th><td class="n" data-k="{k}">{_e(v)}</td></tr>' for k, v in fleet.totals())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="lead">{_e(_lead(fleet))}</p>',
        '<section id="totals"><h2>Totals</h2>',
        f'<table id="totals-table"><tbody>{totals}</tbody></table>',
        "<h3>By verdict</h3>", _verdict_table_html(fleet),
        "<h3>By format</h3>", _pairs_html("formats", fleet.by_format(), lambda k: f"{_e(_format_name(k))} <code>{_e(k)}</code>"),
        "<h3>By the release that wrote it</h3>", _pairs_html("writers", fleet.by_writer(), _e),
        "</section>",
    ]
    if several:
        parts.append('<section id="patterns"><h2>Across envs</h2>')
        parts.append('<p class="muted">files grouped by how they fare in each env, in release order; patterns that change first</p>')
        parts.extend(_pattern_html(i, p) for i, p in enumerate(fleet.patterns))
        parts.append("</section>")
    parts.append('<section id="groups"><h2>Findings</h2>')
    parts.append('<p class="muted">files grouped by what is wrong (verdict, reason, format), largest first</p>')
    parts.extend(_group_html(i, g, several) for i, g in enumerate(fleet.groups))
    parts.append("</section>")
    if several:
        parts.append(f'<section id="grid"><h2>Files x envs</h2>{_grid_html(fleet)}</section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _lead(fleet: Fleet) -> str:
    findings = dict(fleet.totals())["files with findings"]
    envs = ", ".join(fleet.envs) or "no env"
    return f"{_n_files(len(fleet.files))} checked in {len(fleet.envs)} env{'s' if len(fleet.envs) != 1 else ''} ({envs}): {findings} with findings."


# -- Markdown ------------------------------------------------------------------

_MD_SPECIAL = set("\\`*_[]<>|#~&")


def _md(text: Any, clip: int = _MD_CLIP) -> str:
    """User data as Markdown text: on one line, clipped, every character that could start markup escaped."""
    one = printable(str(text))
    if len(one) > clip:
        one = one[: clip - 1] + "…"
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in one)


def _counted_md(items: Counted, top: int) -> str:
    shown = items[:top]
    out = ", ".join(f"{_md(text) if text else 'none known'} ({_n_files(n)})" for text, n in shown)
    if len(items) > len(shown):
        out += f", and {len(items) - len(shown)} more"
    return out


def _files_md(files: Sequence[str], cap: int) -> list[str]:
    if cap <= 0:
        return []
    shown = files[:cap]
    out = [f"  - {_md(f)}" for f in shown]
    if len(files) > len(shown):
        out.append(f"  - and {len(files) - len(shown)} more (index.html lists {min(len(files), GROUP_FILES)})")
    return out


def _markdown(fleet: Fleet, title: str, files: int, groups: int, grid: int, top: int) -> str:
    several = len(fleet.envs) > 1
    out = [f"# {_md(title)}", "", _md(_lead(fleet)), "", "| total | |", "|---|--:|"]
    out += [f"| {k} | {_md(v)} |" for k, v in fleet.totals()]
    verdicts = fleet.verdicts()
    table = fleet.by_verdict()
    out += ["", "| env | " + " | ".join(_VERDICT_WORDS.get(v, _md(v)) for v in verdicts) + " |",
            "|---|" + "--:|" * len(verdicts)]
    out += [f"| {_md(env)} | " + " | ".join(str(table[env].get(v, 0)) for v in verdicts) + " |" for env in fleet.envs]
    out += ["", "Formats: " + ", ".join(f"{_md(_format_name(k))} ({n})" for k, n in fleet.by_format()),
            "", "Written by: " + ", ".join(f"{_md(k)} ({n})" for k, n in fleet.by_writer()[:top])]
    if several:
        out += ["", "## Across envs", ""]
        shown = [p for p in fleet.patterns][:groups]
        for p in shown:
            out += [f"### {_md(p.title)}", ""]
            out += [f"- {_md(env)}: {_md(f'not checked in {env}' if c is None else c.text)}" for env, c in zip(p.envs, p.cells)]
            out += [f"- fix on {_md(env)}: {_counted_md(items, top)}" for env, items in p.fixes]
            if files:
                out += ["- files:"] + _files_md(p.files, files)
            out.append("")
        if len(fleet.patterns) > len(shown):
            rest = sum(p.count for p in fleet.patterns[len(shown):])
            out += [f"And {len(fleet.patterns) - len(shown)} more patterns ({rest} files): see index.html.", ""]
    out += ["", "## Findings", ""]
    shown_groups = list(fleet.groups[:groups])
    for g in shown_groups:
        out += [f"### {_md(g.title)}", ""]
        if g.format:
            out.append(f"- format: {_md(_format_name(g.format))}")
        out.append(f"- written by: {_counted_md(g.writers, top)}")
        out.append(f"- what loads: {_counted_md(g.loads, top)}")
        if not g.clean:
            out.append(f"- fix: {_counted_md(g.fixes, top)}")
        if several:
            out.append(f"- envs: {_counted_md(g.envs, len(fleet.envs))}")
        if files:
            out += ["- files:"] + _files_md(g.files, files)
        out.append("")
    if len(fleet.groups) > len(shown_groups):
        rest = sum(g.count for g in fleet.groups[len(shown_groups):])
        out += [f"And {len(fleet.groups) - len(shown_groups)} more groups ({rest} files): see index.html.", ""]
    if several and grid > 0:
        names = grid_files(fleet)
        out += ["## Files x envs", "", "| file | " + " | ".join(_md(e) for e in fleet.envs) + " |",
                "|---|" + "---|" * len(fleet.envs)]
        for f in names[:grid]:
            per = fleet.by_file[f]
            out.append(f"| {_md(f)} | " + " | ".join(_md(_cell_short(per.get(env))[1]) for env in fleet.envs) + " |")
        if len(names) > grid:
            out += ["", f"The first {grid} of {len(names)} files; the groups above and index.html carry the rest."]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


#: From the fullest summary.md to the barest: (files per group, groups, grid rows, distinct texts per field).
_MD_LEVELS = ((10, 100, 50, _TOP), (5, 40, 20, 3), (3, 20, 0, 2), (0, 20, 0, 1), (0, 8, 0, 1))


def render_markdown(fleet: Fleet, title: str, limit: int = MARKDOWN_LIMIT) -> str:
    """summary.md: the report in GitHub Markdown, under `limit` bytes (file lists, groups and grid cut first, each cut said)."""
    text = ""
    for files, groups, grid, top in _MD_LEVELS:
        text = _markdown(fleet, title, files, groups, grid, top)
        if len(text.encode("utf-8")) <= limit:
            return text
    # Even the barest summary is too long (huge titles or envs): cut it at a line and say so.
    note = "\n(summary.md cut here to stay under its size limit: index.html has everything)\n"
    room = limit - len(note.encode("utf-8"))
    cut = text.encode("utf-8")[:max(room, 0)].decode("utf-8", "ignore")
    return cut[: cut.rfind("\n") + 1] + note


def write_fleet_report(out: Path, lines: Sequence[FleetLine], *, title: str = "torch-roundtrip fleet check") -> None:
    """Write ``out/index.html`` and ``out/summary.md`` for `lines` (one env or many), each atomically."""
    fleet = build_fleet(lines)
    out = Path(out)
    write_text(out / "index.html", render_html(fleet, title))
    write_text(out / "summary.md", render_markdown(fleet, title))
