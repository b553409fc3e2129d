"""How the saved file reaches ``torch.load`` (`LoadOptions.source`), made for one load.

People hand ``torch.load`` more than a str path: a ``pathlib.Path``, an open
file, ``io.BytesIO``, a stream that cannot seek (a pipe, a socket, an HTTP
body), a path with non-ASCII characters; and, by mistake, something that is
not the checkpoint: the file gzip-compressed, the Git LFS pointer a clone
without LFS leaves in its place, the HTML error page a failed download
saves, a truncated copy. `opened` makes that object from the saved file,
hands it over in a with-block, and cleans up after it: what it opened is
closed and its temporary files are removed. Two forms apply the fix a
diagnosis offers (``stream-buffered``, ``gzip-decompressed``), so the fix is
proven exact like any other load.

Before handing the object over, `opened` reads back, through the object,
what the loader can read, and checks that it stands for the saved file the
way the form says (the same bytes, their gzip, their first half, a pointer
naming their digest and size). A form that silently served another file
raises `SourceMismatch`, which no rule diagnoses, so the cell is a
regression instead of a pass.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Callable, Optional

from harness.runtime.errors import InputError, Unsupported
from harness.runtime.load_options import SOURCES

__all__ = ["NONASCII_NAME", "SourceMismatch", "Unseekable", "html_page", "lfs_pointer", "opened", "served_bytes"]

#: The file name of the ``nonascii`` copy: accented Latin and CJK, as in real model folders.
NONASCII_NAME = "modèle-模型.pt"
_LFS_VERSION = "version https://git-lfs.github.com/spec/v1"


class SourceMismatch(RuntimeError):
    """A source form handed the loader something other than what it stands for: a harness bug."""


class Unseekable(io.RawIOBase):
    """Reads `inner` front to back and can neither seek nor tell, like a pipe or an HTTP body."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self.inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("seek")

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")


def lfs_pointer(data: bytes) -> str:
    """The Git LFS pointer file that stands for `data` in a clone made without ``git lfs``."""
    return f"{_LFS_VERSION}\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"


def html_page(name: str) -> str:
    """A small HTML error page, as a failed download saves under the model's name."""
    return (
        "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        f"<body><h1>Not Found</h1><p>The requested URL /models/{name} was not found on this server.</p></body></html>\n"
    )


def served_bytes(obj: Any) -> bytes:
    """The bytes a loader can read through `obj`, read without moving it.

    A path is read from disk; a buffer by its value; a stream through what it
    wraps; an open file from where it stands, then put back there.
    """
    if isinstance(obj, (str, PurePath)):
        return Path(obj).read_bytes()
    if isinstance(obj, io.BytesIO):
        return obj.getvalue()
    if isinstance(obj, Unseekable):
        return served_bytes(obj.inner)
    where = obj.tell()
    try:
        return obj.read()
    finally:
        obj.seek(where)


def _copy(path: Path, scratch: Path, name: str, data: bytes) -> str:
    target = scratch / name
    target.write_bytes(data)  # bytes, never text: no newline translation on any platform
    return str(target)


def _nonascii(path: Path, scratch: Path, stack: contextlib.ExitStack) -> Any:
    target = scratch / NONASCII_NAME
    try:
        os.fsencode(str(target))
    except UnicodeEncodeError:
        msg = f"this env's file system encoding ({sys.getfilesystemencoding()}) cannot name {NONASCII_NAME!r}"
        raise Unsupported(msg) from None
    shutil.copyfile(str(path), str(target))
    return str(target)


def _gzip(path: Path, scratch: Path, stack: contextlib.ExitStack) -> Any:
    # mtime=0: the same file gives the same bytes on every run.
    return _copy(path, scratch, path.name + ".gz", gzip.compress(path.read_bytes(), mtime=0))


def _gzip_decompressed(path: Path, scratch: Path, stack: contextlib.ExitStack) -> Any:
    # The fix gzip_compressed offers, as a user types it: decompress, then load the bytes.
    with gzip.open(_gzip(path, scratch, stack), "rb") as f:
        return io.BytesIO(f.read())


def _stream(path: Path, scratch: Path, stack: contextlib.ExitStack) -> Any:
    return Unseekable(stack.enter_context(open(path, "rb")))  # noqa: SIM115 - the stack closes it after the load


def _stream_buffered(path: Path, scratch: Path, stack: contextlib.ExitStack) -> Any:
    # The fix stream_not_seekable offers: read the stream whole into a buffer that can seek.
    return io.BytesIO(_stream(path, scratch, stack).read())


