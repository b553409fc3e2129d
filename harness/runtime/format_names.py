"""The names of the formats, in report order.

Importable with nothing but the standard library: the noxfile validates a
matrix with it in nox's own environment, where neither torch nor xxhash is
installed. `harness.runtime.formats` checks that its registry matches this list.
"""

from __future__ import annotations

__all__ = ["FORMAT_NAMES"]

FORMAT_NAMES = (
    "state_dict", "state_dict_legacy", "full_model", "torchscript", "exported", "safetensors", "checkpoint",
)
