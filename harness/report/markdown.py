"""``summary.md``: the short form, for ``$GITHUB_STEP_SUMMARY`` and pull requests.

The verdict, the env matrix with counts, the release map (when the run
spans enough torch releases), one line per refactor (model code changed
between save and load: the migration's verdict and the remap), the top failures with the command that
reproduces each and the one that shrinks each, the shrunk failures (one
line per shrink record), the baseline movement and anything that needs a
look (conflicts, warnings). Everything else is in index.html.

`release_map_markdown` renders the release map alone, so a compatibility
map can be pasted into a README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.report.aggregate import (
    VERDICT_SYMBOL,
    BaselineDiff,
    Counts,
    Verdict,
    env_grid,
    release_axes,
    release_grid,
    shows_release_map,
    top_failures,
    totals,
    verdict,
)
from harness.report.model import ReportModel
from harness.report.refactors import VARIANT, RefactorGroup
from harness.report.repro import repro_commands, shrink_commands
from harness.report.shrunk import Shrunk, ShrunkEntry
from harness.runtime.fileio import write_text
from harness.runtime.format_names import FORMAT_NAMES
from harness.runtime.results import CellResult

__all__ = ["refactor_lines", "release_map_markdown", "shrunk_lines", "summary_markdown", "write_summary"]

TOP = 10
TOP_SHRUNK = 20  # shrink records listed; results.json has all
_ORDER = ("pass", "expected", "regression", "mismatch", "skip")
_ICON = {None: "·", "pass": "✅", "skip": "⏭️", "error": "❌", "timeout": "⌛", "crash": "💥", "mismatch": "🟥"}


def _cell(text: str, limit: int = 160) -> str:
    """Table-safe: one line, pipes escaped, cut at `limit` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _counts_text(c: Counts) -> str:
    parts = [f"{c[name]} {name}" for name in _ORDER if c[name] or name == "pass"]
    return " · ".join(parts)


_NOT_RUN = "—"


def _release_legend() -> str:
    """The line that says what each symbol of the release map means."""
    words = {Verdict.NOT_APPLICABLE: "n/a (all skipped)"}
    return ", ".join(f"`{VERDICT_SYMBOL[v]}` {words.get(v, v.value)}" for v in Verdict) + f", {_NOT_RUN} not run."


def release_map_markdown(cells: list[CellResult]) -> str:
    """The release map of `cells`: a legend, then per format a release x release table of verdict symbols.

    Rows are the torch release that saved, columns the one that loaded (each
    folding its Pythons, devices and golden sources). No heading, so it can
    sit under any heading, in summary.md or a README.
    """
    if not cells:
        return ""
    grid = release_grid(cells)
    saving, loading = release_axes(cells)
    present = {f for f, _, _ in grid}
    # Report order (FORMAT_NAMES), then formats this harness does not know, by name.
    formats = [f for f in FORMAT_NAMES if f in present] + sorted(present - set(FORMAT_NAMES))
    lines = ["Rows: the torch release that saved; columns: the one that loaded. " + _release_legend()]
    for fmt in formats:
        lines += ["", f"**{_cell(fmt)}**", ""]
        lines.append("| saved \\ loaded | " + " | ".join(_cell(t) for t in loading) + " |")
        lines.append("|---|" + ":-:|" * len(loading))
        for source in saving:
            row = [_cell(source)]
            for target in loading:
                c = grid.get((fmt, source, target))
                row.append(VERDICT_SYMBOL[verdict(c)] if c else _NOT_RUN)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_VERDICT_ICON = {"exact": "✅", "mismatch": "🟥", "failed": "❌", "none": "·"}


def refactor_lines(groups: list[RefactorGroup]) -> list[str]:
    """One list item per refactor: the case, its load-side model, the fix's verdict and the remap."""
    out = []
    for g in groups:
        v = g.verdict()
        side = "its load-side variant" if g.load_as == VARIANT else f"`{_cell(g.load_as)}`"
        out.append(
            f"- {_VERDICT_ICON[v.kind]} {_cell(g.case)} → {side}: {_cell(v.text)}; remap: {_cell(g.remap_line(), 300)}"
        )
    return out


