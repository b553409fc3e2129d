"""``check.jsonl``: one line per file of a fleet, the record every fleet stage shares.

`harness.check.fleet` writes a `FleetLine` for each file as soon as it is
checked (so an interrupted run keeps what it did and resumes from it);
`merge` joins the lines of several shards or envs; `harness.check.fleet_report`
renders them. Plain JSON, standard library only: nox's own environment
reads these lines to draw the file x env grid of ``nox -s check``.

A line is keyed by ``(env, file)``. `file` is the path as the fleet names it:
the root as given on the command line joined with the path below it, so two
machines that check the same tree from the same relative root agree on the
key (and on the shard a file falls in).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.runtime.errors import InputError

__all__ = [
    "FLEET_FILE",
    "FLEET_SCHEMA",
    "TENSORS_KEPT",
    "FleetLine",
    "crash_report",
    "file_problem_report",
    "is_fleet_folder",
    "latest",
    "merge_folders",
    "read_lines",
]

#: Version of a ``check.jsonl`` line's layout.
FLEET_SCHEMA = 1
#: The name of the lines file in a fleet's output folder.
FLEET_FILE = "check.jsonl"
#: Tensors kept per file in a line (`FleetLine.report`'s ``tensors``); the count of all is ``tensors_total``.
TENSORS_KEPT = 64


@dataclass(frozen=True)
class FleetLine:
    """What ``check`` found about one file of a fleet, in one env.

    `report` is `harness.check.findings.FileReport.to_dict()` with its
    ``tensors`` cut to `TENSORS_KEPT` (``tensors_total`` says how many there
    were). `size` and `mtime_ns` are the file's when it was checked (-1 when
    it could not be read): a resumed run checks a file again when either
    changed. `checker` names the check code that wrote the line: a resumed
    run with other check code checks again.
    """

    file: str
    root: str
    env: str
    size: int
    mtime_ns: int
    seconds: float
    trust: bool
    checker: str
    report: dict[str, Any]
    schema: int = FLEET_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.env, self.file)

    @property
    def verdict(self) -> str:
        """``loads``, ``loads_some_ways``, ``does_not_load``, ``not_checked`` or ``crashed``."""
        return str(self.report.get("verdict", "not_checked"))

    @property
    def findings(self) -> bool:
        return bool(self.report.get("findings", self.verdict != "loads"))

    def to_dict(self) -> dict[str, Any]:
        # Shallow: `asdict` deep-copies every report, half a fleet parent's time.
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if not self.extra:
            del d["extra"]
        return d

    def to_json(self) -> str:
        """The line as written to ``check.jsonl`` (no newline)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Any) -> FleetLine:
        """The line in `d`; ValueError (one line) when it is not a fleet line of this schema."""
        if not isinstance(d, dict):
            msg = f"a fleet line is a JSON object, not {type(d).__name__}"
            raise ValueError(msg)
        if d.get("schema") != FLEET_SCHEMA:
            msg = f"schema={d.get('schema')!r} but this harness reads fleet lines of schema {FLEET_SCHEMA}"
            raise ValueError(msg)
        missing = [k for k in ("file", "root", "env", "size", "mtime_ns", "report") if k not in d]
        if missing or not isinstance(d.get("report"), dict):
            msg = f"a fleet line lacks {', '.join(missing) or 'a report object'}"
            raise ValueError(msg)
        return cls(
            file=str(d["file"]), root=str(d["root"]), env=str(d["env"]), size=int(d["size"]), mtime_ns=int(d["mtime_ns"]),
            seconds=float(d.get("seconds", 0.0)), trust=bool(d.get("trust", False)), checker=str(d.get("checker", "")),
            report=d["report"], extra=dict(d.get("extra", {})),
        )


