"""Digests of tensor bytes, in logical order, without copies where possible.

xxh3-128 runs at tens of GiB/s, so hashing is never the bottleneck of a
load (see `nox -s bench`). Bytes are read straight from the tensor's memory
through ctypes: no numpy needed (torch 2.0 .. newest, numpy or not).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    import torch

__all__ = ["ALGORITHM", "contiguous_cpu", "digest_bytes", "digest_tensor", "raw_bytes"]

ALGORITHM = "xxh3_128"


def contiguous_cpu(t: torch.Tensor) -> torch.Tensor:
    """`t` as a dense, contiguous CPU tensor with the same logical values and dtype."""
    if t.device.type == "meta":
        raise ValueError("a meta tensor has no data")
    if t.device.type != "cpu":
        t = t.detach().cpu()
    if hasattr(t, "resolve_conj"):
        t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return t


def raw_bytes(t: torch.Tensor) -> memoryview:
    """A zero-copy view of a contiguous CPU tensor's bytes (keep `t` alive while using it)."""
    n = t.numel() * t.element_size()
    if n == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_char * n).from_address(t.data_ptr())).cast("B")


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_tensor(t: torch.Tensor) -> str:
    """Digest of a tensor's values as bytes in logical (row-major) order.

    A sparse COO tensor digests its indices, then its values, as stored.
    """
    if t.layout != _strided():
        h = xxhash.xxh3_128()
        for part in (t._indices(), t._values()):
            part = contiguous_cpu(part)
            h.update(raw_bytes(part))
        return h.hexdigest()
    t = contiguous_cpu(t)
    return xxhash.xxh3_128_hexdigest(raw_bytes(t))


def _strided() -> torch.layout:
    import torch

    return torch.strided