def shrunk_lines(entries: list[ShrunkEntry]) -> list[str]:
    """One list item per shrink record: the cell, the status, initial → final, the reproduction's files."""
    def text(value: str, limit: int = 160) -> str:  # one line, cut; a list item, not a table: pipes stay
        value = " ".join(str(value).split()).replace("`", "'")
        return value if len(value) <= limit else value[: limit - 1] + "…"

    out = []
    for e in entries[:TOP_SHRUNK]:
        r = e.record
        where = "" if e.cell is not None else " (not among this report's cells)"
        parts = [text(e.summary_line(), 300)]
        if e.files:
            names = ", ".join(text(f.name) + ("" if f.exists else " (missing)") for f in e.files)
            parts.append(f"`{text(e.folder, 300)}/`: {names}")
        if e.problem is not None or not e.files:
            parts.append("no plain-torch reproduction" + (f": {text(e.problem)}" if e.problem else ""))
        out.append(f"- `{text(r.target)}` `{text(r.key, 300)}`{where}: " + "; ".join(parts))
    if len(entries) > TOP_SHRUNK:
        out.append(f"- and {len(entries) - TOP_SHRUNK} more in results.json")
    return out


def summary_markdown(
    model: ReportModel, *, baseline: Optional[BaselineDiff] = None, report_name: str = "index.html", shrunk: Optional[Shrunk] = None,
) -> str:
    """The whole summary."""
    t = totals(model.cells)
    lines = []
    if t.failing:
        lines.append(f"## torch-roundtrip: ❌ {t['regression']} regressions, {t['mismatch']} mismatches")
    else:
        lines.append("## torch-roundtrip: ✅ no regressions, no mismatches")
    lines.append("")
    lines.append(f"{t.total} cells in {len(model.sources)} source × {len(model.targets)} target envs: {_counts_text(t)}.")
    if model.conflicts or model.warnings:
        lines.append(f"{len(model.conflicts)} conflicts and {len(model.warnings)} warnings between the inputs: see {report_name}.")
    lines += ["", "### Matrix (rows: saved in; columns: loaded in)", ""]
    counts = env_grid(model.cells)
    lines.append("| source \\ target | " + " | ".join(f"`{t_}`" for t_ in model.targets) + " |")
    lines.append("|---|" + "---|" * len(model.targets))
    for source in model.sources:
        row = [f"`{source}`"]
        for target in model.targets:
            c = counts.get((source, target))
            row.append(f"{_ICON[c.worst.value if c.worst else None]} {_counts_text(c)}" if c else "—")
        lines.append("| " + " | ".join(row) + " |")
    if shows_release_map(model.cells):
        lines += ["", "### Release map (which format written by which torch release loads in which)", ""]
        lines.append(release_map_markdown(model.cells).rstrip("\n"))
    if model.refactors:
        lines += ["", f"### Refactors ({len(model.refactors)}: checkpoints loaded into changed model code)", ""]
        lines += refactor_lines(model.refactors)
    failing = top_failures(model.cells, model.keys, TOP)
    if failing:
        lines += ["", f"### Top failures ({len(failing)} of {t.failing})", ""]
        lines.append("| outcome | source → target | case | format | load options | detail |")
        lines.append("|---|---|---|---|---|---|")
        for key, r in failing:
            opts = key.rsplit("|", 1)[1]
            lines.append(
                f"| {r.outcome.value} | `{r.source}` → `{r.target}` | {_cell(r.case)} | {_cell(r.format)} | `{_cell(opts)}` | {_cell(r.detail)} |"
            )
        key, r = failing[0]
        nox, python = repro_commands(r.target, key)
        lines += ["", "Reproduce the first one (in the target env):", "", "```sh", nox, python, "```"]
        # Every listed failure's shrink command; one shrunk already says so (its record is listed below).
        status = {(e.record.target, e.record.key): e.record.status for e in (shrunk.entries if shrunk is not None else [])}
        lines += ["", "Shrink each to its smallest case and a plain-torch reproduction (the envs of `nox -s roundtrip`):", "", "```sh"]
        for key, r in failing:
            done = status.get((r.target, key))
            lines.append(shrink_commands(r.target, key)[0] + (f"  # shrunk: {done}" if done else ""))
        lines.append("```")
    if shrunk is not None and shrunk.entries:
        lines += ["", f"### Shrunk failures ({len(shrunk.entries)})", ""]
        lines += shrunk_lines(shrunk.entries)
    if baseline is not None:
        lines += [
            "", "### Since the baseline", "",
            f"{len(baseline.new)} new failures, {len(baseline.fixed)} fixed, {len(baseline.unchanged)} still failing"
            + (f", {len(baseline.vanished)} failing cells no longer run" if baseline.vanished else "") + ".",
        ]
    lines += ["", f"Details: {report_name} (matrix, format view, every cell with its diagnosis and reproduction)."]
    return "\n".join(lines) + "\n"


def write_summary(path: Path, model: ReportModel, *, baseline: Optional[BaselineDiff] = None, shrunk: Optional[Shrunk] = None) -> None:
    """Write summary.md atomically."""
    write_text(Path(path), summary_markdown(model, baseline=baseline, shrunk=shrunk))
