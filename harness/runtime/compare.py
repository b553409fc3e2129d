"""Compare a loaded object (a snapshot) with what was saved (a manifest view).

Exact means bits: digests of the bytes in logical order, so NaN payloads,
-0.0 and subnormals count. dtype, shape, layout, the key set, parameter or
buffer role, requires_grad, storage sharing (alias groups) and plain values
(optimizer hyper-parameters, step, RNG state) are compared too, and so is a
parameter's requires_grad (a frozen parameter no longer trains). Strides,
storage offsets, devices, a buffer's requires_grad and parameter identity
are reported as notes: they change legitimately (safetensors stores
contiguous tensors, map_location moves storages) without changing a value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from harness.runtime.digest import contiguous_cpu, digest_tensor, raw_bytes
from harness.runtime.dtypes import FLOAT8_DTYPES, dtype_name, float8_value
from harness.runtime.manifest import Reference, Snapshot, TensorRecord, View, alias_groups

if TYPE_CHECKING:
    import torch

__all__ = ["ByteSource", "Comparison", "Difference", "compare", "first_difference", "hex_value", "read_reference", "unravel_index"]

_MAX_LISTED = 8


@dataclass(frozen=True)
class Difference:
    """One way the loaded object differs from the saved one."""

    tensor: str
    aspect: str  # missing | unexpected | dtype | shape | layout | bits | alias | role | requires_grad | value | forward
    expected: Any = None
    actual: Any = None
    index: Optional[list[int]] = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        if self.aspect in ("missing", "unexpected"):
            return f"{self.aspect} key {self.tensor}"
        where = f"[{', '.join(map(str, self.index))}]" if self.index is not None else ""
        return f"{self.tensor}{where}: {self.aspect} {self.expected} -> {self.actual}"


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.ok:
            return "exact"
        shown = "; ".join(d.describe() for d in self.differences[:3])
        more = len(self.differences) - 3
        return shown + (f"; and {more} more" if more > 0 else "")


_ELEMENT_DECODE = {
    "float32": ("<f", 4), "float64": ("<d", 8), "float16": ("<e", 2),
    "int64": ("<q", 8), "int32": ("<i", 4), "int16": ("<h", 2), "int8": ("<b", 1), "uint8": ("<B", 1),
    "uint16": ("<H", 2), "uint32": ("<I", 4), "uint64": ("<Q", 8), "bool": ("<?", 1),
}


def hex_value(data: bytes, dtype: str) -> str:
    """One element's bytes as hex (most significant first) plus its value."""
    h = "0x" + data[::-1].hex()
    try:
        if dtype == "bfloat16":
            value = struct.unpack("<f", b"\x00\x00" + data)[0]
        elif dtype == "complex64":
            value = complex(*struct.unpack("<ff", data))
        elif dtype == "complex128":
            value = complex(*struct.unpack("<dd", data))
        elif dtype == "complex32":
            value = complex(*struct.unpack("<ee", data))
        elif dtype in FLOAT8_DTYPES:
            if len(data) != 1:
                return h
            value = float8_value(data[0], dtype)
        else:
            value = struct.unpack(_ELEMENT_DECODE[dtype][0], data)[0]
    except (KeyError, struct.error):
        return h
    return f"{h} ({value!r})"


def unravel_index(flat: int, shape: list[int]) -> list[int]:
    """The index of element `flat` of a row-major tensor of `shape` (numpy.unravel_index, without numpy)."""
    index = []
    for dim in reversed(shape):
        if dim == 0:
            return [flat]
        index.append(flat % dim)
        flat //= dim
    return list(reversed(index))


def first_difference(expected: bytes, actual: memoryview, itemsize: int) -> Optional[int]:
    """Index of the first differing element, comparing 1 MiB blocks with memcmp."""
    n = min(len(expected), len(actual))
    block = 1 << 20
    for start in range(0, n, block):
        a, b = expected[start:start + block], bytes(actual[start:start + block])
        if a != b:
            for i in range(len(a)):
                if a[i] != b[i]:
                    return (start + i) // itemsize
    if len(expected) != len(actual):
        return n // itemsize
    return None


class ByteSource(Protocol):
    """Where saved bytes come from besides the reference file (`harness.runtime.refactor.ExpectedBytes`)."""

    def read_ref(self, ref: list[int]) -> bytes: ...


def read_reference(reference: Union[Path, ByteSource], ref: list[int]) -> bytes:
    """A record's saved bytes: from the case's reference file, or from a source with ``read_ref`` (a remapped view's)."""
    if isinstance(reference, Path):
        return Reference.read(reference, ref)
    return reference.read_ref(ref)