def read_lines(path: Path, *, strict: bool = False) -> list[FleetLine]:
    """Every line of a ``check.jsonl``, in file order.

    A run killed mid-write leaves at most its last line torn: that line is
    dropped (it will be checked again). With `strict`, any unreadable line
    is an InputError naming it; otherwise only a line of another schema is.
    """
    lines: list[FleetLine] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        msg = f"{path}: cannot read it ({e})"
        raise InputError(msg) from None
    rows = text.split("\n")
    for number, row in enumerate(rows, 1):
        if not row.strip():
            continue
        try:
            data = json.loads(row)
        except ValueError:
            torn = number == len(rows) or (number == len(rows) - 1 and not rows[-1])
            if strict or not torn:
                msg = f"{path}:{number}: not a JSON line"
                raise InputError(msg) from None
            continue
        try:
            lines.append(FleetLine.from_dict(data))
        except ValueError as e:
            msg = f"{path}:{number}: {e}"
            raise InputError(msg) from None
    return lines


def latest(lines: Iterable[FleetLine]) -> list[FleetLine]:
    """One line per ``(env, file)``: the last one, in the order keys first appeared."""
    table: dict[tuple[str, str], FleetLine] = {}
    for line in lines:
        table.pop(line.key, None)
        table[line.key] = line
    return sorted(table.values(), key=lambda x: (x.file, x.env))


def is_fleet_folder(folder: Path) -> bool:
    """Whether `folder` holds a fleet's ``check.jsonl`` (``merge`` tells check folders from result folders so)."""
    return (Path(folder) / FLEET_FILE).is_file()


def merge_folders(folders: Iterable[Path]) -> tuple[list[FleetLine], int]:
    """The lines of several fleet folders as one fleet (later folders win a repeated key), and how many repeated.

    Shards of one env hold disjoint files and envs hold disjoint keys, so a
    repeat means a folder was given twice or a shard was re-run elsewhere.
    InputError (one line) for a folder without ``check.jsonl`` or with a bad line.
    """
    everything: list[FleetLine] = []
    for folder in folders:
        if not is_fleet_folder(folder):
            msg = f"{folder}: no {FLEET_FILE} (not the --out folder of a fleet check)"
            raise InputError(msg)
        everything += latest(read_lines(Path(folder) / FLEET_FILE, strict=True))
    merged = latest(everything)
    return merged, len(everything) - len(merged)


def file_problem_report(
    path: str, size: int, why: str, *, code: str = "file_unreadable", verdict: str = "not_checked",
    summary: str = "", fix: str = "",
) -> dict[str, Any]:
    """A `FileReport` dict for a file the fleet could not check: `why` says what stood in the way.

    Used for what the walk refuses to open (a symlink out of the tree, a
    pipe), a file that vanished or cannot be read, and (`crash_report`) one
    whose check killed its worker. It carries what a report always has, so
    renderers need no special case.
    """
    summary = summary or f"not checked: {why}"
    return {
        "path": path, "size": size, "format": "unknown", "why": why, "content": "unknown",
        "harness_format": None, "tensors": [], "listing": "", "device_tags": {}, "prefixes": [], "globals": [],
        "unsafe_globals": [], "code_globals": [], "globals_source": "", "problems": [why], "notes": [],
        "attempts": [], "verdict": verdict, "summary": summary, "findings": True,
        "diagnosis": {"code": code, "summary": summary, "fix": fix or "check the path; the fleet reports it as it found it"},
    }


def crash_report(path: str, size: int, how: str, *, status: str = "crash") -> dict[str, Any]:
    """A `FileReport` dict for a file whose check killed (or outlasted) the checking process.

    The worker reads a file in-process only as ``check`` does (the sniffer,
    ``weights_only=True``): a file that crashes or hangs that is a finding
    about the file, not a failure of the run. `status` is ``crash`` or ``timeout``.
    """
    what = "killed the check process" if status == "crash" else "made the check process hang"
    summary = f"reading it {what} ({how}); do not load it where a crash matters"
    return file_problem_report(
        path, size, f"{status}: {how}", code=f"check_{status}", verdict="crashed", summary=summary,
        fix="check it alone (check FILE) to see which load fails, with --trust only if you trust it",
    )
