"""Where a tensor's bytes live, asked of any torch from 1.4 on.

torch 2.0 gave every tensor an ``untyped_storage()`` counted in bytes; older
releases have only ``storage()``, a typed storage counted in elements. Alias
groups and poisoning only need the address and size of those bytes, so both
are answered here and nowhere else (feature detection, never a version).
"""

from __future__ import annotations

import ctypes
import io
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

if TYPE_CHECKING:
    import torch

__all__ = ["legacy_format_problem", "reinterpret", "storage_span", "tensor_from_bytes", "untyped_storage"]


def storage_span(t: torch.Tensor) -> tuple[int, int]:
    """(address, size in bytes) of the storage under a strided tensor."""
    if hasattr(t, "untyped_storage"):
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    try:
        s = t.storage()  # torch < 2.0: typed, sized in elements
    except RuntimeError:
        # torch 1.8 has complex32 tensors but no storage class for them
        # ("unsupported Storage type"): an integer view of the same width
        # shares the storage and has one.
        s = t.view(_same_width_int(t)).storage()
    return s.data_ptr(), s.size() * s.element_size()


def _same_width_int(t: torch.Tensor) -> torch.dtype:
    import torch

    widths = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    size = t.element_size()
    if size not in widths:
        raise RuntimeError(f"no integer dtype is {size} bytes wide to view a {t.dtype} storage through")
    return widths[size]


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


def reinterpret(t: torch.Tensor, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    """A new CPU tensor of `dtype` and `shape` holding exactly the bytes of `t`.

    ``Tensor.view(dtype)`` is not in every release and, where it is, joins
    only some pairs of widths (int64 pairs to complex128 need an even last
    dimension); this copy needs nothing of `dtype` but ``torch.empty``, so it
    works for every dtype a release has, even one it has no kernels for
    (float8 in torch 2.1, uint64 in 2.3). The result is on the CPU even
    inside a ``torch.device("meta")`` context.
    """
    import torch

    src = t.detach().cpu().contiguous()
    new = torch.empty(list(shape), dtype=dtype, device="cpu")
    nbytes = src.numel() * src.element_size()
    if new.numel() * new.element_size() != nbytes:
        raise ValueError(f"{nbytes} bytes of a {src.dtype} tensor cannot fill a {dtype} tensor of shape {list(shape)}")
    if nbytes:
        ctypes.memmove(new.data_ptr(), src.data_ptr(), nbytes)
    return new


def legacy_format_problem(dtypes: Iterable[torch.dtype]) -> Optional[str]:
    """Why torch.save's legacy (non-zip) format cannot hold tensors of one of `dtypes` here, or None.

    The legacy format names a typed storage class per storage, and float8,
    uint16/32/64 and complex32 have none: older releases refuse to write
    them ("dtype ... is not recognized"), newer ones write an untyped
    storage whose dtype torch.load cannot tell back, in any release. A round
    trip of a one-element tensor of each dtype tells which this torch does.
    """
    import torch

    for dtype in sorted(set(dtypes), key=str):
        buffer = io.BytesIO()
        try:
            torch.save(torch.empty((1,), dtype=dtype), buffer, _use_new_zipfile_serialization=False)
            buffer.seek(0)
            back = torch.load(buffer, map_location="cpu")  # a cuda-emulated save tags the probe too
            if back.dtype != dtype:
                raise TypeError(f"it came back as {back.dtype}")
        except Exception as e:
            name = str(dtype).replace("torch.", "")
            return (f"torch.save's legacy format cannot hold {name} tensors in this torch: a round trip of one "
                    f"fails ({type(e).__name__}: {e}); the zip format (the default) holds them")[:400]
    return None
