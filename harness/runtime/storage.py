"""Where a tensor's bytes live, asked of any torch from 1.4 on.

torch 2.0 gave every tensor an ``untyped_storage()`` counted in bytes; older
releases have only ``storage()``, a typed storage counted in elements. Alias
groups and poisoning only need the address and size of those bytes, so both
are answered here and nowhere else (feature detection, never a version).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

__all__ = ["storage_span", "tensor_from_bytes", "untyped_storage"]


def storage_span(t: torch.Tensor) -> tuple[int, int]:
    """(address, size in bytes) of the storage under a strided tensor."""
    if hasattr(t, "untyped_storage"):
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    s = t.storage()  # torch < 2.0: typed, sized in elements
    return s.data_ptr(), s.size() * s.element_size()


def untyped_storage(t: torch.Tensor) -> Any:
    """The byte storage under `t`, for ``set_`` on a uint8 tensor; None where this torch has none."""
    return t.untyped_storage() if hasattr(t, "untyped_storage") else None


def tensor_from_bytes(data: bytes, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    """A new contiguous CPU tensor holding exactly `data` (``torch.frombuffer`` arrived in 1.10)."""
    import torch

    t = torch.empty(list(shape), dtype=dtype)
    if t.numel() * t.element_size() != len(data):
        raise ValueError(f"{len(data)} bytes cannot fill a {dtype} tensor of shape {list(shape)}")
    if data:
        ctypes.memmove(t.data_ptr(), data, len(data))
    return t
