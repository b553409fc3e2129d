"""Version numbers as *knowledge*, never as feature switches.

The engine detects features; version numbers appear only in facts about the
world (expectations, env resolution). This module parses release numbers and
small specifier sets such as ``">=2.6"`` or ``">=2.1,<2.4"`` without needing
`packaging` inside the env.
"""

from __future__ import annotations

import re

__all__ = ["release", "matches"]

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<|~=)?\s*(\d+(?:\.\d+)*(?:\.\*)?)\s*$")


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"2.4.1+cu121"`` -> ``(2, 4, 1)``."""
    m = _RELEASE.match(version)
    if not m:
        msg = f"version={version!r} does not start with a release number such as 2.4.1"
        raise ValueError(msg)
    return tuple(int(p) for p in m.group(1).split("."))


def _pad(a: tuple[int, ...], n: int) -> tuple[int, ...]:
    return a + (0,) * (n - len(a))


def matches(version: str, spec: str) -> bool:
    """Whether `version` satisfies every comma-separated clause of `spec`.

    ``"2.6"`` alone means ``==2.6.*``; ``"*"`` or ``""`` matches everything.
    """
    spec = spec.strip()
    if spec in ("", "*"):
        return True
    have = release(version)
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        if not m:
            msg = f"version specifier {clause.strip()!r} is not like '>=2.6' or '<2.4.1'"
            raise ValueError(msg)
        op, text = m.group(1) or "==*", m.group(2)
        wildcard = text.endswith(".*") or op == "==*"
        want = release(text.rstrip(".*"))
        if wildcard:
            ok = have[: len(want)] == want
            if op == "!=":
                ok = not ok
        else:
            n = max(len(have), len(want))
            h, w = _pad(have, n), _pad(want, n)
            ok = {
                ">=": h >= w, "<=": h <= w, ">": h > w, "<": h < w,
                "==": h == w, "!=": h != w, "~=": h >= w and h[: len(want) - 1] == w[: len(want) - 1],
            }[op]
        if not ok:
            return False
    return True
