"""A spec as plain ``torch.nn`` code: the model of a standalone reproduction.

`plain_model` writes a spec's architecture as a readable ``nn.Module``
subclass that imports torch and nothing of the harness, one line per
submodule (``self.fc = nn.Linear(4, 2, bias=False).to(torch.float16)``),
with the same submodule tree and names as `harness.runtime.builder` builds
(`casemodel.CaseModel` with its children, extra tensors, ties, layouts and
parametrizations, in the builder's order), and a ``forward(*inputs)`` with
CaseModel's semantics. The code also defines:

``new_model()``
    the architecture freshly built, every parameter and persistent buffer
    overwritten with the byte 0xA5 (``builder.POISON_BYTE``), the model a
    load fills; non-persistent buffers keep their values;
``build_model()`` / ``saved_tensors()`` / ``make_inputs()``
    only with an artifact: the model holding exactly the saved values, bit
    for bit (literal bytes), the saved tensors by state-dict name, and the
    recorded forward inputs.

Values are literals, never recomputed: the builder's deterministic fills
for extra tensors are computed here in plain Python (so a host without
torch can write the code), and everything an artifact saved is read from
its reference file and checked against its digest. The code runs on every
torch the harness runs on (``.to(dtype)`` rather than ``dtype=``, and
bytes decoded with ``torch.frombuffer`` or, before it existed, numpy).

A spec's ``class_path`` (a class that moved) puts the class in a module
file (`PlainModel.module_files`) that the code imports when it exists beside
it (the save side), so a whole-model pickle names that module as the
harness's does; where it does not exist the class is the code's own.
"""

from __future__ import annotations

import base64
import json
import keyword
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.runtime.digest import digest_bytes
from harness.runtime.dtypes import (
    BIT_BUILT_DTYPES,
    FLOAT_DTYPES,
    edge_bits,
    int_view_dtype,
    one_bits,
)
from harness.runtime.errors import SpecError
from harness.runtime.layers import KINDS, input_shape
from harness.runtime.manifest import Manifest, Reference, TensorRecord, View
from harness.runtime.spec import CONTAINERS, MOVED_PREFIX, Spec, child_items, input_signatures

__all__ = ["POISON", "PlainModel", "PlainUnsupported", "plain_model"]

#: The byte `new_model` fills parameters and persistent buffers with: the
#: builder's POISON_BYTE (a test keeps them equal; the builder imports torch,
#: and this module must not).
POISON = 0xA5


@dataclass(frozen=True)
class PlainModel:
    """A spec written as plain torch code (see the module docstring)."""

    #: Python source, torch-only (imports torch, torch.nn, base64, and os/sys for a class_path)
    code: str
    #: the class the model is an instance of: ``Model``, or a class_path's NAME
    class_name: str
    #: relative path -> source: files the save side writes beside its script
    #: before it builds (a class_path's module); {} otherwise
    module_files: dict[str, str] = field(default_factory=dict)
    #: what the code approximates or leaves out; [] when it is exact
    notes: list[str] = field(default_factory=list)


class PlainUnsupported(Exception):
    """A spec feature that cannot be written as plain torch code; str() is the one-line reason."""


# Names the code defines at module level: a class_path NAME must not be one of them.
_RESERVED = {"new_model", "build_model", "saved_tensors", "make_inputs", "torch", "nn", "base64", "os", "sys", "numpy"}

# Bytes per element of each dtype a spec or a manifest names.
_WIDTH = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "complex64": 8, "complex128": 16, "complex32": 4,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "uint16": 2, "uint32": 4, "uint64": 8,
}
# struct codes of the dtypes whose values Python packs directly.
_STRUCT = {"float32": "f", "float64": "d", "float16": "e", "int64": "q", "int32": "i", "int16": "h", "int8": "b", "uint8": "B"}
_SIGNED = {8: "b", 16: "h", 32: "i", 64: "q"}
# The multipliers of builder._from_bits that spread the formula over a uint's range.
_UINT_SPREAD = {"uint16": 31, "uint32": 2_000_003, "uint64": 9_007_199_254_740_881}
# Buffers the layer kinds register (everything else a layer has is a parameter).
_LAYER_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_ACTIVATIONS = {
    "relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid", "silu": "SiLU",
    "elu": "ELU", "leaky_relu": "LeakyReLU", "softplus": "Softplus",
}
_B64_LINE = 96  # characters of base64 per source line


# -- the builder's deterministic fills, in plain Python ----------------------
#
# `harness.runtime.builder` fills extra tensors from integer arithmetic in
# int64 tensors; the same arithmetic here (wrapped to 64 bits as torch's is)
# gives the same bytes without torch. tests/test_shrink_plain_model.py checks
# them against the builder's.


def _wrap(value: int, bits: int = 64) -> int:
    """`value` as a two's-complement integer of `bits` bits (what an int64 tensor holds)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _ks(n: int, seed: int) -> list[int]:
    """builder's ``k = (i * 7919 + seed * 104729) % 2003 - 1001`` for i < n."""
    base = _wrap(seed * 104729)
    return [_wrap(_wrap(i * 7919 + base) % 2003 - 1001) for i in range(n)]


def _imags(n: int, seed: int) -> list[float]:
    """builder's imaginary parts ``((i * 104729 + seed) % 997 - 498) / 32``."""
    return [(_wrap(_wrap(i * 104729 + seed) % 997) - 498) / 32 for i in range(n)]