def _bits_difference(rec: TensorRecord, t: torch.Tensor, reference: Optional[Union[Path, ByteSource]]) -> Difference:
    if rec.layout != "strided" or reference is None or rec.ref is None:
        return Difference(rec.name, "bits", f"digest {rec.digest}", f"digest {digest_tensor(t)}")
    c = contiguous_cpu(t)
    itemsize = c.element_size()
    expected = read_reference(reference, rec.ref)
    actual = raw_bytes(c)
    i = first_difference(expected, actual, itemsize)
    if i is None:  # digest differed but bytes agree: cannot happen short of a broken digest
        return Difference(rec.name, "bits", f"digest {rec.digest}", f"digest {digest_tensor(t)}")
    chunk = slice(i * itemsize, (i + 1) * itemsize)
    return Difference(
        rec.name, "bits",
        hex_value(expected[chunk], rec.dtype), hex_value(bytes(actual[chunk]), rec.dtype),
        index=unravel_index(i, rec.shape),
    )


def _tensor_differences(rec: TensorRecord, t: torch.Tensor, role: str, reference: Optional[Union[Path, ByteSource]], notes: list[str]) -> list[Difference]:
    diffs = []
    layout = str(t.layout).replace("torch.", "")
    if t.device.type == "meta":
        return [Difference(rec.name, "device", rec.device, "meta (never materialised: nothing was loaded into it)")]
    if dtype_name(t.dtype) != rec.dtype:
        diffs.append(Difference(rec.name, "dtype", rec.dtype, dtype_name(t.dtype)))
    if list(t.shape) != rec.shape:
        diffs.append(Difference(rec.name, "shape", rec.shape, list(t.shape)))
    if layout != rec.layout:
        diffs.append(Difference(rec.name, "layout", rec.layout, layout))
    # "tensor" is a file's role where the saver did not know one; a numpy
    # array is never interchangeable with a tensor, whatever the other side says.
    if ("tensor" not in (role, rec.role) or "ndarray" in (role, rec.role)) and role != rec.role:
        diffs.append(Difference(rec.name, "role", rec.role, role))
    if bool(t.requires_grad) != rec.requires_grad:
        if rec.role == "parameter":  # a parameter that stopped (or started) training
            diffs.append(Difference(rec.name, "requires_grad", rec.requires_grad, bool(t.requires_grad)))
        else:  # nothing reads a buffer's requires_grad: worth telling, not a corruption
            notes.append(f"{rec.name}: {rec.role} requires_grad {rec.requires_grad} -> {bool(t.requires_grad)}")
    if diffs:
        return diffs
    if digest_tensor(t) != rec.digest:
        return [_bits_difference(rec, t, reference)]
    if layout == "strided":
        if rec.stride is not None and list(t.stride()) != rec.stride:
            notes.append(f"{rec.name}: stride {tuple(rec.stride)} -> {tuple(t.stride())}")
        if t.storage_offset() != rec.offset:
            notes.append(f"{rec.name}: storage offset {rec.offset} -> {t.storage_offset()}")
    if str(t.device) != rec.device:
        notes.append(f"{rec.name}: device {rec.device} -> {t.device}")
    return []


def _groups(mapping: dict[str, str], names: set[str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for n, label in mapping.items():
        if n in names:
            groups.setdefault(label, set()).add(n)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def _names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def compare(view: View, snap: Snapshot, reference: Optional[Union[Path, ByteSource]] = None, ignore: Sequence[str] = ()) -> Comparison:
    """Every difference between `view` (saved) and `snap` (loaded), except tensors in `ignore`."""
    result = Comparison(notes=list(snap.notes))
    saved, loaded = set(view.tensors) - set(ignore), set(snap.tensors) - set(ignore)
    for name in sorted(saved - loaded):
        result.differences.append(Difference(name, "missing"))
    for name in sorted(loaded - saved):
        result.differences.append(Difference(name, "unexpected"))
    for name in sorted(saved & loaded):
        t, role = snap.tensors[name]
        result.differences.extend(_tensor_differences(view.tensors[name], t, role, reference, result.notes))

    both = saved & loaded
    before = _groups({n: r.alias for n, r in view.tensors.items() if r.alias}, both)
    after = _groups(alias_groups({n: snap.tensors[n] for n in both}), both)
    for group in sorted(before - after, key=sorted):
        result.differences.append(Difference(_names(list(group)), "alias", "share storage", "no longer share storage (tie lost)"))
    for group in sorted(after - before, key=sorted):
        result.differences.append(Difference(_names(list(group)), "alias", "separate storage", "share storage"))

    for key, value in view.values.items():
        if key not in snap.values:
            result.differences.append(Difference(key, "value", value, "(absent)"))
        elif snap.values[key] != value:
            result.differences.append(Difference(key, "value", value, snap.values[key]))
    extra = sorted(set(snap.values) - set(view.values))
    if extra:
        result.notes.append(f"values only in the loaded object: {_names(extra)}")

    saved_ties = {frozenset(g) for g in view.ties}
    loaded_ties = {frozenset(g) for g in snap.ties}
    for group in sorted(saved_ties - loaded_ties, key=sorted):
        result.notes.append(
            f"{_names(list(group))} were one Parameter when saved and are separate Parameter objects now "
            "(they still share storage; re-tie them, e.g. model.tie_weights(), before training)"
        )
    return result
