"""Merging result folders: several machines' results become one.

CI runs each target env on its own machine and each writes its own result
folder; `merge_dirs` combines them in the order given. The later line of a
cell wins (as within one file: a re-run replaces the older line). When two
lines of one cell disagree on the outcome, or two folders describe one env
label or one case differently, the merge goes on with the later one and
records a `Conflict`, which ``merge`` and ``report`` print and the report
shows: two machines disagreeing about one cell is a finding, not noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from harness.report.resultsdir import ResultsDir, read_results_dir
from harness.runtime.errors import InputError
from harness.runtime.fileio import write_json, write_text
from harness.runtime.results import EnvSidecar, line_key

__all__ = ["Conflict", "Merged", "merge_dirs", "require_lines", "restrict", "write_merged"]

@dataclass(frozen=True)
class Conflict:
    """Two inputs that disagree; the later one was kept."""

    kind: str  # cell | env | case
    subject: str  # the cell key, env label or case name
    target: str  # the target env of a cell conflict, else ""
    earlier: str
    later: str

    def line(self) -> str:
        where = f"{self.target}: " if self.target else ""
        return f"{self.kind} conflict: {where}{self.subject}: {self.earlier} vs {self.later} (kept the later)"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "target": self.target, "earlier": self.earlier, "later": self.later}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conflict:
        return cls(d["kind"], d["subject"], d.get("target", ""), d["earlier"], d["later"])


@dataclass
class Merged:
    """Lines per target (key -> (line, where)), fingerprints, specs, and what went wrong."""

    inputs: list[str] = field(default_factory=list)
    lines: dict[str, dict[str, tuple[dict[str, Any], str]]] = field(default_factory=dict)  # target -> {key: (dict, "file:line")}
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> its load-time fingerprint, where a sidecar gave one
    sources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # target -> {source label: save-time fingerprint}
    cases: dict[str, Any] = field(default_factory=dict)  # name -> spec
    conflicts: list[Conflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    superseded: int = 0  # lines replaced by a later line with the same outcome
    mtimes: list[float] = field(default_factory=list)  # of the result files read

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.lines.values())

    @property
    def envs(self) -> dict[str, dict[str, Any]]:
        """label -> fingerprint of every env seen: as loaded for targets, as saved for the others."""
        out = {label: fp for per_target in self.sources.values() for label, fp in per_target.items()}
        out.update(self.targets)
        return out


def _fingerprint_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def _add_env(
    seen: dict[str, dict[str, Any]], role: str, label: str, fp: dict[str, Any], where: str, origin: dict[tuple[str, str], str],
    conflicts: list[Conflict],
) -> None:
    # Per role: a label's save-time fingerprint (source) may differ from its
    # load-time one (target) when CI saves and loads on different runners;
    # two different fingerprints in one role are two different envs under one label.
    old = seen.get(label)
    if old is not None and old != fp:
        conflicts.append(Conflict("env", f"{label} as {role}", "", origin[(role, label)], f"{where} ({_fingerprint_diff(old, fp)})"))
    seen[label] = fp
    origin[(role, label)] = where


def merge_dirs(dirs: Sequence[Union[Path, ResultsDir]]) -> Merged:
    """Combine `dirs` (paths or `ResultsDir`s), later ones winning."""
    merged = Merged()
    env_origin: dict[tuple[str, str], str] = {}
    case_origin: dict[str, str] = {}
    saved: dict[str, dict[str, Any]] = {}  # source label -> save-time fingerprint, across every target
    for d in dirs:
        rd = d if isinstance(d, ResultsDir) else read_results_dir(Path(d))
        merged.inputs.append(str(rd.path))
        for label, tf in rd.targets.items():
            merged.mtimes.append(tf.path.stat().st_mtime)
            if tf.torn:
                merged.warnings.append(f"{tf.path}: the last line is incomplete (a load was killed while writing it) and was ignored")
            cells = merged.lines.setdefault(label, {})
            for number, line in tf.lines:
                where = f"{tf.path}:{number}"
                key = line_key(line)
                old = cells.get(key)
                if old is not None:
                    if old[0]["outcome"] != line["outcome"]:
                        merged.conflicts.append(
                            Conflict("cell", key, label, f"{old[0]['outcome']} at {old[1]}", f"{line['outcome']} at {where}")
                        )
                    else:
                        merged.superseded += 1
                    # Re-insert so the merged order follows the winning lines.
                    del cells[key]
                cells[key] = (line, where)
            if tf.sidecar is None:
                merged.warnings.append(f"{rd.path / (label + '.env.json')} is missing: the fingerprints of {label} and its sources are unknown")
                continue
            side = str(rd.path / f"{label}.env.json")
            _add_env(merged.targets, "target", label, tf.sidecar.target, side, env_origin, merged.conflicts)
            sources = merged.sources.setdefault(label, {})
            for src, fp in tf.sidecar.sources.items():
                _add_env(saved, "source", src, fp, side, env_origin, merged.conflicts)
                sources[src] = fp
            for name, spec in tf.sidecar.cases.items():
                old_spec = merged.cases.get(name)
                if old_spec is not None and old_spec != spec:
                    merged.conflicts.append(Conflict("case", name, "", f"spec in {case_origin[name]}", f"another spec in {side}"))
                merged.cases[name] = spec
                case_origin[name] = side
    return merged


def require_lines(merged: Merged) -> None:
    """InputError when the inputs hold no result line: an empty run must not read as a clean one."""
    if merged.total == 0:
        msg = f"no result lines in {', '.join(repr(p) for p in merged.inputs)}: every <target>.jsonl is empty"
        raise InputError(msg)


def write_merged(merged: Merged, out: Path) -> list[Path]:
    """Write `merged` as one result folder (``<target>.jsonl`` + ``<target>.env.json``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        msg = f"--out {str(out)!r} is a file, not a folder"
        raise InputError(msg)
    inputs = {Path(p).resolve() for p in merged.inputs}
    if out.exists() and out.resolve() not in inputs:
        stray = sorted(p.name for p in out.glob("*.jsonl") if p.name[: -len(".jsonl")] not in merged.lines)
        kept = sorted(p.name for p in out.glob("*.jsonl") if p.name[: -len(".jsonl")] in merged.lines)
        if stray or kept:
            msg = (
                f"--out {str(out)!r} already holds results ({', '.join((stray + kept)[:3])}); "
                "merge into an empty folder, or name this folder among the inputs to merge into it"
            )
            raise InputError(msg)
    written = []
    for label in sorted(merged.lines):
        rows = sorted(merged.lines[label].items())
        path = out / f"{label}.jsonl"
        write_text(path, "".join(json.dumps(line, sort_keys=True) + "\n" for _, (line, _) in rows))
        written.append(path)
        if label in merged.targets:
            side = out / f"{label}.env.json"
            referenced = {line["case"] for _, (line, _) in rows}
            cases = {n: s for n, s in merged.cases.items() if n in referenced}
            sidecar = EnvSidecar(merged.targets[label], merged.sources.get(label, {}), cases)
            write_json(side, sidecar.to_dict())
            written.append(side)
    return written


def restrict(merged: Merged, envs: Iterable[str]) -> Merged:
    """Only the cells whose source and target are both among `envs` (labels).

    A reports folder keeps results of earlier matrices; a run reports on its own.
    """
    keep = set(envs)
    merged.lines = {
        target: {k: v for k, v in lines.items() if v[0].get("source") in keep}
        for target, lines in merged.lines.items() if target in keep
    }
    merged.lines = {t: lines for t, lines in merged.lines.items() if lines}
    merged.targets = {t: fp for t, fp in merged.targets.items() if t in keep}
    merged.sources = {t: {s: fp for s, fp in per.items() if s in keep} for t, per in merged.sources.items() if t in keep}
    return merged

