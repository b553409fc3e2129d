"""Where artifacts and results live on disk, and how they are written safely.

Layout (docs/ARCHITECTURE.md)::

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Optional

from harness.runtime.errors import InputError
from harness.runtime.fileio import require_dir

if TYPE_CHECKING:
    from harness.runtime.results import CellResult

__all__ = ["ArtifactRef", "ResultLines", "ResultsWriter", "discover_artifacts", "read_result_lines", "read_results"]


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


def discover_artifacts(root: Path) -> list[ArtifactRef]:
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


@dataclass(frozen=True)
class ResultLines:
    """The lines of one ``<target>.jsonl``: ``(line number, object)`` pairs, in file order.

    `torn` says a last line without its newline that does not parse was
    dropped: a load killed mid-write (`ResultsWriter` appends whole lines);
    that cell runs again on the next load.
    """

    path: Path
    lines: list[tuple[int, Any]]
    torn: bool = False


def _parse_all(rows: list[str]) -> Optional[list[Any]]:
    # One json.loads over the whole file is several times faster than one
    # call per line; on a bad line the caller goes line by line to name it.
    try:
        parsed: list[Any] = json.loads("[" + ",".join(r if r.strip() else "null" for r in rows) + "]")
    except json.JSONDecodeError:
        return None
    return parsed


def read_result_lines(path: Path) -> ResultLines:
    """Every line of a results file, parsed; the one reader of result lines.

    Blank lines are skipped. A last line without its newline is kept when it
    parses (a hand-edited file) and dropped as torn when it does not. Any
    other line that is not JSON, or a file that cannot be read, is an
    InputError naming the file and line. Lines are not validated here
    (`harness.runtime.results.validate_line` does that for readers of
    others' files).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        msg = f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"
        raise InputError(msg) from None
    except OSError as e:
        msg = f"{path}: cannot be read ({e.strerror})"
        raise InputError(msg) from None
    rows = text.split("\n")
    parsed = _parse_all(rows)
    lines: list[tuple[int, Any]] = []
    for number, raw in enumerate(rows, 1):
        if not raw.strip():
            continue
        if parsed is not None:
            lines.append((number, parsed[number - 1]))
            continue
        try:
            lines.append((number, json.loads(raw)))
        except json.JSONDecodeError as e:
            if number == len(rows):  # no newline after it: torn by a killed writer
                return ResultLines(path, lines, torn=True)
            msg = f"{path}:{number}: not a JSON result line ({e.msg} at column {e.colno})"
            raise InputError(msg) from None
    return ResultLines(path, lines)


def read_results(path: Path) -> Iterator[Any]:
    """The result lines of one file as objects (see `read_result_lines`)."""
    for _, line in read_result_lines(path).lines:
        yield line


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
        self._lock_file: Optional[IO[str]] = None
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

    def recorded(self) -> dict[str, tuple[Optional[str], Optional[str]]]:
        """key -> (artifact id, harness build) of every cell already in the file."""
        from harness.runtime.results import line_key

        done: dict[str, tuple[Optional[str], Optional[str]]] = {}
        if self.path.exists():
            for d in read_results(self.path):
                done[line_key(d)] = (d.get("artifact"), d.get("harness"))
        return done

    def write(self, result: CellResult) -> None:
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
