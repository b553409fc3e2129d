"""Progress for long phases: a live bar on a terminal, plain lines in CI logs.

rich draws the bar when stderr is a terminal and rich is installed; anywhere
else (CI logs, pipes) a plain line is printed every `interval` seconds, so a
log shows that work goes on without drowning in it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any, Optional, TextIO

__all__ = ["Progress"]


class Progress:
    """Counts done items (and outcomes) toward a total."""

    def __init__(self, what: str, total: int, *, interval: float = 10.0, stream: Optional[TextIO] = None) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started
        self._bar: Any = None
        self._task: Any = None
        if self._want_bar():
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as RichProgress

                self._bar = RichProgress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[counts]}"), TimeRemainingColumn(), transient=False,
                )
                self._bar.start()
                self._task = self._bar.add_task(what, total=total, counts="")
            except ImportError:
                self._bar = None

    def _want_bar(self) -> bool:
        if os.environ.get("TORCH_ROUNDTRIP_PLAIN") or os.environ.get("CI"):
            return False
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _counts_text(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))

    def advance(self, n: int = 1, outcome: Optional[str] = None) -> None:
        self.done += n
        if outcome:
            self.counts[outcome] += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, counts=self._counts_text())
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        counts = f" [{self._counts_text()}]" if self.counts else ""
        print(f"{self.what}: {self.done}/{self.total} ({pct:.0f}%), {rate:.0f}/s, eta {eta:.0f}s{counts}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        else:
            self._line()
