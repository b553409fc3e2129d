"""``junit.xml``: one testcase per cell, one testsuite per source -> target.

CI tools (Jenkins, GitLab, GitHub test reporters) read this. Mapping:

- regression (error, timeout, crash no expectation explains) and mismatch:
  ``<failure type="OUTCOME">``, so the job shows them as failed tests;
- skip: ``<skipped type="skip">`` with the reason;
- expected failure: ``<skipped type="expected-failure">`` whose message
  starts ``expected failure [ID]``: visible, never failing (the mapping
  pytest uses for xfail); each suite also counts them in a property;
- pass: an empty testcase.

The file is written as a stream, and text that XML 1.0 cannot carry (control
characters from a torn pickle message) is replaced, so it always parses.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from harness.report.aggregate import Category, category, env_grid
from harness.report.model import ReportModel
from harness.report.repro import repro_commands, shrink_commands
from harness.runtime.fileio import write_text
from harness.runtime.results import CellResult

__all__ = ["junit_xml", "write_junit"]

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_TEXT = 20_000  # a torch error message can be huge; results.json keeps the whole one
_MAX_ERROR = 2_000


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _attr(text: str) -> str:
    return quoteattr(_clean(text))


def _text(text: str) -> str:
    text = _clean(text)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n... ({len(text) - _MAX_TEXT} more characters in results.json)"
    return escape(text)


def _describe(d: object) -> str:
    """A difference as `harness.runtime.compare.Difference.describe` words it."""
    if not isinstance(d, dict):
        return str(d)
    if d.get("aspect") in ("missing", "unexpected"):
        return f"{d['aspect']} key {d.get('tensor')}"
    where = f"[{', '.join(map(str, d['index']))}]" if isinstance(d.get("index"), list) else ""
    return f"{d.get('tensor')}{where}: {d.get('aspect')} {d.get('expected')} -> {d.get('actual')}"


def _body(r: CellResult, key: str) -> str:
    """What a CI tool shows under a failed test: detail, error, diagnosis, differences, notes, reproduction, shrink."""
    lines = [f"cell: {key}", f"source: {r.source}", f"target: {r.target}", f"outcome: {r.outcome.value}", f"detail: {r.detail}"]
    if r.error:
        lines.append(f"error: {r.error.get('type', '')}: {str(r.error.get('message', ''))[:_MAX_ERROR]}")
    if r.diagnosis:
        lines.append(f"diagnosis: {r.diagnosis.get('code', '')}: {r.diagnosis.get('summary', '')}")
        lines.append(f"fix: {r.diagnosis.get('fix', '')}")
    lines.extend(f"difference: {_describe(d)}" for d in r.differences[:20])
    lines.extend(f"note: {n}" for n in r.notes[:20])
    nox, python = repro_commands(r.target, key)
    lines += [f"reproduce: {nox}", f"       or: {python}"]
    # A failed test is a regression or a mismatch: each can be shrunk to a plain-torch reproduction.
    lines.append(f"shrink: {shrink_commands(r.target, key)[0]}")
    return "\n".join(lines)


def junit_xml(model: ReportModel) -> str:
    """The whole document."""
    by_pair: dict[tuple[str, str], list[tuple[str, CellResult]]] = {}
    for key, r in zip(model.keys, model.cells):
        by_pair.setdefault((r.source, r.target), []).append((key, r))
    counts = env_grid(model.cells)
    total = len(model.cells)
    failures = sum(c.failing for c in counts.values())
    seconds = sum(r.seconds for r in model.cells)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<testsuites name="torch-roundtrip" tests="{total}" failures="{failures}" errors="0" time="{seconds:.3f}">\n',
    ]
    for source in model.sources:
        for target in model.targets:
            rows = by_pair.get((source, target))
            if not rows:
                continue
            c = counts[(source, target)]
            name = f"{source} -> {target}"
            suite_time = sum(r.seconds for _, r in rows)
            out.append(
                f"  <testsuite name={_attr(name)} tests=\"{c.total}\" failures=\"{c.failing}\" errors=\"0\" "
                f"skipped=\"{c['skip'] + c['expected']}\" time=\"{suite_time:.3f}\">\n"
            )
            out.append("    <properties>\n")
            for prop, value in (("source", source), ("target", target), ("expected_failures", str(c["expected"])), ("skips", str(c["skip"]))):
                out.append(f"      <property name={_attr(prop)} value={_attr(value)}/>\n")
            out.append("    </properties>\n")
            for key, r in rows:
                cat = category(r)
                test = f"{r.case} {r.format} [{key.rsplit('|', 1)[1]}]"
                head = f"    <testcase classname={_attr(name)} name={_attr(test)} time=\"{r.seconds:.3f}\""
                if cat == Category.PASS:
                    out.append(head + "/>\n")
                    continue
                out.append(head + ">\n")
                if cat.fails:
                    message = f"{r.outcome.value.upper()}: {r.detail}"
                    out.append(f"      <failure type={_attr(r.outcome.value)} message={_attr(message[:1000])}>{_text(_body(r, key))}</failure>\n")
                elif cat == Category.EXPECTED:
                    message = f"expected failure [{r.expectation}]: {r.outcome.value}: {r.detail}"
                    # Short: expected failures are most of a cross-version run's non-passes.
                    fix = f"fix: {r.diagnosis.get('fix', '')}" if r.diagnosis else ""
                    out.append(f"      <skipped type=\"expected-failure\" message={_attr(message[:500])}>{_text(fix)}</skipped>\n")
                else:
                    out.append(f"      <skipped type=\"skip\" message={_attr(r.detail[:1000])}/>\n")
                out.append("    </testcase>\n")
            out.append("  </testsuite>\n")
    out.append("</testsuites>\n")
    return "".join(out)


def write_junit(path: Path, model: ReportModel) -> None:
    """Write junit.xml atomically."""
    write_text(Path(path), junit_xml(model))
