"""``check DIR... --out OUT``: a fleet of checkpoints checked in parallel, resumably.

The person who upgrades torch for a team asks which of the team's stored
checkpoints break, and what the fix is for each. A fleet run answers for
every file under the given folders (`harness.check.walk`):

- **in parallel**: a few check workers (`harness.check.worker`) are forked
  from one fork server that imported torch once
  (`harness.runtime.forkserver`); each takes the next file as soon as it is
  free;
- **as it goes**: each file's `FleetLine` is appended to ``OUT/check.jsonl``
  the moment its check ends, so a killed run loses at most the files in
  flight;
- **resumably**: run again, a file whose line has the same size, mtime,
  check code and ``--trust`` is not checked again; its line is kept (the
  file is rewritten first without stale or torn lines, so each file has one
  line). A file that changed is checked again; one that is gone loses its line;
- **whatever the files do**: a file that kills or hangs its worker is a
  ``crashed`` finding (`crash_report`) and a new worker, forked in
  milliseconds, takes the next file; a file that vanished, cannot be read,
  is not a regular file or is a symlink out of the tree is a finding too.
  Nothing runs a file's code without ``--trust``.

At the end it writes the fleet report (`harness.check.fleet_report`):
``OUT/index.html`` and ``OUT/summary.md``, over every line in
``OUT/check.jsonl`` (other envs' lines included, so a merged folder shows
the file x env grid).
"""

from __future__ import annotations

import collections
import hashlib
import os
import selectors
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.check.fleet_record import (
    FLEET_FILE,
    TENSORS_KEPT,
    FleetLine,
    crash_report,
    file_problem_report,
    latest,
    read_lines,
)
from harness.check.walk import FleetFile, walk
from harness.runtime.child import Child, ChildDied, ChildGarbled, ChildTimeout
from harness.runtime.defaults import DEFAULT_TIMEOUT, STARTUP_TIMEOUT
from harness.runtime.errors import InputError
from harness.runtime.forkserver import ForkServer

__all__ = ["KILL_AFTER_ENV", "FleetOptions", "FleetRun", "checker_id", "run_fleet"]

#: Test hook: after writing this many lines, the fleet process kills itself
#: with SIGKILL (a deterministic "killed part-way" for the resume test).
KILL_AFTER_ENV = "TORCH_ROUNDTRIP_FLEET_KILL_AFTER"


@dataclass(frozen=True)
class FleetOptions:
    """What a fleet run checks, and how (the ``check DIR... --out OUT`` options)."""

    paths: tuple[str, ...]
    out: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    workers: int = 0  # 0: one per CPU
    trust: bool = False
    timeout: float = DEFAULT_TIMEOUT
    shard: tuple[int, int] = (1, 1)
    label: Optional[str] = None
    progress: bool = True


@dataclass
class FleetRun:
    """What a fleet run did: every line now in the folder, and how many this run checked."""

    label: str
    lines: list[FleetLine]
    checked: int = 0
    reused: int = 0
    dropped: int = 0
    workers: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    restarts: int = 0
    interrupted: bool = False
    walked: list[str] = field(default_factory=list)

    @property
    def own(self) -> list[FleetLine]:
        """The lines of this run's env."""
        return [line for line in self.lines if line.env == self.label]

    @property
    def findings(self) -> int:
        return sum(1 for line in self.own if line.findings)


def checker_id() -> str:
    """The check code that writes a line: the build id plus a digest of `harness.check`."""
    from harness import build_id

    h = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    # The report's renderer does not change what a line says.
    for path in sorted(p for p in folder.glob("*.py") if p.name != "fleet_report.py"):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return f"{build_id()}/{h.hexdigest()[:10]}"


# -- the workers -------------------------------------------------------------


class _Slot:
    """One check worker and the file it is checking."""

    def __init__(self) -> None:
        self.child: Optional[Child] = None
        self.job: Optional[tuple[FleetFile, int, int]] = None  # the file, its size and mtime_ns when sent
        self.started = 0.0
        self.hello: dict[str, Any] = {}


