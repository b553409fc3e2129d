"""One result folder on disk, read and validated line by line.

A result folder (what ``load --results DIR`` writes, see `harness.runtime.store`)
holds, for each target env, ``<target>.jsonl`` (one result line per cell)
and ``<target>.env.json`` (the fingerprints of the target and of the source
envs, and the specs of the cases). Every problem is an `InputError` that
names the file and, for a result line, the line number: the CLI prints it as
one line and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.runtime.errors import InputError
from harness.runtime.fileio import read_json, require_dir
from harness.runtime.results import EnvSidecar, validate_line
from harness.runtime.store import read_result_lines

__all__ = ["ResultsDir", "TargetFile", "read_results_dir"]

@dataclass
class TargetFile:
    """The results of one target env in one folder."""

    label: str
    path: Path
    lines: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line number, line)
    sidecar: Optional[EnvSidecar] = None
    torn: bool = False  # an incomplete last line was dropped


@dataclass
class ResultsDir:
    """A result folder: its target files by label."""

    path: Path
    targets: dict[str, TargetFile] = field(default_factory=dict)  # by label


def _read_lines(path: Path, label: str) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    read = read_result_lines(path)
    for number, d in read.lines:
        try:
            validate_line(d)
        except ValueError as e:
            msg = f"{path}:{number}: {e}"
            raise InputError(msg) from None
        if d["target"] != label:
            msg = f"{path}:{number}: target={d['target']!r} but this file holds the results of {label!r}"
            raise InputError(msg)
    return read.lines, read.torn


def _read_sidecar(path: Path, label: str) -> EnvSidecar:
    try:
        return EnvSidecar.from_dict(read_json(path), label)
    except ValueError as e:
        msg = f"{path}: {e}"
        raise InputError(msg) from None


def read_results_dir(path: Path, *, option: str = "RESULTS_DIR") -> ResultsDir:
    """Every target file of the folder `path`, validated; InputError on the first problem."""
    path = require_dir(path, option, what=" (give the folder that `load --results` wrote)")
    files = sorted(p for p in path.glob("*.jsonl") if not p.name.startswith("."))
    if not files:
        msg = f"{option} {str(path)!r} holds no results (no <target>.jsonl files; run `python -m harness load --results {path}` first)"
        raise InputError(msg)
    out = ResultsDir(path)
    for jsonl in files:
        label = jsonl.name[: -len(".jsonl")]
        lines, torn = _read_lines(jsonl, label)
        sidecar_path = path / f"{label}.env.json"
        sidecar = _read_sidecar(sidecar_path, label) if sidecar_path.exists() else None
        out.targets[label] = TargetFile(label, jsonl, lines, sidecar, torn)
    return out
