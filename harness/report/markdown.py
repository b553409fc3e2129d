"""``summary.md``: the short form, for ``$GITHUB_STEP_SUMMARY`` and pull requests.

The verdict, the env matrix with counts, the top failures with the command
that reproduces each, the baseline movement and anything that needs a look
(conflicts, warnings). Everything else is in index.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.report.aggregate import BaselineDiff, Counts, env_grid, top_failures, totals
from harness.report.model import ReportModel
from harness.report.repro import repro_commands
from harness.runtime.fileio import write_text

__all__ = ["summary_markdown", "write_summary"]

TOP = 10
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


def summary_markdown(model: ReportModel, *, baseline: Optional[BaselineDiff] = None, report_name: str = "index.html") -> str:
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
    if baseline is not None:
        lines += [
            "", "### Since the baseline", "",
            f"{len(baseline.new)} new failures, {len(baseline.fixed)} fixed, {len(baseline.unchanged)} still failing"
            + (f", {len(baseline.vanished)} failing cells no longer run" if baseline.vanished else "") + ".",
        ]
    lines += ["", f"Details: {report_name} (matrix, format view, every cell with its diagnosis and reproduction)."]
    return "\n".join(lines) + "\n"


def write_summary(path: Path, model: ReportModel, *, baseline: Optional[BaselineDiff] = None) -> None:
    """Write summary.md atomically."""
    write_text(Path(path), summary_markdown(model, baseline=baseline))
