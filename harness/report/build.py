"""The report pipeline: result folders -> model -> the four output files.

Every input is read and checked before anything is written, so bad input
(exit 2) never leaves a half-written report behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from harness.report.aggregate import BaselineDiff, Counts, diff_baseline, totals
from harness.report.bench import Bench, read_bench
from harness.report.html import write_html
from harness.report.jsonout import read_report, write_report_json
from harness.report.junit import write_junit
from harness.report.markdown import write_summary
from harness.report.model import ReportModel, build_model
from harness.report.shrunk import Shrunk, read_shrunk
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.progress import Progress

__all__ = ["OUTPUTS", "ReportResult", "build_report", "exit_status", "generated_time"]

OUTPUTS = ("index.html", "results.json", "junit.xml", "summary.md")
_SLOW_BYTES = 64 << 20  # about 60,000 result lines: several seconds of work


@dataclass
class ReportResult:
    """What `build_report` found and wrote."""

    model: ReportModel
    totals: Counts
    exit_status: int
    out: Path
    baseline: Optional[BaselineDiff] = None
    bench: Optional[Bench] = None
    written: list[Path] = field(default_factory=list)
    shrunk: Optional[Shrunk] = None  # the shrink records shown beside their cells

    def lines(self) -> list[str]:
        """What the CLI prints on stderr."""
        t = self.totals
        out = [
            f"report: {t.total} cells, {len(self.model.sources)} sources x {len(self.model.targets)} targets: "
            f"{t['pass']} pass, {t['expected']} expected, {t['regression']} regressions, {t['mismatch']} mismatches, {t['skip']} skips"
        ]
        if self.baseline is not None:
            b = self.baseline
            out.append(f"  since the baseline: {len(b.new)} new failures, {len(b.fixed)} fixed, {len(b.unchanged)} still failing")
        for c in self.model.conflicts[:10]:
            out.append(f"  {c.line()}")
        if len(self.model.conflicts) > 10:
            out.append(f"  ... and {len(self.model.conflicts) - 10} more conflicts (see results.json)")
        for w in self.model.warnings[:10]:
            out.append(f"  warning: {w}")
        if self.shrunk is not None:
            out.append(f"  {self.shrunk.line()}")
        out.append(f"  wrote {', '.join(str(self.out / name) for name in OUTPUTS)}")
        return out


def exit_status(model: ReportModel) -> int:
    """1 when any cell is a regression or a mismatch, else 0."""
    return 1 if totals(model.cells).failing else 0


def generated_time() -> str:
    """Now in UTC, or SOURCE_DATE_EPOCH when set (reproducible reports)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError:
            msg = f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds"
            raise InputError(msg) from None
    else:
        when = datetime.now(tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(
    results: list[Path], out: Path, *,
    baseline: Optional[Path] = None, expectations: Optional[Path] = None, bench: Optional[Path] = None,
    progress: bool = False, envs: Optional[list[str]] = None, shrunk: Optional[Path] = None,
) -> ReportResult:
    """Read `results` (folders), write the report into `out`, return what was found."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        msg = f"--out {str(out)!r} is a file, not a folder"
        raise InputError(msg)
    # A bar only where a report takes a while: on small runs it is noise in CI logs.
    size = sum(f.stat().st_size for p in results if Path(p).is_dir() for f in Path(p).glob("*.jsonl"))
    bar = Progress("report", len(OUTPUTS) + 1) if progress and size > _SLOW_BYTES else None
    exp = Expectations.load(Path(expectations) if expectations else None)
    exp_path = str(expectations) if expectations else "cases/expectations.toml (shipped)"
    model = build_model(list(results), exp, expectations_path=exp_path, envs=envs)
    _ = model.refactors  # checks the cells' remaps now, before any output is written
    diff = None
    if baseline is not None:
        base = read_report(Path(baseline))
        # Judge the baseline by today's expectations too: a moved expectation is
        # not a fixed (or new) failure.
        diff = diff_baseline(model.cells, model.keys, [exp.apply(c) for c in base.cells], base.keys)
    bench_data = None
    if bench is not None:
        bench_data = read_bench(Path(bench))
    elif (out / "bench.json").is_file():
        bench_data = read_bench(out / "bench.json", option="bench file")
    # Shrink records (--shrunk DIR, or OUT/shrunk when it exists), tied to the cells read above.
    shrunk_data = read_shrunk(Path(shrunk) if shrunk is not None else None, out, model)
    if bar:
        bar.advance(1)
    status = exit_status(model)
    when = generated_time()
    result = ReportResult(model, totals(model.cells), status, out, diff, bench_data, shrunk=shrunk_data)
    write_html(out / "index.html", model, generated=when, exit_status=status, baseline=diff, bench=bench_data, shrunk=shrunk_data)
    if bar:
        bar.advance(1)
    write_report_json(out / "results.json", model, generated=when, exit_status=status, baseline=diff, shrunk=shrunk_data)
    if bar:
        bar.advance(1)
    write_junit(out / "junit.xml", model)
    if bar:
        bar.advance(1)
    write_summary(out / "summary.md", model, baseline=diff, shrunk=shrunk_data)
    if bar:
        bar.advance(1)
        bar.close()
    result.written = [out / name for name in OUTPUTS]
    return result
