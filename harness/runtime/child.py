"""Child processes that talk JSON lines: the one helper for every child the harness starts.

The load worker (`harness.runtime.runner.worker`) and ``check``'s trusted
loader (`harness.check.child`) both run code that may crash, hang or print
anything, so both follow one protocol, implemented here once:

- the child keeps its real stdout for the protocol (`protocol_stream`) and
  sends fd 1 to stderr, so what torch's C++ code or a loaded file prints
  cannot corrupt a message; it writes ``{"hello": ...}`` once ready;
- the parent (`Child`) reads one JSON object per line under a deadline; a
  child that exits is `ChildDied` with how it ended (signal or status) and
  the last lines of its stderr, one that says nothing in time is
  `ChildTimeout`, one that writes something other than a JSON object is
  `ChildGarbled`;
- `Child.stop` kills the child (its whole process group when it has one of
  its own) and says how it ended;
- a child that calls `notice_fatal_signals` has faulthandler write its one
  line (``Fatal Python error: Aborted``) on the protocol stream when a fatal
  signal hits it, before the kernel tears the process down (milliseconds
  for a process that maps torch): the parent takes that line as the death,
  ``killed by SIGABRT`` with the same last words as an exit seen later,
  and leaves the dying process to be reaped without waiting for it.

A child is started with `subprocess.Popen`, or forked from a
`harness.runtime.forkserver.ForkServer` (``server=``) that has torch
imported already: the same child in milliseconds instead of seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, TextIO, Union

from harness.runtime.errors import InputError
from harness.runtime.forkserver import ForkServer, ForkServerGone

__all__ = [
    "Child",
    "ChildDied",
    "ChildGarbled",
    "ChildTimeout",
    "Message",
    "describe_exit",
    "forbid_core_files",
    "notice_fatal_signals",
    "protocol_stream",
    "send",
    "serve_device",
]

#: One protocol message: a JSON object.
Message = Dict[str, Any]  # typing.Dict: the runtime runs on 3.8


class ChildDied(Exception):
    """The child exited (or closed its stdout); `detail` says how, with its stderr's last lines."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ChildTimeout(Exception):
    """No message within the deadline."""


class ChildGarbled(Exception):
    """The child wrote a line that is not a JSON object (what the loaded code printed, say)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def describe_exit(code: Optional[int]) -> str:
    """How a process ended, from its return code: ``killed by SIGABRT``, ``exited with status 3``."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


# -- the child's side ----------------------------------------------------------


