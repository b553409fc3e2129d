"""Where artifacts and results live on disk, and how they are written safely.

Layout (DESIGN.md)::

    ARTIFACTS/<label>/env.json                      source fingerprint
    ARTIFACTS/<label>/<case>/reference.bin          distinct tensor bytes
    ARTIFACTS/<label>/<case>/<format>/manifest.json + the format's files
    RESULTS/<target-label>.jsonl                     one line per cell
    RESULTS/<target-label>.env.json                  fingerprints of target and sources

Every file is written atomically (temp file, fsync, rename); an artifact
directory appears under its final name only once complete. Result lines are
appended whole by one writer per target, which holds a lock, so a killed
phase leaves at most one partial line, dropped on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from harness.errors import InputError

__all__ = [
    "ArtifactRef",
    "ResultsWriter",
    "discover_artifacts",
    "read_results",
    "require_dir",
    "write_json",
    "write_text",
]


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write: temp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Atomic text write."""
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
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    """Move a completed temp directory into place, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


class ArtifactRef:
    """One artifact on disk: source label, case, format and its directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.format = directory.name
        self.case = directory.parent.name
        self.source = directory.parent.parent.name

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def reference_path(self) -> Path:
        return self.directory.parent / "reference.bin"

    def __repr__(self) -> str:
        return f"ArtifactRef({self.source}/{self.case}/{self.format})"


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


def discover_artifacts(root: Path) -> list:
    """Every complete artifact under `root` (those with a manifest), sorted."""
    root = require_dir(root, "--artifacts", f" (run `python -m harness save --out {root}` first)")
    found = [ArtifactRef(p.parent) for p in sorted(root.glob("*/*/*/manifest.json")) if not p.parent.name.startswith(".")]
    return found


def _truncate_partial_line(path: Path) -> None:
    """Drop a trailing line that a killed writer left without its newline."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos = size - 1
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(pos - step + nl + 1)
                return
            pos -= step
        f.truncate(0)


def read_results(path: Path) -> Iterator[dict]:
    """Result lines of one file; a torn last line (a killed writer) is ignored."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                # Our writer ends every line; without its newline the last
                # line is torn unless it still parses (a hand-edited file).
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    pass
                return
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                msg = f"{path}:{number}: not a JSON result line"
                raise InputError(msg) from None


class ResultsWriter:
    """The single appender of RESULTS/<target>.jsonl.

    Holds an exclusive lock for its lifetime: a second load of the same
    target env (``nox -j``, a stray re-run) fails at once instead of
    interleaving lines.
    """

    def __init__(self, results_dir: Path, target: str) -> None:
        self.dir = Path(results_dir)
        self.target = target
        self.path = self.dir / f"{target}.jsonl"
        self._lock_file: Optional[Any] = None
        self._fd: Optional[int] = None

    def __enter__(self) -> ResultsWriter:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            msg = f"--results {str(self.dir)!r} cannot be created: {e.strerror}"
            raise InputError(msg) from None
        if not self.dir.is_dir():
            msg = f"--results {str(self.dir)!r} is not a directory"
            raise InputError(msg)
        self._lock_file = open(self.dir / f".{self.target}.lock", "w")
        try:
            import fcntl

            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer assumed
            pass
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                msg = f"another load is writing {self.path} right now; wait for it or use another --results"
                raise InputError(msg) from None
            raise
        if self.path.exists():
            _truncate_partial_line(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def recorded(self) -> dict:
        """key -> (artifact id, harness build) of every cell already in the file."""
        from harness.results import line_key

        done: dict = {}
        if self.path.exists():
            for d in read_results(self.path):
                done[line_key(d)] = (d.get("artifact"), d.get("harness"))
        return done

    def write(self, result: Any) -> None:
        """Append one result line with a single write(2), then fsync."""
        assert self._fd is not None
        data = (json.dumps(result.to_dict(), sort_keys=True) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
