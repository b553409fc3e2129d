"""Commands beyond the core phases: registered into the CLI parser here."""

from __future__ import annotations

__all__ = ["COMMANDS"]

COMMANDS: list = []