def protocol_stream() -> TextIO:
    """The child's protocol channel: the real stdout, line-buffered; fd 1 now goes to stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")


# What faulthandler writes first when a fatal signal hits (``Fatal Python error: NAME``), and the
# signal each NAME stands for (the same words in every Python since faulthandler's 3.3).
_FATAL_NOTICE = b"Fatal Python error: "
_FATAL_NAMES = {"Aborted": "SIGABRT", "Segmentation fault": "SIGSEGV", "Bus error": "SIGBUS",
                "Floating point exception": "SIGFPE", "Illegal instruction": "SIGILL"}


def notice_fatal_signals(stream: TextIO) -> None:
    """Have a fatal signal announce itself on the protocol `stream` before the process is torn down.

    faulthandler writes ``Fatal Python error: Aborted`` (and the current
    thread's stack) from the signal handler, then lets the signal kill the
    process as before: same signal, same exit status, same stderr. The
    parent reads that line (`Child.read`) milliseconds before the pipe
    would close, which for a process that maps torch waits for the kernel
    to unmap hundreds of megabytes. Where faulthandler is missing, nothing
    changes but the speed.
    """
    try:
        import faulthandler

        faulthandler.enable(file=stream, all_threads=False)
    except (ImportError, AttributeError, ValueError, OSError, RuntimeError):  # no faulthandler, or no usable fd
        pass


def forbid_core_files() -> None:
    """A load that aborts must not leave a core file behind (where the OS lets us say so)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # no resource module (Windows), or a hard limit
        pass


def send(stream: TextIO, message: Message) -> None:
    """Write one protocol message (child to parent)."""
    stream.write(json.dumps(message) + "\n")


# -- the parent's side ---------------------------------------------------------


def serve_device(serve: Callable[[str], int]) -> int:
    """A worker's main: `serve` the device named by its one argument (default cpu) until the parent goes away."""
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    try:
        return serve(device)
    except BrokenPipeError:  # the parent went away: nothing left to report to
        return 0


def _package_root() -> str:
    """The folder that holds the `harness` package."""
    return str(Path(__file__).resolve().parent.parent.parent)


_FRAME = re.compile(r"\s*(frame #\d+:|<omitting python frames>)")


class _Forked:
    """A child forked by a fork server, behind the part of `subprocess.Popen` that `Child` uses.

    Its pid is the server's answer to the fork request, waited for on first
    use (`ticket`), so whoever asked for it can go on while the server
    forks. Its exit status comes from the server too (the child is the
    server's, not ours); `lost` says why it cannot, once the server is gone
    (or could not fork it at all).
    """

    def __init__(self, server: ForkServer, ticket: int, stdin: IO[bytes], stdout: IO[bytes], own_session: bool) -> None:
        self.server = server
        self.ticket = ticket
        self.stdin: Optional[IO[bytes]] = stdin
        self.stdout: Optional[IO[bytes]] = stdout
        self.own_session = own_session
        self.returncode: Optional[int] = None
        self.lost: Optional[str] = None
        self._pid: Optional[int] = None

    @property
    def pid(self) -> int:
        """The child's pid (waiting for the server's answer the first time); ForkServerGone or InputError if there is none."""
        if self._pid is None:
            self._pid = self.server.pid_of(self.ticket)
        return self._pid

    def known_pid(self) -> Optional[int]:
        """The pid, or None when the server cannot say (`lost` then says why)."""
        if self._pid is None and self.lost is None:
            try:
                return self.pid
            except (ForkServerGone, InputError) as e:
                self.lost = str(e)
        return self._pid

    def poll(self) -> Optional[int]:
        pid = self.known_pid()
        if self.returncode is None and self.lost is None and pid is not None:
            try:
                self.returncode = self.server.returncode(pid)
            except ForkServerGone as e:
                self.lost = e.detail
        if self.lost is not None and self.returncode is None and (pid is None or not _exists(pid)):
            self.returncode = 0  # ended (or never began), how unknown: `lost` says so
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"forked child {self._pid}", timeout)
            if self.lost is None and self._pid is not None:
                with contextlib.suppress(ForkServerGone):
                    self.server.wait(self._pid, left)
            else:  # an orphan now, not the server's: watch it go
                time.sleep(min(left, 0.01))
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        pid = self.known_pid()
        if pid is None:
            return
        if self.lost is None:
            try:
                self.server.kill(pid, group=self.own_session)
                return
            except ForkServerGone as e:
                self.lost = e.detail
        # The server is gone, and its bookkeeping with it; the orphan holds its pid until init reaps it.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    """Whether `pid` still runs (a zombie init has not reaped yet does not)."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the pid went to another user's process
        return False
    return True


