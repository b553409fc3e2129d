"""User cases: ``--user-case MODULE:FUNCTION`` (filled in by the user-case work)."""

from __future__ import annotations

from harness.errors import InputError

__all__ = ["user_specs"]


def user_specs(refs: list) -> list:
    if refs:
        raise InputError("--user-case is not supported by this harness version yet")
    return []
