"""Zip archives torch writes: ``torch.save`` (1.6+), TorchScript and ``torch.export``.

Every pickle-like record is scanned, whatever its name; a record Python's
zipfile refuses is read the lenient way torch's reader (miniz) reads it;
every storage the pickle declares must be a stored record of exactly its
size, inside the file.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Optional, cast

from harness.check.other_files import scan_npy
from harness.check.pickle_scan import PickleFacts
from harness.check.sniffed import (
    MAX_PICKLE_BYTES,
    Sniffed,
    TensorInfo,
    check_tensors,
    clip,
    count_tags,
    scan_stream,
    tensor_infos,
)
from harness.check.torchscript_code import escapes
from harness.check.writers import zip_writer

__all__ = ["analyze_zip"]


def _read_pickle(zf: zipfile.ZipFile, name: str, sniffed: Sniffed, *, guessed: bool = False) -> Optional[PickleFacts]:
    sniffed.records_scanned.add(name)
    data = _read_capped(zf, name, sniffed)
    if data is None:
        return None
    return scan_stream(data, name, sniffed, guessed=guessed)


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
                scan_npy(data, name, sniffed)


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


def _read_data_pkl(zf: zipfile.ZipFile, raw: IO[bytes], total: int, prefix: str, sniffed: Sniffed, label: str = "") -> Optional[PickleFacts]:
    """Scan an archive's data.pkl (torch.save and TorchScript alike), check its storages and tensors; its facts."""
    pkl = f"{prefix}data.pkl"
    facts = _read_pickle(zf, pkl, sniffed)
    if facts is not None:
        _check_storages(zf, raw, total, prefix, facts, sniffed, label + pkl)
        check_tensors(sniffed, facts, label + pkl)
    return facts


def _analyze_torch_zip(zf: zipfile.ZipFile, raw: IO[bytes], total: int, sniffed: Sniffed, label: str = "") -> Optional[PickleFacts]:
    """Scan a torch.save archive's data.pkl and check its storages; the pickle's facts."""
    names = zf.namelist()
    prefix = _zip_prefix(names)
    pkl = f"{prefix}data.pkl"
    if pkl not in names:
        sniffed.problems.append(f"{label}the archive has no {pkl} record (it holds {len(names)} records)")
        return None
    facts = _read_data_pkl(zf, raw, total, prefix, sniffed, label)
    if facts is None:
        return None
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
        return scan_stream(data, label, sniffed)
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except Exception as e:  # BadZipFile, NotImplementedError, ValueError...: a damaged archive
        sniffed.problems.append(f"{label} is a damaged zip archive: {clip(str(e))}")
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
        sniffed.problems.append(f"record {name} cannot be read: {type(e).__name__}: {clip(str(e))}")
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
    dtype = _EXPORT_DTYPES.get(known, known) if known else f"ScalarType {clip(repr(code), 20)}"
    sizes = meta.get("sizes")
    shape = [s.get("as_int") if isinstance(s, dict) else None for s in sizes] if isinstance(sizes, list) else None
    device = cast("dict[str, Any]", meta.get("device")) if isinstance(meta.get("device"), dict) else {}
    kind, index = device.get("type"), device.get("index")
    tag = None if not isinstance(kind, str) else (kind if index is None else f"{kind}:{clip(str(index), 12)}")
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
            sniffed.problems.append(f"{name} is not valid JSON: {clip(str(e))}")
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
            sniffed.tensors.extend(tensor_infos(facts))
            count_tags(sniffed, facts)
    sniffed.notes.append("torch.export.load unpickles parts of the archive, with weights_only=False where weights_only=True fails")


def _analyze_torchscript(zf: zipfile.ZipFile, raw: IO[bytes], total: int, names: list[str], sniffed: Sniffed) -> None:
    sniffed.format, sniffed.harness_format = "torchscript", "torchscript"
    prefix = _zip_prefix(names)
    facts = None
    if f"{prefix}data.pkl" in names:
        facts = _read_data_pkl(zf, raw, total, prefix, sniffed)
    else:
        sniffed.problems.append(f"the archive has no {prefix}data.pkl record")
    if facts is not None:
        sniffed.tensors = tensor_infos(facts)
        count_tags(sniffed, facts)
        sniffed.content = "TorchScript " + facts.kind
    for name in names:
        if name.rsplit("/", 1)[-1] == "constants.pkl":
            constants = _read_pickle(zf, name, sniffed)
            if constants is not None and constants.tensors:
                sniffed.tensors.extend(tensor_infos(constants, prefix="constants."))
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


def analyze_zip(path: Path, sniffed: Sniffed) -> None:
    """Read the zip archive at `path` as the torch archive its records make, then scan every other pickle in it."""
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
        sniffed.problems.append(f"truncated or corrupt zip archive: {clip(str(e) or type(e).__name__)}")
        return
    with zf, open(path, "rb") as raw:
        names = zf.namelist()
        if len(set(names)) != len(names):
            sniffed.problems.append("the archive holds several records of the same name (readers disagree on which counts)")
        _analyze_zip_records(zf, raw, names, sniffed)
        _scan_other_records(zf, names, sniffed)
        if sniffed.format in ("torch_zip", "torchscript", "exported"):
            sniffed.writer = zip_writer(zf, sniffed.format)


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
        sniffed.tensors = tensor_infos(facts)
        count_tags(sniffed, facts)
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
