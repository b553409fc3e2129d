"""Generic file I/O: atomic writes, JSON reads, folder checks.

Nothing here knows the harness's layout (that is `store`). Writes are
atomic and durable: the bytes go to a temp file beside the target, which is
flushed and fsynced, renamed over the target, and then the folder itself is
fsynced so the rename survives a power cut. A reader never sees a
half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.runtime.errors import InputError

__all__ = ["fsync_dir", "read_json", "replace_dir", "require_dir", "write_bytes", "write_json", "write_text"]


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows, or a folder we may list but not open
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the rename stands
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic, durable write: temp file, fsync, rename, fsync of the folder.

    Raises InputError (one line) when `path` is a folder or its parent
    cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        msg = f"{str(path)!r} is a directory, not a file to write"
        raise InputError(msg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        msg = f"cannot create {str(path.parent)!r}: {e.strerror}"
        raise InputError(msg) from None
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    """Atomic, durable UTF-8 text write (see `write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Atomic, durable JSON write, keys sorted, one space of indent (see `write_bytes`)."""
    write_text(path, json.dumps(data, sort_keys=True, indent=1) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's content; InputError naming the file when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        msg = f"{path}: not valid JSON ({e.msg} at line {e.lineno})"
        raise InputError(msg) from None
    except (OSError, UnicodeDecodeError) as e:
        msg = f"{path}: cannot be read ({e})"
        raise InputError(msg) from None


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed temp folder into place, replacing an older one, durably.

    The caller has written and closed every file in `tmp`; this fsyncs them
    before the rename, so the folder never appears under `final` with
    contents still in the page cache only.
    """
    for path in Path(tmp).rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    if final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def require_dir(path: Path, option: str, missing_hint: str = "", what: str = "") -> Path:
    """`path` as a Path; InputError naming `option` when it is missing or not a folder."""
    path = Path(path)
    if not path.exists():
        msg = f"{option} {str(path)!r} does not exist{missing_hint}"
        raise InputError(msg)
    if not path.is_dir():
        msg = f"{option} {str(path)!r} is not a directory{what}"
        raise InputError(msg)
    return path