class _Pool:
    """Check workers forked from one fork server (or started afresh where this OS cannot fork)."""

    def __init__(self, count: int, server: Optional[ForkServer] = None) -> None:
        from harness.check.worker import PRELOAD
        from harness.runtime.forkserver import fork_supported

        self.own_server = server is None
        if server is None and fork_supported():
            server = ForkServer(PRELOAD)
        self.server = server
        self.slots = [_Slot() for _ in range(count)]
        self.restarts = 0
        self.selector = selectors.DefaultSelector()
        for slot in self.slots:
            self._spawn(slot)
        for slot in self.slots:
            self._greet(slot)

    def _spawn(self, slot: _Slot) -> None:
        slot.child = Child("harness.check.worker", own_session=True, server=self.server)

    def _greet(self, slot: _Slot) -> None:
        assert slot.child is not None
        try:
            message = slot.child.read(STARTUP_TIMEOUT)
        except (ChildDied, ChildTimeout, ChildGarbled) as e:
            how = slot.child.stop()
            msg = f"a check worker could not start in this env ({type(e).__name__}: {how})"
            raise InputError(msg) from None
        slot.hello = message.get("hello", {})
        assert slot.child.proc.stdout is not None
        self.selector.register(slot.child.proc.stdout, selectors.EVENT_READ, slot)

    def restart(self, slot: _Slot) -> None:
        """Replace a worker that died or hung (its file is already recorded)."""
        self.stop_slot(slot)
        self.restarts += 1
        self._spawn(slot)
        self._greet(slot)

    def stop_slot(self, slot: _Slot) -> str:
        if slot.child is None:
            return ""
        assert slot.child.proc.stdout is not None
        try:
            self.selector.unregister(slot.child.proc.stdout)
        except (KeyError, ValueError):
            pass
        how = slot.child.stop()
        slot.child = None
        return how

    def close(self) -> None:
        for slot in self.slots:
            self.stop_slot(slot)
        self.selector.close()
        if self.server is not None and self.own_server:
            self.server.close()


# -- the run -------------------------------------------------------------------


#: An attempt's error message kept in a fleet line (the diagnosis says what it means).
MESSAGE_KEPT = 600


def _compact(report: dict[str, Any]) -> dict[str, Any]:
    """A report as a fleet line keeps it: tensors cut to `TENSORS_KEPT`, loads that shared a result not repeated.

    A file's 30 load options run as a few distinct loads (`same_as`); the
    others keep their status and diagnosis but not a copy of the error text,
    so a thousand-file fleet's lines stay small.
    """
    tensors = report.get("tensors") or []
    report["tensors_total"] = len(tensors)
    if len(tensors) > TENSORS_KEPT:
        report["tensors"] = tensors[:TENSORS_KEPT]
    for attempt in report.get("attempts") or []:
        error = attempt.get("error")
        if not error:
            continue
        if attempt.get("same_as"):
            attempt["error"] = {"type": error.get("type", "")}
        elif len(error.get("message", "")) > MESSAGE_KEPT:
            attempt["error"] = dict(error, message=error["message"][:MESSAGE_KEPT] + " ...")
    return report


class _Lines:
    """``OUT/check.jsonl``: compacted once, then appended to, a whole line at a time."""

    def __init__(self, path: Path, kept: Sequence[FleetLine]) -> None:
        from harness.runtime.fileio import write_text

        self.path = path
        write_text(path, "".join(line.to_json() + "\n" for line in kept))
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed in close())
        self.written = 0
        kill = os.environ.get(KILL_AFTER_ENV, "")
        self.kill_after = int(kill) if kill.isdigit() else 0

    def add(self, line: FleetLine) -> None:
        self.handle.write(line.to_json() + "\n")
        self.handle.flush()  # in the kernel now: a SIGKILL of this process keeps it
        self.written += 1
        if self.kill_after and self.written >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def run_fleet(options: FleetOptions, server: Optional[ForkServer] = None) -> FleetRun:
    """Check every file of the fleet not already checked, write ``OUT/check.jsonl`` and the fleet report.

    `server`: a running fork server (preloading `harness.check.worker.PRELOAD`)
    to fork the workers from, left running (the bench and tests share one);
    by default the run starts its own and stops it. InputError (one line)
    for a missing path, a bad glob, an ``--out`` that is a file, or workers
    that cannot start.
    """
    from harness.check.fleet_report import write_fleet_report
    from harness.runtime.progress import Progress

    started = time.monotonic()
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        msg = f"--out {out} is a file; a fleet check writes a folder (check.jsonl, index.html, summary.md)"
        raise InputError(msg)
    files = list(walk(options.paths, options.include, options.exclude, shard=options.shard))
    out.mkdir(parents=True, exist_ok=True)
    previous = latest(read_lines(out / FLEET_FILE))
    checker = checker_id()
    count = min(options.workers or os.cpu_count() or 1, max(1, sum(1 for f in files if not f.skip)))
    pool: Optional[_Pool] = None
    label = options.label
    run = FleetRun(label=label or "", lines=[], walked=[f.file for f in files])
    try:
        if label is None:  # the env's own label, which only a worker (with torch) can tell
            t0 = time.monotonic()
            pool = _Pool(count, server)
            run.startup_seconds = time.monotonic() - t0
            label = str(pool.slots[0].hello.get("label", "unknown-env"))
        run.label = label
        by_key = {line.key: line for line in previous}
        walked = {f.file for f in files}
        kept, todo = [], []
        for line in previous:
            if line.env != label:
                kept.append(line)
            elif line.file not in walked and not any(_under(line.file, p) for p in options.paths):
                kept.append(line)  # a file of another fleet in the same folder: not ours to drop
        for f in files:
            old = by_key.get((label, f.file))
            size, mtime = _stat(f.path)
            if old is not None and (old.size, old.mtime_ns, old.checker, old.trust) == (size, mtime, checker, options.trust):
                kept.append(old)
                run.reused += 1
            else:
                todo.append(f)
        run.dropped = sum(
            1 for line in previous
            if line.env == label and line.file not in walked and any(_under(line.file, p) for p in options.paths)
        )
        writer = _Lines(out / FLEET_FILE, kept)
        try:
            progress = Progress("check", len(todo)) if options.progress and todo else None
            fresh = _check_all(todo, options, label, checker, count, pool, server, writer, progress, run)
            pool = None  # _check_all closed it
        finally:
            writer.close()
        run.checked = len(fresh)
        run.lines = latest(kept + fresh)
    except KeyboardInterrupt:
        run.interrupted = True
        run.lines = latest(read_lines(out / FLEET_FILE))
    finally:
        if pool is not None:
            pool.close()
    run.seconds = time.monotonic() - started
    write_fleet_report(out, run.lines)
    return run


