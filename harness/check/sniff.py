"""What a model file is, read from its bytes alone: format, tensors, device tags.

`sniff` never unpickles, never imports a name the file mentions and never
hands the file to torch. It recognises the containers torch and its
neighbours write (a ``torch.save`` zip archive, the legacy pickle stream,
a TorchScript archive, a ``torch.export`` archive, safetensors), reads their
pickles with `harness.check.pickle_scan` and their JSON headers with `json`, and
checks that every storage the file declares is backed by bytes of exactly
that size. A file that fails those checks gets *problems*: ``check`` then
does not hand it to torch in its own process, because some torch versions
trust the declared sizes (torch 2.4 builds a 4 TB tensor over a 16-byte
record, and reading it faults) and the legacy format allocates each
storage at its declared size before reading a byte of it.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, cast

from harness.check.pickle_scan import (
    STORAGE_DTYPES,
    Global,
    PickleFacts,
    PickleScanError,
    TensorRef,
    scan,
    scan_all,
)
from harness.check.torchscript_code import Escape, escapes

__all__ = ["FILE_FORMATS", "FoundGlobal", "Sniffed", "TensorInfo", "sniff"]

#: The containers `sniff` tells apart, and how reports name them.
FILE_FORMATS = {
    "torch_zip": "torch.save zip archive",
    "torch_legacy": "torch.save legacy (pre-1.6, non-zip) pickle stream",
    "torchscript": "TorchScript archive (torch.jit.save)",
    "exported": "torch.export archive (torch.export.save)",
    "safetensors": "safetensors file",
    "torch_tar": "torch.save pre-0.4 tar archive",
    "numpy": "numpy .npy array",
    "unknown": "unknown format",
}

#: ``torch.serialization.MAGIC_NUMBER``: the first pickle of a legacy file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
#: Pickles larger than this are not scanned (a deflated record can expand
#: without bound); real data.pkl records are kilobytes to a few megabytes.
MAX_PICKLE_BYTES = 256 << 20
#: safetensors refuses headers over 100 MB; so does the sniffer.
MAX_SAFETENSORS_HEADER = 100_000_000

_SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "I16": ("int16", 2),
    "U16": ("uint16", 2), "F16": ("float16", 2), "BF16": ("bfloat16", 2), "I32": ("int32", 4),
    "U32": ("uint32", 4), "F32": ("float32", 4), "F64": ("float64", 8), "I64": ("int64", 8),
    "U64": ("uint64", 8), "C64": ("complex64", 8), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file declares it."""

    name: str
    dtype: Optional[str]
    shape: Optional[list[Any]]  # sizes; as the file wrote them
    device: Optional[str]  # the storage's device tag; None where the format has none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FoundGlobal:
    """A global one of the file's pickles names: where, at which byte, and the call it makes, if read."""

    module: str
    name: str
    where: str  # the pickle: a record name, "the object pickle", "pickle 2 of the stream", ...
    offset: int  # byte offset of the naming opcode within that pickle's record or stream
    call: Optional[str] = None  # e.g. "posix.system('touch /tmp/x')"

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Sniffed:
    """Everything `sniff` learnt about one file."""

    path: str
    size: int
    format: str = "unknown"
    why: str = ""  # how the format was recognised, or why none was
    content: str = ""  # what it holds: state_dict, checkpoint, module <class>, ...
    harness_format: Optional[str] = None  # the harness format name it matches, if one does
    tensors: list[TensorInfo] = field(default_factory=list)
    device_tags: dict[str, int] = field(default_factory=dict)  # tag -> number of storages
    globals: list[str] = field(default_factory=list)
    computed_globals: int = 0
    problems: list[str] = field(default_factory=list)  # inconsistencies: torch must not read it here
    notes: list[str] = field(default_factory=list)
    listing: str = ""  # where the tensor list comes from
    truncated: bool = False
    found: list[FoundGlobal] = field(default_factory=list)  # each global of `globals`, where it is first named
    escapes: list[Escape] = field(default_factory=list)  # TorchScript calls that leave its sandbox
    pickles: int = 0  # pickles scanned
    records_scanned: set[str] = field(default_factory=set)  # zip records already scanned

    def add_pickle(self, facts: PickleFacts, where: str) -> None:
        """Take in the globals, problems and counts of one scanned pickle, found at `where`."""
        self.pickles += 1
        for use in facts.uses:
            if use.full not in self.globals:
                self.globals.append(use.full)
                call = next((c.text for c in facts.calls if c.root == use.full), None)
                self.found.append(FoundGlobal(use.module, use.name, where, use.offset, call))
        self.computed_globals += facts.computed_globals
        if facts.computed_globals:
            self.problems.append(f"{where} computes the names of {facts.computed_globals} globals at load time (STACK_GLOBAL on values that are not constants)")
        if facts.extension_codes:
            self.problems.append(f"{where} uses pickle extension codes {facts.extension_codes[:5]}, resolved from copyreg's registry at load time")
        self.problems.extend(f"{where}: {p}" for p in facts.problems)
        self.truncated = self.truncated or facts.truncated

    def add_scan_error(self, error: PickleScanError, where: str, problem: Optional[str] = None) -> None:
        """A malformed pickle: a problem, and whatever it named before the error (an unpickler runs that much)."""
        self.problems.append(problem or f"{where} is not a valid pickle: {error}")
        if error.facts is not None and (error.facts.uses or error.facts.calls):
            self.add_pickle(error.facts, f"{where} (before the error)")


