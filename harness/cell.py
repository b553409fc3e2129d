"""Run one cell: load an artifact under one set of options, compare, classify.

This is the one place where exceptions become outcomes (nox's
`SessionRunner.execute` plays this part there): `Unsupported` -> skip, any
other exception -> error with its type, message and diagnosis, differences
-> mismatch. Crashes and timeouts cannot be caught here; the runner records
those from outside the worker process.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from harness.compare import compare
from harness.diagnose import diagnose
from harness.errors import Unsupported
from harness.formats.base import LoadContext
from harness.manifest import Manifest
from harness.options import LoadOptions
from harness.results import CellResult, Outcome
from harness.spec import Spec

__all__ = ["CaseContext", "run_cell", "skip_result"]


class CaseContext(LoadContext):
    """Fresh models of one case, built in the loading env.

    The empty-mode model is built once and poisoned again before each use:
    as good as a new build (nothing it held survives), at a fraction of the
    cost, which matters at thousands of cells per second.
    """

    def __init__(self, spec_data: dict, device: str) -> None:
        self.spec_data = spec_data
        self.device = device
        self._spec: Optional[Spec] = None
        self._template: Any = None
        self._problem: Optional[str] = None
        self._forward: dict = {}

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = Spec.from_dict(self.spec_data)
        return self._spec

    def fresh(self) -> Any:
        from harness.builder import build, poison

        if self._problem:
            raise Unsupported(self._problem)
        if self._template is None:
            try:
                self._template = build(self.spec, "empty", self.device).model
            except Unsupported as e:
                self._problem = f"this env cannot build the case to load into: {e}"
                raise Unsupported(self._problem) from None
            return self._template
        poison(self._template)
        return self._template

    def meta(self) -> Any:
        from harness.builder import build

        try:
            return build(self.spec, "meta", self.device).model
        except Unsupported as e:
            raise Unsupported(f"this env cannot build the case on the meta device: {e}") from None

    def training(self, model: Any) -> tuple:
        from harness.builder import make_training

        return make_training(model, self.spec)

    def forward(self, key: tuple, module: Any, exact: bool, run: Any) -> tuple:
        """The forward check of a loaded module, run once per artifact, view, class and device.

        A module whose every tensor matched the manifest bit for bit is in the
        same state as the last one that did, so its outputs are the same: the
        check is reused instead of re-run (on a 1 GiB model it costs as much as
        a fifth of the load). A module with any difference always runs it.
        """
        from harness.forward import module_device

        key = (*key, module_device(module))
        if exact and key in self._forward:
            return self._forward[key]
        result = run()
        if exact:
            self._forward[key] = result
        return result


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _first_line(text: str, limit: int = 2000) -> str:
    # torch >= 2.6 puts terminal bold codes in its weights_only message;
    # results are read in browsers and CI logs, not terminals.
    return _ANSI.sub("", text).strip()[:limit]


def skip_result(base: CellResult, reason: str) -> CellResult:
    return base.with_(outcome=Outcome.SKIP, detail=reason)


class _LogCapture(logging.Handler):
    """Collects torch's logged warnings: some loaders (torch.export.load) log
    the real cause and raise a generic error that says "see the warnings above"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {str(exc).strip()}"
        self.texts.append(f"log {record.name}: {_first_line(text)}"[:600])


_LOGGERS: dict = {"seen": -1, "loggers": []}


def _torch_loggers() -> list:
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
    return _LOGGERS["loggers"]


@contextlib.contextmanager
def _capture_logs() -> Iterator[_LogCapture]:
    handler = _LogCapture()
    loggers = _torch_loggers()
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _warning_notes(caught: list) -> list:
    notes, seen = [], set()
    for w in caught:
        text = f"{w.category.__name__}: {_first_line(str(w.message))}"[:600]
        if text not in seen:
            seen.add(text)
            notes.append(text)
    return notes


def run_cell(
    base: CellResult,
    manifest: Manifest,
    fmt: Any,
    options: LoadOptions,
    directory: Path,
    reference: Path,
    ctx: CaseContext,
    compute_key: str,
) -> CellResult:
    """Load, compare and classify one cell; never raises for torch behaviour."""
    from harness.forward import check_forward

    start = time.perf_counter()
    caught: list = []
    logs = _LogCapture()
    try:
        problem = fmt.unavailable()
        if problem:
            return skip_result(base, problem)
        with warnings.catch_warnings(record=True) as caught, _capture_logs() as logs:
            warnings.simplefilter("always")
            loaded = fmt.load(directory, options, ctx)
            view = manifest.views.get(loaded.view)
            if view is None:
                msg = f"the manifest has no {loaded.view!r} view (saved by another harness version?)"
                raise LookupError(msg)
            comparison = compare(view, loaded.snapshot, reference, loaded.ignore)
            forward, forward_diff = None, None
            if loaded.module is not None:
                forward, forward_diff = ctx.forward(
                    (str(directory), loaded.view, type(loaded.module).__qualname__), loaded.module, comparison.ok,
                    lambda: check_forward(loaded.module, manifest.forward, reference, compute_key),
                )
            elif loaded.forward_skip:
                forward = {"status": "skip", "detail": loaded.forward_skip}
        if forward_diff is not None:
            comparison.differences.append(forward_diff)
        notes = comparison.notes + _warning_notes(caught) + logs.texts
        outcome = Outcome.PASS if comparison.ok else Outcome.MISMATCH
        detail = "exact" if comparison.ok else comparison.summary()
        if forward and forward.get("status") == "drift":
            detail += f"; forward drift max |diff| {forward['max_abs_diff']:.3g}"
        return base.with_(
            outcome=outcome, detail=detail, notes=notes, forward=forward,
            differences=[d.to_dict() for d in comparison.differences[:50]],
            seconds=time.perf_counter() - start,
        )
    except Unsupported as e:
        return base.with_(outcome=Outcome.SKIP, detail=str(e), seconds=time.perf_counter() - start)
    except Exception as e:  # the load raised: that is the outcome under test
        etype = type(e).__name__
        message = _first_line(str(e))
        warned = _warning_notes(caught) + logs.texts
        found = diagnose(etype, message, base.format, base.load, tuple(warned))
        first = message.splitlines()[0] if message else ""
        return base.with_(
            outcome=Outcome.ERROR,
            detail=f"{etype}: {first}"[:400],
            notes=warned,
            error={"type": etype, "module": type(e).__module__, "message": message},
            diagnosis=found.to_dict() if found else None,
            seconds=time.perf_counter() - start,
        )
