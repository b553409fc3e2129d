"""What a model file is, read from its bytes alone: format, tensors, device tags.

`sniff` never unpickles, never imports a name the file mentions and never
hands the file to torch. It recognises the containers torch and its
neighbours write and hands each to its reader: `zip_archives` (a
``torch.save`` zip archive, TorchScript, ``torch.export``), `legacy_files`
(the pre-1.6 pickle stream, the pre-0.4 tar), `other_files` (safetensors,
numpy, gzip, plain pickles, and what stands in for a model file: a Git LFS
pointer, a web page). A file that is no model file, or a model file cut
short, gets a `Sniffed.diagnosis` with the fix; `loader_for` names the
loader each container is meant for. The readers scan pickles with
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
    analyze_lfs_pointer,
    analyze_npy,
    analyze_page,
    analyze_pickles,
    analyze_safetensors,
    analyze_safetensors_cut,
    text_page,
)
from harness.check.pickle_scan import PickleScanError, scan
from harness.check.sniffed import Sniffed, clip, missing_bytes
from harness.check.zip_archives import analyze_zip
from harness.runtime.diagnose import NOT_CHECKPOINT_FIXES, Diagnosis

__all__ = ["FILE_FORMATS", "loader_for", "sniff"]

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

#: The call that reads each container, and the loader people reach for
#: instead (torch.load for anything, torch.jit.load for a "model file").
_LOADERS = {
    "torch_zip": "torch.load(f); not torch.jit.load, which reads only TorchScript archives",
    "torch_legacy": "torch.load(f); not torch.jit.load, which reads only TorchScript archives",
    "torchscript": (
        'torch.jit.load(f, map_location="cpu"); not torch.load, which hands a TorchScript archive on to '
        "torch.jit.load with a warning, and from torch 2.6 refuses to with weights_only=True"
    ),
    "exported": "torch.export.load(f)",
    "safetensors": (
        "safetensors.torch.load_file(f), or safetensors.torch.load_model(model, f); not torch.load, which "
        "cannot unpickle it (recent releases hand a path ending in .safetensors on to safetensors)"
    ),
    "torch_tar": "torch.load(f, weights_only=False), only for a file you trust (a pre-0.4 tar checkpoint)",
    "numpy": "numpy.load(f); not torch.load",
}


def loader_for(sniffed: Sniffed) -> str:
    """The loader call for the file `sniffed` found, and the one not to use; "" for a file no loader reads."""
    if sniffed.harness_format == "full_model":
        return ("torch.load(f, weights_only=False), only for a file you trust (a pickled nn.Module); "
                "not torch.jit.load, which reads only TorchScript archives")
    return _LOADERS.get(sniffed.format, "")


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
        sniffed.diagnosis = Diagnosis(
            "corrupt_file", "the file is empty (0 bytes): a download or copy that never wrote it", NOT_CHECKPOINT_FIXES["corrupt_file"],
        )
        return sniffed
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:4] == b"PK\x03\x04":  # torch's own test (_is_zipfile)
        analyze_zip(path, sniffed)
        _zip_truncation(path, sniffed)
        return sniffed
    if legacy_magic(path):
        analyze_legacy(path, sniffed)
        if sniffed.problems:
            _legacy_truncation(path, sniffed)
        return sniffed
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            if length <= size - 8:
                analyze_safetensors(path, sniffed, length)
            else:
                analyze_safetensors_cut(path, sniffed, length)
            return sniffed
    if analyze_lfs_pointer(path, sniffed, head) or analyze_page(path, sniffed, head):
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
    if sniffed.why.startswith("a text file"):
        # Servers answer a failed download with a text body too ("404: Not Found", "Entry not found").
        sniffed.diagnosis = text_page("a text file (often the body of a failed download, saved under the model's name)")
    return sniffed


# -- files cut short -----------------------------------------------------------

#: Where a zip's end-of-central-directory record may start: the last 22
#: bytes, or up to 64 KiB earlier when the archive has a comment.
_EOCD_SPAN = 22 + 0xFFFF


def _zip_truncation(path: Path, sniffed: Sniffed) -> None:
    """A zip Python cannot open whose central directory (written last) is missing: cut short."""
    if not any(p.startswith("truncated or corrupt zip archive") for p in sniffed.problems):
        return
    start = max(0, sniffed.size - _EOCD_SPAN)
    with open(path, "rb") as fh:
        fh.seek(start)
        at = fh.read().rfind(b"PK\x05\x06")
    if at >= 0 and start + at + 22 <= sniffed.size:
        return  # the directory's end record is whole: a damaged archive, not a cut one
    sniffed.diagnosis = Diagnosis(
        "corrupt_file",
        f"the zip archive is truncated: it ends at byte {sniffed.size} without its central directory, which is written last "
        "(the zip format records the archive's size only there, so how much is missing cannot be told)",
        NOT_CHECKPOINT_FIXES["corrupt_file"],
    )


_LEGACY_STAGES = ("the magic number", "the protocol version", "the system info", "the object pickle", "the storage keys")


def _legacy_truncation(path: Path, sniffed: Sniffed) -> None:
    """A legacy stream that ends before its last storage: how many bytes are missing.

    The object pickle declares every storage's size and the key list their
    order, each stored as an 8-byte count and its bytes: the file's full
    size follows from them.
    """
    with open(path, "rb") as fh:
        facts = []
        for stage in _LEGACY_STAGES:
            try:
                facts.append(scan(fh))
            except PickleScanError as e:
                if "exhausted" not in str(e) and fh.tell() < sniffed.size:
                    return  # a damaged pickle, not a cut one
                summary = (f"the legacy torch.save file is truncated: it ends inside {stage}, "
                           "before the storage sizes that would tell how much is missing")
                break
        else:
            need = fh.tell()
            for key in getattr(facts[4].root, "items", []):
                ref = facts[3].storages.get(key) if isinstance(key, str) else None
                if ref is None or ref.nbytes is None:
                    return
                need += 8 + ref.nbytes
            if need <= sniffed.size:
                return
            missing = need - sniffed.size
            summary = (f"the legacy torch.save file is truncated: its storages need {need} bytes, "
                       f"the file has {sniffed.size}: {missing_bytes(missing)}")
    sniffed.diagnosis = Diagnosis("corrupt_file", summary, NOT_CHECKPOINT_FIXES["corrupt_file"])
