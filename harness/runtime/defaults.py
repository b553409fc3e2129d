"""Names and defaults that the command line, the runtime and ``check`` share.

Declared once here so that a help text, a phase and a matrix file cannot
disagree about them.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TIMEOUT", "PROG", "STARTUP_TIMEOUT"]

#: The command's name in messages (also ``python -m harness``).
PROG = "torch-roundtrip"
#: Seconds one load may take (a cell of ``load``), or the trusted loads of
#: one file together (``check --trust``), before it is a ``timeout``.
DEFAULT_TIMEOUT = 120.0
#: Seconds a child process (load worker, ``check`` child) may take to import
#: torch and say hello: generous, since a cold import on a busy CI machine is slow.
STARTUP_TIMEOUT = 300.0