def _itemsize(dtype: str) -> Optional[int]:
    """Bytes per element of the torch dtype called `dtype`, as this torch knows it."""
    import torch

    dt = vars(torch).get(dtype)
    if not isinstance(dt, torch.dtype):
        return None
    size = getattr(dt, "itemsize", None)
    if size is None:
        try:
            size = torch.empty((), dtype=dt).element_size()
        except Exception:  # a dtype this torch cannot allocate: size unknown
            return None
    return int(size)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _extent_bytes(t: TensorRef, itemsize: int) -> int:
    """Bytes of its storage that a strided tensor reaches, from its storage offset."""
    if any(s == 0 for s in t.shape or ()):
        return 0
    last = t.offset + sum((s - 1) * st for s, st in zip(t.shape or (), t.stride or ()))
    return (last + 1) * itemsize


def _check_tensors(sniffed: Sniffed, facts: PickleFacts, where: str) -> None:
    """Every tensor must fit in the storage it views."""
    for t in facts.tensors:
        ref = facts.storages.get(t.storage) if t.storage is not None else None
        if ref is None or t.shape is None or t.stride is None or ref.nbytes is None:
            continue
        if len(t.shape) != len(t.stride) or any(s < 0 for s in t.shape) or any(st < 0 for st in t.stride) or t.offset < 0:
            sniffed.problems.append(f"{where}: tensor {t.name!r} has a negative or mismatched size/stride/offset")
            continue
        if t.rebuild == "_rebuild_tensor_v3" and t.dtype:
            itemsize = _itemsize(t.dtype)
            if itemsize is None:
                sniffed.notes.append(f"tensor {t.name!r} has dtype {t.dtype}, unknown to this torch: its extent was not checked")
                continue
        else:
            itemsize = ref.nbytes // ref.numel if ref.numel else 1
        need = _extent_bytes(t, itemsize)
        if need > ref.nbytes:
            sniffed.problems.append(
                f"{where}: tensor {t.name!r} (shape {list(t.shape)}) reaches {need} bytes into storage {t.storage!r}, which holds {ref.nbytes}"
            )


def _tensor_infos(facts: PickleFacts, prefix: str = "") -> list[TensorInfo]:
    return [TensorInfo(prefix + t.name, t.dtype, list(t.shape) if t.shape is not None else None, t.location) for t in facts.tensors]


def _count_tags(sniffed: Sniffed, facts: PickleFacts) -> None:
    for ref in facts.storages.values():
        sniffed.device_tags[ref.location] = sniffed.device_tags.get(ref.location, 0) + 1


# -- zip archives ------------------------------------------------------------


def _scan_stream(data: bytes, where: str, sniffed: Sniffed, *, guessed: bool = False) -> Optional[PickleFacts]:
    """Scan every pickle in `data`; the first one's facts (what torch reads), None if it is malformed.

    `guessed`: the bytes only start like a pickle (a record not named as
    one), so bytes that are no pickle at all are a note, not a problem.
    """
    found, error = scan_all(io.BytesIO(data))
    if guessed and not found and error is not None and not (error.facts and (error.facts.uses or error.facts.calls)):
        sniffed.notes.append(f"{where} starts like a pickle but is none ({error})")
        return None
    for i, facts in enumerate(found):
        sniffed.add_pickle(facts, where if i == 0 else f"{where}, pickle {i + 1} (at byte {facts.start})")
    if len(found) > 1:
        sniffed.problems.append(f"{where} holds {len(found)} pickles one after another; torch reads only the first")
    if error is not None:
        sniffed.add_scan_error(error, where if not found else f"{where}, after pickle {len(found)}")
    return found[0] if found else None


def _read_pickle(zf: zipfile.ZipFile, name: str, sniffed: Sniffed, *, guessed: bool = False) -> Optional[PickleFacts]:
    sniffed.records_scanned.add(name)
    data = _read_capped(zf, name, sniffed)
    if data is None:
        return None
    return _scan_stream(data, name, sniffed, guessed=guessed)


def _named_pickle(name: str) -> bool:
    return name.rsplit("/", 1)[-1].endswith((".pkl", "_pkl", ".pickle"))


def _starts_pickle(head: bytes) -> bool:
    """Starts like a pickle of protocol 2 to 5 (PROTO opcode)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _scan_other_records(zf: zipfile.ZipFile, names: list[str], sniffed: Sniffed) -> None:
    """Every pickle-like record not scanned yet (whatever its name); storages are raw bytes, not pickles."""
    for name in names:
        if name in sniffed.records_scanned or name.endswith("/"):
            continue
        named = _named_pickle(name)
        if named:
            _read_pickle(zf, name, sniffed)
            continue
        if "/data/" in f"/{name}" or "/.data/" in f"/{name}":
            continue  # storages: raw tensor bytes that torch never unpickles (and there can be 100,000 of them)
        try:
            with zf.open(name) as fh:
                head = fh.read(2)
        except Exception:  # a damaged record: its problem is reported where it is read for real
            continue
        if _starts_pickle(head):
            _read_pickle(zf, name, sniffed, guessed=True)
        elif head == b"\x93N":  # an .npy record (an .npz archive): object arrays are pickles
            sniffed.records_scanned.add(name)
            data = _read_capped(zf, name, sniffed)
            if data is not None:
                _scan_npy(data, name, sniffed)


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _local_data_span(raw: IO[bytes], info: zipfile.ZipInfo) -> Optional[tuple[int, int]]:
    """(start, end) of a record's bytes in the archive, from its local header; None if unreadable."""
    try:
        raw.seek(info.header_offset)
        header = raw.read(30)
    except (OSError, ValueError):
        return None
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.compress_size


