"""Diagnoses: which known failure mode an error is, and the fix a user applies.

Each rule reads the exception type and message (and the cell's format and
load options) and returns a `Diagnosis` whose `fix` is something to type,
after torch's own model message: "please use torch.load with
map_location=torch.device('cpu')".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from harness.runtime.dtypes import portable_recipe
from harness.runtime.unsafe_globals import runs_code

__all__ = ["NOT_CHECKPOINT_FIXES", "Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    code: str
    summary: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_GLOBAL = re.compile(r"(?:GLOBAL|global|class) ([A-Za-z_][\w.]*\.[A-Za-z_]\w*)")
_KEYS = re.compile(r'"((?:_orig_mod|module)\.[^"]*)"')


def _weights_only(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "Weights only load failed" not in msg and not (etype == "UnpicklingError" and "weights_only" in msg):
        return None
    names = sorted(set(_GLOBAL.findall(msg)))
    which = f" (unsafe globals: {', '.join(names)})" if names else ""
    by_default = load.get("weights_only") == "default"
    summary = "torch.load refused to unpickle objects that are not plain tensors" + which
    if by_default:
        summary += "; weights_only=True is the default of this torch (since 2.6)"
    if fmt == "full_model":
        fix = (
            "save model.state_dict() and load it into a freshly built model; if you trust the file, "
            "torch.load(f, weights_only=False)"
        )
    else:
        allow = f"torch.serialization.add_safe_globals([{', '.join(names)}])" if names else "torch.serialization.add_safe_globals([...])"
        fix = f"if you trust the file, allowlist what it needs with {allow}, or torch.load(f, weights_only=False)"
    return Diagnosis("weights_only_refused", summary, fix)


# Opcodes of pickle protocol 4 and 5 (SHORT_BINUNICODE .. READONLY_BUFFER):
# torch's weights_only unpickler and its static scanner know only protocol 2.
_PROTOCOL_4_OPCODES = frozenset(range(0x8C, 0x99))
_OPERAND = re.compile(r"Unsupported operand (\d+)")


#: Opcodes of protocol 2 that torch 1.13's weights_only unpickler did not know yet.
_OPCODE_NAMES = {0x47: "BINFLOAT (a Python float)", 0x4A: "BININT", 0x4D: "BININT2", 0x8A: "LONG1"}


def _weights_only_opcode(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _OPERAND.search(msg)
    # Only opcodes that build plain data: an unknown INST or OBJ is a file
    # that runs code, and "upgrade" would be the wrong advice for it.
    if not m or int(m.group(1)) not in _OPCODE_NAMES:
        return None
    name = _OPCODE_NAMES[int(m.group(1))]
    return Diagnosis(
        "weights_only_opcode_unknown",
        f"this torch's weights_only unpickler does not know pickle opcode {name}, which the file uses "
        "(early weights_only, before torch 2.0, read only a subset of protocol 2)",
        "upgrade this torch (2.0 or newer reads it with weights_only=True), or, if you trust the file, torch.load(f, weights_only=False)",
    )


def _pickle_protocol(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _OPERAND.search(msg)
    if not m or int(m.group(1)) not in _PROTOCOL_4_OPCODES:
        return None
    return Diagnosis(
        "pickle_protocol_unsupported",
        f"the file was saved with pickle protocol 4 or 5 (torch.save(..., pickle_protocol=4)); "
        f"the weights_only unpickler reads only protocol 2 (opcode {int(m.group(1)):#x})",
        "re-save it with torch.save's default pickle_protocol; if you trust the file, torch.load(f, weights_only=False)",
    )


def _storage_size(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "does not match expected size" not in msg and "storage has wrong byte size" not in msg:
        return None
    return Diagnosis(
        "storage_size_mismatch",
        "a storage in the file declares a size that its bytes do not have: the file is damaged or crafted",
        "do not use this copy: re-copy or re-save it from the source and compare checksums",
    )


def _safetensors_corrupt(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype != "SafetensorError" and "Error while deserializing header" not in msg:
        return None
    return Diagnosis(
        "safetensors_corrupt",
        "the safetensors header or data section is damaged, truncated or inconsistent",
        "re-copy or re-save the file (safetensors.torch.save_file); compare its size and checksum with the original",
    )


def _code_global(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "Weights only load failed" not in msg and not (etype == "UnpicklingError" and "weights_only" in msg):
        return None
    names = sorted({n for n in _GLOBAL.findall(msg) if runs_code(n)})
    if not names:
        return None
    return Diagnosis(
        "pickle_runs_code",
        f"the file's pickle calls {', '.join(names)}, which runs code or commands when unpickled: "
        "the file is built to execute something on load",
        f"do not load it with weights_only=False and do not allowlist {', '.join(names)}; "
        "ask its author for a state_dict or a safetensors file",
    )


def _cuda_on_cpu(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # torch says "a CUDA device" whichever GPU (cuda:0, cuda:1) the file names.
    if "deserialize object on a CUDA device" not in msg and "CUDA device but torch.cuda.is_available() is False" not in msg:
        return None
    summary = "the file holds storages saved on a CUDA device and this env has no GPU"
    if fmt == "exported":
        fix = "torch.export.load has no map_location: export and save the program from a CPU copy of the model (model.cpu())"
    else:
        fix = 'torch.load(f, map_location="cpu") (or map_location=torch.device("cpu"))'
    if str(load.get("map_location", "")).startswith("dict:"):
        # A dict maps only the devices it names: {"cuda:0": "cpu"} leaves a
        # cuda:1 storage on cuda:1, and {"cuda:1": "cuda:0"} maps to a GPU.
        summary += "; the map_location dict does not send every device the file names to the CPU"
        fix += ', or a dict that names each device the file uses, e.g. {"cuda:0": "cpu", "cuda:1": "cpu"}'
    return Diagnosis("cuda_storage_on_cpu_host", summary, fix)


_CUDA_INDEX = re.compile(r"deserialize object on CUDA device (\d+) but torch\.cuda\.device_count\(\) is (\d+)")


def _cuda_index_missing(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _CUDA_INDEX.search(msg)
    if not m:
        return None
    index, count = int(m.group(1)), int(m.group(2))
    if fmt == "exported":
        fix = "torch.export.load has no map_location: export and save the program from the model on cuda:0 or on the CPU"
    else:
        fix = f'torch.load(f, map_location={{"cuda:{index}": "cuda:0"}}) (or map_location="cuda:0", or "cpu")'
    return Diagnosis(
        "cuda_index_out_of_range",
        f"the file holds storages saved on cuda:{index} and this host has {count} GPU(s), so no cuda:{index}",
        fix,
    )


# pickle reports the gzip magic (1f 8b) as its first byte; the weights_only
# unpickler as an unknown opcode 31.
_GZIP = re.compile(r"invalid load key, '\\x1f'|Unsupported operand 31\b")


def _gzip_compressed(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if not _GZIP.search(msg):
        return None
    return Diagnosis(
        "gzip_compressed",
        "the file is gzip-compressed (it starts with the gzip magic 1f 8b): torch.load reads it as a checkpoint and fails on its first byte",
        'decompress first: gunzip FILE, or with gzip.open(f, "rb") as g: torch.load(io.BytesIO(g.read()))',
    )


def _not_seekable(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "You can only torch.load from a file that is seekable" not in msg:
        return None
    return Diagnosis(
        "stream_not_seekable",
        "torch.load was given a stream that cannot seek (a pipe, a socket, an HTTP body); torch.load needs to seek",
        "read it into a buffer first: torch.load(io.BytesIO(stream.read())), or save it to a file and load the path",
    )


def _mmap_needs_path(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "must be a file path in order to use the mmap argument" not in msg:
        return None
    return Diagnosis(
        "mmap_needs_path",
        "torch.load(mmap=True) maps a file by its name: it refuses an open file or a buffer",
        "pass the path: torch.load(path, mmap=True); or load the file object without mmap=True",
    )


# torch < 1.6 hands a zip file's path object to its C++ zip reader, which
# takes a str or a file object and treats anything else as a file object.
_PATH_OBJECT = re.compile(r"'(?:Posix|Windows)Path' object has no attribute '(?:tell|seek|read)'")


def _pathlib_not_accepted(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype != "AttributeError" or not _PATH_OBJECT.search(msg):
        return None
    return Diagnosis(
        "pathlib_not_accepted",
        "this torch's zip-file reader takes a str path or an open file, not a pathlib.Path (torch before 1.6)",
        "pass the path as a str: torch.load(str(path))",
    )


def _key_prefix(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "Unexpected key(s)" not in msg:
        return None
    keys = _KEYS.findall(msg)
    for prefix, origin in (("_orig_mod.", "torch.compile"), ("module.", "DataParallel / DistributedDataParallel")):
        if keys and all(k.startswith(prefix) for k in keys):
            return Diagnosis(
                f"key_prefix_{prefix.strip('._')}",
                f"every state dict key starts with {prefix!r}: the model was saved wrapped by {origin}",
                f'torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, "{prefix}") before load_state_dict; '
                f"better, save the unwrapped model's state_dict ({'model._orig_mod' if prefix == '_orig_mod.' else 'model.module'}.state_dict())",
            )
    return None


def _meta_parametrization(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "Unexpected key(s)" not in msg or ".parametrizations." not in msg or load.get("apply") != "assign":
        return None
    return Diagnosis(
        "parametrization_built_on_meta",
        "the model built on the meta device lacks state a parametrization registers at construction "
        "(orthogonal's right_inverse raises NotImplementedError on meta and register_parametrization ignores it, so its 'base' buffer never exists)",
        "build the model on the CPU (or load with strict=False and re-register the parametrization), then load_state_dict",
    )


def _mmap_legacy(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "mmap can only be used with files saved with" not in msg:
        return None
    return Diagnosis(
        "mmap_legacy_format",
        "mmap=True needs the zip serialization; this file uses the legacy (pre-1.6) format",
        "load it with mmap=False, or re-save it with torch.save(obj, f) (zip serialization is the default)",
    )


# numpy 2 renamed numpy.core to numpy._core, so its pickles of arrays and
# scalars name numpy._core.multiarray. numpy before 1.26.1 has no numpy._core
# at all; 1.26.1 added a shim of its multiarray and umath only, so a pickle
# naming another numpy._core module (numeric, from pickle protocol 5) needs
# numpy 2. The reverse, numpy 1's numpy.core names, loads under numpy 2: it
# keeps numpy.core as a shim (and warns for names other than the two pickles
# of arrays and scalars use), so "upgrade" is never the advice for it.
_NUMPY_CORE_MISSING = re.compile(
    r"No module named 'numpy\._core(?:\.(?P<module>[\w.]+))?'"
    r"|module 'numpy' has no attribute '_core'"
    r"|module 'numpy\._core' has no attribute '(?P<attr>\w+)'"
)
#: numpy._core modules numpy 1.26's shim provides.
_NUMPY_CORE_SHIM = ("multiarray", "umath", "_multiarray_umath", "_internal", "_dtype", "_dtype_ctypes")


def _numpy_too_old(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _NUMPY_CORE_MISSING.search(msg)
    if not m:
        return None
    module = (m.group("module") or m.group("attr") or "").split(".")[0]
    resave = "or re-save the file under numpy 1.x (or keep numpy objects out of it: torch.from_numpy(a), x.item())"
    if module and module not in _NUMPY_CORE_SHIM:
        return Diagnosis(
            "numpy_too_old",
            f"the file holds numpy objects pickled under numpy 2, which names numpy._core.{module}; this env's numpy 1 "
            "has no such module (numpy 1.26's numpy._core shim covers only multiarray and umath)",
            f"upgrade numpy in the loading env to 2.0 or newer (pip install \"numpy>=2\"), {resave}",
        )
    return Diagnosis(
        "numpy_too_old",
        "the file holds numpy objects (arrays, scalars) pickled under numpy 2, which names numpy._core; "
        "this env's numpy is older than 1.26.1, the first numpy 1 with a numpy._core shim that reads them",
        f"upgrade numpy in the loading env to 1.26.1 or newer (pip install \"numpy>=1.26.1\"), {resave}",
    )


#: Standard-library modules a newer Python pickles its classes under, and the Python that added them.
_NEWER_STDLIB = {"pathlib._local": "3.13", "pathlib._abc": "3.13"}
_STDLIB_MODULE = re.compile(r"No module named '(\w+\.\w+)'|GLOBAL (\w+\.\w+)\.\w+ was not an allowed global")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent is not a package here
        return False


def _newer_python(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _STDLIB_MODULE.search(msg)
    module = m and (m.group(1) or m.group(2))
    if not module or module not in _NEWER_STDLIB or etype not in ("ModuleNotFoundError", "UnpicklingError"):
        return None
    since = _NEWER_STDLIB[module]
    if etype == "UnpicklingError" and _importable(module):
        return None  # weights_only refused a class this Python has: the allowlist rule's case
    return Diagnosis(
        "pickled_by_newer_python",
        f"the file pickles an object whose class Python {since} and newer keep in {module} (a pathlib path saved "
        f"under Python {since}+), a module this Python does not have",
        f"load it under Python {since} or newer; in checkpoints, store paths as str(path), which every Python reads",
    )


_WHICH_CLASS = re.compile(r"Can't get attribute '([\w.]+)' on <module '([\w.]+)'|No module named '([\w.]+)'")


def _missing_class(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype not in ("AttributeError", "ModuleNotFoundError") or ("Can't get attribute" not in msg and "No module named" not in msg):
        return None
    m = _WHICH_CLASS.search(msg)
    what = "a class or module"
    if m and m.group(1):
        what = f"the class {m.group(2)}.{m.group(1)}"
    elif m:
        what = f"the module {m.group(3)}"
    old = f"{m.group(2)}.{m.group(1)}" if m and m.group(1) else "old.module.Class"
    return Diagnosis(
        "class_not_importable",
        f"the pickled model refers to {what}, which this env cannot import (moved, renamed or not installed)",
        "load a state_dict instead and build the model in code; or, where the class moved, map its old import path to "
        f"the new one while unpickling: torch.load(f, weights_only=False, pickle_module=P) with a P.Unpickler whose "
        f"find_class maps {old} to the new class (torch-roundtrip load --rename-class {old}=new.module.Class checks it); "
        "or make the old module importable here",
    )


def _export_archive_too_new(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if fmt != "exported" or "There is no item named 'version' in the archive" not in msg:
        return None
    return Diagnosis(
        "export_archive_from_newer_torch",
        "this torch.export.load does not understand the archive layout of the torch that wrote the file "
        "(torch.export archives are not forward compatible)",
        "load the program with the torch release that saved it or a newer one, or export the model again under this torch",
    )


_SCHEMA = re.compile(r"Serialized version \[?'?(\d+)'?, '?(\d+)'?\]? does not match our current schema version \((\d+), (\d+)\)")


def _export_schema(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _SCHEMA.search(msg)
    if fmt != "exported" or not m:
        return None
    saved, here = f"{m.group(1)}.{m.group(2)}", f"{m.group(3)}.{m.group(4)}"
    return Diagnosis(
        "export_schema_mismatch",
        f"the program was serialized with torch.export schema {saved}; this torch reads schema {here} and refuses other major versions",
        "load it with a torch of the same export schema major version, or export the model again under this torch",
    )


def _file_from_newer_torch(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # torch < 1.6 asserts on a zip whose format version is above its maximum
    # ("please report a bug"), or looks for the version record where older
    # archives kept it; both mean the writer was newer than the reader.
    if "kMaxSupportedFileFormatVersion" not in msg and not re.search(r"file not found: \S*version\b", msg):
        return None
    if fmt == "torchscript":
        fix = "script or trace and save the model under the oldest torch that must load it, or upgrade this torch"
    else:
        fix = ("in the newer torch, re-save with torch.save(obj, f, _use_new_zipfile_serialization=False) "
               "(the legacy format every release reads), or upgrade this torch")
    return Diagnosis(
        "file_from_newer_torch",
        "the file is a zip archive written by a newer torch, with a file format version above what this torch reads "
        "(torch reports it as an internal assert)",
        fix,
    )


_STORAGE_DTYPES = {
    "ComplexFloat": "complex64", "ComplexDouble": "complex128", "ComplexHalf": "complex32", "BFloat16": "bfloat16",
    "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64",
}
_NEWER_DTYPE = r"(?:complex|bfloat|float8|uint|bits)\w*"
#: A storage class the unpickler (Python's, or TorchScript's "unknown torch global") cannot find.
_MISSING_STORAGE = re.compile(r"Can't get attribute '(\w+)Storage' on <module 'torch'|unknown torch global, 'torch\.(\w+)Storage'")
#: The dtype itself missing: getattr in torch's code, or the pickle's global (torch 2.2 for uint16).
_MISSING_DTYPE = re.compile(rf"module 'torch' has no attribute '({_NEWER_DTYPE})'|Can't get attribute '({_NEWER_DTYPE})' on <module 'torch'")
#: weights_only refusing a dtype global: missing here, or not in this torch's allowlist yet (uint16 until 2.6).
_REFUSED_DTYPE = re.compile(rf"(?:Unsupported class|GLOBAL) torch\.({_NEWER_DTYPE})\b")
#: torch 2.2 and newer pickle dtypes without a typed storage class (float8, uint16/32/64, complex32) through it.
_REBUILD_V3 = re.compile(r"Can't get attribute '_rebuild_tensor_v3' on <module 'torch\._utils'|torch\._utils\._rebuild_tensor_v3")
_UNTYPED_FAMILIES = "float8, uint16/32/64 or complex32"
_UNTYPED_RECIPES = "t.view(torch.int8) for float8, t.view(torch.int16/int32/int64) for uint16/32/64, torch.view_as_real(t) for complex32"


def _dtype_missing(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    storage, missing, refused = _MISSING_STORAGE.search(msg), _MISSING_DTYPE.search(msg), _REFUSED_DTYPE.search(msg)
    if storage:
        name = storage.group(1) or storage.group(2)
        dtype, what = _STORAGE_DTYPES.get(name, name.lower()), f"torch.{name}Storage"
        summary = f"the file holds {dtype} tensors and this torch has no such dtype ({what} is missing): it predates them"
    elif missing:
        dtype = missing.group(1) or missing.group(2)
        summary = f"the file holds {dtype} tensors and this torch has no such dtype (torch.{dtype} is missing): it predates them"
    elif refused:
        dtype = refused.group(1)
        summary = (f"the file holds {dtype} tensors and this torch's weights_only unpickler refuses torch.{dtype}: "
                   "this torch predates the dtype, or its allowlist does (uint16/32/64 are allowed from torch 2.6)")
    elif _REBUILD_V3.search(msg):
        return Diagnosis(
            "dtype_missing_here",
            f"the file holds tensors of a dtype without a typed storage class ({_UNTYPED_FAMILIES}), which torch 2.2 "
            "and newer pickle with torch._utils._rebuild_tensor_v3; this torch predates that function",
            f"load it with torch 2.2 or newer; or, before saving, store those tensors' bits in dtypes every release has "
            f"({_UNTYPED_RECIPES}) and view them back after loading where the dtype exists",
        )
    else:
        return None
    fix = f"load it with a torch that has {dtype}"
    if refused:
        fix += f" and allows it with weights_only=True; or, if you trust the file and this torch has {dtype}, torch.load(f, weights_only=False)"
    recipe = portable_recipe(dtype)
    if recipe:
        back = "torch.view_as_complex(x)" if dtype.startswith("complex") else f"x.view(torch.{dtype})"
        fix += (f"; or, before saving, store its bits as {recipe} (a dtype every release has) and view them back "
                f"with {back} after loading where {dtype} exists")
    return Diagnosis("dtype_missing_here", summary, fix)


def _legacy_lost_dtype(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # torch.save(_use_new_zipfile_serialization=False) of a dtype without a
    # typed storage class records the storage as torch.UntypedStorage, and
    # the legacy reader asks that class for its dtype: no release reads it.
    if "'torch.storage.UntypedStorage' has no attribute 'dtype'" not in msg:
        return None
    return Diagnosis(
        "legacy_format_lost_dtype",
        f"the file is in torch.save's legacy (non-zip) format, which has no storage class for {_UNTYPED_FAMILIES} "
        "tensors: the writer recorded an untyped storage, so torch.load cannot tell their dtype, in any release",
        f"save with the default zip format (drop _use_new_zipfile_serialization=False); if a reader needs the legacy "
        f"format, store those tensors' bits in dtypes it has ({_UNTYPED_RECIPES}) and view them back after loading",
    )


def _assign_integer_parameter(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # torch 2.1 and 2.2's load_state_dict(assign=True) wraps each loaded
    # tensor in nn.Parameter(t) (requires_grad=True): an integer or bool
    # parameter cannot take it. 2.3 keeps the module's requires_grad.
    if load.get("apply") != "assign" or "Only Tensors of floating point and complex dtype can require gradients" not in msg:
        return None
    return Diagnosis(
        "assign_integer_parameter",
        "load_state_dict(assign=True) in torch 2.1 and 2.2 makes every loaded parameter require grad, which an integer "
        "(or bool) parameter cannot (fixed in 2.3, pytorch/pytorch#121157)",
        "load it without assign=True (model.load_state_dict(state_dict) copies into the built model), or upgrade torch "
        "to 2.3 or newer, or keep integer tensors as buffers",
    )


def _sparse_from_newer_torch(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype != "ValueError" or "too many values to unpack (expected 3)" not in msg or fmt in ("safetensors", "exported", "torchscript"):
        return None
    return Diagnosis(
        "sparse_from_newer_torch",
        "a sparse COO tensor pickled by torch 2.1 or newer carries its coalesced flag (four rebuild arguments); "
        "this torch's _rebuild_sparse_tensor unpacks three",
        "upgrade this torch to 2.1 or newer, or save sparse tensors as plain ones (t._indices(), t._values(), t.shape) "
        "and rebuild them with torch.sparse_coo_tensor",
    )


_BAD_SPARSE = re.compile(r"size is inconsistent with indices: for dim \d+, size is \d+ but found index \d+|found negative index -\d+ for dim")


def _sparse_indices_corrupt(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if not _BAD_SPARSE.search(msg):
        return None
    return Diagnosis(
        "sparse_indices_corrupt",
        "a sparse COO tensor came back with indices outside its size: torch before 1.7 reads (and may write) the "
        "indices of sparse tensors in its legacy (non-zip) format from the wrong memory (pytorch/pytorch#33439); "
        "otherwise the file is damaged",
        "read and write files holding sparse tensors with torch 1.7 or newer, or save sparse tensors as plain ones "
        "(t._indices(), t._values(), t.shape)",
    )


_TORCHSCRIPT_NEWER = re.compile(r"Unknown builtin op: ([\w:.]+)|Unknown type name '([\w.]+)'|(\w+\(\)) INTERNAL ASSERT FAILED")


def _torchscript_from_newer_torch(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _TORCHSCRIPT_NEWER.search(msg)
    if fmt != "torchscript" or not m:
        return None
    if m.group(1):
        what = f"calls {m.group(1).rstrip('.')}, an operator this torch does not have"
    elif m.group(2):
        what = f"names {m.group(2)}, a type this torch's TorchScript does not know"
    else:
        what = f"holds what this torch's TorchScript reader does not expect ({m.group(3)} failed, which aborts the process)"
    return Diagnosis(
        "torchscript_from_newer_torch",
        f"the TorchScript archive {what}: it was written by a newer torch, and TorchScript archives are not forward compatible",
        "script or trace and save the model under the oldest torch that must load it, or upgrade this torch",
    )


_TORCH_CLASS = re.compile(r"Can't get attribute '(\w+)' on <module '(torch[\w.]*)'")


def _torch_class_missing(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _TORCH_CLASS.search(msg)
    if not m:
        return None
    name = f"{m.group(2)}.{m.group(1)}"
    return Diagnosis(
        "torch_class_missing",
        f"the pickled model uses {name}, which this torch does not have: torch's own classes change between releases "
        "(a pickled nn.Module only loads where every class it names exists)",
        "ship a state_dict and build the model in code; or load the whole model with the torch that pickled it or a newer one",
    )


_ANY_KEY = re.compile(r'"([^"]+)"')
_STATE_DICT_PART = re.compile(r"(Missing key\(s\)|Unexpected key\(s\)) in state_dict: (.*)|size mismatch for ([\w.]+): (.*)")


def _model_code_changed(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if "Error(s) in loading state_dict" not in msg:
        return None
    parts = {"Missing key(s)": 0, "Unexpected key(s)": 0, "size mismatch": 0}
    for m in _STATE_DICT_PART.finditer(msg):
        if m.group(1):
            parts[m.group(1)] += len(_ANY_KEY.findall(m.group(2))) or 1
        else:
            parts["size mismatch"] += 1
    if not any(parts.values()):
        return None
    said = [f"{n} {what.replace('(s)', 's' if n > 1 else '').lower()}" for what, n in parts.items() if n]
    return Diagnosis(
        "model_code_changed",
        f"the checkpoint does not fit the model's code ({', '.join(said)}): the model code changed between the save and the load",
        "map the checkpoint's keys onto the new model before load_state_dict (a migration: rename, split or join, "
        "drop what the model no longer saves, initialise what it added), or load it into the code that saved it",
    )


def _user_case(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype != "FactoryUnavailable":
        return None
    return Diagnosis(
        "user_case_not_importable",
        "this env cannot import the user case's factory, so it cannot build the model to load into",
        "install the package that provides it in every env of the matrix (add it to `install` in [tool.torch-roundtrip])",
    )


# -- files that are not checkpoints, and the wrong loader (issue 12, points 7 and 8) --

#: The loader each format's files are meant for; the others' is torch.load.
_OWN_LOADER = {"torchscript": "torch.jit.load", "exported": "torch.export.load", "safetensors": "safetensors.torch.load_file"}
_LOAD_KEY = re.compile(r"invalid load key, '(\\x[0-9a-fA-F]{2}|.)'")
_LFS_OID = re.compile(r"oid sha256:([0-9a-f]{64})")
_LFS_SIZE = re.compile(r"\bsize (\d+)\b")
_MISSING_BYTES = re.compile(r"unexpected EOF, expected (\d+) more bytes")
#: torch.jit.load on a zip without TorchScript's constants.pkl (2.x; 1.8 says "file not found: archive/constants.pkl").
_NO_CONSTANTS = re.compile(r"failed locating file constants\.pkl|file not found: \S*constants\.pkl")
#: The fix for a file that is not the checkpoint it stands in for, by code:
#: ``check`` says the same from the file's bytes (`harness.check.sniff`).
NOT_CHECKPOINT_FIXES = {
    "git_lfs_pointer": "fetch the real file: git lfs install && git lfs pull (or download it from the LFS store); "
                       "head -c 100 FILE shows whether it is still a pointer",
    "html_not_checkpoint": "download the file again from its direct (raw / resolve) link, with the credentials it needs; "
                           "head -c 100 FILE shows the page; a real checkpoint starts with 'PK' (zip) or a pickle",
    "corrupt_file": "re-copy or re-download the file and compare its size and checksum with the original (or re-save it)",
}
_REFETCH = NOT_CHECKPOINT_FIXES["corrupt_file"]


#: What a format's file is, and the loader call that reads it.
_WHAT = {
    "state_dict": "a torch.save file (a state dict)", "state_dict_legacy": "a torch.save file (a state dict, legacy format)",
    "full_model": "a torch.save file (a pickled nn.Module)", "checkpoint": "a torch.save file (a checkpoint dict)",
    "torchscript": "a TorchScript archive (torch.jit.save)", "exported": "a torch.export archive (torch.export.save)",
    "safetensors": "a safetensors file",
}
_FIX = {
    "state_dict": "torch.load(f)", "state_dict_legacy": "torch.load(f)", "checkpoint": "torch.load(f)",
    "full_model": "torch.load(f, weights_only=False) (only for a file you trust), or better, save and load model.state_dict()",
    "torchscript": 'torch.jit.load(f, map_location="cpu")', "exported": "torch.export.load(f)",
    "safetensors": "safetensors.torch.load_file(f), or safetensors.torch.load_model(model, f)",
}


def _wrong_loader(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # What torch says when a loader meets another loader's file, whatever
    # the cell meant to load. The dispatch warning alone proves nothing: a
    # dispatched torch.jit.load can fail for its own reasons.
    if "with TorchScript archives passed to" in msg or "No module named '__torch__'" in msg:
        how = ("torch.load hands such archives to torch.jit.load, but refuses to with weights_only=True (its default since 2.6)"
               if "with TorchScript archives passed to" in msg else
               "this torch.load unpickles it and cannot import its __torch__ classes, which only torch.jit.load compiles")
        return Diagnosis(
            "wrong_loader",
            f"the file is a TorchScript archive (torch.jit.save), not a torch.save file: {how}",
            'torch.jit.load(f, map_location="cpu")',
        )
    if _NO_CONSTANTS.search(msg):
        what = _WHAT.get(fmt, "a torch.save file (or a torch.export archive)")
        return Diagnosis(
            "wrong_loader",
            f"torch.jit.load was given a zip archive without TorchScript's constants.pkl: {what}, not a TorchScript archive",
            _FIX.get(fmt, "torch.load(f) for a torch.save file; torch.export.load(f) for a torch.export archive"),
        )
    return None


def _loader_option(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # A wrong-loader cell (`LoadOptions.loader`) whose message is opaque: a
    # safetensors header read as pickle opcodes, a torch.save file that is
    # no zip, or no TorchScript one. torch.load on a TorchScript archive is
    # left to `_wrong_loader`: it hands the archive on to torch.jit.load,
    # whose own failures (an archive from a newer torch) have their own rules.
    loader = load.get("loader")
    if not loader or fmt not in _WHAT or loader == _OWN_LOADER.get(fmt, "torch.load") or fmt == "torchscript":
        return None
    if etype == "SafetensorError":  # torch.load handed the file on to safetensors: the error is the file's
        return None
    return Diagnosis(
        "wrong_loader",
        f"{loader} was given {_WHAT[fmt]}, which it cannot read"
        + (" (it is not a pickle: torch.load reads its 8-byte header length as pickle opcodes)" if fmt == "safetensors" else ""),
        _FIX[fmt],
    )


def _first_byte(msg: str) -> Optional[str]:
    """The byte where a pickle reader found something that is no pickle (``invalid load key, 'v'.``, weights_only's ``Unsupported operand 118``)."""
    m = _LOAD_KEY.search(msg)
    if m:
        key = m.group(1)
        return chr(int(key[2:], 16)) if key.startswith("\\x") else key
    m = _OPERAND.search(msg)
    return chr(int(m.group(1))) if m and int(m.group(1)) < 0x110000 else None


def _git_lfs_pointer(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # 'v' is no pickle opcode in any protocol: a file read as a pickle that
    # has one where an opcode belongs is text, and "version https://git-lfs..."
    # is the text that most often stands in for a model file.
    if _first_byte(msg) != "v":
        return None
    oid, size = _LFS_OID.search(msg), _LFS_SIZE.search(msg)
    real = f" (the real file: sha256 {oid.group(1)}, {size.group(1)} bytes)" if oid and size else ""
    return Diagnosis(
        "git_lfs_pointer",
        "torch read 'v' where pickle data belongs: the file is text, most likely a Git LFS pointer "
        f"('version https://git-lfs.github.com/spec/v1', an oid and a size) checked out in place of the model file{real}",
        NOT_CHECKPOINT_FIXES["git_lfs_pointer"],
    )


def _html_page(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # '<' is no pickle opcode either: a file that starts with it is HTML or
    # XML, a login, error or redirect page a download saved under the model's name.
    if _first_byte(msg) != "<":
        return None
    return Diagnosis(
        "html_not_checkpoint",
        "torch read '<' where pickle data belongs: the file is an HTML or XML page (a login, error or redirect page "
        "that a download saved under the model's name), not a checkpoint",
        NOT_CHECKPOINT_FIXES["html_not_checkpoint"],
    )


def _truncated(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # Before the weights_only rule: torch 2.4 wraps a legacy file's "unexpected
    # EOF" in a weights_only failure, and weights_only=True loads of an empty
    # or cut legacy file raise a bare EOFError with no message at all.
    missing = _MISSING_BYTES.search(msg)
    if missing:
        summary = (f"the file ends inside a storage's data, {missing.group(1)} bytes short of it: "
                   "it is truncated (an interrupted download or copy)")
    elif "failed finding central directory" in msg or "not a ZIP archive" in msg:
        summary = "the zip archive has no central directory (it is written last): the file is truncated, or is not a complete torch file"
    elif (etype == "EOFError" or "Ran out of input" in msg or "pickle data was truncated" in msg
          or "ord() expected a character, but string of length 0" in msg
          or (etype == "IndexError" and msg.strip() == "index out of range")
          or (etype == "error" and "unpack requires a buffer of" in msg)):
        # Python's unpickler cut inside an opcode's argument says "pickle data
        # was truncated"; torch 1.4 reads an empty file's first byte with ord();
        # torch 2.x's weights_only unpickler reads the next opcode past the end
        # as read(1)[0] (IndexError), e.g. a legacy file cut inside its pickle,
        # and an opcode's argument past the end with struct.unpack (struct.error).
        summary = "the file ends inside its pickle data: it is empty or truncated (an interrupted download or copy)"
    else:
        return None
    return Diagnosis("corrupt_file", summary, _REFETCH)


_CUT_ERRORS = frozenset({
    "RuntimeError", "OSError", "UnpicklingError", "IndexError", "error", "EOFError", "ValueError", "KeyError",
    "AttributeError", "TypeError", "SafetensorError", "MemoryError", "OverflowError",
    "crash",  # an old reader that aborts the process on the cut (torch 1.4, legacy format)
})


def _truncated_copy(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # A cell that loads the first half of the file (source=truncated), whose
    # whole file loads in the same cell without it: whatever this one raises
    # is the cut, however opaque the message (torch 2.15's zip reader says
    # "[Errno 22] Invalid argument" for some cut sizes, and its weights_only
    # unpickler refuses a global whose name the cut shortened).
    # Only what a reader raises on a cut: the harness's own errors (a source
    # form that served the wrong bytes, SourceMismatch) stay regressions.
    if load.get("source") != "truncated" or etype not in _CUT_ERRORS:
        return None
    return Diagnosis(
        "corrupt_file",
        f"the file is truncated (this load reads the first half of it), and torch's reader fails on the cut: {etype}",
        _REFETCH,
    )


def _corrupt_archive(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    # Last: any other failure of torch's zip reader on a record it needs.
    if "PytorchStreamReader failed" not in msg:
        return None
    return Diagnosis("corrupt_file", "the zip archive is damaged or incomplete: torch's zip reader cannot read a record it needs", _REFETCH)


_RULES: tuple[Callable[[str, str, str, dict[str, Any]], Optional[Diagnosis]], ...] = (
    # The CUDA rule first: old torch wraps its CUDA error in a weights_only one.
    # The code and protocol rules before the weights_only one: they are
    # weights_only failures too, but add_safe_globals is not their fix.
    # The dtype rule before the class rule: a missing storage class is a dtype.
    # It goes before the weights_only ones too: a refused torch.uint16 or
    # torch._utils._rebuild_tensor_v3 is a dtype this torch predates (or does
    # not allowlist yet), and allowlisting cannot add what this torch lacks.
    # The numpy rule before the class rule: a missing numpy._core is numpy's
    # version, and the class rule's advice (make the module importable) is no fix.
    # The gzip rule before the weights_only ones: weights_only reports a gzip
    # file as an unknown opcode.
    # The wrong-loader rules before the byte rules: a safetensors header read
    # as a pickle can start with any byte. The LFS, HTML and truncation rules
    # before the weights_only ones, which would call an LFS pointer's 'v' an
    # unsupported operand and a truncated legacy file a refusal. The rule for
    # a cell's truncated copy after the dtype rules (a dtype this torch lacks
    # is the cause wherever the cut fell) and before the weights_only ones (a
    # global whose name the cut shortened is refused).
    _cuda_on_cpu, _cuda_index_missing, _wrong_loader, _loader_option, _gzip_compressed, _not_seekable, _mmap_needs_path, _pathlib_not_accepted,
    _git_lfs_pointer, _html_page, _truncated,
    _dtype_missing, _legacy_lost_dtype, _assign_integer_parameter, _truncated_copy,
    _code_global, _pickle_protocol, _weights_only_opcode, _storage_size, _newer_python, _weights_only, _safetensors_corrupt,
    _key_prefix, _meta_parametrization, _mmap_legacy, _file_from_newer_torch, _torch_class_missing, _numpy_too_old, _missing_class,
    _sparse_from_newer_torch, _sparse_indices_corrupt, _torchscript_from_newer_torch,
    _export_archive_too_new, _export_schema, _model_code_changed, _user_case, _corrupt_archive,
)


def diagnose(etype: str, message: str, fmt: str = "", load: Optional[dict[str, Any]] = None, warnings: tuple[str, ...] = ()) -> Optional[Diagnosis]:
    """The first rule that recognises this error, or None.

    `warnings` are the texts of warnings raised during the load: some loaders
    (torch.export.load) only say "check the warnings above".
    """
    text = "\n".join([message, *warnings])
    for rule in _RULES:
        found = rule(etype, text, fmt, load or {})
        if found:
            return found
    return None
