"""The report model: every cell of a run, classified by today's expectations.

`build_model` merges result folders (see `merge`) and turns each winning
line into a `CellResult`, re-applying the expectations: a result folder
records whether a failure was expected when it was loaded, but the report
judges it by the expectations file at hand, so editing that file (a fixed
incompatibility, a new documented one) needs no re-run. How many cells
changed their verdict that way is kept in `reclassified`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Optional, Union

from harness.report.merge import Conflict, Merged, merge_dirs, require_lines
from harness.report.refactors import RefactorGroup, refactor_groups
from harness.report.resultsdir import ResultsDir
from harness.runtime.env import env_sort_key
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult

__all__ = ["ReportModel", "build_model", "env_sort_key", "model_from_merged"]


@dataclass
class ReportModel:
    """Cells (sorted by target, source, case, format, options) and what describes them."""

    cells: list[CellResult] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # cell key of each cell, in the same order
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> fingerprint
    cases: dict[str, Any] = field(default_factory=dict)  # case name -> spec
    inputs: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expectations: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {"reason", "link"}
    expectations_path: str = ""
    reclassified: int = 0
    superseded: int = 0
    results_from: Optional[str] = None  # ISO time of the oldest result file read
    results_to: Optional[str] = None

    # Cached: the writers ask often, and `cells` is set once, when the model is built.
    @cached_property
    def targets(self) -> list[str]:
        return sorted({c.target for c in self.cells}, key=env_sort_key)

    @cached_property
    def sources(self) -> list[str]:
        return sorted({c.source for c in self.cells}, key=env_sort_key)

    @cached_property
    def formats(self) -> list[str]:
        """Formats in harness order (`harness.runtime.formats.FORMATS`), then unknown ones by name."""
        from harness.runtime.formats import FORMATS

        seen = {c.format for c in self.cells}
        known = [f for f in FORMATS if f in seen]
        return known + sorted(seen - set(known))

    @cached_property
    def refactors(self) -> list[RefactorGroup]:
        """The cells that load into changed model code, grouped per refactor (`harness.report.refactors`)."""
        return refactor_groups(self.cells, self.keys, pair_key=env_sort_key)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expectation_table(expectations: Expectations) -> dict[str, dict[str, str]]:
    return {e.id: {"reason": e.reason, "link": e.link} for e in expectations.items}


def model_from_merged(merged: Merged, expectations: Expectations, *, expectations_path: str = "") -> ReportModel:
    """Cells of `merged` with ``expected`` set by `expectations`."""
    model = ReportModel(
        envs=dict(merged.envs), cases=dict(merged.cases), inputs=list(merged.inputs),
        conflicts=list(merged.conflicts), warnings=list(merged.warnings),
        expectations=_expectation_table(expectations), expectations_path=expectations_path,
        superseded=merged.superseded,
    )
    rows = []
    for target, cells in merged.lines.items():
        for key, (line, where) in cells.items():
            try:
                cell = CellResult.from_dict(line)
            except (ValueError, TypeError) as e:  # resultsdir checked the shape; this is the last word
                msg = f"{where}: {e}"
                raise InputError(msg) from None
            judged = cell
            # A pass or skip is never expected (expect.py); only a stale flag needs the rules.
            if cell.outcome.is_failure or cell.expected or cell.expectation is not None:
                judged = expectations.apply(cell)
                if judged.expected != cell.expected or judged.expectation != cell.expectation:
                    model.reclassified += 1
            rows.append((target, key, judged))
    rows.sort(key=lambda r: (r[0], r[1]))
    model.cells = [r[2] for r in rows]
    model.keys = [r[1] for r in rows]
    if merged.mtimes:
        model.results_from, model.results_to = _iso(min(merged.mtimes)), _iso(max(merged.mtimes))
    if model.reclassified:
        model.warnings.append(
            f"{model.reclassified} cells were judged differently by the expectations used here than when they were loaded"
        )
    return model


def build_model(
    paths: Sequence[Union[Path, ResultsDir]], expectations: Optional[Expectations] = None, *, expectations_path: str = "",
    envs: Optional[list[str]] = None,
) -> ReportModel:
    """Read, validate and merge the result folders `paths` into one model (only `envs`, when given)."""
    if not paths:
        msg = "give at least one RESULTS_DIR"
        raise InputError(msg)
    if expectations is None:
        expectations = Expectations.load()
        expectations_path = expectations_path or "cases/expectations.toml (shipped)"
    merged = merge_dirs(list(paths))
    if envs:
        from harness.report.merge import restrict

        restrict(merged, envs)
    require_lines(merged)
    return model_from_merged(merged, expectations, expectations_path=expectations_path)
