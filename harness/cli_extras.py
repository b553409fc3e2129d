"""Commands beyond the core phases, registered into the CLI parser.

Each entry adds its subparsers; imports stay inside so ``--help`` and the
core commands never pay for the report's or the benchmark's dependencies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMMANDS"]


def _bench(sub: Any) -> None:
    from harness.bench import register

    register(sub)


def _report(sub: Any) -> None:
    from harness.report.cli import register

    register(sub)


def _check(sub: Any) -> None:
    from harness.check import register

    register(sub)


COMMANDS: list = [_bench, _report, _check]
