"""Expectations: documented incompatibilities, and matching results against them.

``cases/expectations.toml`` holds ``[[expectation]]`` tables. Each has an
``id``, a ``reason`` and a ``link``, and match keys; a result matches when
every key given matches (lists mean "any of"):

=================  ==========================================================
``format``         format name(s)
``case``           case name(s); ``tags``: any of these spec tags
``source_torch``   version specifier for the saving torch, e.g. ``"<2.6"``
``target_torch``   version specifier for the loading torch
``direction``      ``newer_to_older``, ``older_to_newer`` or ``same`` (saving vs loading torch)
``source_device``  ``cpu`` / ``cuda`` / ``cuda-emulated``; ``target_device`` likewise
``source_numpy``   version specifier for the saving env's numpy, read from its
                   label (a matrix with a numpy axis); a label without numpy
                   never matches; ``target_numpy`` likewise
``load``           table of load options, each a value or a list of values
``outcome``        outcome(s) this expectation covers (default: error)
``diagnosis``      diagnosis code(s) the error must have
=================  ==========================================================

A failure that matches is *expected*; one that does not is a *regression*.
Passes and skips are never marked expected, so a fixed incompatibility shows
up as a pass, not as a stale expectation silently swallowing it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, overload

from harness.runtime.env import parse_label
from harness.runtime.errors import InputError
from harness.runtime.results import CellResult
from harness.runtime.versions import matches, release

__all__ = ["Expectation", "Expectations"]

_KEYS = {
    "id", "reason", "link", "format", "case", "tags", "source_torch", "target_torch",
    "source_device", "target_device", "load", "outcome", "diagnosis", "direction",
    "source_numpy", "target_numpy",
}
_DIRECTIONS = ("newer_to_older", "older_to_newer", "same")


def _direction(source: str, target: str) -> str:
    s, t = release(source), release(target)
    return "same" if s == t else ("newer_to_older" if s > t else "older_to_newer")


@overload
def _as_list(value: None) -> None: ...


@overload
def _as_list(value: object) -> list[Any]: ...


def _as_list(value: Any) -> Optional[list[Any]]:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def _norm(value: Any) -> Any:
    # TOML spells booleans true/false; results spell weights_only as strings.
    if isinstance(value, bool):
        return str(value).lower()
    return value


@dataclass(frozen=True)
class Expectation:
    id: str
    reason: str
    link: str = ""
    rules: dict[str, Any] = field(default_factory=dict)

    def matches(self, r: CellResult) -> bool:
        rules = self.rules
        outcomes = _as_list(rules.get("outcome")) or ["error"]
        if r.outcome.value not in outcomes:
            return False
        if "format" in rules and r.format not in _as_list(rules["format"]):
            return False
        if "case" in rules and r.case not in _as_list(rules["case"]):
            return False
        if "tags" in rules and not set(_as_list(rules["tags"])) & set(r.tags):
            return False
        try:
            src, tgt = parse_label(r.source), parse_label(r.target)
        except InputError:
            return False
        if "source_torch" in rules and not matches(src["torch"], rules["source_torch"]):
            return False
        if "target_torch" in rules and not matches(tgt["torch"], rules["target_torch"]):
            return False
        if "direction" in rules and _direction(src["torch"], tgt["torch"]) not in _as_list(rules["direction"]):
            return False
        if "source_device" in rules and src["device"] not in _as_list(rules["source_device"]):
            return False
        if "target_device" in rules and tgt["device"] not in _as_list(rules["target_device"]):
            return False
        # numpy is known only from a label of a matrix with a numpy axis.
        for key, parts in (("source_numpy", src), ("target_numpy", tgt)):
            if key in rules and not (parts["numpy"] and matches(parts["numpy"], rules[key])):
                return False
        for key, want in (rules.get("load") or {}).items():
            have = r.load.get(key)
            if _norm(have) not in [_norm(w) for w in _as_list(want)]:
                return False
        if "diagnosis" in rules:
            code = (r.diagnosis or {}).get("code")
            if code not in _as_list(rules["diagnosis"]):
                return False
        return True


class Expectations:
    """The list of expectations, applied in file order (first match wins)."""

    def __init__(self, items: list[Expectation]) -> None:
        self.items = items

    @classmethod
    def load(cls, path: Optional[Path] = None) -> Expectations:
        """From `path`, or the shipped ``cases/expectations.toml``."""
        if path is None:
            from harness.runtime.cases import data_dir

            path = data_dir() / "expectations.toml"
        path = Path(path)
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised in the py<3.11 envs
            import tomli as tomllib
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"expectations file {str(path)!r} does not exist"
            raise InputError(msg) from None
        except tomllib.TOMLDecodeError as e:
            msg = f"{path}: not valid TOML ({e})"
            raise InputError(msg) from None
        items = []
        for i, raw in enumerate(data.get("expectation", [])):
            unknown = set(raw) - _KEYS
            if unknown:
                msg = f"{path}: expectation #{i + 1}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KEYS))})"
                raise InputError(msg)
            for need in ("id", "reason"):
                if need not in raw:
                    msg = f"{path}: expectation #{i + 1} needs {need!r}"
                    raise InputError(msg)
            rules = {k: v for k, v in raw.items() if k not in ("id", "reason", "link")}
            bad = [d for d in _as_list(rules.get("direction")) or [] if d not in _DIRECTIONS]
            if bad:
                msg = f"{path}: expectation {raw['id']!r}: direction {bad[0]!r} is not one of {', '.join(_DIRECTIONS)}"
                raise InputError(msg)
            for key in ("source_torch", "target_torch", "source_numpy", "target_numpy"):
                if key in rules:
                    try:
                        matches("1.0", rules[key])
                    except ValueError as e:
                        msg = f"{path}: expectation {raw['id']!r}: {key}: {e}"
                        raise InputError(msg) from None
            items.append(Expectation(raw["id"], raw["reason"], raw.get("link", ""), rules))
        ids = [e.id for e in items]
        if len(set(ids)) != len(ids):
            msg = f"{path}: expectation ids must be unique"
            raise InputError(msg)
        return cls(items)

    def find(self, r: CellResult) -> Optional[Expectation]:
        if not r.outcome.is_failure:
            return None
        for e in self.items:
            if e.matches(r):
                return e
        return None

    def apply(self, r: CellResult) -> CellResult:
        """`r` with ``expected``/``expectation`` set from the first match."""
        e = self.find(r)
        return r.with_(expected=e is not None, expectation=e.id if e else None)