def _bfloat16(value: float) -> bytes:
    """`value` (exact in float32) rounded to bfloat16 as torch rounds: to nearest, ties to even."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return struct.pack("<H", bits & 0xFFFF)


def _pack_reals(values: list[float], dtype: str) -> bytes:
    if dtype == "bfloat16":
        return b"".join(_bfloat16(v) for v in values)
    return struct.pack(f"<{len(values)}{_STRUCT[dtype]}", *values)


def _pack_bits(bits: list[int], dtype: str) -> bytes:
    """Signed integers as `int_view_dtype(dtype)` (narrowed as ``Tensor.to`` narrows: wrapped)."""
    width = 8 * _WIDTH[int_view_dtype(dtype)]
    return struct.pack(f"<{len(bits)}{_SIGNED[width]}", *(_wrap(b, width) for b in bits))


def _formula_bytes(n: int, dtype: str, seed: int) -> bytes:
    """builder._formula(n, dtype, seed)'s bytes."""
    if dtype in BIT_BUILT_DTYPES:
        return _bits_bytes(n, dtype, "formula", seed)
    ks = _ks(n, seed)
    if dtype == "bool":
        return bytes(1 if k % 3 == 0 else 0 for k in ks)
    if dtype in ("int8", "uint8"):
        return _pack_ints([k % 127 for k in ks], dtype)
    if dtype.startswith("int"):
        return _pack_ints(ks, dtype)
    reals = [k / 64 for k in ks]
    if dtype in ("complex64", "complex128"):
        part = "float32" if dtype == "complex64" else "float64"
        pairs = [v for pair in zip(reals, _imags(n, seed)) for v in pair]
        return _pack_reals(pairs, part)
    return _pack_reals(reals, dtype)


def _pack_ints(values: list[int], dtype: str) -> bytes:
    return struct.pack(f"<{len(values)}{_STRUCT[dtype]}", *values)


def _bits_bytes(n: int, dtype: str, fill: str, seed: int) -> bytes:
    """builder._from_bits's bytes: float8, uint16/32/64 and complex32 written as bit patterns."""
    if dtype == "complex32":
        if fill == "formula":
            reals, imags = [k / 64 for k in _ks(n, seed)], _imags(n, seed)
        else:
            reals, imags = [1.0 if fill == "ones" else 0.0] * n, [0.0] * n
        return _pack_reals([v for pair in zip(reals, imags) for v in pair], "float16")
    if fill == "zeros":
        bits = [0] * n
    elif fill == "ones":
        bits = [one_bits(dtype)] * n
    else:
        ks = _ks(n, seed)
        if dtype in _UINT_SPREAD:
            bits = [_wrap(k * _UINT_SPREAD[dtype]) for k in ks]
        else:  # float8: one byte each, as a signed int8
            bits = [(k + 1024) % 256 for k in ks]
            bits = [b - 256 if b >= 128 else b for b in bits]
        edges = edge_bits(dtype)[:n]
        bits[: len(edges)] = edges
    return _pack_bits(bits, dtype)


def _fill_bytes(shape: list[int], dtype: str, fill: str, seed: int) -> bytes:
    """builder._fill's bytes."""
    n = _numel(shape)
    if dtype in BIT_BUILT_DTYPES:
        return _bits_bytes(n, dtype, fill, seed)
    if fill == "zeros":
        return bytes(n * _WIDTH[dtype])
    if fill == "ones":
        if dtype == "bool":
            return b"\x01" * n
        if dtype in ("complex64", "complex128"):
            return _pack_reals([1.0, 0.0] * n, "float32" if dtype == "complex64" else "float64")
        if dtype in _STRUCT and not dtype.startswith("float"):
            return _pack_ints([1] * n, dtype)
        return _pack_reals([1.0] * n, dtype)
    return _formula_bytes(n, dtype, seed)