def _is_lfs_pointer_of(seen: bytes, data: bytes) -> bool:
    lines = seen.decode("ascii", "replace").splitlines()
    want = [_LFS_VERSION, f"oid sha256:{hashlib.sha256(data).hexdigest()}", f"size {len(data)}"]
    return lines == want and seen.endswith(b"\n")


@dataclass(frozen=True)
class _Form:
    make: Callable[[Path, Path, contextlib.ExitStack], Any]
    #: whether the object is of the kind the form names (a Path, an open file, ...)
    kind: Callable[[Any], bool]
    #: whether the bytes read through it (first) stand for the saved bytes (second) as the form says
    serves: Callable[[bytes, bytes], bool]
    what: str  # what it must serve, for the mismatch message


def _same(seen: bytes, data: bytes) -> bool:
    return seen == data


def _buffer(obj: Any) -> bool:
    return isinstance(obj, io.BytesIO)


def _str_path(obj: Any) -> bool:
    return isinstance(obj, str)


_FORMS: dict[str, _Form] = {
    "pathlib": _Form(lambda p, s, st: Path(p), lambda o: isinstance(o, PurePath), _same, "the saved bytes"),
    "file": _Form(
        lambda p, s, st: st.enter_context(open(p, "rb")),  # noqa: SIM115 - the stack closes it after the load
        lambda o: isinstance(o, io.BufferedReader) and o.tell() == 0, _same, "the saved bytes",
    ),
    "bytesio": _Form(lambda p, s, st: io.BytesIO(p.read_bytes()), _buffer, _same, "the saved bytes"),
    "stream": _Form(_stream, lambda o: isinstance(o, io.RawIOBase) and not o.seekable(), _same, "the saved bytes"),
    "stream-buffered": _Form(_stream_buffered, _buffer, _same, "the saved bytes"),
    "nonascii": _Form(_nonascii, lambda o: isinstance(o, str) and not o.isascii(), _same, "the saved bytes"),
    "gzip": _Form(
        _gzip, _str_path, lambda seen, data: seen[:2] == b"\x1f\x8b" and gzip.decompress(seen) == data,
        "the saved bytes, gzip-compressed",
    ),
    "gzip-decompressed": _Form(_gzip_decompressed, _buffer, _same, "the saved bytes"),
    "lfs-pointer": _Form(
        lambda p, s, st: _copy(p, s, p.name, lfs_pointer(p.read_bytes()).encode()), _str_path, _is_lfs_pointer_of,
        "a Git LFS pointer naming the saved bytes' sha256 and size",
    ),
    "html-page": _Form(
        lambda p, s, st: _copy(p, s, p.name, html_page(p.name).encode()), _str_path,
        lambda seen, data: seen.startswith(b"<!DOCTYPE html>") and seen.rstrip().endswith(b"</html>") and seen != data,
        "an HTML page",
    ),
    "truncated": _Form(
        lambda p, s, st: _copy(p, s, p.name, p.read_bytes()[: p.stat().st_size // 2]), _str_path,
        lambda seen, data: len(seen) == len(data) // 2 and data.startswith(seen),
        "the first half of the saved bytes",
    ),
}
assert set(_FORMS) == set(SOURCES), "file_sources and load_options.SOURCES name different forms"


@contextlib.contextmanager
def opened(path: Path, source: Optional[str]) -> Iterator[Any]:
    """What ``torch.load`` is given for `source`, made from the saved file at `path`.

    None gives the path as a str (what the formats always did). Temporary
    files are removed and opened files closed when the block ends.
    Raises `SourceMismatch` before the load when the object does not serve
    what the form stands for, `Unsupported` when this env cannot make it.
    """
    if source is None:
        yield str(path)
        return
    form = _FORMS.get(source)
    if form is None:
        msg = f"source={source!r} is not one of {', '.join(SOURCES)}"
        raise InputError(msg)
    path = Path(path)
    scratch = Path(tempfile.mkdtemp(prefix="torch-roundtrip-source-"))
    try:
        with contextlib.ExitStack() as stack:
            obj = form.make(path, scratch, stack)
            if not form.kind(obj):
                msg = f"source={source} made a {type(obj).__name__}, not what the form names ({SOURCES[source]}): a harness bug"
                raise SourceMismatch(msg)
            seen, data = served_bytes(obj), path.read_bytes()
            if not form.serves(seen, data):
                msg = (
                    f"source={source} would hand torch.load {len(seen)} bytes that are not {form.what} "
                    f"({len(data)} bytes in {path.name}): a harness bug"
                )
                raise SourceMismatch(msg)
            yield obj
    finally:
        # ignore_errors: a file still mapped by mmap=True cannot be removed on Windows.
        shutil.rmtree(str(scratch), ignore_errors=True)