def _check_storages(zf: zipfile.ZipFile, raw: IO[bytes], total: int, prefix: str, facts: PickleFacts, sniffed: Sniffed, where: str) -> None:
    """Every declared storage has a stored record of exactly its size, inside the file."""
    for ref in facts.storages.values():
        name = f"{prefix}data/{ref.key}"
        if ref.nbytes is None:
            sniffed.problems.append(f"{where}: storage {ref.key!r} has type {ref.type_name}, which check does not know")
            continue
        try:
            info = zf.getinfo(name)
        except KeyError:
            sniffed.problems.append(f"{where}: storage {ref.key!r} has no record {name} (the archive is missing a record)")
            continue
        if info.file_size != ref.nbytes:
            sniffed.problems.append(
                f"{where}: storage {ref.key!r} declares {ref.numel} x {ref.type_name} = {ref.nbytes} bytes "
                f"but its record {name} holds {info.file_size}"
            )
            continue
        if info.compress_type != zipfile.ZIP_STORED:
            sniffed.problems.append(f"{where}: storage record {name} is compressed; torch.save stores storages uncompressed")
            continue
        span = _local_data_span(raw, info)
        if span is None or span[1] > total:
            sniffed.problems.append(f"{where}: storage record {name} lies outside the file (truncated or crafted archive)")


def _zip_prefix(names: list[str]) -> str:
    # torch's reader takes the archive name from the first record.
    first = names[0] if names else ""
    return first.split("/", 1)[0] + "/" if "/" in first else ""


def _analyze_torch_zip(zf: zipfile.ZipFile, raw: IO[bytes], total: int, sniffed: Sniffed, label: str = "") -> Optional[PickleFacts]:
    """Scan a torch.save archive's data.pkl and check its storages; the pickle's facts."""
    names = zf.namelist()
    prefix = _zip_prefix(names)
    pkl = f"{prefix}data.pkl"
    if pkl not in names:
        sniffed.problems.append(f"{label}the archive has no {pkl} record (it holds {len(names)} records)")
        return None
    facts = _read_pickle(zf, pkl, sniffed)
    if facts is None:
        return None
    _check_storages(zf, raw, total, prefix, facts, sniffed, label + pkl)
    _check_tensors(sniffed, facts, label + pkl)
    if f"{prefix}byteorder" in names:
        try:
            order = zf.read(f"{prefix}byteorder")[:16]
        except Exception as e:  # a damaged record: reported, the rest still scanned
            sniffed.problems.append(f"record {prefix}byteorder cannot be read: {type(e).__name__}")
        else:
            if order not in (b"little", b"big"):
                sniffed.problems.append(f"record {prefix}byteorder holds {order!r}, not 'little' or 'big'")
            elif order == b"big":
                sniffed.notes.append("saved on a big-endian host: torch byte-swaps its storages on load")
    return facts


def _nested(sniffed: Sniffed, data: bytes, label: str) -> Optional[PickleFacts]:
    """A torch.save archive inside another archive (torch.export writes them)."""
    if data[:4] != b"PK\x03\x04":
        return _scan_stream(data, label, sniffed)
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except Exception as e:  # BadZipFile, NotImplementedError, ValueError...: a damaged archive
        sniffed.problems.append(f"{label} is a damaged zip archive: {_clip(str(e))}")
        return None
    with inner:
        facts = _analyze_torch_zip(inner, io.BytesIO(data), len(data), sniffed, label=f"{label}: ")
        _scan_other_records(inner, inner.namelist(), sniffed)
        return facts


def _read_capped(zf: zipfile.ZipFile, name: str, sniffed: Sniffed) -> Optional[bytes]:
    info = zf.getinfo(name)
    if info.file_size > MAX_PICKLE_BYTES:
        sniffed.problems.append(f"record {name} is {info.file_size} bytes, more than check scans ({MAX_PICKLE_BYTES})")
        return None
    try:
        return zf.read(name)
    except Exception as e:  # BadZipFile, zlib.error, EOFError: a damaged record
        sniffed.problems.append(f"record {name} cannot be read: {type(e).__name__}: {_clip(str(e))}")
        if not name.endswith(".json"):
            return _read_leniently(zf, info, sniffed)
        return None


def _read_leniently(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sniffed: Sniffed) -> Optional[bytes]:
    """A record's bytes as a lenient reader takes them: from its local header, no CRC, flags or name checks.

    torch's zip reader (miniz) reads records that Python's zipfile refuses
    (a wrong CRC, a local name that differs, flag bits some releases
    ignored), so a pickle hidden that way still runs under torch.load.
    """
    raw = zf.fp
    if raw is None:
        return None
    span = _local_data_span(raw, info)
    if span is None:
        return None
    raw.seek(span[0])
    data = raw.read(min(info.compress_size, MAX_PICKLE_BYTES))
    if info.compress_type == zipfile.ZIP_DEFLATED:
        try:
            data = zlib.decompressobj(-15).decompress(data, MAX_PICKLE_BYTES)
        except zlib.error:
            return None
    elif info.compress_type != zipfile.ZIP_STORED:
        return None
    sniffed.notes.append(f"record {info.filename} was read as a lenient zip reader (torch's) reads it")
    return data


