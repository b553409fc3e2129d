"""One result folder on disk, read and validated line by line.

A result folder (what ``load --results DIR`` writes, see `harness.store`)
holds, for each target env, ``<target>.jsonl`` (one result line per cell)
and ``<target>.env.json`` (the fingerprints of the target and of the source
envs, and the specs of the cases). Every problem is an `InputError` that
names the file and, for a result line, the line number: the CLI prints it as
one line and exits 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import InputError
from harness.results import validate_line
from harness.store import read_json, require_dir

__all__ = ["ResultsDir", "TargetFile", "read_results_dir"]

SIDECAR_SCHEMA = 1

@dataclass
class TargetFile:
    """The results of one target env in one folder."""

    label: str
    path: Path
    lines: list = field(default_factory=list)  # (line number, dict)
    sidecar: Optional[dict] = None
    torn: bool = False  # an incomplete last line was dropped


@dataclass
class ResultsDir:
    """A result folder: its target files by label."""

    path: Path
    targets: dict = field(default_factory=dict)  # label -> TargetFile


def _parse_all(rows: list) -> Optional[list]:
    """Every row parsed in one json.loads call (several times faster than one call per
    line), or None when some row is not JSON: then the caller parses row by row to
    say which line is bad."""
    try:
        return json.loads("[" + ",".join(r if r.strip() else "null" for r in rows) + "]")
    except json.JSONDecodeError:
        return None


def _read_lines(path: Path, label: str) -> tuple:
    lines = []
    torn = False
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        msg = f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"
        raise InputError(msg) from None
    except OSError as e:
        msg = f"{path}: cannot be read ({e.strerror})"
        raise InputError(msg) from None
    rows = text.split("\n")
    last = len(rows)
    parsed = _parse_all(rows)
    for number, raw in enumerate(rows, 1):
        line = raw.strip()
        if not line:
            continue
        try:
            d = parsed[number - 1] if parsed is not None else json.loads(line)
        except json.JSONDecodeError as e:
            if number == last:
                # No newline after it: a load killed mid-write (store.ResultsWriter
                # appends whole lines). The caller says so; the cell is re-run next load.
                torn = True
                break
            msg = f"{path}:{number}: not a JSON result line ({e.msg} at column {e.colno})"
            raise InputError(msg) from None
        try:
            validate_line(d)
        except ValueError as e:
            msg = f"{path}:{number}: {e}"
            raise InputError(msg) from None
        if d["target"] != label:
            msg = f"{path}:{number}: target={d['target']!r} but this file holds the results of {label!r}"
            raise InputError(msg)
        lines.append((number, d))
    return lines, torn


def _read_sidecar(path: Path, label: str) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        msg = f"{path}: an env sidecar is a JSON object with schema, target, sources and cases"
        raise InputError(msg)
    if data.get("schema") != SIDECAR_SCHEMA:
        msg = f"{path}: schema={data.get('schema')!r} but this harness reads env sidecar schema {SIDECAR_SCHEMA}"
        raise InputError(msg)
    # "cases" came later within schema 1 (older sidecars lack it): absent means none.
    data.setdefault("cases", {})
    for key in ("target", "sources", "cases"):
        if not isinstance(data.get(key), dict):
            msg = f"{path}: {key!r} must be an object"
            raise InputError(msg)
    if data["target"].get("label") != label:
        msg = f"{path}: target.label={data['target'].get('label')!r} but the file is named for {label!r}"
        raise InputError(msg)
    for name, fp in data["sources"].items():
        if not isinstance(fp, dict):
            msg = f"{path}: sources.{name} must be an object (a fingerprint)"
            raise InputError(msg)
    return data


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
