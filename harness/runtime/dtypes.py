"""Dtype names as they appear in specs and manifests, and their bit patterns.

Specs and manifests name dtypes by the string torch prints without its
``torch.`` prefix (``float32``, ``bfloat16``, ``complex64``), so plain JSON
can carry them between envs.

Some dtypes a spec may ask for are newer than the oldest release the harness
runs in (float8 from torch 2.1, its ``fnuz`` variants from 2.2, uint16/32/64
from 2.3). A spec names them the same everywhere; `to_dtype` raises
`Unsupported` in an env whose torch lacks one, so the case is a skip there.
Their values are built from bit patterns (`edge_bits`, `one_bits`), never by
arithmetic in the dtype, so every release that has one holds the same bits.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Optional

from harness.runtime.errors import Unsupported

if TYPE_CHECKING:
    import torch

__all__ = [
    "BIT_BUILT_DTYPES",
    "FLOAT8_DTYPES",
    "FLOAT_DTYPES",
    "SPEC_DTYPES",
    "UINT_DTYPES",
    "dtype_name",
    "edge_bits",
    "float8_value",
    "int_view_dtype",
    "one_bits",
    "portable",
    "portable_recipe",
    "special_bits",
    "to_dtype",
]

#: The float8 dtypes: e4m3fn and e5m2 (torch 2.1), e4m3fnuz and e5m2fnuz (2.2).
FLOAT8_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
#: Unsigned integers wider than a byte (torch 2.3; few ops besides copies).
UINT_DTYPES = ("uint16", "uint32", "uint64")
#: Dtypes a spec may ask for.
SPEC_DTYPES = (
    "float32", "float64", "float16", "bfloat16", "complex64",
    "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex128", "complex32",
) + FLOAT8_DTYPES + UINT_DTYPES
#: Floating point (and complex) dtypes: the ones a tensor can require grad in.
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16", "complex64", "complex128", "complex32") + FLOAT8_DTYPES
#: Dtypes whose values the builder writes as bit patterns of a same-width
#: integer: releases that have them can do little else with them (no
#: arithmetic, no fill), and a conversion could round differently.
BIT_BUILT_DTYPES = FLOAT8_DTYPES + UINT_DTYPES + ("complex32",)


def to_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name`; `Unsupported` where a spec dtype is missing from this torch."""
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        if name in SPEC_DTYPES:
            msg = f"torch has no {name} in this env"
            raise Unsupported(msg)
        msg = f"dtype={name!r} is not a torch dtype in this env"
        raise ValueError(msg)
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")


def int_view_dtype(name: str) -> str:
    """The integer dtype of the same width, to write and read raw bits.

    For a complex dtype: the width of one component (its real view's).
    """
    if name in FLOAT8_DTYPES:
        return "int8"
    return {
        "float32": "int32", "complex64": "int32", "float64": "int64", "complex128": "int64",
        "float16": "int16", "bfloat16": "int16", "complex32": "int16",
        "uint16": "int16", "uint32": "int32", "uint64": "int64",
    }[name]


def _signed(value: int, bits: int) -> int:
    fmt = {8: "B", 16: "H", 32: "I", 64: "Q"}[bits]
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
    # e5m2 is IEEE-like: NaNs (quiet, with payload, negative, signalling), +-inf, -0.
    "float8_e5m2": (0x7E, 0x7F, 0xFE, 0x7D, 0x7C, 0xFC, 0x80, 0x01, 0x03, 0x81),
    # e4m3fn has no inf: S.1111.111 is NaN, the largest finite is 448.
    "float8_e4m3fn": (0x7F, 0xFF, 0x7E, 0xFE, 0x80, 0x01, 0x07, 0x81),
    # fnuz: 0x80 (the -0 pattern) is the only NaN; no inf, no -0.
    "float8_e4m3fnuz": (0x80, 0x7F, 0xFF, 0x01, 0x07, 0x81),
    "float8_e5m2fnuz": (0x80, 0x7F, 0xFF, 0x01, 0x03, 0x81),
}

# float8 layouts: (exponent bits, mantissa bits, exponent bias, kind), where
# kind "ieee" has inf and NaN at the top exponent, "fn" only NaN at all ones,
# "fnuz" only NaN at the -0 pattern (0x80).
_FLOAT8 = {
    "float8_e4m3fn": (4, 3, 7, "fn"),
    "float8_e5m2": (5, 2, 15, "ieee"),
    "float8_e4m3fnuz": (4, 3, 8, "fnuz"),
    "float8_e5m2fnuz": (5, 2, 16, "fnuz"),
}


