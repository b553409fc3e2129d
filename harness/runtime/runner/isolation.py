"""The parent's side of the load worker: one worker at a time, restarted when a cell kills it.

The parent never imports torch: it plans cells, talks to the worker
(`harness.runtime.runner.worker`) through `harness.runtime.child`, and
turns a dead or silent worker into a ``crash`` or ``timeout`` for the cell
in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from harness.runtime.child import Child, ChildDied, ChildGarbled, ChildTimeout, Message
from harness.runtime.defaults import STARTUP_TIMEOUT
from harness.runtime.errors import InputError

__all__ = ["Worker", "WorkerDied", "WorkerTimeout"]

WorkerDied = ChildDied
WorkerTimeout = ChildTimeout


class Worker:
    """A running load worker for one device, started again after each death.

    `python`: the interpreter of the env it runs in (default: this one).
    """

    def __init__(self, device: str, env: Optional[Mapping[str, str]] = None, python: Optional[str] = None) -> None:
        self.device = device
        self.env = env
        self.python = python
        self.child: Optional[Child] = None
        self.hello: Message = {}

    def start(self) -> Message:
        """Start a worker and wait for its hello; InputError if it cannot start in this env."""
        self.stop()
        self.child = Child("harness.runtime.runner.worker", [self.device], env=self.env, python=self.python)
        try:
            message = self.child.read(STARTUP_TIMEOUT)
        except (ChildDied, ChildTimeout, ChildGarbled) as e:
            how = self.stop()
            msg = f"the load worker could not start in this env ({type(e).__name__}: {how})"
            raise InputError(msg) from None
        self.hello = message
        return message

    def send(self, request: Message) -> None:
        """Hand the worker one artifact's cells; WorkerDied if it is gone."""
        assert self.child is not None
        self.child.send(request)

    def read(self, timeout: float) -> Message:
        """The next message; WorkerTimeout, or WorkerDied (also for a garbled line)."""
        assert self.child is not None
        try:
            return self.child.read(timeout)
        except ChildGarbled as e:
            raise WorkerDied(f"it wrote {e.text!r} on the protocol stream and {self.stop()}") from None

    def stop(self) -> str:
        """Kill the worker if it runs; how it ended ("" when none ran)."""
        if self.child is None:
            return ""
        how = self.child.stop()
        self.child = None
        return how
