"""Files torch did not write that still reach a loader: safetensors, numpy arrays, gzip, plain pickles.

A plain pickle of any protocol is scanned, text-like ones too: torch.load
unpickles a non-zip file's first pickle before it checks for its magic
number, so whatever such a pickle names runs under ``weights_only=False``.

Files that stand in for a model file are named too: a Git LFS pointer (a
clone made without git-lfs), an HTML or XML page or a text error body (a
download that saved a login or error page under the model's name), and a
safetensors file cut short (how many bytes are missing: its header says).
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
import zlib
from pathlib import Path
from typing import Any, Optional

from harness.check.pickle_scan import scan_all
from harness.check.sniffed import (
    MAX_PICKLE_BYTES,
    Sniffed,
    TensorInfo,
    clip,
    missing_bytes,
    numel,
    scan_stream,
)
from harness.runtime.diagnose import NOT_CHECKPOINT_FIXES, Diagnosis

__all__ = [
    "LFS_VERSIONS",
    "MAX_LFS_POINTER",
    "MAX_SAFETENSORS_HEADER",
    "NPY_MAGIC",
    "analyze_gzip",
    "analyze_lfs_pointer",
    "analyze_npy",
    "analyze_page",
    "analyze_pickles",
    "analyze_safetensors",
    "analyze_safetensors_cut",
    "scan_npy",
    "text_page",
]


#: safetensors refuses headers over 100 MB; so does the sniffer.
MAX_SAFETENSORS_HEADER = 100_000_000


_SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "I16": ("int16", 2),
    "U16": ("uint16", 2), "F16": ("float16", 2), "BF16": ("bfloat16", 2), "I32": ("int32", 4),
    "U32": ("uint32", 4), "F32": ("float32", 4), "F64": ("float64", 8), "I64": ("int64", 8),
    "U64": ("uint64", 8), "C64": ("complex64", 8), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
}


def analyze_safetensors(path: Path, sniffed: Sniffed, length: int) -> None:
    """Check the safetensors header (`length` bytes of JSON) against the file's data section."""
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
        sniffed.problems.append(f"the header is not valid JSON: {clip(str(e))}")
        return
    if not isinstance(header, dict):
        sniffed.problems.append("the header is not a JSON object")
        return
    data_size = sniffed.size - 8 - length
    spans: list[tuple[int, int]] = []  # each tensor's [begin, end) in the data section
    for name, entry in header.items():
        if name == "__metadata__":
            if isinstance(entry, dict):
                sniffed.notes.append(f"metadata: {clip(json.dumps(entry), 160)}")
            continue
        if not isinstance(entry, dict):
            sniffed.problems.append(f"tensor {name!r}: its header entry is not an object")
            continue
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            sniffed.problems.append(f"tensor {name!r}: shape {clip(repr(shape), 60)} is not a list of sizes")
            continue
        known = _SAFETENSORS_DTYPES.get(dtype) if isinstance(dtype, str) else None
        sniffed.tensors.append(TensorInfo(name, known[0] if known else str(dtype), shape, None))
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            sniffed.problems.append(f"tensor {name!r}: data_offsets {clip(repr(offsets), 60)} is not [begin, end]")
            continue
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            sniffed.problems.append(f"tensor {name!r}: bytes {begin}..{end} lie outside the {data_size}-byte data section")
        elif known is None:
            sniffed.notes.append(f"tensor {name!r}: dtype {dtype!r} is unknown to check, so its size was not verified")
        elif end - begin != numel(tuple(shape)) * known[1]:
            sniffed.problems.append(
                f"tensor {name!r}: shape {shape} of {dtype} needs {numel(tuple(shape)) * known[1]} bytes but its offsets span {end - begin}"
            )
        spans.append((begin, end))
    spans.sort()
    tiled = bool(spans) and spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    extent = spans[-1][1] if tiled else 0
    if extent > data_size:
        # A whole header whose tensors tile the data section, as safetensors
        # writes them, says where the data ends: the file stops short of it.
        missing = extent - data_size
        sniffed.diagnosis = Diagnosis(
            "corrupt_file",
            f"the safetensors file is truncated: its header places tensor data up to byte {8 + length + extent}, "
            f"but the file ends at byte {sniffed.size}: {missing_bytes(missing)}",
            NOT_CHECKPOINT_FIXES["corrupt_file"],
        )


def analyze_safetensors_cut(path: Path, sniffed: Sniffed, length: int) -> None:
    """A safetensors file that ends inside its own `length`-byte JSON header: cut short."""
    sniffed.format, sniffed.harness_format = "safetensors", "safetensors"
    sniffed.why = "an 8-byte header length followed by a JSON header, which the file ends inside"
    have = max(0, sniffed.size - 8)
    sniffed.problems.append(f"the header declares {length} bytes of JSON but the file holds {have} after the length (truncated)")
    sniffed.diagnosis = Diagnosis(
        "corrupt_file",
        f"the safetensors file is truncated inside its header: at least {missing_bytes(length - have)} "
        "(the rest of the header, and the tensor data after it)",
        NOT_CHECKPOINT_FIXES["corrupt_file"],
    )


NPY_MAGIC = b"\x93NUMPY"


def scan_npy(data: bytes, where: str, sniffed: Sniffed) -> Optional[dict[str, Any]]:
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
        scan_stream(data[start + length:], f"{where} (object array pickle at byte {start + length})", sniffed)
    return header


