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
  its own) and says how it ended.
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
from typing import IO, Any, Callable, Dict, Optional, TextIO

__all__ = [
    "Child",
    "ChildDied",
    "ChildGarbled",
    "ChildTimeout",
    "Message",
    "describe_exit",
    "forbid_core_files",
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


class Child:
    """A running ``python -m MODULE ARGS...`` child, talking JSON lines.

    `python` is the interpreter (default: this one); another env's
    interpreter runs this checkout's harness with that env's torch.

    `own_session` puts the child in a process group of its own, so that
    `stop` also reaches whatever the child spawned (check's trusted loads
    run a file's code). The child's stderr goes to a temporary file, read
    back only for the last lines when it died.
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
    ) -> None:
        full_env = dict(os.environ if env is None else env)
        # Started elsewhere, or by another env's interpreter (a shrink's
        # source and target envs), it must still run this harness, not another.
        if cwd is not None or python is not None:
            full_env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), full_env.get("PYTHONPATH", "")) if p)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
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
        try:
            message = json.loads(line)
        except ValueError:
            raise ChildGarbled(line[:200].decode("utf-8", "replace")) from None
        if not isinstance(message, dict):
            raise ChildGarbled(repr(message)[:200])
        return message

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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self._own_session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            elif alive:
                self.proc.kill()
        code: Optional[int]
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            code = None
        tail = self.stderr_tail()
        self._sel.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream:
                    stream.close()
        self._stderr.close()
        how = "was stopped" if alive else describe_exit(code)
        self.ended = how + (f"; stderr: {' | '.join(tail)}"[:600] if tail else "")
        return self.ended
