"""What a global named by a pickle does on load: safe, data or code, allowlist first.

``check`` reads files nobody vouched for, so its rule is the strict one:
a global is *safe* when ``weights_only=True`` would accept it, *data* when
it is a known constructor that only builds a value (numpy arrays, dtypes
and scalars, ``argparse.Namespace``, ``collections``, ``datetime``, torch's
own ``nn`` module classes), and *code* otherwise. An unknown class is code
until shown otherwise: importing its module runs that module, and
unpickling it can run its ``__setstate__``. Among code globals, the known
gadgets (`harness.runtime.unsafe_globals.runs_code`: ``os.system``,
``builtins.eval``, importers, name resolvers, ...) are marked as such.

The lists are static, so a verdict does not depend on the torch or numpy
that runs ``check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.runtime.unsafe_globals import runs_code

__all__ = ["CODE", "DATA", "SAFE", "GlobalKind", "classify"]

SAFE, DATA, CODE = "safe", "data", "code"


def _words(text: str) -> list[str]:
    return text.split()


_DTYPES = _words(
    "float32 float64 float16 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool "
    "complex32 complex64 complex128 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz "
    "float8_e8m0fnu float4_e2m1fn_x2 quint8 qint8 qint32 quint4x2 quint2x4 bits1x8 bits2x4 bits4x2 "
    "bits8 bits16 float double half long int short cfloat cdouble chalf "
    "int1 int2 int3 int4 int5 int6 int7 uint1 uint2 uint3 uint4 uint5 uint6 uint7"
)
_TORCH_VALUES = _words(
    # layouts, memory formats, quantization schemes
    "strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn jagged "
    "contiguous_format channels_last channels_last_3d preserve_format "
    "per_tensor_affine per_channel_affine per_tensor_symmetric per_channel_symmetric "
    "per_channel_affine_float_qparams Size device Tensor"
)
_STORAGES = _words(
    "Double Float Half BFloat16 Long Int Short Char Byte Bool ComplexDouble ComplexFloat "
    "QInt8 QInt32 QUInt8 QUInt4x2 QUInt2x4 Untyped"
)
_REBUILDS = _words(
    "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
    "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_sparse_csr_tensor "
    "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_wrapper_subclass "
    "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor _rebuild_xla_tensor "
    "_rebuild_mtia_tensor _rebuild_tensor_from_storage"
)

#: What weights_only=True accepts in the torch releases the harness covers.
_SAFE = frozenset(
    [f"torch.{d}" for d in _DTYPES + _TORCH_VALUES]
    + [f"torch.{s}Storage" for s in _STORAGES]
    + [f"torch.cuda.{s}Storage" for s in _STORAGES]
    + [f"torch._utils.{r}" for r in _REBUILDS]
    + [
        "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch._tensor._rebuild_from_type_v2",
        "torch._tensor._rebuild_from_type", "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer",
        "torch.serialization._get_layout", "torch.Size", "torch.device", "torch.Tensor",
        "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
        "builtins.bytearray", "builtins.complex", "builtins.slice", "builtins.range", "_codecs.encode",
    ]
)

#: Constructors that only build values.
_DATA = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray", "numpy.dtype",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64", "numpy.random.bit_generator.SeedSequence",
    "argparse.Namespace",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
    "collections.ChainMap",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
    "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "ipaddress.IPv4Address", "ipaddress.IPv6Address",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath", "pathlib._local.PosixPath", "pathlib._local.WindowsPath", "pathlib._local.Path",
    "pathlib._local.PurePosixPath", "pathlib._local.PureWindowsPath",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes", "builtins.complex",
    "builtins.slice", "builtins.range", "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
    "builtins.list", "builtins.dict", "builtins.tuple", "builtins.object",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
})
#: TorchScript's own pickle helpers (data.pkl of a torch.jit.save archive): they build lists and tensors.
_DATA |= {f"torch.jit._pickle.{n}" for n in (
    "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_tensor_from_id",
    "restore_type_tag", "build_complexlist",
)}
#: numpy 2 pickles dtypes as instances of their classes (numpy.dtypes.Float64DType).
_DATA_PATTERNS = (re.compile(r"numpy\.dtypes\.[A-Z][A-Za-z0-9]*DType"),)
#: Modules whose CapWords classes are torch's own modules, optimizers and layers:
#: unpickling one builds it with ``__new__`` and fills its ``__dict__``.
_DATA_CLASS_MODULES = ("torch.nn.modules.", "torch.nn.utils.parametrize", "torch.nn.utils.parametrizations")
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class GlobalKind:
    """A global's kind and, for code, whether it is a known gadget rather than merely unknown."""

    kind: str  # SAFE | DATA | CODE
    known_gadget: bool = False

    @property
    def why(self) -> str:
        if self.kind == SAFE:
            return "weights_only=True accepts it"
        if self.kind == DATA:
            return "a constructor that only builds a value"
        return "a known way to run code or commands" if self.known_gadget else "unknown code: importing and calling it runs code from its module"


def classify(module: str, name: str) -> GlobalKind:
    """The kind of the global `name` of `module` (`name` may be a dotted attribute path)."""
    full = f"{module}.{name}"
    if runs_code(full):
        return GlobalKind(CODE, known_gadget=True)
    if "." in name or module in ("?", ""):
        # An attribute chain (``os.path.os.system``) or a computed name: anything reachable.
        return GlobalKind(CODE)
    if full in _SAFE:
        return GlobalKind(SAFE)
    if full in _DATA or any(p.fullmatch(full) for p in _DATA_PATTERNS):
        return GlobalKind(DATA)
    if module.startswith(_DATA_CLASS_MODULES) and _CLASS_NAME.fullmatch(name):
        return GlobalKind(DATA)
    return GlobalKind(CODE)
