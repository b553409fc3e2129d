"""Outcomes and result lines: the contract between load and report.

A result line is one JSON object per cell (docs/ARCHITECTURE.md): ``schema``,
``source``, ``target``, ``case``, ``format``, ``load``, ``outcome``,
``expected``, ``detail``, ``diagnosis``, ``seconds`` and more. `CellResult`
is its only writer and reader, so the schema lives in one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Optional

__all__ = [
    "RESULT_SCHEMA",
    "SIDECAR_SCHEMA",
    "CellResult",
    "EnvSidecar",
    "Outcome",
    "cell_key",
    "line_key",
    "validate_line",
]

#: Version of the result-line schema (`CellResult`).
RESULT_SCHEMA = 1
#: Version of the env sidecar's schema (`EnvSidecar`).
SIDECAR_SCHEMA = 1


class Outcome(str, enum.Enum):
    """How a cell ended, from best to worst for the reader's attention."""

    PASS = "pass"  # loaded, exactly equal
    SKIP = "skip"  # not applicable here, with the reason
    ERROR = "error"  # the load raised
    TIMEOUT = "timeout"  # the load did not return in time
    CRASH = "crash"  # the process died
    MISMATCH = "mismatch"  # loaded, but differs: silent corruption, the worst

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def is_failure(self) -> bool:
        return self not in (Outcome.PASS, Outcome.SKIP)


_SEVERITY = {
    Outcome.PASS: 0, Outcome.SKIP: 1, Outcome.ERROR: 2, Outcome.TIMEOUT: 3, Outcome.CRASH: 4, Outcome.MISMATCH: 5,
}


_STR_FIELDS = ("source", "target", "case", "format")
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "detail": (str,),
    "expected": (bool,),
    "expectation": (str, type(None)),
    "diagnosis": (dict, type(None)),
    "error": (dict, type(None)),
    "differences": (list,),
    "notes": (list,),
    "forward": (dict, type(None)),
    "seconds": (int, float),
    "artifact": (str,),
    "origin": (str,),
    "tags": (list,),
    "harness": (str,),
    "load_as": (str, type(None)),
    "remap": (dict, type(None)),
}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else {"str": "a string", "dict": "an object", "list": "a list", "bool": "true/false"}.get(t.__name__, "a number") for t in types)


def validate_line(d: Any) -> None:
    """Raise ValueError (one line, no location) if `d` is not a valid result line."""
    if not isinstance(d, dict):
        msg = f"a result line is a JSON object, not {type(d).__name__}"
        raise ValueError(msg)
    missing = [k for k in ("source", "target", "case", "format", "load", "outcome") if k not in d]
    if missing:
        msg = f"result line lacks {', '.join(missing)}"
        raise ValueError(msg)
    if d.get("schema", RESULT_SCHEMA) != RESULT_SCHEMA:
        msg = f"schema={d.get('schema')!r} but this harness reads result schema {RESULT_SCHEMA}"
        raise ValueError(msg)
    for key in _STR_FIELDS:
        if not isinstance(d[key], str) or not d[key]:
            msg = f"{key}={d[key]!r} is not a non-empty string"
            raise ValueError(msg)
    if not isinstance(d["load"], dict):
        msg = f"load={d['load']!r} is not an object of load options"
        raise ValueError(msg)
    if d["outcome"] not in Outcome._value2member_map_:
        msg = f"outcome={d['outcome']!r} is not one of {', '.join(o.value for o in Outcome)}"
        raise ValueError(msg)
    for key, types in _OPTIONAL_TYPES.items():
        # bool is an int: seconds=true must not pass as a number
        if key in d and (not isinstance(d[key], types) or (key == "seconds" and isinstance(d[key], bool))):
            msg = f"{key}={d[key]!r} is not {_type_names(types)}"
            raise ValueError(msg)


def cell_key(source: str, case: str, fmt: str, options_id: str) -> str:
    """What identifies a cell within one target env's results."""
    return f"{source}|{case}|{fmt}|{options_id}"


_OPTIONS_IDS: dict[tuple[tuple[str, Any], ...], str] = {}


