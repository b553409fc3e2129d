"""Shrink a cross-env failure to its smallest case, and write a plain-torch reproduction.

A cell fails between two envs (saved by torch A, loaded by torch B);
Hypothesis cannot shrink that, since its examples live in one process.
`shrink_cell` keeps one save worker in the source env and one load worker
in the target env, and walks the case's spec down (`candidates`) for as
long as the cell still fails the same way (`signature`): each step is a
save and a load in warm processes, milliseconds, not a process start
(`envs`). The smallest case is written as ``spec.json``, as plain-torch
``save.py`` / ``load.py`` scripts with a ``README.md`` for an upstream
issue (`script`, `plain_model`), and as ``shrink.json`` (`record`), which
the report shows beside the cell.

Host code: it runs where ``python -m harness shrink`` runs and drives the
two envs through their workers; it is not part of the runtime.
"""

from __future__ import annotations

from harness.shrink.record import ShrinkRecord
from harness.shrink.shrinker import ShrinkRequest, find_cell, shrink_cell

__all__ = ["ShrinkRecord", "ShrinkRequest", "find_cell", "shrink_cell"]
