"""`state_dict_legacy`: the pre-1.6 pickle format (``_use_new_zipfile_serialization=False``).

Old checkpoints in the wild still use it; it cannot be memory-mapped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import Saved
from harness.runtime.formats.state_dict import StateDict
from harness.runtime.storage import legacy_format_problem

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["StateDictLegacy"]


class StateDictLegacy(StateDict):
    name = "state_dict_legacy"
    summary = "torch.save(model.state_dict(), _use_new_zipfile_serialization=False)"
    filename = "model.legacy.pt"
    zip_serialization = False
    sweeps_device_index = False  # swept on state_dict; the map_location code path is the same

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        # torch 2.2+ writes float8, uint16/32/64 and complex32 into this format
        # without complaint, as files no release reads back: a skip, with why.
        problem = legacy_format_problem(t.dtype for t in built.model.state_dict().values() if hasattr(t, "dtype"))
        if problem:
            raise Unsupported(problem)
        return super().save(built, directory, prefix)
