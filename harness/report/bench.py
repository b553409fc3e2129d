"""Bench figures (``--bench FILE`` or ``OUT/bench.json``) for the report's bench section.

The report shows what ``python -m harness bench`` measured; it measures
nothing itself. It reads the file `harness.bench` writes (`harness.bench.BenchRecord`, held
to its schema when the file names one)::

    {"schema": 1, "figures": {name: number | null | {sub: number}},
     "targets": {name: "<= 1.25" | ">= 400" | "report"}, "met": {...},
     "raw": {...}, "machine": {...}, "when": "..."}

A figure may also be an object ``{"value": number, "target": "<= 1.1",
"unit": ..., "note": ...}``, and a file without ``"figures"`` may hold the
figures at its top level. ``null`` is a figure that was not measured (shown
as such); an object of numbers (``peak_rss_ratio``: without and with mmap)
becomes one figure per entry; the target ``"report"`` means "no target, just
report it". Whether a target is met is computed here from value and target
(the file's own ``met`` is the same computation and is not read). Other
top-level entries (``machine``, ``when``, ``raw``) are shown as context. A
missed target does not change the exit status: a bench is not a regression.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.runtime.errors import InputError
from harness.runtime.fileio import read_json

__all__ = ["Bench", "Figure", "read_bench"]

_TARGET = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_NO_TARGET = "report"  # harness.bench's word for "informational"
_DERIVED = ("figures", "targets", "met")  # read as figures, or recomputed


@dataclass(frozen=True)
class Figure:
    """One measured figure and the target it is held to."""

    name: str
    value: Optional[float]  # None: not measured
    target: Optional[str] = None
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> Optional[bool]:
        """Whether `value` meets every clause of `target`; None without both."""
        if self.target is None or self.value is None:
            return None
        ok = True
        for clause in self.target.split(","):
            m = _TARGET.match(clause)
            assert m, clause  # read_bench checked every target
            ok = ok and _OPS[m.group(1)](self.value, float(m.group(2)))
        return ok

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "target": self.target, "unit": self.unit, "note": self.note, "met": self.met}


@dataclass
class Bench:
    """A bench file: its figures, and the rest of it as context."""

    path: str
    figures: list[Figure] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)  # name -> text


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _target(path: Path, name: str, target: Any) -> Optional[str]:
    if target is None or target == _NO_TARGET:
        return None
    if not isinstance(target, str):
        msg = f"{path}: figure {name!r}: target={target!r} must be a string such as '<= 1.10' (or 'report')"
        raise InputError(msg)
    for clause in target.split(","):
        if not _TARGET.match(clause):
            msg = f"{path}: figure {name!r}: target={target!r} is not like '<= 1.10', '>= 2, < 5' or 'report'"
            raise InputError(msg)
    return target.strip()


def _figures(path: Path, name: str, raw: Any, targets: dict[str, Any]) -> list[Figure]:
    target = _target(path, name, targets.get(name))
    if raw is None:
        return [Figure(name, None, target, note="not measured")]
    if _number(raw):
        return [Figure(name, float(raw), target)]
    if isinstance(raw, dict) and "value" in raw:
        value = raw["value"]
        if not _number(value):
            msg = f"{path}: figure {name!r}: value={value!r} is not a finite number"
            raise InputError(msg)
        clauses = [c for c in [_target(path, name, raw.get("target", targets.get(name)))] if c]
        for key, op in (("min", ">="), ("max", "<=")):
            if key in raw:
                if not _number(raw[key]):
                    msg = f"{path}: figure {name!r}: {key}={raw[key]!r} is not a number"
                    raise InputError(msg)
                clauses.append(f"{op} {raw[key]:g}")
        return [Figure(name, float(value), ", ".join(clauses) or None, str(raw.get("unit", "")), str(raw.get("note", "")))]
    if isinstance(raw, dict) and raw and all(v is None or _number(v) for v in raw.values()):
        return [Figure(f"{name}.{sub}", None if v is None else float(v), target, note="" if v is not None else "not measured") for sub, v in raw.items()]
    msg = f"{path}: figure {name!r} is {json.dumps(raw)[:80]}, not a number, null, an object of numbers or {{\"value\": ...}}"
    raise InputError(msg)


def read_bench(path: Path, *, option: str = "--bench") -> Bench:
    """Figures of a bench file; InputError naming the file and figure on a bad entry."""
    path = Path(path)
    if not path.is_file():
        msg = f"{option} {str(path)!r} does not exist" if not path.exists() else f"{option} {str(path)!r} is not a file"
        raise InputError(msg)
    data = read_json(path)
    if not isinstance(data, dict):
        msg = f"{path}: a bench file is a JSON object of figures"
        raise InputError(msg)
    if "schema" in data:  # the harness's own bench.json: hold it to its schema
        from harness.bench import BenchRecord

        try:
            BenchRecord.from_dict(data)
        except ValueError as e:
            msg = f"{path}: {e}"
            raise InputError(msg) from None
    targets = data.get("targets", {})
    if not isinstance(targets, dict):
        msg = f"{path}: 'targets' must be an object of name -> '<= 1.10'"
        raise InputError(msg)
    bench = Bench(str(path))
    if "figures" in data:
        if not isinstance(data["figures"], dict):
            msg = f"{path}: 'figures' must be an object of name -> number"
            raise InputError(msg)
        for name, raw in data["figures"].items():
            bench.figures.extend(_figures(path, name, raw, targets))
        others = {k: v for k, v in data.items() if k not in _DERIVED}
    else:
        # Figures at the top level: numbers and {"value": ...} objects; the rest is context.
        others = {}
        for name, raw in data.items():
            if name in _DERIVED:
                continue
            if _number(raw) or (isinstance(raw, dict) and "value" in raw):
                bench.figures.extend(_figures(path, name, raw, targets))
            else:
                others[name] = raw
    bench.context = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in others.items()}
    if not bench.figures:
        msg = f"{path}: no figures found (expected \"figures\": {{\"verify_overhead_ratio\": 1.04, ...}})"
        raise InputError(msg)
    return bench
