"""The two phases that run inside an env: save (`save`) and load (`load`).

`isolation` keeps the worker process that load runs its cells in.
"""

from __future__ import annotations

from harness.runtime.runner.load import LoadSummary, load_phase
from harness.runtime.runner.save import SaveSummary, save_phase

__all__ = ["LoadSummary", "SaveSummary", "load_phase", "save_phase"]
