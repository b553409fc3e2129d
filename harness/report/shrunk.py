"""Shrunk failures: the shrink command of a failing cell, and what a shrink of it found.

``python -m harness shrink`` leaves one folder per shrunk cell
(``REPORTS/shrunk/<name>/``: ``shrink.json``, ``spec.json``, ``save.py``,
``load.py``, ``README.md``; see `harness.shrink.record`). `read_shrunk`
reads every record of ``--shrunk DIR`` (default ``OUT/shrunk`` when it
exists), checks the fields the report shows (a bad record is an
`InputError`, one line), ties each record to its cell (target, key) and
spells what the outputs show of it, once: `ShrunkEntry.rows` (label, text)
and `ShrunkEntry.files` (links relative to the report's folder). The HTML
page, results.json and summary.md lay out those same texts.

`shrinkable` says which cells get the shrink command (regressions and
mismatches: what fails a run); `harness.report.repro.shrink_commands` spells
it (the page builds the same strings in JavaScript).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional
from urllib.parse import quote

from harness.report.aggregate import category
from harness.report.model import ReportModel
from harness.runtime.errors import InputError
from harness.runtime.load_options import LoadOptions
from harness.runtime.results import CellResult
from harness.shrink.record import RECORD_NAME, STATUSES, ShrinkRecord, read_record_folders

__all__ = ["CODE_ROWS", "STATUS_WORDS", "Shrunk", "ShrunkEntry", "ShrunkFile", "read_shrunk", "shrinkable"]

#: What each status of `harness.shrink.record.STATUSES` means, as the report says it.
STATUS_WORDS = {
    "running": "still running, or killed without a word: the best case so far",
    "done": "no smaller candidate fails the same way",
    "time_limit": "stopped by --max-seconds: the best case so far",
    "step_limit": "stopped by --max-steps: the best case so far",
    "interrupted": "interrupted: the best case so far",
    "opaque": "a user case, whose factory cannot be taken apart: the reproduction is of the whole case",
    "not_reproduced": "the cell did not fail the same way when it ran again",
}
#: The reproduction's files, in the order the report lists them (others follow by name).
_FILE_ORDER = ("spec", "save", "load", "readme")
#: The sizes of a case, in the order the report lists them (others follow by name; shrink.json sorts its keys).
_SIZE_ORDER = ("modules", "tensors", "elements", "extras", "load")
_NOT_IN_REPORT = "this cell is not among this report's cells"
#: The rows of `ShrunkEntry.rows` whose text is code (a cell key, load options, a command).
CODE_ROWS = ("cell", "shrunk cell", "load options", "ran")


def shrinkable(r: CellResult) -> bool:
    """Whether the report offers to shrink the cell: a regression or a mismatch (what fails a run)."""
    return category(r).fails


@dataclass(frozen=True)
class ShrunkFile:
    """One file of a shrink's reproduction, as the report links it."""

    role: str  #: spec, save, load, readme (the key in the record's ``repro``)
    name: str  #: its name inside the shrink's folder
    path: str  #: relative to the report's folder, POSIX form (results.json, summary.md)
    href: str  #: `path` URL-quoted (index.html)
    exists: bool  #: whether it is there now (a link to a missing file is shown as missing, not linked)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class ShrunkEntry:
    """One shrink record, tied to its cell, with the texts every output shows."""

    record: ShrinkRecord
    folder: str  #: the shrink's folder, relative to the report's folder (POSIX form)
    cell: Optional[int]  #: index of its cell in the model (None: not among this report's cells)
    files: list[ShrunkFile] = field(default_factory=list)

    @property
    def problem(self) -> Optional[str]:
        """Why the shrink wrote no reproduction (the record's ``repro.problem``), if it says so."""
        problem = self.record.repro.get("problem")
        return None if problem is None else _text(problem)

    def status_text(self) -> str:
        return f"{self.record.status}: {STATUS_WORDS[self.record.status]}"

    def signature_text(self) -> str:
        """The failure signature the shrink held every step to, in words."""
        sig = self.record.signature
        if isinstance(sig.get("text"), str):
            return sig["text"]
        parts = [f"{k} {_text(v)}" for k, v in sig.items() if v not in (None, "", [], {})]
        return ", ".join(parts) or "(none recorded)"

    def steps_text(self) -> str:
        r = self.record
        return f"{r.steps} steps ({r.accepted} accepted) in {r.seconds:.1f} s: {r.steps_per_second:.1f} steps/s"

    def sizes_text(self) -> str:
        """``modules 5 → 2, tensors 12 → 3, ...``: every size the record gives, before → after."""
        initial, final = self.record.initial, self.record.final
        present = set(initial) | set(final)
        names = [k for k in _SIZE_ORDER if k in present] + sorted(present - set(_SIZE_ORDER))
        return ", ".join(f"{k} {_text(initial.get(k, '?'))} → {_text(final.get(k, '?'))}" for k in names) or "(not recorded)"

    def load_text(self) -> str:
        """The shrunk cell's load options, as `LoadOptions.id` spells them."""
        r = self.record
        if r.shrunk_key:
            return r.shrunk_key.rsplit("|", 1)[-1]
        if r.load:
            return LoadOptions.from_dict(r.load).id
        return r.key.rsplit("|", 1)[-1]

    def observed_text(self) -> str:
        """The shrunk cell's result in the target env: outcome, detail, diagnosis code."""
        o = self.record.observed
        if not o:
            return "(not recorded)"
        if "outcome" not in o and o.get("problem"):
            return f"no result: {_text(o['problem'])}"  # the cell did not run again (a failed save, a dead worker)
        diag = o.get("diagnosis")
        code = diag.get("code") if isinstance(diag, dict) else diag
        text = _text(o.get("outcome", "?"))
        if o.get("detail"):
            text += f": {_text(o['detail'])}"
        if code:
            text += f" [diagnosis {_text(code)}]"
        return text

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) of everything shown about the shrink, in order; plain text (each writer escapes it)."""
        r = self.record
        out = [("cell", f"{r.key} in {r.target}")]
        if self.cell is None:
            out.append(("note", _NOT_IN_REPORT))
        out += [("status", self.status_text()), ("fails as", self.signature_text()), ("steps", self.steps_text()),
                ("size", self.sizes_text())]
        if r.shrunk_key and r.shrunk_key != r.key:
            out.append(("shrunk cell", r.shrunk_key))
        out += [("load options", self.load_text()), ("observed", self.observed_text())]
        if r.status == "opaque" or r.opaque:
            out.append(("opaque", r.opaque or "(no reason recorded)"))
        if self.problem is not None:
            out.append(("no reproduction", self.problem))
        if r.command:
            out.append(("ran", r.command))
        return out

    def summary_line(self) -> str:
        """status, initial → final: the short form (summary.md, the CLI)."""
        return f"{self.record.status}, {self.sizes_text()}"

    def to_dict(self) -> dict[str, Any]:
        """The record's entry in results.json's ``shrunk`` list."""
        r = self.record
        return {
            "target": r.target, "key": r.key, "in_report": self.cell is not None, "status": r.status,
            "signature": r.signature, "signature_text": self.signature_text(), "steps": r.steps, "accepted": r.accepted,
            "seconds": r.seconds, "steps_per_second": r.steps_per_second, "initial": r.initial, "final": r.final,
            "load": r.load, "shrunk_key": r.shrunk_key, "observed": r.observed, "opaque": r.opaque,
            "problem": self.problem, "folder": self.folder,
            "files": {f.role: f.path for f in self.files}, "missing": [f.role for f in self.files if not f.exists],
        }

    def page(self) -> dict[str, Any]:
        """What the page's JavaScript shows beside the cell: the rows and the links."""
        return {
            "status": self.record.status, "rows": [list(row) for row in self.rows()],
            "files": [[f.name, f.href, f.exists] for f in self.files],
        }


