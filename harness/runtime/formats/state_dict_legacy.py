"""`state_dict_legacy`: the pre-1.6 pickle format (``_use_new_zipfile_serialization=False``).

Old checkpoints in the wild still use it; it cannot be memory-mapped.
"""

from __future__ import annotations

from harness.runtime.formats.state_dict import StateDict

__all__ = ["StateDictLegacy"]


class StateDictLegacy(StateDict):
    name = "state_dict_legacy"
    summary = "torch.save(model.state_dict(), _use_new_zipfile_serialization=False)"
    filename = "model.legacy.pt"
    zip_serialization = False
