"""``results.json``: every merged cell, with the env fingerprints and case specs.

This is the report's machine-readable form and the ``--baseline`` of the
next run, so it is read back as well as written (`read_report`), and the
round trip is tested. Cells are stored as result lines (`CellResult.to_dict`)
judged by the expectations the report used. ``shrunk`` lists the shrink
records the report found (`harness.report.shrunk`; additive: it is not read
back, and the schema stays).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from harness import __version__
from harness.report.aggregate import BaselineDiff, totals
from harness.report.merge import Conflict
from harness.report.model import ReportModel
from harness.report.shrunk import Shrunk
from harness.runtime.errors import InputError
from harness.runtime.fileio import read_json, write_text
from harness.runtime.results import CellResult, line_key

__all__ = ["REPORT_KIND", "REPORT_SCHEMA", "cell_dict", "read_report", "report_dict", "write_report_json"]

REPORT_SCHEMA = 1
REPORT_KIND = "torch-roundtrip-report"


def cell_dict(c: CellResult) -> dict[str, Any]:
    """`CellResult.to_dict` without its deep copy: the values are plain JSON data already
    and are only serialized here (asdict costs seconds at 100,000 cells)."""
    d = dict(vars(c))
    d["outcome"] = c.outcome.value
    return d


def report_dict(
    model: ReportModel, *, generated: str, exit_status: int, baseline: Optional[BaselineDiff] = None, shrunk: Optional[Shrunk] = None,
) -> dict[str, Any]:
    """The content of results.json."""
    return {
        "schema": REPORT_SCHEMA,
        "kind": REPORT_KIND,
        "harness": __version__,
        "generated": generated,
        "inputs": model.inputs,
        "results_written": {"from": model.results_from, "to": model.results_to},
        "expectations": {"path": model.expectations_path, "items": model.expectations},
        "envs": model.envs,
        "targets": model.targets,
        "sources": model.sources,
        "cases": model.cases,
        "summary": {**totals(model.cells).to_dict(), "exit_status": exit_status, "reclassified": model.reclassified},
        "baseline": baseline.to_dict() if baseline is not None else None,
        "conflicts": [c.to_dict() for c in model.conflicts],
        "warnings": model.warnings,
        # Derived from the cells (read_report rebuilds it): per refactor, the remap and the migration's verdict.
        "refactors": [g.to_dict() for g in model.refactors],
        # The shrink records found (--shrunk), each tied to its cell (target, key) when the report has it.
        "shrunk": [e.to_dict() for e in shrunk.entries] if shrunk is not None else [],
        "cells": [cell_dict(c) for c in model.cells],
    }


def write_report_json(
    path: Path, model: ReportModel, *, generated: str, exit_status: int, baseline: Optional[BaselineDiff] = None, shrunk: Optional[Shrunk] = None,
) -> None:
    """Write results.json atomically; compact, since it holds every cell."""
    data = report_dict(model, generated=generated, exit_status=exit_status, baseline=baseline, shrunk=shrunk)
    write_text(Path(path), json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def read_report(path: Path, *, option: str = "--baseline") -> ReportModel:
    """A results.json (or a folder holding one) back as a model, cells as recorded."""
    path = Path(path)
    if path.is_dir():
        if not (path / "results.json").is_file():
            msg = f"{option} {str(path)!r} is a folder without results.json (give the results.json of an earlier report)"
            raise InputError(msg)
        path = path / "results.json"
    if not path.exists():
        msg = f"{option} {str(path)!r} does not exist"
        raise InputError(msg)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        msg = f"{path}: not a torch-roundtrip report (no kind={REPORT_KIND!r}); give the results.json that `report` wrote"
        raise InputError(msg)
    if data.get("schema") != REPORT_SCHEMA:
        msg = f"{path}: report schema={data.get('schema')!r} but this harness reads schema {REPORT_SCHEMA}"
        raise InputError(msg)
    if not isinstance(data.get("cells"), list):
        msg = f"{path}: 'cells' must be a list of result lines"
        raise InputError(msg)
    model = ReportModel(
        envs=dict(data.get("envs") or {}), cases=dict(data.get("cases") or {}), inputs=list(data.get("inputs") or []),
        warnings=list(data.get("warnings") or []), expectations=dict((data.get("expectations") or {}).get("items") or {}),
        expectations_path=(data.get("expectations") or {}).get("path", ""),
        reclassified=int((data.get("summary") or {}).get("reclassified", 0)),
    )
    written = data.get("results_written") or {}
    model.results_from, model.results_to = written.get("from"), written.get("to")
    try:
        model.conflicts = [Conflict.from_dict(c) for c in data.get("conflicts") or []]
    except (KeyError, TypeError) as e:
        msg = f"{path}: a conflict entry lacks {e}"
        raise InputError(msg) from None
    rows = []
    for i, d in enumerate(data["cells"]):
        try:
            cell = CellResult.from_dict(d)  # validates the line first
            rows.append((cell.target, line_key(d), cell))
        except (ValueError, TypeError) as e:
            msg = f"{path}: cells[{i}]: {e}"
            raise InputError(msg) from None
    rows.sort(key=lambda r: (r[0], r[1]))
    model.cells = [r[2] for r in rows]
    model.keys = [r[1] for r in rows]
    return model
