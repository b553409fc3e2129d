"""The parent's side of the load worker: one worker at a time, restarted when a cell kills it.

The parent never imports torch: it plans cells, talks to the worker
(`harness.runtime.runner.worker`) through `harness.runtime.child`, and
turns a dead or silent worker into a ``crash`` or ``timeout`` for the cell
in flight.

A worker is forked from a fork server (`harness.runtime.forkserver`) that
imported torch and the worker's modules once, so a worker that a cell
killed is replaced in milliseconds, not in the seconds a fresh ``import
torch`` takes. Where the platform cannot fork a server's children
(Windows), each worker is a new interpreter, and the first start says so.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Optional

from harness.runtime.child import Child, ChildDied, ChildGarbled, ChildTimeout, Message
from harness.runtime.defaults import STARTUP_TIMEOUT
from harness.runtime.errors import InputError
from harness.runtime.forkserver import ForkServer, ForkServerGone, fork_supported

__all__ = ["WORKER_MODULE", "Worker", "WorkerDied", "WorkerTimeout"]

WorkerDied = ChildDied
WorkerTimeout = ChildTimeout
#: The module a load worker runs.
WORKER_MODULE = "harness.runtime.runner.worker"


class Worker:
    """A running load worker for one device, started again after each death.

    `python`: the interpreter of the env it runs in (default: this one).
    `restarts`: seconds from each death (a crash noticed, a hung worker
    given up on) to its successor's hello. `stop` ends the worker and its
    fork server; `restart` replaces only the worker.

    From the first death on, a *spare* is kept where workers are forked: a
    worker forked and warming up (fingerprint, first uses) while the current
    one runs cells, so the next death waits for nothing. A phase whose loads
    never kill the worker never pays for one (on a GPU, a spare holds a CUDA
    context of its own).
    """

    def __init__(self, device: str, env: Optional[Mapping[str, str]] = None, python: Optional[str] = None) -> None:
        self.device = device
        self.env = env
        self.python = python
        self.child: Optional[Child] = None
        self.hello: Message = {}
        self.server: Optional[ForkServer] = None
        #: whether workers are forked from a fork server (else each is a new interpreter)
        self.forks = fork_supported()
        self.restarts: list[float] = []
        #: seconds from each forked worker's fork to its hello (what a restart costs, a spare's paid ahead)
        self.startups: list[float] = []
        self.spare: Optional[Child] = None
        self._want_spare = False
        self._died_at: Optional[float] = None
        self._said_no_fork = False

    def start(self) -> Message:
        """Start a worker (the old one, if any, killed) and wait for its hello; InputError if it cannot start in this env."""
        self.stop_child()
        self.child = self._spawn()
        try:
            message = self.child.read(STARTUP_TIMEOUT)
        except (ChildDied, ChildTimeout, ChildGarbled) as e:
            how = self.stop_child()
            msg = f"the load worker could not start in this env ({type(e).__name__}: {how})"
            raise InputError(msg) from None
        self._took_over(message)
        return message

    def _took_over(self, hello: Message) -> None:
        self.hello = hello
        seconds = (hello.get("started") or {}).get("seconds")
        if seconds is not None:
            self.startups.append(seconds)
        if self._died_at is not None:
            self.restarts.append(time.perf_counter() - self._died_at)
            self._died_at = None

    def restart(self) -> Message:
        """Replace a worker that died or hung (the fork server kept): the spare if one is ready; its successor's hello."""
        if self._died_at is None:
            self._died_at = time.perf_counter()
        self.stop_child()
        spare, self.spare = self.spare, None
        if spare is not None and (self.server is None or not self.server.alive()):
            spare.stop()  # its server is gone: how it ends could not be told, so a crash could not be diagnosed
            spare = None
        hello: Optional[Message] = None
        if spare is not None:
            try:
                hello = spare.read(STARTUP_TIMEOUT)
            except (ChildDied, ChildTimeout, ChildGarbled):
                spare.stop()  # it died waiting (its server killed, say): start one the ordinary way, which says why
            else:
                self.child = spare
                self._took_over(hello)
        if hello is None:
            hello = self.start()
        # The next spare is forked once this worker has its cells (`send`):
        # the fork then overlaps them instead of delaying them.
        self._want_spare = self.forks
        return hello

    def _fork_spare(self) -> None:
        self._want_spare = False
        try:
            self.spare = self._spawn(wait=False)
        except (ForkServerGone, InputError):
            self.spare = None  # no spare: the next restart starts a worker itself and reports what fails

    def _spawn(self, *, wait: bool = True) -> Child:
        """A new worker; `wait`: until the server has forked it (a spare does not wait)."""
        if not self.forks:
            if not self._said_no_fork:
                self._said_no_fork = True
                print(f"load worker: {sys.platform} cannot fork workers from a fork server; "
                      "each restart starts a new interpreter (seconds, not milliseconds)", file=sys.stderr)
            return Child(WORKER_MODULE, [self.device], env=self.env, python=self.python)
        try:
            return self._fork(wait)
        except ForkServerGone:
            # The server died (killed, out of memory): one new server; if that
            # fails too, its InputError says why.
            self._close_server()
            return self._fork(wait)

    def _fork(self, wait: bool) -> Child:
        child = Child(WORKER_MODULE, [self.device], env=self.env, server=self._server())
        if wait:
            try:
                assert not isinstance(child.proc, subprocess.Popen)
                child.proc.pid  # noqa: B018  (waits for the fork; ForkServerGone if the server died first)
            except ForkServerGone:
                child.stop()
                raise
        return child

    def _server(self) -> ForkServer:
        if self.server is not None and not self.server.alive():
            self._close_server()
        if self.server is None:
            from harness.runtime.runner.worker import PRELOAD

            self.server = ForkServer(PRELOAD, python=self.python, env=self.env)
        return self.server

    def send(self, request: Message) -> None:
        """Hand the worker one artifact's cells; WorkerDied if it is gone."""
        assert self.child is not None
        try:
            self.child.send(request)
        except ChildDied:
            self._died_at = time.perf_counter()
            raise
        if self._want_spare and self.spare is None:
            self._fork_spare()

    def read(self, timeout: float) -> Message:
        """The next message; WorkerTimeout, or WorkerDied (also for a garbled line)."""
        assert self.child is not None
        try:
            return self.child.read(timeout)
        except ChildGarbled as e:
            self._died_at = time.perf_counter()
            raise WorkerDied(f"it wrote {e.text!r} on the protocol stream and {self.stop_child()}") from None
        except (ChildDied, ChildTimeout):
            self._died_at = time.perf_counter()
            raise

    def stop_child(self) -> str:
        """Kill the worker if it runs, keeping the fork server for the next; how it ended ("" when none ran)."""
        if self.child is None:
            return ""
        how = self.child.stop()
        self.child = None
        return how

    def _close_server(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def stop(self) -> str:
        """Kill the worker if it runs, its spare and its fork server; how the worker ended ("" when none ran)."""
        try:
            return self.stop_child()
        finally:
            if self.spare is not None:
                self.spare.stop()
                self.spare = None
            self._close_server()
