"""Manifests: what was saved, tensor by tensor, as plain JSON.

A *snapshot* is the in-memory view of a saved or loaded object: named
tensors with their role, plus plain values (optimizer hyper-parameters, the
step, RNG state as lists). Saving records a snapshot as a *view* (tensor
records with digests) in the manifest; loading takes a snapshot of what came
back and `compare` checks it against the view. One format may record several
views: a state dict file is compared as a raw dict ("file") and, once loaded
into a model, as a module ("module").

The reference file beside the artifacts keeps each distinct tensor's bytes
once, so a mismatch can name both values, not only "digests differ".
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.runtime.checkpoint_extras import describe
from harness.runtime.digest import ALGORITHM, contiguous_cpu, digest_tensor, raw_bytes
from harness.runtime.dtypes import dtype_name
from harness.runtime.storage import storage_span

if TYPE_CHECKING:
    import torch

__all__ = [
    "MANIFEST_SCHEMA",
    "all_parameters",
    "Manifest",
    "Reference",
    "Snapshot",
    "TensorRecord",
    "View",
    "alias_groups",
    "flatten",
    "module_snapshot",
    "record_view",
    "tensor_record",
]

MANIFEST_SCHEMA = 1


@dataclass
class Snapshot:
    """Named tensors (with roles), plain values and parameter ties of one object."""

    tensors: dict[str, tuple[torch.Tensor, str]] = field(default_factory=dict)  # name -> (tensor, role)
    values: dict[str, Any] = field(default_factory=dict)  # name -> JSON-able leaf
    ties: list[list[str]] = field(default_factory=list)  # [[names of one Parameter object], ...]
    notes: list[str] = field(default_factory=list)

    def merge(self, other: Snapshot, prefix: str) -> None:
        for k, v in other.tensors.items():
            self.tensors[f"{prefix}{k}"] = v
        for k, v in other.values.items():
            self.values[f"{prefix}{k}"] = v
        self.ties.extend([[f"{prefix}{n}" for n in group] for group in other.ties])
        self.notes.extend(other.notes)


@dataclass(frozen=True)
class TensorRecord:
    """One tensor as saved: everything `compare` checks, and where its bytes are."""

    name: str
    dtype: str
    shape: list[int]
    stride: Optional[list[int]]
    offset: int
    requires_grad: bool
    role: str  # parameter | buffer | buffer_np | constant | tensor
    alias: Optional[str]  # label of the group of tensors sharing storage
    digest: Optional[str]
    nbytes: int
    layout: str
    device: str
    ref: Optional[list[int]] = None  # [offset, nbytes] in the case's reference file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorRecord:
        kw: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        return cls(**kw)


@dataclass(frozen=True)
class View:
    """A recorded snapshot."""

    tensors: dict[str, TensorRecord]  # name -> TensorRecord
    values: dict[str, Any]
    ties: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensors": [r.to_dict() for r in self.tensors.values()],
            "values": self.values,
            "ties": self.ties,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> View:
        recs = [TensorRecord.from_dict(r) for r in d.get("tensors", [])]
        return cls({r.name: r for r in recs}, d.get("values", {}), d.get("ties", []))


@dataclass
class Manifest:
    """manifest.json of one artifact (one case, one format, one env)."""

    case: str
    format: str
    source: dict[str, Any]  # fingerprint
    spec: dict[str, Any]
    spec_digest: str
    status: str  # saved | unsupported | failed
    reason: Optional[str] = None
    files: list[str] = field(default_factory=list)
    views: dict[str, View] = field(default_factory=dict)  # name -> View
    forward: Optional[dict[str, Any]] = None
    saved_with: dict[str, Any] = field(default_factory=dict)
    emulated: bool = False
    seconds: float = 0.0
    harness: str = ""
    schema: int = MANIFEST_SCHEMA
    digest_algorithm: str = ALGORITHM

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = {k: v.to_dict() for k, v in self.views.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if d.get("schema") != MANIFEST_SCHEMA:
            msg = f"manifest schema {d.get('schema')!r} is not {MANIFEST_SCHEMA}: re-save with this harness"
            raise ValueError(msg)
        if d.get("digest_algorithm", ALGORITHM) != ALGORITHM:
            msg = f"manifest digests use {d.get('digest_algorithm')!r}, this harness computes {ALGORITHM}"
            raise ValueError(msg)
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["views"] = {k: View.from_dict(v) for k, v in d.get("views", {}).items()}
        return cls(**kw)


class Reference:
    """Append-only store of distinct tensor bytes, keyed by digest.

    Written by the save phase (one file per case), read only when a digest
    differs: the slow path that names the first differing element.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.index: dict[str, list[int]] = {}
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, digest: str, data: bytes) -> list[int]:
        if digest not in self.index:
            n = len(data)
            self.index[digest] = [self._size, n]
            self._chunks.append(bytes(data))
            self._size += n
        return self.index[digest]

    def write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            for chunk in self._chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @staticmethod
    def read(path: Path, ref: list[int]) -> bytes:
        with open(path, "rb") as f:
            f.seek(ref[0])
            return f.read(ref[1])


