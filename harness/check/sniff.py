"""What a model file is, read from its bytes alone: format, tensors, device tags.

`sniff` never unpickles, never imports a name the file mentions and never
hands the file to torch. It recognises the containers torch and its
neighbours write and hands each to its reader: `zip_archives` (a
``torch.save`` zip archive, TorchScript, ``torch.export``), `legacy_files`
(the pre-1.6 pickle stream, the pre-0.4 tar), `other_files` (safetensors,
numpy, gzip, plain pickles). The readers scan pickles with
`harness.check.pickle_scan` and JSON headers with `json`, and check that
every storage the file declares is backed by bytes of exactly that size.
A file that fails those checks gets *problems*: ``check`` then
does not hand it to torch in its own process, because some torch versions
trust the declared sizes (torch 2.4 builds a 4 TB tensor over a 16-byte
record, and reading it faults) and the legacy format allocates each
storage at its declared size before reading a byte of it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from harness.check.legacy_files import analyze_legacy, analyze_tar, is_tar, legacy_magic
from harness.check.other_files import (
    MAX_SAFETENSORS_HEADER,
    NPY_MAGIC,
    analyze_gzip,
    analyze_npy,
    analyze_pickles,
    analyze_safetensors,
)
from harness.check.sniffed import Sniffed, clip
from harness.check.zip_archives import analyze_zip

__all__ = ["FILE_FORMATS", "sniff"]

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
        return f"a text file, not a model file (it starts with {clip(text, 40)!r})"
    return f"not a zip archive, a torch legacy pickle or a safetensors file (it starts with bytes {head[:8].hex()})"


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
        analyze_zip(path, sniffed)
        return sniffed
    if legacy_magic(path):
        analyze_legacy(path, sniffed)
        return sniffed
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER) and head[8:9] == b"{":
            analyze_safetensors(path, sniffed, length)
            return sniffed
    if head[:6] == NPY_MAGIC:
        analyze_npy(path, sniffed)
        return sniffed
    if is_tar(path):
        analyze_tar(path, sniffed)
        return sniffed
    if head[:3] == b"\x1f\x8b\x08" and analyze_gzip(path, sniffed):
        return sniffed
    if analyze_pickles(path, sniffed):
        return sniffed
    sniffed.why = _why_unknown(head, size)
    return sniffed
