"""``shrink.json``: what one shrink found, written by `harness.shrink` and read by the report.

A shrink takes one failing cell (a target env and a cell key) and writes,
into its own folder, the smallest spec found (``spec.json``), a plain-torch
reproduction (``save.py``, ``load.py``, ``README.md``) and this record. The
record is rewritten after every accepted step, so a shrink that is killed
leaves the best case found so far, with ``status`` saying how it ended.

The report finds records under ``REPORTS/shrunk/*/shrink.json`` and shows
each beside its cell (`harness.report.repro.shrink_commands` spells the
commands that start a shrink; the report prints them for every regression
and mismatch).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.runtime.errors import InputError

__all__ = [
    "RECORD_NAME",
    "SHRINK_SCHEMA",
    "STATUSES",
    "ShrinkRecord",
    "read_record_folders",
    "read_records",
    "record_dir",
]

#: Version of shrink.json's layout (`ShrinkRecord`).
SHRINK_SCHEMA = 1
#: The record's file name inside a shrink's folder.
RECORD_NAME = "shrink.json"

#: How a shrink ended. ``running``: still going (or killed without a word);
#: ``done``: no smaller candidate fails the same way; ``time_limit`` /
#: ``step_limit``: stopped by --max-seconds / --max-steps with the best so
#: far; ``interrupted``: Ctrl-C or SIGTERM, best so far kept; ``opaque``: a
#: user case (its factory cannot be taken apart), reproduction still written;
#: ``not_reproduced``: the cell did not fail the same way when run again.
STATUSES = ("running", "done", "time_limit", "step_limit", "interrupted", "opaque", "not_reproduced")


@dataclass
class ShrinkRecord:
    """One shrink of one cell, as ``shrink.json`` holds it."""

    target: str  #: the env label that loads (the cell's target)
    key: str  #: the cell key that failed: SOURCE|CASE|FORMAT|OPTIONS
    source: str
    case: str
    format: str
    status: str  #: one of STATUSES
    #: what "fails the same way" means for this cell: outcome, diagnosis code
    #: or error type, the difference's aspect and the kind of tensor (role, dtype)
    signature: dict[str, Any] = field(default_factory=dict)
    steps: int = 0  #: candidates run (one save in the source env + one load in the target env each)
    accepted: int = 0  #: steps that still failed the same way and became the best case
    seconds: float = 0.0  #: the search, from the first step to the last (the workers' start is `startup_seconds`)
    steps_per_second: float = 0.0  #: steps / seconds: what one step costs once both envs are warm
    startup_seconds: float = 0.0  #: starting the two workers (each imports torch once)
    #: sizes of the case before and after: modules, tensors, elements, extras, load options
    initial: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)  #: the shrunk cell's load options
    shrunk_key: str = ""  #: the shrunk cell's key (its case and load options may differ from `key`'s)
    #: the shrunk cell's result in the target env: outcome, detail, diagnosis, first differences
    observed: dict[str, Any] = field(default_factory=dict)
    command: str = ""  #: the command that ran this shrink
    #: files of the folder: spec, save, load, readme (names relative to it); or {"problem": why none}
    repro: dict[str, Any] = field(default_factory=dict)
    opaque: Optional[str] = None  #: why the case could not be taken apart (a user case's factory)
    seed: int = 0
    envs: dict[str, Any] = field(default_factory=dict)  #: source / target: label, python, torch
    #: the accepted steps, in order: step number, pass, what changed
    history: list[dict[str, Any]] = field(default_factory=list)
    schema: int = SHRINK_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = RECORD_NAME) -> ShrinkRecord:
        """A record from its JSON object; InputError (one line) for another schema or a missing field."""
        if not isinstance(data, dict):
            msg = f"{where}: not a shrink record (expected a JSON object)"
            raise InputError(msg)
        if data.get("schema") != SHRINK_SCHEMA:
            msg = f"{where}: schema={data.get('schema')!r} but this harness reads shrink schema {SHRINK_SCHEMA} (shrink the cell again)"
            raise InputError(msg)
        missing = [k for k in ("target", "key", "source", "case", "format", "status") if k not in data]
        if missing:
            msg = f"{where}: not a shrink record (no {', '.join(missing)})"
            raise InputError(msg)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def write(self, folder: Path) -> Path:
        """Write ``folder/shrink.json`` atomically; its path."""
        from harness.runtime.fileio import write_json

        path = Path(folder) / RECORD_NAME
        write_json(path, self.to_dict())
        return path


def record_dir(root: Path, target: str, key: str) -> Path:
    """The folder of the shrink of cell `key` in `target` under `root`: readable, and unique per cell."""
    source, case, fmt = (key.split("|") + ["", "", ""])[:3]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{case}-{fmt}")[:80].strip("-") or "cell"
    digest = hashlib.sha256(f"{target}\n{key}".encode()).hexdigest()[:10]
    return Path(root) / f"{readable}-{digest}"


def read_records(root: Path) -> list[ShrinkRecord]:
    """Every record under ``root/*/shrink.json`` (none when `root` does not exist), sorted by target and key."""
    return [record for _, record in read_record_folders(root)]


def read_record_folders(root: Path) -> list[tuple[Path, ShrinkRecord]]:
    """(folder, record) of every ``root/*/shrink.json``, sorted by target and key (then folder).

    The report links each record's files (``spec.json``, ``save.py``, ...),
    which sit in its folder: a folder's name is not always `record_dir`'s
    (``shrink --out DIR`` names it).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob(f"*/{RECORD_NAME}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            msg = f"{path}: unreadable shrink record ({type(e).__name__})"
            raise InputError(msg) from None
        out.append((path.parent, ShrinkRecord.from_dict(data, str(path))))
    return sorted(out, key=lambda fr: (fr[1].target, fr[1].key, str(fr[0])))