class Child:
    """A running ``python -m MODULE ARGS...`` child, talking JSON lines.

    `python` is the interpreter (default: this one); another env's
    interpreter runs this checkout's harness with that env's torch.

    `own_session` puts the child in a process group of its own, so that
    `stop` also reaches whatever the child spawned (check's trusted loads
    run a file's code). The child's stderr goes to a temporary file, read
    back only for the last lines when it died.

    `server`: fork the child from this fork server (whose interpreter it
    then runs: give `python` to the server, not here) instead of starting a
    new interpreter; everything else is the same. The constructor does not
    wait for the fork: ``proc.pid`` does (ForkServerGone if the server is
    gone, InputError if it could not fork), and a child that never began
    reads as one that died at once. ForkServerGone if the server is not
    there to ask.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        own_session: bool = False,
        python: Optional[str] = None,
        server: Optional[ForkServer] = None,
    ) -> None:
        if server is not None and python is not None:
            msg = "Child(server=..., python=...): a forked child runs its server's interpreter; give python to the ForkServer"
            raise ValueError(msg)
        full_env = dict(os.environ if env is None else env)
        # Started elsewhere, or by another env's interpreter (a shrink's
        # source and target envs), it must still run this harness, not another.
        if cwd is not None or python is not None:
            full_env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), full_env.get("PYTHONPATH", "")) if p)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        self.proc: Union[subprocess.Popen[bytes], _Forked]
        if server is not None:
            self.proc = self._fork(server, module, args, cwd, full_env, own_session)
        else:
            self.proc = subprocess.Popen(
                [python or sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                start_new_session=own_session, bufsize=0,
            )
        self._own_session = own_session
        self._buffer = b""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.ended: Optional[str] = None

    def _fork(self, server: ForkServer, module: str, args: Sequence[str], cwd: Optional[str],
              env: dict[str, str], own_session: bool) -> _Forked:
        """Fork the child from `server` with fresh pipes (unbuffered, as with Popen(bufsize=0))."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            ticket = server.submit(module, args, stdin=stdin_r, stdout=stdout_w, stderr=self._stderr.fileno(),
                                   cwd=cwd, env=env, own_session=own_session)
        except BaseException:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            self._stderr.close()
            raise
        finally:
            # The child has its own copies now: with ours closed, its end is our end of file.
            os.close(stdin_r)
            os.close(stdout_w)
        return _Forked(server, ticket, os.fdopen(stdin_w, "wb", buffering=0), os.fdopen(stdout_r, "rb", buffering=0), own_session)

    def read(self, timeout: float) -> Message:
        """The next message within `timeout` seconds; ChildTimeout, ChildDied or ChildGarbled otherwise."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildTimeout()
            if not self._sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise ChildDied(self.stop(wait=True))
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if line.startswith(_FATAL_NOTICE):
            raise ChildDied(self._fatal(line[len(_FATAL_NOTICE):].decode("utf-8", "replace").strip()))
        try:
            message = json.loads(line)
        except ValueError:
            raise ChildGarbled(line[:200].decode("utf-8", "replace")) from None
        if not isinstance(message, dict):
            raise ChildGarbled(repr(message)[:200])
        return message

    def _fatal(self, name: str) -> str:
        """How a child that announced a fatal signal (`notice_fatal_signals`) ended, told without waiting for its end.

        The signal kills it anyway; a SIGKILL makes sure, and a forked child
        is then reaped by its server while this process goes on (the
        kernel's teardown of the dying one is off our path). The answer is
        what `stop` would have said after its end: ``killed by SIGABRT``
        and its stderr's last lines, all written before the signal. A
        child of our own (Popen), which only we can reap, or a name that is
        not a known signal's, is waited for as before.
        """
        signame = _FATAL_NAMES.get(name)
        signum = getattr(signal, signame, None) if signame else None
        if signum is None or not isinstance(self.proc, _Forked):
            return self.stop(wait=True)
        if self.ended is None:
            tail = self.stderr_tail()
            pid = self.proc.known_pid()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self._own_session and pid is not None:
                    os.killpg(pid, signal.SIGKILL)  # what it started dies with it, as in `stop`
                else:
                    self.proc.kill()
            self._close()
            self.ended = describe_exit(-int(signum)) + (f"; stderr: {' | '.join(tail)}"[:600] if tail else "")
        return self.ended

    def _close(self) -> None:
        """Let go of the child's pipes and stderr file."""
        self._sel.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream:
                    stream.close()
        self._stderr.close()

    def send(self, message: Message, *, last: bool = False) -> None:
        """Write one message; `last` closes the child's stdin after it. ChildDied if it is gone."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
            if last:
                self.proc.stdin.close()
        except OSError:
            raise ChildDied(self.stop(wait=True)) from None

    def stderr_tail(self, lines: int = 3) -> list[str]:
        """The last non-blank lines the child wrote to stderr."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.flush()
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - 16000))
            text = self._stderr.read().decode("utf-8", "replace")
            # A C++ abort prints its reason ("what(): ...") before dozens of
            # stack frames: keep the reason, drop the frames.
            kept = [line for line in text.splitlines() if line.strip() and not _FRAME.match(line)]
            return kept[-lines:]
        return []

    def stop(self, *, wait: bool = False) -> str:
        """Kill the child if it still runs; how it ended, with its stderr's last lines.

        `wait`: its output closed, so it is dying on its own; give it a moment
        to be reaped so the answer names its signal or status. Idempotent.
        """
        if self.ended is not None:
            return self.ended
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        alive = self.proc.poll() is None
        pid = self.proc.known_pid() if isinstance(self.proc, _Forked) else self.proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self._own_session and pid is not None:
                os.killpg(pid, signal.SIGKILL)  # the group outlives its leader: what the child started dies too
            elif alive:
                self.proc.kill()
        code: Optional[int]
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            code = None
        tail = self.stderr_tail()
        lost = getattr(self.proc, "lost", None)
        self._close()
        how = "was stopped" if alive else describe_exit(code)
        if lost is not None and not alive:
            how = f"ended, how is unknown ({lost})"
        self.ended = how + (f"; stderr: {' | '.join(tail)}"[:600] if tail else "")
        return self.ended