def _scalar_type_names() -> dict[int, str]:
    """torch.export's serialized dtype numbers -> dtype names, from this torch's schema."""
    try:
        from torch._export.serde.schema import ScalarType
    except Exception:  # torch without torch.export: numbers stay numbers
        return {}
    return {int(m.value): m.name.lower() for m in ScalarType}


_EXPORT_DTYPES = {
    "byte": "uint8", "char": "int8", "short": "int16", "int": "int32", "long": "int64", "half": "float16",
    "float": "float32", "double": "float64", "complexhalf": "complex32", "complexfloat": "complex64",
    "complexdouble": "complex128", "bool": "bool", "bfloat16": "bfloat16",
}


def _export_tensor(name: str, meta: Any, numbers: dict[int, str]) -> Optional[TensorInfo]:
    """A tensor from torch.export's ``tensor_meta`` JSON, read defensively (it came from the file)."""
    if not isinstance(meta, dict):
        return None
    code = meta.get("dtype")
    known = numbers.get(code) if isinstance(code, int) else None
    dtype = _EXPORT_DTYPES.get(known, known) if known else f"ScalarType {_clip(repr(code), 20)}"
    sizes = meta.get("sizes")
    shape = [s.get("as_int") if isinstance(s, dict) else None for s in sizes] if isinstance(sizes, list) else None
    device = cast("dict[str, Any]", meta.get("device")) if isinstance(meta.get("device"), dict) else {}
    kind, index = device.get("type"), device.get("index")
    tag = None if not isinstance(kind, str) else (kind if index is None else f"{kind}:{_clip(str(index), 12)}")
    return TensorInfo(name, dtype, shape, tag)


def _analyze_exported(zf: zipfile.ZipFile, names: list[str], sniffed: Sniffed) -> None:
    sniffed.format, sniffed.harness_format, sniffed.content = "exported", "exported", "ExportedProgram"
    configs = [n for n in names if n.endswith("_weights_config.json") or n.endswith("_constants_config.json")]
    pickled = [n for n in names if n.endswith(".pt") and ("/sample_inputs/" in n or n.startswith("serialized_"))]
    numbers = _scalar_type_names()
    for name in configs:
        data = _read_capped(zf, name, sniffed)
        if data is None:
            continue
        try:
            config = json.loads(data)
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested too deep
            sniffed.problems.append(f"{name} is not valid JSON: {_clip(str(e))}")
            continue
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            sniffed.problems.append(f"{name} is not the JSON torch.export writes (no \"config\" object)")
            continue
        folder = name.rsplit("/", 1)[0] + "/"
        for fqn, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            if entry.get("use_pickle") and isinstance(entry.get("path_name"), str):
                pickled.append(folder + entry["path_name"])
            info = _export_tensor(str(fqn), entry.get("tensor_meta"), numbers)
            if info is not None:
                sniffed.tensors.append(info)
                if info.device:
                    sniffed.device_tags[info.device] = sniffed.device_tags.get(info.device, 0) + 1
    sniffed.listing = "the archive's weights config (JSON)" if configs else "the pickled state dict inside the archive"
    for name in pickled:
        if name not in names:
            sniffed.problems.append(f"the archive has no record {name}")
            continue
        data = _read_capped(zf, name, sniffed)
        if data is None:
            continue
        facts = _nested(sniffed, data, name)
        if facts is not None and name.endswith("serialized_state_dict.pt"):
            sniffed.tensors.extend(_tensor_infos(facts))
            _count_tags(sniffed, facts)
    sniffed.notes.append("torch.export.load unpickles parts of the archive, with weights_only=False where weights_only=True fails")


def _analyze_torchscript(zf: zipfile.ZipFile, raw: IO[bytes], total: int, names: list[str], sniffed: Sniffed) -> None:
    sniffed.format, sniffed.harness_format = "torchscript", "torchscript"
    prefix = _zip_prefix(names)
    facts = None
    if f"{prefix}data.pkl" in names:
        facts = _read_pickle(zf, f"{prefix}data.pkl", sniffed)
    else:
        sniffed.problems.append(f"the archive has no {prefix}data.pkl record")
    if facts is not None:
        _check_storages(zf, raw, total, prefix, facts, sniffed, f"{prefix}data.pkl")
        _check_tensors(sniffed, facts, f"{prefix}data.pkl")
        sniffed.tensors = _tensor_infos(facts)
        _count_tags(sniffed, facts)
        sniffed.content = "TorchScript " + facts.kind
    for name in names:
        if name.rsplit("/", 1)[-1] == "constants.pkl":
            constants = _read_pickle(zf, name, sniffed)
            if constants is not None and constants.tensors:
                sniffed.tensors.extend(_tensor_infos(constants, prefix="constants."))
    code = [n for n in names if "/code/" in n and n.endswith(".py")]
    for name in code:
        text = _read_capped(zf, name, sniffed)
        if text is not None:
            sniffed.escapes.extend(escapes(text.decode("utf-8", "replace"), name))
    sniffed.listing = "a static scan of data.pkl"
    sniffed.notes.append(
        f"{len(code)} TorchScript code files: torch.jit.load compiles them and runs the module's __setstate__ methods;"
        f" {len(sniffed.escapes) or 'no'} call{' in them leaves' if len(sniffed.escapes) == 1 else 's in them leave'} the TorchScript sandbox"
    )


