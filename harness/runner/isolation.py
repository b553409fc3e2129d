"""One worker process at a time, restarted when a cell kills it or hangs.

The parent never imports torch: it plans cells, talks to the worker over
pipes, and turns a dead or silent worker into a ``crash`` or ``timeout`` for
the cell in flight.
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from harness.errors import InputError

__all__ = ["Worker", "WorkerDied", "WorkerTimeout"]

STARTUP_TIMEOUT = 300.0


class WorkerDied(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class WorkerTimeout(Exception):
    pass


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Worker:
    """A running `harness.worker`, with its stderr tail kept for crash reports."""

    def __init__(self, device: str, env: Optional[dict] = None) -> None:
        self.device = device
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.hello: dict = {}
        self.stderr_tail: collections.deque = collections.deque(maxlen=40)
        self._buffer = b""
        self._sel: Optional[selectors.BaseSelector] = None

    def start(self) -> dict:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.worker", self.device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, bufsize=0,
        )
        self._buffer = b""
        tail = self.stderr_tail
        tail.clear()

        def drain(stream: Any) -> None:
            for line in iter(stream.readline, b""):
                tail.append(line.decode("utf-8", "replace").rstrip())

        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            message = self.read(STARTUP_TIMEOUT)
        except (WorkerDied, WorkerTimeout) as e:
            self.stop()
            last = " | ".join(list(self.stderr_tail)[-3:])
            msg = f"the load worker could not start in this env ({e}): {last}"
            raise InputError(msg) from None
        self.hello = message
        return message

    def send(self, request: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._death()) from None

    def _death(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the worker stopped answering"
        time.sleep(0.05)  # let the stderr thread catch the last lines
        tail = [line for line in self.stderr_tail if line.strip()][-3:]
        return _signal_name(code) + (f"; stderr: {' | '.join(tail)}"[:600] if tail else "")

    def read(self, timeout: float) -> dict:
        """The next protocol message; WorkerTimeout or WorkerDied otherwise."""
        assert self.proc is not None and self._sel is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            if not self._sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                raise WorkerDied(self._death())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        self.proc = None
