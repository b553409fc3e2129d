"""Dtype names as they appear in specs and manifests, and their bit patterns.

Specs and manifests name dtypes by the string torch prints without its
``torch.`` prefix (``float32``, ``bfloat16``, ``complex64``), so plain JSON
can carry them between envs.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "FLOAT_DTYPES",
    "SPEC_DTYPES",
    "dtype_name",
    "int_view_dtype",
    "special_bits",
    "to_dtype",
]

#: Dtypes a spec may ask for.
SPEC_DTYPES = (
    "float32", "float64", "float16", "bfloat16", "complex64",
    "int64", "int32", "int16", "int8", "uint8", "bool",
)
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16", "complex64")


def to_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name`."""
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        msg = f"dtype={name!r} is not a torch dtype in this env"
        raise ValueError(msg)
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")


def int_view_dtype(name: str) -> str:
    """The integer dtype of the same width, to write and read raw bits."""
    return {
        "float32": "int32", "complex64": "int32", "float64": "int64",
        "float16": "int16", "bfloat16": "int16",
    }[name]


def _signed(value: int, bits: int) -> int:
    fmt = {16: "H", 32: "I", 64: "Q"}[bits]
    return struct.unpack(fmt.lower(), struct.pack(fmt, value))[0]


# NaN payloads (quiet, with payload, negative, signalling), +-inf, -0.0, the
# smallest and largest subnormals and a negative subnormal: every value that a
# lossy or "helpful" conversion would silently change.
_SPECIAL_BITS = {
    32: (0x7FC00000, 0x7FC0DEAD, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000,
         0x80000000, 0x00000001, 0x007FFFFF, 0x80000001),
    64: (0x7FF8000000000000, 0x7FF800000000BEEF, 0xFFF8000000000001, 0x7FF0000000000001,
         0x7FF0000000000000, 0xFFF0000000000000, 0x8000000000000000, 0x0000000000000001,
         0x000FFFFFFFFFFFFF, 0x8000000000000001),
    "float16": (0x7E00, 0x7E01, 0xFE02, 0x7C01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x03FF, 0x8001),
    "bfloat16": (0x7FC0, 0x7FC1, 0xFFC2, 0x7F81, 0x7F80, 0xFF80, 0x8000, 0x0001, 0x007F, 0x8001),
}


def special_bits(name: str) -> list[int]:
    """Signed integers whose bits, viewed as dtype `name`, are the special values."""
    if name in ("float16", "bfloat16"):
        return [_signed(b, 16) for b in _SPECIAL_BITS[name]]
    bits = 64 if name == "float64" else 32
    return [_signed(b, bits) for b in _SPECIAL_BITS[bits]]