def _analyze_zip(path: Path, sniffed: Sniffed) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except Exception as e:  # BadZipFile, NotImplementedError (zip version), ValueError, struct.error...: a damaged archive
        first = _first_local_name(path)
        torchy = first is not None and (first.endswith("/data.pkl") or "/data/" in first)
        sniffed.format = "torch_zip" if torchy else "unknown"
        sniffed.why = (
            f"it starts like a torch.save archive (first record {first}) but the zip is truncated or corrupt"
            if torchy else "it starts like a zip archive but Python's zipfile cannot read it"
        )
        sniffed.problems.append(f"truncated or corrupt zip archive: {_clip(str(e) or type(e).__name__)}")
        return
    with zf, open(path, "rb") as raw:
        names = zf.namelist()
        if len(set(names)) != len(names):
            sniffed.problems.append("the archive holds several records of the same name (readers disagree on which counts)")
        _analyze_zip_records(zf, raw, names, sniffed)
        _scan_other_records(zf, names, sniffed)


def _analyze_zip_records(zf: zipfile.ZipFile, raw: IO[bytes], names: list[str], sniffed: Sniffed) -> None:
    """Tell which torch archive the records make, and read it as that."""
    prefix = _zip_prefix(names)
    base = {n[len(prefix):] if n.startswith(prefix) else n for n in names}
    if any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in names):
        sniffed.why = "a zip archive with a constants.pkl record, which torch.load treats as TorchScript"
        _analyze_torchscript(zf, raw, sniffed.size, names, sniffed)
        return
    if "archive_format" in base or "serialized_exported_program.json" in names or any(n.startswith("models/") for n in base):
        sniffed.why = "a zip archive with torch.export's records"
        _analyze_exported(zf, names, sniffed)
        return
    torchy = bool({"data.pkl", "version", "byteorder", ".format_version"} & base or any(n.startswith("data/") for n in base))
    if not torchy:
        shown = ", ".join(sorted(names)[:3]) or "no records"
        sniffed.why = f"a zip archive that is not a torch file: no data.pkl, constants.pkl or torch.export records ({shown})"
        return
    sniffed.format = "torch_zip"
    sniffed.why = "a zip archive with torch.save's records"
    facts = _analyze_torch_zip(zf, raw, sniffed.size, sniffed)
    if facts is not None:
        sniffed.content = facts.kind
        sniffed.tensors = _tensor_infos(facts)
        _count_tags(sniffed, facts)
        sniffed.listing = "a static scan of data.pkl"
        sniffed.harness_format = {"state_dict": "state_dict", "checkpoint": "checkpoint"}.get(facts.kind)
        if facts.kind.startswith("module "):
            sniffed.harness_format = "full_model"


def _first_local_name(path: Path) -> Optional[str]:
    with open(path, "rb") as fh:
        header = fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            return None
        (name_len,) = struct.unpack("<H", header[26:28])
        return fh.read(min(name_len, 512)).decode("utf-8", "replace")


# -- the legacy stream -------------------------------------------------------


def _legacy_magic(path: Path) -> bool:
    """Whether the file's first pickle is torch's magic number (however long the pickle that builds it)."""
    with open(path, "rb") as fh:
        try:
            facts = scan(fh)
        except PickleScanError:
            return False
    return facts.root == LEGACY_MAGIC


def _analyze_legacy(path: Path, sniffed: Sniffed) -> None:
    sniffed.format = "torch_legacy"
    sniffed.why = "a pickle stream that starts with torch's magic number"
    is_tar = _is_tar(path)
    if is_tar:
        # torch.load tries a non-zip file as a pre-0.4 tar first, extracting
        # its members to disk: that path bypasses every check made here.
        sniffed.problems.append("the file is also a tar archive, which torch.load would read as the pre-0.4 tar format")
    if is_tar:
        _scan_tar(path, sniffed)
    with open(path, "rb") as fh:
        stage = "the magic number"
        try:
            sniffed.add_pickle(scan(fh), stage)
            stage = "the protocol version"
            version = scan(fh)
            sniffed.add_pickle(version, stage)
            if version.root != LEGACY_PROTOCOL:
                sniffed.problems.append(f"protocol version {version.root!r}: torch reads only {LEGACY_PROTOCOL}")
            stage = "the system info"
            info = scan(fh)
            sniffed.add_pickle(info, stage)
            pairs = dict(getattr(info.root, "pairs", []))
            little = pairs.get("little_endian", True)
            if little is False:
                sniffed.notes.append("saved on a big-endian host")
            stage = "the object pickle"
            facts = scan(fh)
            sniffed.add_pickle(facts, stage)
            stage = "the storage keys"
            keys_facts = scan(fh)
            sniffed.add_pickle(keys_facts, stage)
        except PickleScanError as e:
            sniffed.add_scan_error(e, stage, f"{stage} is truncated or corrupt: {e}")
            return
        sniffed.content = facts.kind
        sniffed.tensors = _tensor_infos(facts)
        _count_tags(sniffed, facts)
        sniffed.listing = "a static scan of the object pickle"
        if facts.kind == "state_dict":
            sniffed.harness_format = "state_dict_legacy"
        _check_tensors(sniffed, facts, "the object pickle")
        keys = [k for k in getattr(keys_facts.root, "items", [])]
        if not all(isinstance(k, str) for k in keys):
            sniffed.problems.append("the storage key list is not a list of strings")
            return
        missing = sorted(set(facts.storages) - set(keys))
        if missing:
            sniffed.problems.append(f"storages {missing[:5]} are declared but have no data in the file")
        end = _check_legacy_data(fh, sniffed, facts, keys, "<" if little is not False else ">")
        if end is not None and end < sniffed.size:
            _scan_trailing(fh, end, sniffed)


