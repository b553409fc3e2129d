"""Messages from torch, cleaned for result lines and reports.

Errors, warnings and log records are read in browsers, JSON and CI logs,
not terminals: terminal escape codes go (torch >= 2.6 bolds part of its
``weights_only`` message), and each text is cut to a length a report can
show. `captured` collects what a block warned or logged, because some
loaders (``torch.export.load``) log the real cause and raise a generic error.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Captured", "captured", "clean"]

# Every ANSI CSI sequence (colours, bold, cursor moves), not only colours.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def clean(text: str, limit: int = 2000) -> str:
    """`text` without terminal escape codes, stripped, at most `limit` characters."""
    return _ANSI.sub("", text).strip()[:limit]


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {str(exc).strip()}"
        self.texts.append(f"log {record.name}: {clean(text)}"[:600])


_LOGGERS: dict[str, object] = {"seen": -1, "loggers": []}


def _torch_loggers() -> list[logging.Logger]:
    # torch's own logging setup stops some loggers (torch.export) from
    # propagating, so a handler on "torch" alone would not see them. The
    # scan is redone only when new loggers appear (it runs once per cell).
    registry = logging.root.manager.loggerDict
    if len(registry) != _LOGGERS["seen"]:
        loggers = [logging.getLogger("torch")]
        for name, logger in list(registry.items()):
            if name.startswith("torch.") and isinstance(logger, logging.Logger) and not logger.propagate:
                loggers.append(logger)
        _LOGGERS.update(seen=len(registry), loggers=loggers)
    found: list[logging.Logger] = _LOGGERS["loggers"]  # type: ignore[assignment]
    return found


@dataclass
class Captured:
    """What a block warned (`warnings.warn`) and what torch logged at WARNING or above."""

    caught: list[warnings.WarningMessage] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        """Each distinct warning as ``Category: message``, then the log records; cleaned."""
        texts: list[str] = []
        for w in self.caught:
            text = f"{w.category.__name__}: {clean(str(w.message))}"[:600]
            if text not in texts:
                texts.append(text)
        return texts + self.logs


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """Warnings and torch log records raised inside the block, kept rather than printed."""
    handler = _Logs()
    result = Captured(logs=handler.texts)
    loggers = _torch_loggers()
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result.caught = caught
            yield result
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