def _options_id(load: dict[str, Any]) -> str:
    """`LoadOptions.id` of a load dict, cached: a run has few distinct option sets."""
    from harness.runtime.load_options import LoadOptions

    try:
        frozen = tuple(sorted(load.items()))
        cached = _OPTIONS_IDS.get(frozen)
    except TypeError:  # an unhashable option value: compute it every time
        return LoadOptions.from_dict(load).id
    if cached is None:
        cached = _OPTIONS_IDS[frozen] = LoadOptions.from_dict(load).id
    return cached


def line_key(d: dict[str, Any]) -> str:
    """The cell key of a result line as read from a file (unique within its target)."""
    return cell_key(d["source"], d["case"], d["format"], _options_id(d["load"]))


@dataclass(frozen=True)
class CellResult:
    """One cell: (source env, target env, case, format, load options) and how it ended."""

    source: str
    target: str
    case: str
    format: str
    load: dict[str, Any]
    outcome: Outcome
    detail: str = ""
    expected: bool = False
    expectation: Optional[str] = None
    diagnosis: Optional[dict[str, Any]] = None
    error: Optional[dict[str, Any]] = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    forward: Optional[dict[str, Any]] = None
    seconds: float = 0.0
    artifact: str = ""
    origin: str = "curated"
    tags: list[str] = field(default_factory=list)
    harness: str = ""
    #: the model the load side built when it is not the saver's (a refactor):
    #: "variant" (a curated case's `Spec.load_side`) or the ``--load-as`` factory
    load_as: Optional[str] = None
    #: how the saved tensors map onto the load-side model (`harness.runtime.refactor.Remap.to_dict`)
    remap: Optional[dict[str, Any]] = None
    schema: int = RESULT_SCHEMA

    @property
    def options_id(self) -> str:
        from harness.runtime.load_options import LoadOptions

        return LoadOptions.from_dict(self.load).id

    @property
    def key(self) -> str:
        return cell_key(self.source, self.case, self.format, self.options_id)

    @property
    def regression(self) -> bool:
        """A failure that no expectation explains."""
        return self.outcome.is_failure and not self.expected

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: every field is already plain JSON data, and
        # dataclasses.asdict's deep copy was a visible cost per cell.
        d = {name: getattr(self, name) for name in _FIELDS}
        d["outcome"] = self.outcome.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        validate_line(d)
        kw: dict[str, Any] = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["outcome"] = Outcome(d["outcome"])
        return cls(**kw)

    def with_(self, **changes: Any) -> CellResult:
        return replace(self, **changes)


_FIELDS = tuple(CellResult.__dataclass_fields__)


@dataclass(frozen=True)
class EnvSidecar:
    """``RESULTS/<target>.env.json``: what a result folder says about its envs and cases.

    `target` is the loading env's fingerprint, `sources` the fingerprints of
    the envs whose artifacts it loaded (by label), `cases` the specs of the
    cases its lines name (by case name), so a report can show and replay them
    without the artifacts.
    """

    target: dict[str, Any]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SIDECAR_SCHEMA, "target": self.target, "sources": self.sources, "cases": self.cases}

    @classmethod
    def from_dict(cls, data: Any, label: Optional[str] = None) -> EnvSidecar:
        """The sidecar in `data`; ValueError (one line) naming what is wrong.

        `label`, when given, is the target env the file is named for.
        """
        if not isinstance(data, dict):
            msg = "an env sidecar is a JSON object with schema, target, sources and cases"
            raise ValueError(msg)
        if data.get("schema") != SIDECAR_SCHEMA:
            msg = f"schema={data.get('schema')!r} but this harness reads env sidecar schema {SIDECAR_SCHEMA}"
            raise ValueError(msg)
        # "cases" came later within schema 1 (older sidecars lack it): absent means none.
        fields = {"target": data.get("target"), "sources": data.get("sources"), "cases": data.get("cases", {})}
        for key, value in fields.items():
            if not isinstance(value, dict):
                msg = f"{key!r} must be an object"
                raise ValueError(msg)
        if label is not None and fields["target"].get("label") != label:
            msg = f"target.label={fields['target'].get('label')!r} but the file is named for {label!r}"
            raise ValueError(msg)
        for name, fp in fields["sources"].items():
            if not isinstance(fp, dict):
                msg = f"sources.{name} must be an object (a fingerprint)"
                raise ValueError(msg)
        return cls(fields["target"], fields["sources"], fields["cases"])