def _scan_trailing(fh: IO[bytes], start: int, sniffed: Sniffed) -> None:
    """Bytes after the last storage: torch ignores them, but a pickle there is still a pickle."""
    fh.seek(start)
    found, error = scan_all(fh)
    for facts in found:
        sniffed.add_pickle(facts, f"a pickle after the storage data (at byte {facts.start})")
    if found:
        sniffed.problems.append(f"{len(found)} pickle(s) follow the storage data; torch.save never writes them")
    if error is not None and error.facts is not None and (error.facts.uses or error.facts.calls):
        sniffed.add_scan_error(error, f"the bytes after the storage data (at byte {error.facts.start})")


def _check_legacy_data(fh: IO[bytes], sniffed: Sniffed, facts: PickleFacts, keys: list[str], order: str) -> Optional[int]:
    """Each storage's data: an int64 element count, then its bytes, in key order; where the data ends (None: broken)."""
    pos = fh.tell()
    for key in keys:
        ref = facts.storages.get(key)
        if ref is None:
            sniffed.problems.append(f"the storage key list names {key!r}, which the object pickle never declares")
            return None
        if ref.nbytes is None:
            sniffed.problems.append(f"storage {key!r} has type {ref.type_name}, which check does not know")
            return None
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            sniffed.problems.append(f"the file ends before the data of storage {key!r} (truncated at byte {sniffed.size})")
            return None
        (count,) = struct.unpack(order + "q", head)
        if count != ref.numel:
            sniffed.problems.append(f"storage {key!r} declares {ref.numel} elements but its data says {count}")
            return None
        pos += 8 + ref.nbytes
        if pos > sniffed.size:
            sniffed.problems.append(
                f"storage {key!r} needs {ref.nbytes} bytes ending at byte {pos}, but the file ends at byte {sniffed.size} (truncated)"
            )
            return None
    if pos < sniffed.size:
        sniffed.notes.append(f"{sniffed.size - pos} bytes follow the last storage; torch ignores them")
    return pos


# -- the pre-0.4 tar format ---------------------------------------------------

#: Members of torch's pre-0.4 tar checkpoints (torch.serialization.legacy_load).
TAR_MEMBERS = ("sys_info", "pickle", "storages", "tensors")
#: Members read from a tar at most (a tar can declare millions).
MAX_TAR_MEMBERS = 10_000


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(str(path))
    except Exception:  # a damaged header: tarfile cannot read it, and neither can torch
        return False


def _analyze_tar(path: Path, sniffed: Sniffed) -> None:
    """A tar archive: torch.load reads any non-zip file as the pre-0.4 tar format first."""
    names = _scan_tar(path, sniffed)
    with open(path, "rb") as fh:
        compressed = fh.read(3) in (b"\x1f\x8b\x08", b"BZh") or _is_xz(path)
    if compressed:
        sniffed.why = f"a compressed tar archive (members: {', '.join(names[:4]) or 'none'}); torch.load reads only plain tars"
    elif {"pickle", "storages", "tensors"} <= set(names):
        sniffed.format = "torch_tar"
        sniffed.why = "a tar archive with the members torch.save wrote before 0.4 (storages, tensors, pickle)"
        sniffed.notes.append("torch.load reads it only with weights_only=False, extracting its members to a temporary directory")
    else:
        sniffed.why = f"a tar archive that is not a torch checkpoint (members: {', '.join(names[:4]) or 'none'})"


def _scan_tar(path: Path, sniffed: Sniffed) -> list[str]:
    """Scan every pickle of every member of the tar at `path`; the member names."""
    names: list[str] = []
    try:
        with tarfile.open(str(path), mode="r:*") as tar:
            for i, member in enumerate(tar):
                if i >= MAX_TAR_MEMBERS:
                    sniffed.problems.append(f"the tar holds more than {MAX_TAR_MEMBERS} members; the rest were not scanned")
                    break
                names.append(member.name)
                where = f"tar member {member.name}"
                if not member.isfile():
                    if member.name in TAR_MEMBERS:
                        sniffed.problems.append(f"{where} is not a regular file ({'a link' if member.issym() or member.islnk() else 'a special file'}); torch extracts it to disk as it is")
                    continue
                if member.size > MAX_PICKLE_BYTES:
                    sniffed.problems.append(f"{where} is {member.size} bytes, more than check scans ({MAX_PICKLE_BYTES})")
                    continue
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if member.name == "storages":
                    _scan_tar_records(data, where, sniffed, _skip_storage_data)
                elif member.name == "tensors":
                    _scan_tar_records(data, where, sniffed, _skip_tensor_header)
                elif data[:1] in (b"\x80", b"(", b"}", b"]", b"c", b"I", b"S", b"V", b"N", b"L", b"F"):
                    _scan_stream(data, where, sniffed)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        sniffed.problems.append(f"the tar archive cannot be read: {_clip(str(e) or type(e).__name__)}")
    return names


