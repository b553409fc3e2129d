"""What "fails the same way" means: the signature of a failing cell.

A shrink keeps a smaller case only while its cell still fails the way the
original did: the same outcome, and

- for an ``error`` or a ``crash``: the same diagnosis code (or, for an
  error no rule diagnoses, the same exception type);
- for a ``mismatch``: a difference of the same aspect (``bits``, ``dtype``,
  ``missing``, ``alias``, ``forward``, ...) on a tensor of the same kind (its
  role and dtype as the manifest recorded them: "parameter float16").

A smaller case that fails some other way has found another bug, not a
smaller copy of this one, and is not taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

__all__ = ["Signature", "tensor_kinds"]


def tensor_kinds(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tensor name -> "ROLE DTYPE" over every view and the forward record of a manifest (a JSON object)."""
    kinds: dict[str, str] = {}
    records: list[Any] = []
    for view in (manifest.get("views") or {}).values():
        records.extend(view.get("tensors") or [])
    forward = manifest.get("forward") or {}
    records.extend(forward.get("outputs") or [])
    for record in records:
        if isinstance(record, dict) and "name" in record:
            kinds.setdefault(record["name"], f"{record.get('role', 'tensor')} {record.get('dtype', '?')}")
    return kinds


@dataclass(frozen=True)
class Signature:
    """The outcome, and what makes this failure this one."""

    outcome: str
    code: Optional[str] = None  #: diagnosis code, or "ExceptionType" for an undiagnosed error
    aspect: Optional[str] = None  #: a mismatch's first difference: its aspect
    tensor_kind: Optional[str] = None  #: ... and its tensor's role and dtype ("parameter float16")

    @classmethod
    def of(cls, result: Mapping[str, Any], kinds: Mapping[str, str]) -> Signature:
        """The signature of a result line (a `CellResult` dict), its tensors' kinds from `tensor_kinds`."""
        outcome = result["outcome"]
        if outcome == "mismatch":
            diffs = result.get("differences") or []
            if diffs:
                first = diffs[0]
                return cls(outcome, aspect=first.get("aspect"), tensor_kind=kinds.get(first.get("tensor", "")))
            return cls(outcome)
        return cls(outcome, code=_code(result))

    def matches(self, result: Mapping[str, Any], kinds: Mapping[str, str]) -> bool:
        """Whether `result` fails the same way."""
        if result.get("outcome") != self.outcome:
            return False
        if self.outcome == "mismatch":
            if self.aspect is None:
                return True
            return any(
                d.get("aspect") == self.aspect and (self.tensor_kind is None or kinds.get(d.get("tensor", "")) == self.tensor_kind)
                for d in result.get("differences") or []
            )
        return self.code is None or _code(result) == self.code

    def text(self) -> str:
        """One line: "mismatch: bits of a parameter float16", "error: weights_only_unpickler"."""
        if self.outcome == "mismatch":
            if self.aspect is None:
                return "mismatch"
            return f"mismatch: {self.aspect} of a {self.tensor_kind}" if self.tensor_kind else f"mismatch: {self.aspect}"
        return f"{self.outcome}: {self.code}" if self.code else self.outcome

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if v is not None}, "text": self.text()}


def _code(result: Mapping[str, Any]) -> Optional[str]:
    diagnosis = result.get("diagnosis") or {}
    if diagnosis.get("code"):
        return str(diagnosis["code"])
    error = result.get("error") or {}
    return str(error["type"]) if error.get("type") else None