def _sparse_bytes(shape: list[int], dtype: str, seed: int) -> tuple[bytes, bytes, int]:
    """builder._sparse's (indices bytes, values bytes, nnz): at most 5 entries spread over the matrix."""
    rows, cols = shape
    total = rows * cols
    nnz = min(total, 5)
    flat = [j * total // nnz for j in range(nnz)]
    wide = max(cols, 1)
    indices = [f // wide for f in flat] + [f % wide for f in flat]
    return struct.pack(f"<{2 * nnz}q", *indices), _formula_bytes(nnz, dtype, seed), nnz


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -- source text --------------------------------------------------------------


def _b64_literal(data: bytes, indent: str) -> str:
    """`data` as a base64 string literal, split over lines of `_B64_LINE` characters."""
    text = base64.b64encode(data).decode("ascii")
    if len(text) <= _B64_LINE:
        return f'"{text}"'
    chunks = [text[i: i + _B64_LINE] for i in range(0, len(text), _B64_LINE)]
    return "(\n" + "".join(f'{indent}    "{c}"\n' for c in chunks) + f"{indent})"


def _tensor_expr(data: bytes, dtype: str, shape: list[int], indent: str) -> str:
    return f"_tensor({_b64_literal(data, indent)}, torch.{dtype}, {list(shape)!r})"


def _sparse_expr(indices: bytes, values: bytes, nnz: int, dtype: str, shape: list[int], indent: str) -> str:
    """``_sparse(indices, values, shape)`` over several lines, starting at `indent`."""
    inner = indent + "    "
    return (f"_sparse(\n{inner}{_tensor_expr(indices, 'int64', [2, nnz], inner)},\n"
            f"{inner}{_tensor_expr(values, dtype, [nnz], inner)},\n{inner}{list(shape)!r},\n{indent})")


def _attr(owner: str, name: str) -> str:
    """``owner.name``, or ``getattr(owner, "name")`` where `name` is no plain identifier."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{owner}.{name}"
    return f"getattr({owner}, {json.dumps(name)})"


def _kwargs(pairs: list[tuple[str, Any, Any]]) -> str:
    """``, name=value`` for each (name, value, torch's default) whose value is not the default."""
    return "".join(f", {name}={_py(value)}" for name, value, default in pairs if value != default)


def _py(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


_HELPER_TENSOR = '''
def _tensor(text, dtype, shape):
    """A new CPU tensor of `dtype` and `shape` holding exactly the bytes `text` (base64, row-major) encodes."""
    data = base64.b64decode(text)
    if not data:
        return torch.empty(shape, dtype=dtype)
    if hasattr(torch, "frombuffer"):
        return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape).clone()
    # A torch without frombuffer: through numpy, and an integer of the same
    # width for a dtype numpy lacks (bfloat16, complex32).
    import numpy

    native = {
        torch.float16: "float16", torch.float32: "float32", torch.float64: "float64",
        torch.complex64: "complex64", torch.complex128: "complex128", torch.bool: "bool",
        torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8",
    }
    width = torch.empty(0, dtype=dtype).element_size()
    out = torch.from_numpy(numpy.frombuffer(data, dtype=native.get(dtype, "int%d" % (8 * width))).copy())
    return (out if dtype in native else out.view(dtype)).reshape(shape)
'''

_HELPER_NAMED = '''
def _named(*children):
    """An nn.Sequential whose children have names: (name, module) pairs, in order."""
    sequential = nn.Sequential()
    for name, module in children:
        sequential.add_module(name, module)
    return sequential
'''

_HELPER_KNOWN = '''
def _known(cls, **kwargs):
    """The keyword arguments `cls` takes in this torch (older releases lack some; leaving one out is what they do)."""
    code = cls.__init__.__code__
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    return {name: value for name, value in kwargs.items() if name in names}
'''

_HELPER_OFFSET = '''
def _offset(t):
    """`t`'s values in a view 3 elements into a larger storage (storage_offset 3, zeros before it)."""
    base = torch.empty(t.numel() + 3, dtype=t.dtype)
    base[:3] = torch.zeros(3, dtype=t.dtype)
    out = base[3:].view(t.shape)
    out.copy_(t.detach())
    return out
'''

_HELPER_SPARSE = '''
def _sparse(indices, values, shape):
    """A sparse COO tensor whose indices are already sorted and unique: marked coalesced, values untouched."""
    return torch.sparse_coo_tensor(indices, values, shape)._coalesced_(True)
'''

_HELPER_POISON = '''
def _storage(t):
    """The whole storage under dense tensor `t` as a 1-D tensor of its dtype (the elements before its offset too)."""
    if hasattr(t, "untyped_storage"):
        size = t.untyped_storage().nbytes() // t.element_size()
    else:
        try:
            size = t.storage().size()
        except RuntimeError:  # a dtype without a storage class (complex32): an integer as wide has one
            size = t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).storage().size()
    return t.detach().as_strided((size,), (1,), 0)


def _poison(model):
    """Overwrite every byte of every parameter and persistent buffer with 0xA5.

    What a freshly built model holds before a load fills it: a tensor the
    load forgets then shows (a zero bias never loaded looks right). A state
    dict does not carry non-persistent buffers, so they keep their values.
    """
    keep = set()
    for module in model.modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            if module._buffers.get(name) is not None and not module._buffers[name].is_sparse:
                keep.add(_storage(module._buffers[name]).data_ptr())
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_sparse:
                continue
            whole = _storage(t)
            if whole.numel() == 0 or whole.data_ptr() in keep:
                continue
            keep.add(whole.data_ptr())
            _fill_bytes(whole, 0xA5)


def _fill_bytes(whole, byte):
    """Set every byte of the 1-D contiguous tensor `whole` to `byte`, whatever its dtype."""
    try:
        whole.view(torch.uint8).fill_(byte)
        return
    except (RuntimeError, TypeError):  # a torch whose dtype views keep the element width
        pass
    if whole.is_complex():
        whole = torch.view_as_real(whole)
    width = whole.element_size()
    same = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width]
    try:
        whole.view(same).fill_(int.from_bytes(bytes([byte]) * width, "little", signed=width > 1))
    except (RuntimeError, TypeError):  # a torch without dtype views: numpy's
        whole.numpy().view("uint8")[:] = byte
'''.replace("0xA5", f"0x{POISON:02X}")

_HELPER_ASSIGN = '''
def _tensor_names(model):
    """State-dict names of every parameter and buffer (tied ones under each name), then non-persistent buffers."""
    names = list(model.state_dict(keep_vars=True))
    return names + [name for name, _ in model.named_buffers() if name not in names]


def _assign(model, name, value):
    """Give the model's tensor `name` exactly `value`, in place: its strides, storage offset and ties stay as built."""
    owner = model
    *path, attr = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    target = getattr(owner, attr)
    if target.dtype != value.dtype or tuple(target.shape) != tuple(value.shape) or target.is_sparse != value.is_sparse:
        raise RuntimeError("%s: saved as %s %s, the model built %s %s" % (
            name, value.dtype, list(value.shape), target.dtype, list(target.shape)))
    if target.is_sparse:
        setattr(owner, attr, value)  # a sparse buffer has no storage to write into: it is replaced
    else:
        with torch.no_grad():
            target.copy_(value)
'''


class _Writer:
    """Writes one spec's class: submodules, extras, ties, layouts, parametrizations and forward."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.model = spec.data["model"]
        self.helpers: set[str] = set()
        self.imports: set[str] = set()
        self.modules: dict[str, str] = {"": "self"}  # module path -> expression
        self.kinds: dict[str, str] = {"": self.model["kind"]}  # module path -> kind
        self._index(self.model, "", "self")

    def _index(self, node: dict[str, Any], path: str, expr: str) -> None:
        """Record every module's access expression, as `forward` and the extras reach it."""
        if node["kind"] not in CONTAINERS:
            return
        for position, (name, child) in enumerate(child_items(node)):
            child_path = f"{path}.{name}" if path else name
            if not path:
                child_expr = _attr(expr, name)  # the root's children live on the model itself
            elif node["kind"] == "module_list" or (node["kind"] == "sequential" and name == str(position)):
                child_expr = f"{expr}[{position}]"
            elif node["kind"] == "module_dict":
                child_expr = f"{expr}[{json.dumps(name)}]"
            else:
                child_expr = _attr(expr, name)
            self.modules[child_path] = child_expr
            self.kinds[child_path] = child["kind"]
            self._index(child, child_path, child_expr)

    # -- modules --

    def leaf(self, node: dict[str, Any], indent: str) -> str:
        """The constructor call of a leaf, as `layers.KINDS` builds it."""
        kind = KINDS[node["kind"]]
        f = {fl.name: node.get(fl.name, fl.default) for fl in kind.fields}
        name = kind.name
        if name == "linear":
            text = f"nn.Linear({f['in_features']}, {f['out_features']}{_kwargs([('bias', f['bias'], True)])})"
        elif name.startswith("conv"):
            cls = f"Conv{'Transpose' if 'transpose' in name else ''}{name[-2:-1]}d"
            k = f["kernel_size"]
            extra = _kwargs([("padding", k // 2, 0), ("groups", f["groups"], 1), ("bias", f["bias"], True)])
            text = f"nn.{cls}({f['in_channels']}, {f['out_channels']}, {k}{extra})"
        elif name.startswith("batch_norm"):
            extra = _kwargs([("affine", f["affine"], True), ("track_running_stats", f["track_running_stats"], True)])
            text = f"nn.BatchNorm{name[-2:-1]}d({f['num_features']}{extra})"
        elif name == "layer_norm":
            text = f"nn.LayerNorm({f['normalized_shape']}{_kwargs([('elementwise_affine', f['elementwise_affine'], True)])})"
        elif name == "group_norm":
            text = f"nn.GroupNorm({f['num_groups']}, {f['num_channels']}{_kwargs([('affine', f['affine'], True)])})"
        elif name == "embedding":
            text = f"nn.Embedding({f['num_embeddings']}, {f['embedding_dim']}{_kwargs([('padding_idx', f['padding_idx'], None)])})"
        elif name == "embedding_bag":
            text = f"nn.EmbeddingBag({f['num_embeddings']}, {f['embedding_dim']}{_kwargs([('mode', f['mode'], 'mean')])})"
        elif name in ("rnn", "lstm", "gru"):
            extra = _kwargs([
                ("num_layers", f["num_layers"], 1), ("bias", f["bias"], True), ("batch_first", f["batch_first"], False),
                ("bidirectional", f["bidirectional"], False), ("nonlinearity", f.get("nonlinearity", "tanh"), "tanh"),
            ])
            text = f"nn.{name.upper()}({f['input_size']}, {f['hidden_size']}{extra})"
        elif name == "multihead_attention":
            extra = _kwargs([("bias", f["bias"], True), ("add_bias_kv", f["add_bias_kv"], False), ("batch_first", f["batch_first"], False)])
            text = f"nn.MultiheadAttention({f['embed_dim']}, {f['num_heads']}{extra})"
        elif name.startswith("transformer_encoder"):
            extra = _kwargs([
                ("activation", f["activation"], "relu"), ("batch_first", f["batch_first"], False), ("norm_first", f["norm_first"], False),
            ])
            text = f"nn.TransformerEncoderLayer({f['d_model']}, {f['nhead']}, dim_feedforward={f['dim_feedforward']}, dropout={f['dropout']!r}{extra})"
            if name == "transformer_encoder":
                # The builder asks for the plain path where torch has the knob (it only changes the fast path).
                self.helpers.add("known")
                inner = indent + "    "
                text = (f"nn.TransformerEncoder(\n{inner}{text},\n{inner}{f['num_layers']},\n"
                        f"{inner}**_known(nn.TransformerEncoder, enable_nested_tensor=False),\n{indent})")
        elif name == "dropout":
            text = f"nn.Dropout({f['p']!r})"
        elif name == "activation":
            text = f"nn.{_ACTIVATIONS[f['fn']]}()"
        else:  # a kind added to layers.KINDS and not here yet
            msg = f"layer kind {name!r} has no plain torch spelling in harness.shrink.plain_model yet"
            raise PlainUnsupported(msg)
        dtype = node.get("dtype", "float32")
        if kind.has_params and dtype != "float32":
            # .to() rather than dtype=: every torch has it (dtype= came later), and it leaves the same dtypes
            text += f".to(torch.{dtype})"
        return text

    def construct(self, node: dict[str, Any], indent: str) -> str:
        """A constructor expression for `node` (a leaf or a nested container)."""
        if node["kind"] not in CONTAINERS:
            return self.leaf(node, indent)
        inner = indent + "    "
        items = child_items(node)
        if node["kind"] == "module_list":
            parts = [self.construct(c, inner) for _, c in items]
            return "nn.ModuleList([\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{indent}])"
        if node["kind"] == "module_dict":
            # A list of pairs keeps its order in every torch (a dict's keys were sorted once).
            parts = [f"({json.dumps(n)}, {self.construct(c, inner)})" for n, c in items]
            return "nn.ModuleDict([\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{indent}])"
        if all(n == str(i) for i, (n, _) in enumerate(items)):
            parts = [self.construct(c, inner) for _, c in items]
            return "nn.Sequential(\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{indent})"
        self.helpers.add("named")
        parts = [f"({json.dumps(n)}, {self.construct(c, inner)})" for n, c in items]
        return "_named(\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{indent})"

    # -- tensors --

    def module(self, path: str) -> str:
        """The expression of the module at `path`: a spec's module, or one inside a leaf (``enc.layers.0.linear1``)."""
        head: str = path
        rest: list[str] = []
        while head not in self.modules:
            head, _, part = head.rpartition(".")
            rest.insert(0, part)
        expr = self.modules[head]
        for part in rest:  # inside a torch module: its ModuleLists are indexed, the rest are attributes
            expr = f"{expr}[{part}]" if part.isdigit() else _attr(expr, part)
        return expr

    def tensor(self, path: str) -> str:
        """The expression of the tensor at `path` (``fc.weight``)."""
        owner, _, attr = path.rpartition(".")
        return _attr(self.module(owner), attr)

    def is_parameter(self, path: str) -> bool:
        owner, _, attr = path.rpartition(".")
        for t in self.spec.data.get("tensors", []):
            if t.get("at", "") == owner and t["name"] == attr:
                return t.get("kind", "buffer") == "parameter"
        return attr not in _LAYER_BUFFERS

    def requires_grad(self, path: str) -> bool:
        owner, _, attr = path.rpartition(".")
        for t in self.spec.data.get("tensors", []):
            if t.get("at", "") == owner and t["name"] == attr:
                return bool(t.get("requires_grad", t.get("dtype", "float32") in FLOAT_DTYPES))
        return True

    def dims(self, path: str) -> Optional[int]:
        """How many dimensions the tensor at `path` has, where the spec says (conv weights, extras)."""
        owner, _, attr = path.rpartition(".")
        for t in self.spec.data.get("tensors", []):
            if t.get("at", "") == owner and t["name"] == attr:
                return len(t["shape"])
        kind = self.kinds.get(owner, "")
        if kind.startswith("conv") and attr == "weight":
            return int(kind[-2]) + 2
        return None

    def extras(self, lines: list[str]) -> None:
        seed = self.spec.seed
        if self.spec.data.get("tensors"):
            self.helpers.add("tensor")
        for i, t in enumerate(self.spec.data.get("tensors", [])):
            owner = self.module(t.get("at", ""))
            dtype = t.get("dtype", "float32")
            if t.get("layout", "strided") == "sparse_coo":
                self.helpers.add("sparse")
                indices, values, nnz = _sparse_bytes(t["shape"], dtype, seed + i)
                value = _sparse_expr(indices, values, nnz, dtype, t["shape"], "        ")
            else:
                value = _tensor_expr(_fill_bytes(t["shape"], dtype, t.get("fill", "formula"), seed + i), dtype, t["shape"], "        ")
            name = json.dumps(t["name"])
            if t.get("kind", "buffer") == "parameter":
                grad = "" if self.requires_grad(f"{t.get('at', '')}.{t['name']}".lstrip(".")) else ", requires_grad=False"
                lines.append(f"{owner}.register_parameter({name}, nn.Parameter({value}{grad}))")
            elif t.get("persistent", True):
                lines.append(f"{owner}.register_buffer({name}, {value})")
            else:
                lines.append(f"{owner}.register_buffer({name}, {value}, persistent=False)")

    def ties(self, lines: list[str]) -> None:
        for tie in self.spec.data.get("ties", []):
            lines.append(f"{self.tensor(tie['to'])} = {self.tensor(tie['from'])}  # tied: one Parameter under both names")

    def layouts(self, lines: list[str]) -> None:
        for lay in self.spec.data.get("layout", []):
            at = lay["at"]
            current = self.tensor(at)
            if lay["kind"] == "channels_last":
                fmt = "torch.channels_last_3d" if self.dims(at) == 5 else "torch.channels_last"
                new = f"{current}.detach().contiguous(memory_format={fmt})"
                why = "channels_last: memory in channels-last order"
            elif lay["kind"] == "transposed":
                new = f"{current}.detach().t().contiguous().t()"
                why = "transposed: column-major memory"
            else:
                self.helpers.add("offset")
                new = f"_offset({current})"
                why = "storage offset 3"
            if self.is_parameter(at):
                grad = "" if self.requires_grad(at) else ", requires_grad=False"
                new = f"nn.Parameter({new}{grad})"
            lines.append(f"{current} = {new}  # {why}")

    def parametrizations(self, lines: list[str]) -> None:
        for par in self.spec.data.get("parametrize", []):
            owner = self.module(par.get("at", ""))
            param = par.get("param", "weight")
            if par["kind"] == "weight_norm_legacy":
                lines.append(f"nn.utils.weight_norm({owner}, name={json.dumps(param)})  # the legacy hook: {param}_g, {param}_v")
                # The hook keeps the weight it computes as a plain attribute; detached, a
                # model can be deep-copied (the next forward recomputes it anyway).
                lines.append(f"{_attr(owner, param)} = {_attr(owner, param)}.detach()")
            else:
                self.imports.add("import torch.nn.utils.parametrizations")
                lines.append(f"nn.utils.parametrizations.{par['kind']}({owner}, name={json.dumps(param)})")

    # -- forward --

    def chains(self, node: dict[str, Any], path: str) -> list[list[tuple[str, str]]]:
        """Each input's chain of (module path, call style): CaseModel's plan, flattened."""
        kind = node["kind"]
        if kind in ("module_list", "module_dict"):
            out: list[list[tuple[str, str]]] = []
            for name, child in child_items(node):
                out.extend(self.chains(child, f"{path}.{name}" if path else name))
            return out
        return [self._chain(node, path)]

    def _chain(self, node: dict[str, Any], path: str) -> list[tuple[str, str]]:
        if node["kind"] not in CONTAINERS:
            return [(path, KINDS[node["kind"]].call)]
        out = []
        for name, child in child_items(node):
            out.extend(self._chain(child, f"{path}.{name}" if path else name))
        return out

    def forward(self) -> list[str]:
        chains = self.chains(self.model, "")
        lines = ["def forward(self, *inputs):"]
        names = ["x"] if len(chains) == 1 else [f"x{i}" for i in range(len(chains))]
        for i, (var, chain) in enumerate(zip(names, chains)):
            lines.append(f"    {var} = inputs[{i}]")
            for path, call in chain:
                module = self.modules[path]
                if call == "first":  # RNN, LSTM, GRU return (output, state)
                    lines.append(f"    {var} = {module}({var})[0]")
                elif call == "attention":  # self-attention: query = key = value
                    lines.append(f"    {var} = {module}({var}, {var}, {var}, need_weights=False)[0]")
                else:
                    lines.append(f"    {var} = {module}({var})")
        lines.append(f"    return ({names[0]},)" if len(names) == 1 else f"    return ({', '.join(names)})")
        return lines

    def class_source(self, class_name: str) -> str:
        init: list[str] = []
        for name, child in child_items(self.model):
            expr = self.construct(child, "        ")
            if name.isidentifier() and not keyword.iskeyword(name):
                init.append(f"self.{name} = {expr}")
            else:
                init.append(f"self.add_module({json.dumps(name)}, {expr})")
        for section, fill in (("extra tensors", self.extras), ("ties", self.ties), ("layouts", self.layouts), ("parametrizations", self.parametrizations)):
            part: list[str] = []
            fill(part)
            if part:
                init.append(f"# {section}")
                init.extend(part)
        description = self.spec.data.get("description") or f"Case {self.spec.name}."
        body = [f"class {class_name}(nn.Module):", f"    {_docstring(description)}", "", "    def __init__(self):",
                "        super().__init__()"]
        body += [f"        {line}" for line in init]
        body.append("")
        body += [f"    {line}" for line in self.forward()]
        return "\n".join(body) + "\n"

    def helper_sources(self) -> list[str]:
        """The helpers the class uses, in a fixed order."""
        texts = {"tensor": _HELPER_TENSOR, "named": _HELPER_NAMED, "known": _HELPER_KNOWN, "offset": _HELPER_OFFSET, "sparse": _HELPER_SPARSE}
        return [texts[h] for h in ("tensor", "named", "known", "offset", "sparse") if h in self.helpers]


def _docstring(text: str) -> str:
    """`text` on one line as a docstring literal (backslashes and quotes escaped)."""
    text = " ".join(text.split()).replace("\\", "\\\\")
    if '""' in text or text.endswith('"'):  # would end the literal early: escape them all
        text = text.replace('"', '\\"')
    return f'"""{text}"""'


# -- the artifact -------------------------------------------------------------


def _manifest(artifact: Path, spec: Spec) -> Manifest:
    path = Path(artifact) / "manifest.json"
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        msg = f"no artifact at {artifact}: {path.name} is missing"
        raise PlainUnsupported(msg) from None
    except (OSError, ValueError) as e:
        msg = f"cannot read {path}: {e}"
        raise PlainUnsupported(msg) from None
    if manifest.status != "saved":
        msg = f"the {manifest.format} artifact at {artifact} was not saved ({manifest.status}): {manifest.reason}"
        raise PlainUnsupported(msg)
    if manifest.spec_digest != spec.digest():
        msg = f"the artifact at {artifact} holds case {manifest.case!r} with spec digest {manifest.spec_digest}, not this spec's {spec.digest()}"
        raise PlainUnsupported(msg)
    return manifest


def _model_view(manifest: Manifest, spec: Spec) -> dict[str, TensorRecord]:
    """The saved model's tensors by state-dict name, from whichever view of this format holds them.

    ``module`` (state_dict, full_model, safetensors, torchscript): the model
    as saved; ``resume`` (checkpoint): the same under ``model.``; ``program``
    (exported): its state dict, non-persistent buffers as lifted constants.
    """
    views = manifest.views
    if "module" in views:
        return dict(views["module"].tensors)
    if "resume" in views:
        return {n[len("model."):]: r for n, r in views["resume"].tensors.items() if n.startswith("model.")}
    if "program" in views:
        return _program_tensors(views["program"], spec)
    msg = f"the {manifest.format} artifact records no view of the model's tensors (its views: {', '.join(sorted(views)) or 'none'})"
    raise PlainUnsupported(msg)


def _program_tensors(view: View, spec: Spec) -> dict[str, TensorRecord]:
    out = {n: r for n, r in view.tensors.items() if not n.startswith("$constant.")}
    for t in spec.data.get("tensors", []):
        if t.get("kind", "buffer") == "buffer" and not t.get("persistent", True):
            name = f"{t['at']}.{t['name']}" if t.get("at") else t["name"]
            rec = view.tensors.get(f"$constant.{name}")
            if rec is None:
                msg = f"the exported program records no value for the non-persistent buffer {name} (no $constant.{name})"
                raise PlainUnsupported(msg)
            out[name] = rec
    return out


def _saved_bytes(rec: TensorRecord, reference: Path, what: str) -> bytes:
    """The bytes of `rec` from the reference file, checked against its digest."""
    if rec.ref is None or rec.digest is None:
        msg = f"the artifact holds no bytes for {what} {rec.name} ({rec.dtype} {rec.shape})"
        raise PlainUnsupported(msg)
    try:
        data = Reference.read(reference, rec.ref)
    except OSError as e:
        msg = f"cannot read the bytes of {what} {rec.name} from {reference}: {e}"
        raise PlainUnsupported(msg) from None
    if len(data) != rec.ref[1] or digest_bytes(data) != rec.digest:
        msg = f"the bytes of {what} {rec.name} in {reference} do not match its digest {rec.digest}"
        raise PlainUnsupported(msg)
    return data


def _value_expr(rec: TensorRecord, data: bytes, indent: str) -> str:
    if rec.dtype not in _WIDTH:
        msg = f"{rec.name} is a {rec.dtype} tensor, a dtype the plain code cannot spell"
        raise PlainUnsupported(msg)
    if rec.layout == "sparse_coo":
        if len(rec.shape) != 2:
            msg = f"{rec.name} is a {len(rec.shape)}-D sparse tensor; the plain code writes 2-D ones"
            raise PlainUnsupported(msg)
        nnz, rest = divmod(len(data), 16 + _WIDTH[rec.dtype])  # int64 indices [2, nnz], then the values
        if rest:
            msg = f"the {len(data)} bytes of sparse {rec.name} are not int64 indices [2, nnz] and {rec.dtype} values"
            raise PlainUnsupported(msg)
        return _sparse_expr(data[: 16 * nnz], data[16 * nnz:], nnz, rec.dtype, rec.shape, indent)
    if rec.layout != "strided":
        msg = f"{rec.name} has layout {rec.layout}; the plain code writes strided and sparse COO tensors"
        raise PlainUnsupported(msg)
    return _tensor_expr(data, rec.dtype, rec.shape, indent)


def _saved_source(records: dict[str, TensorRecord], reference: Path) -> str:
    lines = [
        "def saved_tensors():",
        '    """Every parameter and buffer as saved, by state-dict name (non-persistent buffers too), bit for bit."""',
        "    saved = {}",
    ]
    first: dict[str, str] = {}  # digest -> first name with those bytes
    for name, rec in records.items():
        data = _saved_bytes(rec, reference, "tensor")
        key = f"{rec.layout}:{rec.dtype}:{rec.shape}:{rec.digest}"
        if key in first:
            lines.append(f"    saved[{json.dumps(name)}] = saved[{json.dumps(first[key])}]  # the same bytes")
            continue
        first[key] = name
        lines.append(f"    saved[{json.dumps(name)}] = {_value_expr(rec, data, '    ')}")
    lines.append("    return saved")
    return "\n".join(lines) + "\n"


def _inputs_source(manifest: Manifest, reference: Path, spec: Spec, notes: list[str]) -> str:
    forward = manifest.forward or {}
    head = ["def make_inputs():"]
    if forward.get("status") == "ok":
        head.append('    """The inputs the model was run on when it was saved, exactly."""')
        head.append("    return (")
        for raw in forward.get("inputs", []):
            rec = TensorRecord.from_dict(raw)
            head.append(f"        {_value_expr(rec, _saved_bytes(rec, reference, 'input'), '        ')},")
        head.append("    )")
        return "\n".join(head) + "\n"
    # No inputs were recorded (the source env could not run the forward):
    # the builder's recipe, which every torch follows with its own RNG.
    notes.append(f"the artifact recorded no forward inputs ({forward.get('reason', 'no forward record')}); "
                 "make_inputs() draws them as the harness does, from torch's seeded generator")
    return _drawn_inputs(spec, head)


def _drawn_inputs(spec: Spec, head: list[str]) -> str:
    sigs = input_signatures(spec.data["model"])
    head.append('    """The inputs the harness draws for this case (builder.make_inputs): seeded, from torch\'s own generator."""')
    head.append("    inputs = []")
    for k, sig in enumerate(sigs):
        shape = list(input_shape(sig, spec.data["batch"]))
        head.append(f"    g = torch.Generator().manual_seed({spec.seed * 1009 + k})")
        if sig[0] == "tokens":
            head.append(f"    inputs.append(torch.randint(0, {sig[1]}, {shape!r}, generator=g))")
        elif sig[2] == "complex64":
            head.append(f"    inputs.append(torch.randn({shape!r}, generator=g, dtype=torch.complex64))")
        else:
            head.append(f"    inputs.append(torch.randn({shape!r}, generator=g).to(torch.{sig[2]}))")
    head.append("    return tuple(inputs)")
    return "\n".join(head) + "\n"


# -- the whole file -----------------------------------------------------------


def _class_path(spec: Spec) -> Optional[tuple[str, str]]:
    """(module, NAME) of a class_path, or None."""
    if not spec.class_path:
        return None
    module, _, name = spec.class_path.partition(":")
    if not module.startswith(MOVED_PREFIX):
        raise SpecError("class_path", f"{spec.class_path!r} is not {MOVED_PREFIX}MODULE:NAME")
    if name in _RESERVED or name.startswith("_"):
        msg = f"class_path {spec.class_path!r}: the plain code defines {name!r} itself; rename the class"
        raise PlainUnsupported(msg)
    return module, name


def plain_model(spec: Spec, artifact: Optional[Path]) -> PlainModel:
    """`spec`'s model as plain torch code; with `artifact` (a format folder), its saved values and inputs too.

    Raises `PlainUnsupported` with the reason for what plain code cannot
    hold: a user case (its factory is opaque), an artifact that was not
    saved or holds no value for one of the model's tensors.
    """
    if spec.factory:
        msg = (f"a user case builds its model with its factory {spec.factory}: its code is not a spec, so it "
               "cannot be written out as plain torch.nn code")
        raise PlainUnsupported(msg)
    moved = _class_path(spec)
    class_name = moved[1] if moved else "Model"
    writer = _Writer(spec)
    class_text = writer.class_source(class_name)  # first: it decides the helpers and imports
    notes: list[str] = []
    functions = [_new_model_source(class_name)]
    if artifact is not None:
        manifest = _manifest(Path(artifact), spec)
        reference = Path(artifact).parent / "reference.bin"
        functions.append(_saved_source(_model_view(manifest, spec), reference))
        functions.append(_build_model_source(class_name))
        functions.append(_inputs_source(manifest, reference, spec, notes))

    imports = ["import base64", "", "import torch", "import torch.nn as nn"] + sorted(writer.imports)
    class_helpers = writer.helper_sources()
    module_files: dict[str, str] = {}
    # os and sys find a moved class's module beside the file (`_moved_import`).
    head = _header(spec, artifact is not None) + "\n\n" + "\n".join(imports[:1] + (["import os", "import sys"] if moved else []) + imports[1:])
    # saved values are literals too: the code needs _tensor even where the class does not
    own = [_HELPER_TENSOR] if artifact is not None and _HELPER_TENSOR not in class_helpers else []
    blocks = [head, *own, *class_helpers, _HELPER_POISON] + ([_HELPER_ASSIGN] if artifact is not None else []) + [class_text]
    if moved:
        module, name = moved
        rel = module.replace(".", "/") + ".py"
        module_files = _package_files(module)
        doc = f'"""{name}: case {spec.name}\'s model class, in the module a whole-model pickle names ({module})."""'
        module_files[rel] = _join([doc + "\n\n" + "\n".join(imports), *class_helpers, class_text])
        blocks.append(_moved_import(module, name, rel))
    return PlainModel(code=_join(blocks + functions), class_name=class_name, module_files=module_files, notes=notes)


def _join(blocks: list[str]) -> str:
    """Top-level blocks of source, two blank lines apart."""
    return "\n\n\n".join(b.strip("\n") for b in blocks) + "\n"


def _header(spec: Spec, saved: bool) -> str:
    lines = [
        f"Case {spec.name} as plain torch: nothing here imports torch-roundtrip.",
        "",
        "new_model(): the model freshly built, every parameter and persistent buffer",
        f"filled with the byte 0x{POISON:02X} (what a load must overwrite).",
    ]
    if saved:
        lines += [
            "build_model(): the model holding exactly the saved values, in eval mode.",
            "saved_tensors(): those values by state-dict name. make_inputs(): the forward inputs as saved.",
        ]
    return '"""' + "\n".join(lines) + '\n"""'


def _package_files(module: str) -> dict[str, str]:
    """Empty ``__init__.py`` files of `module`'s packages (``roundtrip_moved/__init__.py``, ...)."""
    parts = module.split(".")
    return {"/".join(parts[:i]) + "/__init__.py": "" for i in range(1, len(parts))}


def _moved_import(module: str, name: str, rel: str) -> str:
    segments = ", ".join(json.dumps(s) for s in rel.split("/"))
    return f'''

# The class moved: a whole-model pickle names {module}.{name}. Where that
# module is written beside this file (the save side) the model is built from
# it; elsewhere (the load side of a move) it is this file's own class.
_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(_HERE, {segments})):
    sys.path.insert(0, _HERE)
    from {module} import {name}
'''


def _new_model_source(class_name: str) -> str:
    return f'''def new_model():
    """The architecture freshly built, every parameter and persistent buffer overwritten with the byte 0x{POISON:02X}, in eval mode."""
    model = {class_name}()
    _poison(model)
    return model.eval()
'''


def _build_model_source(class_name: str) -> str:
    return '''def build_model():
    """The model holding exactly the saved values (strides, storage offsets and ties as built), in eval mode."""
    model = CLASS()
    saved = saved_tensors()
    names = _tensor_names(model)
    missing = [name for name in names if name not in saved]
    unknown = [name for name in saved if name not in names]
    if missing or unknown:
        raise RuntimeError("the saved tensors do not fit the model: missing %s, unknown %s" % (missing, unknown))
    for name in names:
        _assign(model, name, saved[name])
    return model.eval()
'''.replace("CLASS", class_name)