def _skip_storage_data(fh: IO[bytes], header: PickleFacts) -> None:
    """After a storage's (key, location, type) pickle: an int64 element count, then the bytes."""
    root = header.root
    stype = root[2] if isinstance(root, tuple) and len(root) == 3 else None
    size = STORAGE_DTYPES.get(stype.name, (None, 0))[1] if isinstance(stype, Global) else 0
    if not size:
        raise ValueError(f"a storage header that is not (key, location, storage type): {header.kind}")
    (count,) = struct.unpack("<q", fh.read(8))
    if count < 0:
        raise ValueError(f"a negative storage size {count}")
    fh.seek(count * size, 1)


def _skip_tensor_header(fh: IO[bytes], header: PickleFacts) -> None:
    """After a tensor's (key, storage id, type) pickle: int32 ndim, 4 spare bytes, sizes, strides, offset."""
    (ndim,) = struct.unpack("<i", fh.read(4))
    if not 0 <= ndim <= 64:
        raise ValueError(f"a tensor of {ndim} dimensions")
    fh.seek(4 + 16 * ndim + 8, 1)


def _scan_tar_records(data: bytes, where: str, sniffed: Sniffed, skip: Any) -> None:
    """A count pickle, then per record a header pickle and binary data `skip` steps over, then any pickles left."""
    fh = io.BytesIO(data)
    try:
        count = scan(fh)
        sniffed.add_pickle(count, where)
        n = count.root if isinstance(count.root, int) and not isinstance(count.root, bool) else -1
        if n < 0:
            raise ValueError("it does not start with a record count")
        for _ in range(min(n, MAX_TAR_MEMBERS)):
            header = scan(fh)
            sniffed.add_pickle(header, f"{where} (at byte {header.start})")
            skip(fh, header)
    except PickleScanError as e:
        sniffed.add_scan_error(e, where)
        return
    except (ValueError, struct.error) as e:
        sniffed.problems.append(f"{where} is not laid out as torch wrote it: {_clip(str(e))}")
        return
    rest, error = scan_all(fh)
    for facts in rest:
        sniffed.add_pickle(facts, f"{where} (at byte {facts.start})")
    if error is not None and error.facts is not None and (error.facts.uses or error.facts.calls):
        sniffed.add_scan_error(error, f"{where} (at byte {error.facts.start})")


# -- numpy arrays ----------------------------------------------------------------

NPY_MAGIC = b"\x93NUMPY"