def _plain(value: Any) -> Any:
    """A JSON leaf that compares exactly: floats keep every bit through repr."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return f"float:{value!r}"
    return f"{type(value).__name__}:{value!r}"


def flatten(obj: Any, prefix: str = "", snap: Optional[Snapshot] = None, role: str = "tensor") -> Snapshot:
    """Split a nested dict/list/tuple into named tensors and plain leaves.

    What training checkpoints carry besides tensors (numpy objects, a
    Namespace, a dataclass, ...) is spelled by content
    (`harness.runtime.checkpoint_extras.describe`); a numpy array becomes a
    tensor of role ``ndarray``, so a load that hands back a torch tensor
    instead is a role difference.
    """
    import torch

    snap = snap if snap is not None else Snapshot()
    if isinstance(obj, torch.Tensor):
        snap.tensors[prefix.rstrip(".")] = (obj, role)
    elif isinstance(obj, dict):
        meta = getattr(obj, "_metadata", None)
        if meta is not None:
            snap.values[f"{prefix}$metadata"] = json.dumps(meta, sort_keys=True, default=repr)
        if not obj:
            snap.values[f"{prefix}$empty"] = "dict"
        for k, v in obj.items():
            flatten(v, f"{prefix}{k}.", snap, role)
    elif isinstance(obj, (list, tuple)):
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in obj):
            # One value for a run of scalars (Python's RNG state is 625 ints):
            # compared just as exactly, at a fraction of the cost.
            snap.values[prefix.rstrip(".")] = [_plain(v) for v in obj]
            return snap
        snap.values[f"{prefix}$len"] = len(obj)
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}{i}.", snap, role)
    elif obj is None or type(obj) in (bool, int, float, str):
        # The common leaf, by exact type: numpy.float64 subclasses float and is described.
        snap.values[prefix.rstrip(".")] = _plain(obj)
    else:
        described = describe(obj)
        if described is None:
            snap.values[prefix.rstrip(".")] = _plain(obj)
        elif described[0] == "tensor":
            snap.tensors[prefix.rstrip(".")] = (described[1], "ndarray")
        elif described[0] == "items":
            type_name, items = described[1]
            snap.values[f"{prefix}$type"] = type_name
            for k, v in items.items():
                flatten(v, f"{prefix}{k}.", snap, role)
        else:
            snap.values[prefix.rstrip(".")] = described[1]
    return snap


def all_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter under every name it has, tied ones included."""
    try:
        return dict(module.named_parameters(remove_duplicate=False))
    except TypeError:  # torch < 1.12 has no remove_duplicate: walk the modules' own tables
        out = {}
        for prefix, sub in module.named_modules():
            for name, p in sub._parameters.items():
                if p is not None:
                    out[f"{prefix}.{name}" if prefix else name] = p
        return out


def module_snapshot(module: torch.nn.Module) -> Snapshot:
    """Parameters, persistent and non-persistent buffers of a module, and its ties."""
    import torch

    state = module.state_dict(keep_vars=True)
    # A ScriptModule hands back plain tensors from state_dict(keep_vars=True);
    # named_parameters() tells parameters apart in every kind of module.
    params = all_parameters(module)
    snap = Snapshot()
    by_id: dict[int, list[str]] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            snap.values[name] = _plain(t)  # extra state
            continue
        is_param = name in params or isinstance(t, torch.nn.Parameter)
        snap.tensors[name] = (t, "parameter" if is_param else "buffer")
        if is_param:
            by_id.setdefault(id(params.get(name, t)), []).append(name)
    for name, t in module.named_buffers():
        if name not in state:
            snap.tensors[name] = (t, "buffer_np")
    snap.ties = sorted(sorted(g) for g in by_id.values() if len(g) > 1)
    return snap


def _storage_key(t: torch.Tensor) -> Optional[tuple[str, int]]:
    if t.layout != _strided() or t.device.type == "meta":
        return None
    ptr, nbytes = storage_span(t)
    if nbytes == 0:
        return None
    return (str(t.device), ptr)


def _strided() -> torch.layout:
    import torch

    return torch.strided


def alias_groups(tensors: dict[str, tuple[torch.Tensor, str]]) -> dict[str, str]:
    """name -> group label, for tensors that share storage with another one."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name, (t, _) in tensors.items():
        key = _storage_key(t)
        if key is not None:
            groups.setdefault(key, []).append(name)
    out = {}
    for names in groups.values():
        if len(names) > 1:
            label = min(names)
            for n in names:
                out[n] = label
    return out


def record_view(snap: Snapshot, reference: Optional[Reference] = None) -> View:
    """Digest every tensor of a snapshot (and keep its bytes in `reference`)."""
    aliases = alias_groups(snap.tensors)
    records = {}
    for name, (t, role) in snap.tensors.items():
        records[name] = tensor_record(name, t, role, aliases.get(name), reference)
    return View(records, dict(snap.values), [list(g) for g in snap.ties])


def tensor_record(name: str, t: torch.Tensor, role: str, alias: Optional[str], reference: Optional[Reference] = None) -> TensorRecord:
    strided = t.layout == _strided()
    meta = t.device.type == "meta"
    digest = None if meta else digest_tensor(t)
    ref = None
    if reference is not None and digest is not None:
        ref = reference.add(digest, _reference_bytes(t))
    return TensorRecord(
        name=name,
        dtype=dtype_name(t.dtype),
        shape=list(t.shape),
        stride=list(t.stride()) if strided else None,
        offset=t.storage_offset() if strided else 0,
        requires_grad=bool(t.requires_grad),
        role=role,
        alias=alias,
        digest=digest,
        nbytes=t.numel() * t.element_size(),
        layout=str(t.layout).replace("torch.", ""),
        device=str(t.device),
        ref=ref,
    )


def _reference_bytes(t: torch.Tensor) -> bytes:
    if t.layout != _strided():
        parts = [contiguous_cpu(t._indices()), contiguous_cpu(t._values())]
        return b"".join(bytes(raw_bytes(p)) for p in parts)
    c = contiguous_cpu(t)
    return bytes(raw_bytes(c))
