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

from harness.runtime.unsafe_globals import runs_code

__all__ = ["Diagnosis", "diagnose"]


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
    if "deserialize object on a CUDA device" not in msg and "CUDA device but torch.cuda.is_available() is False" not in msg:
        return None
    if fmt == "exported":
        fix = "torch.export.load has no map_location: export and save the program from a CPU copy of the model (model.cpu())"
    else:
        fix = 'torch.load(f, map_location="cpu") (or map_location=torch.device("cpu"))'
    return Diagnosis("cuda_storage_on_cpu_host", "the file holds storages saved on a CUDA device and this env has no GPU", fix)


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


def _missing_class(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype not in ("AttributeError", "ModuleNotFoundError") or ("Can't get attribute" not in msg and "No module named" not in msg):
        return None
    return Diagnosis(
        "class_not_importable",
        "the pickled model refers to a class or module this env cannot import",
        "make the model's module importable under the same name here, or ship a state_dict and build the model in code",
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
_MISSING_STORAGE = re.compile(r"Can't get attribute '(\w+)Storage' on <module 'torch'")
_MISSING_DTYPE = re.compile(r"module 'torch' has no attribute '((?:complex|bfloat|float8|uint|bits)\w*)'")


def _dtype_missing(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    m = _MISSING_STORAGE.search(msg)
    if m:
        dtype, what = _STORAGE_DTYPES.get(m.group(1), m.group(1)), f"torch.{m.group(1)}Storage"
    else:
        m = _MISSING_DTYPE.search(msg)
        if not m:
            return None
        dtype = what = m.group(1)
    return Diagnosis(
        "dtype_missing_here",
        f"the file holds {dtype} tensors and this torch has no such dtype ({what} is missing): it predates them",
        f"load it with a torch that has {dtype}, or convert those tensors before saving "
        "(complex: torch.view_as_real; others: a wider dtype this torch has)",
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


def _user_case(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if etype != "FactoryUnavailable":
        return None
    return Diagnosis(
        "user_case_not_importable",
        "this env cannot import the user case's factory, so it cannot build the model to load into",
        "install the package that provides it in every env of the matrix (add it to `install` in [tool.torch-roundtrip])",
    )


def _truncated(etype: str, msg: str, fmt: str, load: dict[str, Any]) -> Optional[Diagnosis]:
    if not any(s in msg for s in ("failed finding central directory", "PytorchStreamReader failed", "unexpected EOF", "Ran out of input")):
        return None
    return Diagnosis("corrupt_file", "the file is truncated or not a complete torch file", "re-copy or re-save the file; compare its size and checksum with the original")


_RULES: tuple[Callable[[str, str, str, dict[str, Any]], Optional[Diagnosis]], ...] = (
    # The CUDA rule first: old torch wraps its CUDA error in a weights_only one.
    # The code and protocol rules before the weights_only one: they are
    # weights_only failures too, but add_safe_globals is not their fix.
    # The dtype rule before the class rule: a missing storage class is a dtype.
    _cuda_on_cpu, _code_global, _pickle_protocol, _weights_only_opcode, _storage_size, _weights_only, _safetensors_corrupt,
    _key_prefix, _meta_parametrization, _mmap_legacy, _file_from_newer_torch, _dtype_missing, _torch_class_missing, _missing_class,
    _sparse_from_newer_torch, _sparse_indices_corrupt, _torchscript_from_newer_torch,
    _export_archive_too_new, _export_schema, _user_case, _truncated,
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
