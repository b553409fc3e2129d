"""The ``report`` and ``merge`` commands, registered into ``python -m harness``.

`register(subparsers)` adds both; each command function returns the exit
status (report: 0 clean, 1 regressions or mismatches; merge: 0) and raises
`InputError` for bad input, which the main CLI prints as one line (exit 2).
Imports stay inside the functions so ``python -m harness --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["cmd_merge", "cmd_report", "register"]


def cmd_report(args: argparse.Namespace) -> int:
    """``report RESULTS_DIR... --out DIR``: write index.html, results.json, junit.xml, summary.md."""
    from harness.report.build import build_report

    result = build_report(
        [Path(p) for p in args.results], Path(args.out),
        baseline=Path(args.baseline) if args.baseline else None,
        expectations=Path(args.expectations) if args.expectations else None,
        bench=Path(args.bench) if args.bench else None,
        progress=not args.quiet,
        envs=[e for e in args.envs.split(",") if e] if args.envs else None,
    )
    for line in result.lines():
        print(line, file=sys.stderr)
    return result.exit_status


def cmd_merge(args: argparse.Namespace) -> int:
    """``merge RESULTS_DIR... --out DIR``: one result folder from several machines' folders."""
    from harness.report.merge import merge_dirs, require_lines, write_merged

    merged = merge_dirs([Path(p) for p in args.results])
    require_lines(merged)
    written = write_merged(merged, Path(args.out))
    targets = len(merged.lines)
    print(
        f"merge: {merged.total} cells of {targets} target envs from {len(args.results)} folders into {args.out} "
        f"({len(written)} files; {merged.superseded} repeated lines, {len(merged.conflicts)} conflicts)",
        file=sys.stderr,
    )
    for c in merged.conflicts[:20]:
        print(f"  {c.line()}", file=sys.stderr)
    if len(merged.conflicts) > 20:
        print(f"  ... and {len(merged.conflicts) - 20} more conflicts", file=sys.stderr)
    for w in merged.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``merge`` to the harness CLI."""
    p = subparsers.add_parser("report", help="write the compatibility report (HTML, JSON, JUnit, Markdown) from result folders")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="result folders written by `load --results` (later ones win per cell)")
    p.add_argument("--out", required=True, metavar="DIR", help="where index.html, results.json, junit.xml and summary.md go")
    p.add_argument("--baseline", metavar="FILE", help="results.json of an earlier report: list new, fixed and unchanged failures")
    p.add_argument("--expectations", metavar="FILE", help="expectations TOML to judge cells by (default: the shipped cases/expectations.toml)")
    p.add_argument("--bench", metavar="FILE", help="bench figures to show (default: DIR/bench.json when it exists)")
    p.add_argument("--envs", metavar="A,B", help="only cells between these env labels (a folder may hold older runs' results)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("merge", help="combine result folders from several machines into one")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged result folder (empty, or one of the inputs)")
    p.set_defaults(func=cmd_merge)