def analyze_npy(path: Path, sniffed: Sniffed) -> None:
    """Read a numpy .npy file's header; an object array's pickle is scanned."""
    sniffed.format = "numpy"
    sniffed.why = "an .npy header (numpy.save), not a torch file"
    with open(path, "rb") as fh:
        data = fh.read(MAX_PICKLE_BYTES)
    header = scan_npy(data, "the array", sniffed)
    if header is not None:
        sniffed.content = f"array {header.get('descr')!r} of shape {header.get('shape')!r}"


def analyze_gzip(path: Path, sniffed: Sniffed) -> bool:
    """A gzip stream whose content is pickles: scanned (a user who decompresses it would load them)."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_PICKLE_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    found, error = scan_all(io.BytesIO(data))
    partial = error is not None and error.partial is not None
    if not found and not partial:
        return False
    for i, facts in enumerate(found):
        sniffed.add_pickle(facts, "the decompressed pickle" if i == 0 else f"decompressed pickle {i + 1}")
    if error is not None and partial:
        sniffed.add_scan_error(error, "the decompressed pickle")
    sniffed.why = "a gzip stream holding a pickle: decompress it first (torch.load does not)"
    return True


def analyze_pickles(path: Path, sniffed: Sniffed) -> bool:
    """A file of plain pickles (any protocol, text-like ones too); False if its bytes do not start one.

    torch.load unpickles a non-zip file's first pickle before it checks for
    its magic number, so whatever a plain pickle names runs under
    ``weights_only=False``, whatever the file looks like.
    """
    with open(path, "rb") as fh:  # the scan stops at the first byte that is no opcode: cheap on any file
        found, error = scan_all(fh)
    partial = error.partial if error is not None else None
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


# -- files in place of a model file: a Git LFS pointer, a web page ---------------

#: The first line of a Git LFS pointer (git-lfs docs/spec.md; "hawser" was its name before 1.0).
LFS_VERSIONS = (b"version https://git-lfs.github.com/spec/", b"version https://hawser.github.com/spec/")
#: The spec keeps pointer files under 1024 bytes.
MAX_LFS_POINTER = 1024
#: Markup: '<' (never a pickle opcode) and then what opens an HTML or XML document.
_PAGE = re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:(!doctype\s+html|html\b|head\b|body\b)|(\?xml)|[!?a-zA-Z])", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>([^<]{1,200})</title>", re.IGNORECASE)
_ERROR_CODE = re.compile(r"<Code>([^<]{1,80})</Code>")  # S3 / GCS error bodies


def analyze_lfs_pointer(path: Path, sniffed: Sniffed, head: bytes) -> bool:
    """A Git LFS pointer, the text stub checked out in place of the file; False if the file is none.

    The pointer names the real file: its ``oid sha256:...`` and ``size``.
    """
    if not head.startswith(LFS_VERSIONS) or sniffed.size > MAX_LFS_POINTER:
        return False
    with open(path, "rb") as fh:
        text = fh.read(MAX_LFS_POINTER).decode("utf-8", "replace")
    fields = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    size, oid = fields.get("size", ""), fields.get("oid", "")
    real = ([f"{int(size)} bytes"] if size.isdigit() else []) + ([clip(oid, 80)] if oid else [])
    named = f" (the real file: {', '.join(real)})" if real else ""
    sniffed.content = "Git LFS pointer"
    sniffed.why = f"a Git LFS pointer, not the model file{named}"
    sniffed.diagnosis = Diagnosis(
        "git_lfs_pointer",
        f"the file is a {sniffed.size}-byte Git LFS pointer checked out in place of the model file{named}: "
        "the repository was cloned or pulled without git-lfs",
        NOT_CHECKPOINT_FIXES["git_lfs_pointer"],
    )
    return True


def analyze_page(path: Path, sniffed: Sniffed, head: bytes) -> bool:
    """An HTML or XML page saved under a model's name (a login, error or redirect page); False if the file is none."""
    m = _PAGE.match(head)
    if not m or not _texty(head):
        return False
    with open(path, "rb") as fh:
        text = fh.read(1 << 16).decode("utf-8", "replace")
    kind = "an HTML page" if m.group(1) else "an XML document" if m.group(2) else "an HTML or XML page"
    hints = []
    title = _TITLE.search(text)
    if title and title.group(1).strip():
        hints.append(f"titled {clip(title.group(1), 60)!r}")
    code = _ERROR_CODE.search(text)
    if code:
        hints.append(f"error code {clip(code.group(1), 40)!r}")
    hints.append(f"it starts with {clip(text, 40)!r}")
    sniffed.content = kind.split(" ", 1)[1]
    sniffed.why = f"{kind}, not a model file ({'; '.join(hints)})"
    sniffed.diagnosis = text_page(f"{kind} (a login, error or redirect page that a download saved under the model's name)")
    return True


def text_page(what: str) -> Diagnosis:
    """The diagnosis of a page of text or markup in place of a model file: `what` it is."""
    return Diagnosis("html_not_checkpoint", f"the file is {what}, not a checkpoint", NOT_CHECKPOINT_FIXES["html_not_checkpoint"])


def _texty(head: bytes) -> bool:
    """Whether the first bytes read as text: printable ASCII, whitespace, or UTF-8 beyond ASCII."""
    return all(b >= 0x20 or b in b"\t\r\n" for b in head) and 0x7F not in head
