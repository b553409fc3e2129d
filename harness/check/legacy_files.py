"""torch's pre-1.6 formats: the legacy pickle stream and the pre-0.4 tar archive.

The legacy stream is five pickles (magic number, protocol version, system
info, the object, the storage keys) and then each storage's bytes; every
one of the pickles is scanned, and so is anything after the storage data.
torch.load tries any non-zip file as a tar first, so a tar's members are
scanned too, stepping over storage bytes by the layout torch wrote.
"""

from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path
from typing import IO, Any, Optional

from harness.check.pickle_scan import (
    STORAGE_DTYPES,
    Global,
    PickleFacts,
    PickleScanError,
    scan,
    scan_all,
)
from harness.check.sniffed import (
    MAX_PICKLE_BYTES,
    Sniffed,
    check_tensors,
    clip,
    count_tags,
    scan_stream,
    tensor_infos,
)
from harness.check.writers import legacy_writer, tar_writer

__all__ = ["LEGACY_MAGIC", "LEGACY_PROTOCOL", "MAX_TAR_MEMBERS", "TAR_MEMBERS", "analyze_legacy", "analyze_tar", "is_tar", "legacy_magic"]


#: ``torch.serialization.MAGIC_NUMBER``: the first pickle of a legacy file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


LEGACY_PROTOCOL = 1001


def legacy_magic(path: Path) -> bool:
    """Whether the file's first pickle is torch's magic number (however long the pickle that builds it)."""
    with open(path, "rb") as fh:
        try:
            facts = scan(fh)
        except PickleScanError:
            return False
    return facts.root == LEGACY_MAGIC


def analyze_legacy(path: Path, sniffed: Sniffed) -> None:
    """Read the legacy stream at `path`: its five pickles, each storage's bytes, and anything after them."""
    sniffed.format = "torch_legacy"
    sniffed.why = "a pickle stream that starts with torch's magic number"
    sniffed.writer = legacy_writer()
    if is_tar(path):
        # torch.load tries a non-zip file as a pre-0.4 tar first, extracting
        # its members to disk: that path bypasses every check made here.
        sniffed.problems.append("the file is also a tar archive, which torch.load would read as the pre-0.4 tar format")
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
        sniffed.tensors = tensor_infos(facts)
        count_tags(sniffed, facts)
        sniffed.listing = "a static scan of the object pickle"
        if facts.kind == "state_dict":
            sniffed.harness_format = "state_dict_legacy"
        check_tensors(sniffed, facts, "the object pickle")
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
    if error is not None and (partial := error.partial) is not None:
        sniffed.add_scan_error(error, f"the bytes after the storage data (at byte {partial.start})")


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


#: Members of torch's pre-0.4 tar checkpoints (torch.serialization.legacy_load).
TAR_MEMBERS = ("sys_info", "pickle", "storages", "tensors")


#: Members read from a tar at most (a tar can declare millions).
MAX_TAR_MEMBERS = 10_000


def is_tar(path: Path) -> bool:
    """Whether Python's tarfile (and so torch's pre-0.4 reader) reads the file at `path` as a tar."""
    try:
        return tarfile.is_tarfile(str(path))
    except Exception:  # a damaged header: tarfile cannot read it, and neither can torch
        return False


def analyze_tar(path: Path, sniffed: Sniffed) -> None:
    """A tar archive: torch.load reads any non-zip file as the pre-0.4 tar format first."""
    names = _scan_tar(path, sniffed)
    with open(path, "rb") as fh:
        head = fh.read(6)
    compressed = head[:3] in (b"\x1f\x8b\x08", b"BZh") or head == b"\xfd7zXZ\x00"  # gzip, bzip2, xz
    if compressed:
        sniffed.why = f"a compressed tar archive (members: {', '.join(names[:4]) or 'none'}); torch.load reads only plain tars"
    elif {"pickle", "storages", "tensors"} <= set(names):
        sniffed.format = "torch_tar"
        sniffed.why = "a tar archive with the members torch.save wrote before 0.4 (storages, tensors, pickle)"
        sniffed.writer = tar_writer()
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
                    scan_stream(data, where, sniffed)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        sniffed.problems.append(f"the tar archive cannot be read: {clip(str(e) or type(e).__name__)}")
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
        sniffed.problems.append(f"{where} is not laid out as torch wrote it: {clip(str(e))}")
        return
    rest, error = scan_all(fh)
    for facts in rest:
        sniffed.add_pickle(facts, f"{where} (at byte {facts.start})")
    if error is not None and (partial := error.partial) is not None:
        sniffed.add_scan_error(error, f"{where} (at byte {partial.start})")