def _under(file: str, root: str) -> bool:
    root = root.rstrip("/")
    return file == root or file.startswith(root + "/")


def _check_all(
    todo: list[FleetFile], options: FleetOptions, label: str, checker: str, count: int, pool: Optional[_Pool],
    server: Optional[ForkServer], writer: _Lines, progress: Any, run: FleetRun,
) -> list[FleetLine]:
    """Check `todo` on `count` workers, appending each line as it is made; returns the new lines."""
    fresh: list[FleetLine] = []

    def record(f: FleetFile, size: int, mtime: int, seconds: float, report: dict[str, Any]) -> None:
        line = FleetLine(
            file=f.file, root=f.root, env=label, size=size, mtime_ns=mtime, seconds=round(seconds, 4),
            trust=options.trust, checker=checker, report=_compact(report),
        )
        writer.add(line)
        fresh.append(line)
        if progress is not None:
            progress.advance(outcome=line.verdict)

    queue = collections.deque(todo)
    # Files the walk already knows not to open need no worker.
    for f in [f for f in queue if f.skip]:
        size, mtime = _stat(f.path)
        record(f, size, mtime, 0.0, file_problem_report(f.file, max(size, 0), f.skip))
    queue = collections.deque(f for f in queue if not f.skip)
    if not queue:
        if pool is not None:
            pool.close()
        if progress is not None:
            progress.close()
        return fresh
    if pool is None:
        t0 = time.monotonic()
        pool = _Pool(count, server)
        run.startup_seconds = time.monotonic() - t0
    run.workers = len(pool.slots)
    per_file = 2 * options.timeout + 5.0  # the trusted loads' own budget, and as much for the in-process ones
    try:
        while queue or any(s.job for s in pool.slots):
            for slot in pool.slots:
                while slot.job is None and queue:
                    f = queue.popleft()
                    size, mtime = _stat(f.path)
                    if size < 0:
                        record(f, size, mtime, 0.0, file_problem_report(f.file, 0, "it disappeared before it could be checked", code="file_vanished"))
                        continue
                    assert slot.child is not None
                    slot.job, slot.started = (f, size, mtime), time.monotonic()
                    try:
                        slot.child.send({"path": os.path.abspath(f.path), "trust": options.trust, "timeout": options.timeout})
                    except ChildDied as e:
                        _lost(pool, slot, record, "crash", e.detail)
            busy = [s for s in pool.slots if s.job]
            if not busy:
                continue
            now = time.monotonic()
            wait = max(0.0, min(s.started + per_file for s in busy) - now)
            for key, _ in pool.selector.select(min(wait, 1.0)):
                slot = key.data
                if slot.job is None or slot.child is None:
                    continue
                try:
                    message = slot.child.read(5.0)
                except ChildTimeout:
                    continue  # a partial line: the rest comes, or the file's deadline ends it
                except ChildDied as e:
                    _lost(pool, slot, record, "crash", e.detail)
                    continue
                except ChildGarbled as e:
                    _lost(pool, slot, record, "crash", f"it wrote {e.text!r} on the protocol stream")
                    continue
                f, size, mtime = slot.job
                slot.job = None
                report = message.get("report")
                if not isinstance(report, dict):
                    report = crash_report(f.file, size, f"the worker answered out of turn: {str(message)[:200]}")
                report["path"] = f.file
                record(f, size, mtime, time.monotonic() - slot.started, report)
            now = time.monotonic()
            for slot in pool.slots:
                if slot.job and now - slot.started > per_file:
                    _lost(pool, slot, record, "timeout", f"no answer within {per_file:g}s")
    finally:
        run.restarts = pool.restarts
        pool.close()
        if progress is not None:
            progress.close()
    return fresh


def _lost(pool: _Pool, slot: _Slot, record: Any, status: str, how: str) -> None:
    """The worker died or hung on its file: record the file as ``crashed`` and start a new worker."""
    assert slot.job is not None
    f, size, mtime = slot.job
    slot.job = None
    seconds = time.monotonic() - slot.started
    if status == "timeout":
        how = f"{how}; {pool.stop_slot(slot)}"
    record(f, size, mtime, seconds, crash_report(f.file, size, how, status=status))
    pool.restart(slot)
