"""Run one cell: load an artifact under one set of options, compare, classify.

This is the one place where exceptions become outcomes (nox's
`SessionRunner.execute` plays this part there): `Unsupported` -> skip, any
other exception -> error with its type, message and diagnosis, differences
-> mismatch. Crashes and timeouts cannot be caught here; the runner records
those from outside the worker process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from harness.runtime.compare import Difference, compare
from harness.runtime.diagnose import diagnose
from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import Format, LoadContext
from harness.runtime.load_options import LoadOptions
from harness.runtime.manifest import Manifest
from harness.runtime.messages import Captured, captured, clean
from harness.runtime.results import CellResult, Outcome
from harness.runtime.spec import Spec

if TYPE_CHECKING:
    import torch

__all__ = ["CaseContext", "run_cell", "skip_result"]


class CaseContext(LoadContext):
    """Fresh models of one case, built in the loading env.

    The empty-mode model is built once and poisoned again before each use:
    as good as a new build (nothing it held survives), at a fraction of the
    cost, which matters at thousands of cells per second.
    """

    def __init__(self, spec_data: dict[str, Any], device: str) -> None:
        self.spec_data = spec_data
        self.device = device
        self._spec: Optional[Spec] = None
        self._template: Optional[torch.nn.Module] = None
        self._problem: Optional[str] = None
        self._forward: dict[tuple[str, ...], tuple[dict[str, Any], Optional[Difference]]] = {}

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = Spec.from_dict(self.spec_data)
        return self._spec

    def fresh(self) -> torch.nn.Module:
        from harness.runtime.builder import build, poison

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

    def meta(self) -> torch.nn.Module:
        from harness.runtime.builder import build

        try:
            return build(self.spec, "meta", self.device).model
        except Unsupported as e:
            raise Unsupported(f"this env cannot build the case on the meta device: {e}") from None

    def training(self, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        from harness.runtime.builder import make_training

        return make_training(model, self.spec)

    def forward(
        self, key: tuple[str, ...], module: torch.nn.Module, exact: bool,
        run: Callable[[], tuple[dict[str, Any], Optional[Difference]]],
    ) -> tuple[dict[str, Any], Optional[Difference]]:
        """The forward check of a loaded module, run once per artifact, view, class and device.

        A module whose every tensor matched the manifest bit for bit is in the
        same state as the last one that did, so its outputs are the same: the
        check is reused instead of re-run (on a 1 GiB model it costs as much as
        a fifth of the load). A module with any difference always runs it.
        """
        from harness.runtime.forward import module_device

        key = (*key, module_device(module))
        if exact and key in self._forward:
            return self._forward[key]
        result = run()
        if exact:
            self._forward[key] = result
        return result


def skip_result(base: CellResult, reason: str) -> CellResult:
    return base.with_(outcome=Outcome.SKIP, detail=reason)


def run_cell(
    base: CellResult,
    manifest: Manifest,
    fmt: Format,
    options: LoadOptions,
    directory: Path,
    reference: Path,
    ctx: CaseContext,
    compute_key: str,
) -> CellResult:
    """Load, compare and classify one cell; never raises for torch behaviour."""
    from harness.runtime.forward import check_forward

    start = time.perf_counter()
    seen = Captured()
    try:
        problem = fmt.unavailable()
        if problem:
            return skip_result(base, problem)
        with captured() as seen:
            loaded = fmt.load(directory, options, ctx)
            view = manifest.views.get(loaded.view)
            if view is None:
                msg = f"the manifest has no {loaded.view!r} view (saved by another harness version?)"
                raise LookupError(msg)
            recovered = fmt.recover(loaded, view)
            comparison = compare(view, loaded.snapshot, reference, loaded.ignore)
            forward: Optional[dict[str, Any]]
            forward_diff: Optional[Difference]
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
        notes = recovered + comparison.notes + seen.texts()
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
        message = clean(str(e))
        warned = seen.texts()
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
