"""Run one cell: load an artifact under one set of options, compare, classify.

This is the one place where exceptions become outcomes (nox's
`SessionRunner.execute` plays this part there): `Unsupported` -> skip, any
other exception -> error with its type, message and diagnosis, differences
-> mismatch. Crashes and timeouts cannot be caught here; the runner records
those from outside the worker process.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from harness.runtime.compare import Comparison, Difference, compare
from harness.runtime.diagnose import Diagnosis, diagnose
from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import Format, LoadContext
from harness.runtime.load_options import LoadOptions, torch_load_kwargs
from harness.runtime.manifest import Manifest, Snapshot, View
from harness.runtime.messages import Captured, captured, clean
from harness.runtime.results import CellResult, Outcome
from harness.runtime.spec import Spec

if TYPE_CHECKING:
    import torch

__all__ = ["CaseContext", "complete_allowlist", "run_cell", "skip_result", "step_drift"]


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
        self._saved: tuple[Optional[dict[str, Any]], Optional[Path]] = (None, None)
        #: the allowlist each refused file needs (`complete_allowlist`), found once per file
        self.allowlists: dict[tuple[str, Optional[str], Optional[bool]], tuple[Optional[list[str]], str]] = {}

    def use_artifact(self, forward: Optional[dict[str, Any]], reference: Path) -> None:
        """The artifact about to be loaded: its forward record and reference file give `saved_inputs`."""
        self._saved = (forward, reference)

    def saved_inputs(self) -> tuple[torch.Tensor, ...]:
        from harness.runtime.forward import saved_inputs

        forward, reference = self._saved
        if not forward or forward.get("status") != "ok" or reference is None:
            reason = (forward or {}).get("reason", "no forward inputs were recorded")
            raise Unsupported(f"no inputs to step the model with: {reason}")
        return saved_inputs(forward, reference, self.device)

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


def step_drift(comparison: Comparison, view: View, snap: Snapshot, reference: Path, same_kernels: bool) -> Optional[float]:
    """Turn the bit differences of a training step taken with other kernels into drift.

    A step computes, so across torch releases, machines or devices its
    results may differ in the last bits: that is drift, reported with its
    size, as for forward outputs. With the same kernels it must be exact,
    and any difference stays a mismatch. Differences other than values (a
    dtype, a shape, a missing key) are mismatches either way. Returns the
    largest absolute difference, or None when nothing drifted.
    """
    from harness.runtime.forward import max_abs_diff

    if same_kernels:
        return None
    drifted = [d for d in comparison.differences if d.aspect == "bits"]
    if not drifted:
        return None
    comparison.differences = [d for d in comparison.differences if d.aspect != "bits"]
    worst = max(max_abs_diff(view.tensors[d.tensor], snap.tensors[d.tensor][0], reference) for d in drifted)
    comparison.notes.append(
        f"after one training step {len(drifted)} tensor(s) differ from the source env's step by at most {worst:.3g} "
        f"(first: {drifted[0].tensor}); the kernels differ, so this is drift, not a mismatch"
    )
    return worst


def _allowlist_search(path: Path, options: LoadOptions) -> tuple[Optional[list[str]], str]:
    """(the globals the file needs, "") or (None, why no allowlist loads it here)."""
    import torch

    from harness.runtime.allowlist import load_allowing

    kwargs = dict(torch_load_kwargs(options), weights_only=True)
    try:
        _, needed = load_allowing(lambda: torch.load(str(path), **kwargs))
    except Exception as e:  # no allowlist fixes it here: say why
        lines = clean(str(e)).splitlines() or [""]
        # torch opens with general advice; the line naming the cause is the one to show
        cause = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0]).strip()
        return None, f"{type(e).__name__}: {cause[:300]}"
    return needed, ""


def complete_allowlist(
    found: Diagnosis, path: Optional[Path], options: LoadOptions,
    searched: Optional[dict[tuple[str, Optional[str], Optional[bool]], tuple[Optional[list[str]], str]]] = None,
) -> Diagnosis:
    """A weights_only refusal's diagnosis, its fix naming every global the file needs.

    torch names one global per refusal; the fix is found by loading the file
    again under a growing allowlist (`harness.runtime.allowlist`), so the
    fix offered is one that was seen to work here. `searched` keeps each
    file's answer (per map_location and mmap, all it depends on): an
    artifact's refused cells search once, not once per cell.
    """
    from harness.runtime.allowlist import fix_text

    if path is None:
        return found
    key = (str(path), options.map_location, options.mmap)
    if searched is not None and key in searched:
        needed, failure = searched[key]
    else:
        needed, failure = _allowlist_search(path, options)
        if searched is not None:
            searched[key] = (needed, failure)
    if needed is None:
        return replace(found, summary=f"{found.summary}; no allowlist makes it load here ({failure})")
    if not needed:
        return found
    return replace(
        found,
        summary=f"{found.summary}; it needs {len(needed)} globals allowlisted: {', '.join(needed)}",
        fix=f"if you trust the file, allowlist all {len(needed)} globals it needs: {fix_text(needed)}; "
        "or torch.load(f, weights_only=False)",
    )


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
            if options.apply == "step" and "stepped" not in manifest.views:
                why = manifest.saved_with.get("no_step", "saved by a harness before apply=step")
                raise Unsupported(f"the source env recorded no training step to compare with: {why}")
            ctx.use_artifact(manifest.forward, reference)
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
        drift: Optional[float] = None
        if loaded.view == "stepped":
            same = (manifest.forward or {}).get("compute") == compute_key and ctx.device == "cpu"
            drift = step_drift(comparison, view, loaded.snapshot, reference, same)
        notes = recovered + comparison.notes + seen.texts()
        outcome = Outcome.PASS if comparison.ok else Outcome.MISMATCH
        detail = "exact" if comparison.ok else comparison.summary()
        if drift is not None:
            detail += f"; step drift max |diff| {drift:.3g} (other kernels than the save's)"
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
        if found is not None and found.code == "weights_only_refused":
            found = complete_allowlist(found, fmt.torch_load_path(directory), options, ctx.allowlists)
        first = message.splitlines()[0] if message else ""
        return base.with_(
            outcome=Outcome.ERROR,
            detail=f"{etype}: {first}"[:400],
            notes=warned,
            error={"type": etype, "module": type(e).__module__, "message": message},
            diagnosis=found.to_dict() if found else None,
            seconds=time.perf_counter() - start,
        )
