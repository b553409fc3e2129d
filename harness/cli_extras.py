"""Commands beyond the core phases, registered into the CLI parser."""

from __future__ import annotations

__all__ = ["COMMANDS"]


def _bench(sub):  # type: ignore[no-untyped-def]
    from harness.bench import register

    register(sub)


COMMANDS: list = [_bench]