def special_bits(name: str) -> list[int]:
    """Signed integers whose bits, viewed as dtype `name`, are the special values.

    A complex dtype gets its component's (complex32: float16's); the integers
    are of `int_view_dtype(name)`.
    """
    if name in FLOAT8_DTYPES:
        return [_signed(b, 8) for b in _SPECIAL_BITS[name]]
    if name in ("float16", "bfloat16", "complex32"):
        table = _SPECIAL_BITS["float16" if name == "complex32" else name]
        return [_signed(b, 16) for b in table]
    bits = 64 if name in ("float64", "complex128") else 32
    return [_signed(b, bits) for b in _SPECIAL_BITS[bits]]


def edge_bits(name: str) -> list[int]:
    """Bit patterns a bit-built dtype's formula fill starts with, as signed `int_view_dtype` integers.

    float8: its special values (NaN, inf, -0, subnormals where it has them);
    uint16/32/64: 0, 1, the maximum, the top bit alone (above every signed
    value) and the largest signed value; complex32: none (its components are
    float16 values).
    """
    if name in FLOAT8_DTYPES:
        return special_bits(name)
    if name in UINT_DTYPES:
        width = int(name[4:])
        return [_signed(b, width) for b in (0, 1, (1 << width) - 1, 1 << (width - 1), (1 << (width - 1)) - 1)]
    return []


def one_bits(name: str) -> int:
    """The bits of 1 in a float8 or uint dtype (for the ``ones`` fill), as a signed integer."""
    if name in FLOAT8_DTYPES:
        _, mantissa, bias, _ = _FLOAT8[name]
        return bias << mantissa
    if name in UINT_DTYPES:
        return 1
    raise KeyError(name)


def float8_value(byte: int, name: str) -> float:
    """The value of one float8 element from its byte (0..255): no torch needed."""
    exp_bits, man_bits, bias, kind = _FLOAT8[name]
    sign = -1.0 if byte & 0x80 else 1.0
    exponent = (byte >> man_bits) & ((1 << exp_bits) - 1)
    mantissa = byte & ((1 << man_bits) - 1)
    top = (1 << exp_bits) - 1
    if kind == "fnuz" and byte == 0x80:
        return math.nan
    if kind == "fn" and exponent == top and mantissa == (1 << man_bits) - 1:
        return math.nan
    if kind == "ieee" and exponent == top:
        return sign * math.inf if mantissa == 0 else math.nan
    if exponent == 0:
        return sign * math.ldexp(mantissa, 1 - bias - man_bits)
    return sign * math.ldexp(mantissa + (1 << man_bits), exponent - bias - man_bits)


def portable_recipe(name: str) -> Optional[str]:
    """What a user types to keep a tensor `t` of dtype `name` as bits of a dtype every release has.

    A complex tensor becomes its (real, imag) pairs; a float8, uint16/32/64
    or bfloat16 one the signed integer of its width. Both are views: the same
    bytes. None for a dtype with neither (bits16, quantized dtypes).
    """
    if name in ("complex32", "complex64", "complex128"):
        return "torch.view_as_real(t)"
    if name in FLOAT8_DTYPES or name in UINT_DTYPES or name == "bfloat16":
        return f"t.view(torch.{int_view_dtype(name)})"
    return None


def portable(t: torch.Tensor) -> torch.Tensor:
    """`t` as a new tensor that every release reads, holding exactly its bytes (`portable_recipe`).

    The fix `diagnose` offers for a dtype an older torch lacks: float8 as
    int8, uint16/32/64 and bfloat16 as int16/32/64, complex32/64/128 as
    float16/32/64 (real, imag) pairs. A clone, so a file saved from it holds
    no storage of the original dtype. Other dtypes come back as a clone.
    """
    import torch

    name = dtype_name(t.dtype)
    recipe = portable_recipe(name)
    if recipe is None:
        out = t.detach()
    elif name.startswith("complex"):
        out = torch.view_as_real(t.detach())
    else:
        out = t.detach().view(to_dtype(int_view_dtype(name)))
    return out.clone()