@dataclass
class Shrunk:
    """Every shrink record of one folder, in order (target, key)."""

    root: str
    entries: list[ShrunkEntry] = field(default_factory=list)

    def by_cell(self) -> dict[int, list[int]]:
        """Cell index -> indices of its entries (a cell shrunk twice, into two folders, has two)."""
        out: dict[int, list[int]] = {}
        for j, e in enumerate(self.entries):
            if e.cell is not None:
                out.setdefault(e.cell, []).append(j)
        return out

    def line(self) -> str:
        """What the CLI prints about the records."""
        outside = sum(e.cell is None for e in self.entries)
        return f"shrunk: {len(self.entries)} records from {self.root}" + (f" ({outside} not among these cells)" if outside else "")


def _check(record: ShrinkRecord, where: str) -> None:
    """InputError (one line) when a field the report shows has the wrong type."""

    def bad(name: str, want: str) -> InputError:
        msg = f"{where}: {name}={_text(getattr(record, name))[:80]} is not {want} (shrink the cell again)"
        return InputError(msg)

    if record.status not in STATUSES:
        msg = f"{where}: status={record.status!r} is not one of {', '.join(STATUSES)}"
        raise InputError(msg)
    for name in ("target", "key", "source", "case", "format", "shrunk_key", "command"):
        if not isinstance(getattr(record, name), str):
            raise bad(name, "a string")
    for name in ("steps", "accepted"):
        value = getattr(record, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(name, "a count")
    for name in ("seconds", "steps_per_second"):
        if not _number(getattr(record, name)):
            raise bad(name, "a number")
    for name in ("signature", "initial", "final", "load", "observed", "repro", "envs"):
        if not isinstance(getattr(record, name), dict):
            raise bad(name, "an object")
    if record.opaque is not None and not isinstance(record.opaque, str):
        raise bad("opaque", "a string")


def _files(record: ShrinkRecord, folder: Path, out: Path, where: str) -> list[ShrunkFile]:
    repro = {k: v for k, v in record.repro.items() if k != "problem"}
    roles = [k for k in _FILE_ORDER if k in repro] + sorted(k for k in repro if k not in _FILE_ORDER)
    files = []
    for role in roles:
        name = repro[role]
        pure = PurePosixPath(name) if isinstance(name, str) else None
        # A name from a file: it must stay inside the shrink's folder, or a link could point anywhere.
        if pure is None or not name or "\\" in name or pure.is_absolute() or ".." in pure.parts:
            msg = f"{where}: repro.{role}={_text(name)[:80]} is not a file name inside the shrink's folder"
            raise InputError(msg)
        path = Path(os.path.relpath(folder / name, out)).as_posix()
        files.append(ShrunkFile(role, name, path, quote(path), (folder / name).exists()))
    return files


def read_shrunk(root: Optional[Path], out: Path, model: ReportModel) -> Optional[Shrunk]:
    """The shrink records of `root` (``--shrunk``; None: ``out/shrunk`` when it exists), tied to `model`'s cells.

    None when no folder was named and ``out/shrunk`` does not exist. A named
    folder that does not exist, and a bad record, are an InputError (one line).
    """
    out = Path(out)
    if root is None:
        root = out / "shrunk"
        if not root.is_dir():
            return None
    root = Path(root)
    if not root.is_dir():
        msg = f"--shrunk {str(root)!r} does not exist" if not root.exists() else f"--shrunk {str(root)!r} is not a folder"
        raise InputError(msg)
    index = {(r.target, key): i for i, (key, r) in enumerate(zip(model.keys, model.cells))}
    shrunk = Shrunk(str(root))
    for folder, record in read_record_folders(root):
        where = str(folder / RECORD_NAME)
        _check(record, where)
        rel = Path(os.path.relpath(folder, out)).as_posix()
        shrunk.entries.append(ShrunkEntry(record, rel, index.get((record.target, record.key)), _files(record, folder, out, where)))
    return shrunk