def _is_xz(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\xfd7zXZ\x00"


def _scan_npy(data: bytes, where: str, sniffed: Sniffed) -> Optional[dict[str, Any]]:
    """An .npy array's header; an object array's elements are a pickle, scanned. None if it is not .npy."""
    if data[:6] != NPY_MAGIC or len(data) < 10:
        return None
    major = data[6]
    width = 2 if major == 1 else 4
    length = int.from_bytes(data[8:8 + width], "little")
    start = 8 + width
    try:
        header = ast.literal_eval(data[start:start + length].decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        sniffed.problems.append(f"{where}: the .npy header is not a Python literal")
        return None
    if not isinstance(header, dict):
        sniffed.problems.append(f"{where}: the .npy header is not a dict")
        return None
    descr = header.get("descr")
    if descr in ("|O", "O", "<O", ">O") or (isinstance(descr, list) and "O" in repr(descr)):
        sniffed.notes.append(f"{where} is an object array: numpy.load(allow_pickle=True) unpickles it")
        _scan_stream(data[start + length:], f"{where} (object array pickle at byte {start + length})", sniffed)
    return header


def _analyze_npy(path: Path, sniffed: Sniffed) -> None:
    sniffed.format = "numpy"
    sniffed.why = "an .npy header (numpy.save), not a torch file"
    with open(path, "rb") as fh:
        data = fh.read(MAX_PICKLE_BYTES)
    header = _scan_npy(data, "the array", sniffed)
    if header is not None:
        sniffed.content = f"array {header.get('descr')!r} of shape {header.get('shape')!r}"


def _analyze_gzip(path: Path, sniffed: Sniffed) -> bool:
    """A gzip stream whose content is pickles: scanned (a user who decompresses it would load them)."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_PICKLE_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    found, error = scan_all(io.BytesIO(data))
    partial = error is not None and error.facts is not None and bool(error.facts.uses or error.facts.calls)
    if not found and not partial:
        return False
    for i, facts in enumerate(found):
        sniffed.add_pickle(facts, "the decompressed pickle" if i == 0 else f"decompressed pickle {i + 1}")
    if error is not None and partial:
        sniffed.add_scan_error(error, "the decompressed pickle")
    sniffed.why = "a gzip stream holding a pickle: decompress it first (torch.load does not)"
    return True


# -- safetensors -------------------------------------------------------------


def _analyze_safetensors(path: Path, sniffed: Sniffed, length: int) -> None:
    sniffed.format, sniffed.harness_format, sniffed.content = "safetensors", "safetensors", "tensors"
    sniffed.why = "an 8-byte header length followed by a JSON header"
    sniffed.listing = "the safetensors header (JSON)"
    sniffed.notes.append("safetensors stores no device tags and no pickle")
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        sniffed.problems.append(f"the header is not valid JSON: {_clip(str(e))}")
        return
    if not isinstance(header, dict):
        sniffed.problems.append("the header is not a JSON object")
        return
    data_size = sniffed.size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            if isinstance(entry, dict):
                sniffed.notes.append(f"metadata: {_clip(json.dumps(entry), 160)}")
            continue
        if not isinstance(entry, dict):
            sniffed.problems.append(f"tensor {name!r}: its header entry is not an object")
            continue
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            sniffed.problems.append(f"tensor {name!r}: shape {_clip(repr(shape), 60)} is not a list of sizes")
            continue
        known = _SAFETENSORS_DTYPES.get(dtype) if isinstance(dtype, str) else None
        sniffed.tensors.append(TensorInfo(name, known[0] if known else str(dtype), shape, None))
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            sniffed.problems.append(f"tensor {name!r}: data_offsets {_clip(repr(offsets), 60)} is not [begin, end]")
            continue
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            sniffed.problems.append(f"tensor {name!r}: bytes {begin}..{end} lie outside the {data_size}-byte data section")
        elif known is None:
            sniffed.notes.append(f"tensor {name!r}: dtype {dtype!r} is unknown to check, so its size was not verified")
        elif end - begin != _numel(tuple(shape)) * known[1]:
            sniffed.problems.append(
                f"tensor {name!r}: shape {shape} of {dtype} needs {_numel(tuple(shape)) * known[1]} bytes but its offsets span {end - begin}"
            )


# -- entry point -------------------------------------------------------------


def _why_unknown(head: bytes, size: int) -> str:
    if head[:2] == b"PK":
        return "a zip archive without entries" if head[:4] == b"PK\x05\x06" else "it starts like a zip archive, but not with a local file header"
    if head[:1] == b"\x80" and head[1:2] and head[1] <= 5:
        return "a plain pickle, not written by torch.save (it lacks torch's magic number)"
    if head[:3] == b"\x1f\x8b\x08":
        return "a gzip stream: decompress it first"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not a zip archive, a torch legacy pickle or a safetensors file (it starts with bytes {head[:8].hex()})"
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file, not a model file (it starts with {_clip(text, 40)!r})"
    return f"not a zip archive, a torch legacy pickle or a safetensors file (it starts with bytes {head[:8].hex()})"


def _analyze_pickles(path: Path, sniffed: Sniffed) -> bool:
    """A file of plain pickles (any protocol, text-like ones too); False if its bytes do not start one.

    torch.load unpickles a non-zip file's first pickle before it checks for
    its magic number, so whatever a plain pickle names runs under
    ``weights_only=False``, whatever the file looks like.
    """
    with open(path, "rb") as fh:  # the scan stops at the first byte that is no opcode: cheap on any file
        found, error = scan_all(fh)
    partial = error.facts if error is not None and error.facts is not None and (error.facts.uses or error.facts.calls) else None
    if not found and partial is None:
        return False
    for i, facts in enumerate(found):
        sniffed.add_pickle(facts, "the pickle" if i == 0 else f"pickle {i + 1} of the stream (at byte {facts.start})")
    protocol = found[0].protocol if found else partial.protocol if partial else 0
    if found:
        sniffed.why = f"a plain pickle (protocol {protocol}), not written by torch.save (it lacks torch's magic number)"
        sniffed.content = found[0].kind
        if len(found) > 1:
            sniffed.notes.append(f"a stream of {len(found)} pickles; torch.load reads only the first")
    else:
        sniffed.why = "a malformed plain pickle, not written by torch.save"
    if error is not None:
        where = "the pickle" if not found else f"the bytes after pickle {len(found)}"
        if partial is not None:
            sniffed.add_scan_error(error, where)
        else:
            sniffed.notes.append(f"{where}: not a pickle ({error})")
    return True


def sniff(path: Path) -> Sniffed:
    """The format and contents of the file at `path`, from its bytes alone.

    Raises OSError when the file cannot be read at all; everything wrong
    with its contents is in the result's `problems` or `why`.
    """
    path = Path(path)
    size = os.path.getsize(path)
    sniffed = Sniffed(path=str(path), size=size)
    if size == 0:
        sniffed.why = "the file is empty (0 bytes)"
        return sniffed
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:4] == b"PK\x03\x04":  # torch's own test (_is_zipfile)
        _analyze_zip(path, sniffed)
        return sniffed
    if _legacy_magic(path):
        _analyze_legacy(path, sniffed)
        return sniffed
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER) and head[8:9] == b"{":
            _analyze_safetensors(path, sniffed, length)
            return sniffed
    if head[:6] == NPY_MAGIC:
        _analyze_npy(path, sniffed)
        return sniffed
    if _is_tar(path):
        _analyze_tar(path, sniffed)
        return sniffed
    if head[:3] == b"\x1f\x8b\x08" and _analyze_gzip(path, sniffed):
        return sniffed
    if _analyze_pickles(path, sniffed):
        return sniffed
    sniffed.why = _why_unknown(head, size)
    return sniffed
