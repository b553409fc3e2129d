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

from harness.runtime.compare import ByteSource, Comparison, Difference, compare
from harness.runtime.diagnose import Diagnosis, diagnose
from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import Format, LoadContext, Loaded
from harness.runtime.load_options import LoadOptions, torch_load_kwargs
from harness.runtime.manifest import Manifest, Snapshot, View
from harness.runtime.messages import Captured, captured, clean
from harness.runtime.results import CellResult, Outcome
from harness.runtime.spec import Spec

if TYPE_CHECKING:
    import torch

    from harness.runtime.refactor import Remap, Slot

__all__ = ["CaseContext", "complete_allowlist", "run_cell", "skip_result", "step_drift"]


class CaseContext(LoadContext):
    """Fresh models of one case, built in the loading env.

    The empty-mode model is built once and poisoned again before each use:
    as good as a new build (nothing it held survives), at a fraction of the
    cost, which matters at thousands of cells per second.

    The model a load builds is the *load side*: the case's own, or another
    where the model code changed between the save and the load (a curated
    refactor case's `Spec.load_side`, or the factory ``--load-as`` names,
    chosen per cell with `use_load_side`).
    """

    def __init__(self, spec_data: dict[str, Any], device: str) -> None:
        self.spec_data = spec_data
        self.device = device
        self._spec: Optional[Spec] = None
        self._side: Optional[str] = None  # the --load-as factory of the cell in hand
        self._templates: dict[Optional[str], torch.nn.Module] = {}
        self._initial: dict[Optional[str], dict[str, Any]] = {}
        self._problems: dict[Optional[str], str] = {}
        self._forward: dict[tuple[str, ...], tuple[dict[str, Any], Optional[Difference]]] = {}
        self._saved: tuple[Optional[dict[str, Any]], Optional[Path]] = (None, None)
        self._views: dict[str, View] = {}
        self._remaps: dict[tuple[Optional[str], str, str], Remap] = {}
        self._wanted: dict[Optional[str], dict[str, Slot]] = {}
        self._expected: dict[tuple[Optional[str], str, str], tuple[View, ByteSource, list[str]]] = {}
        #: whether the cell in hand built the load-side model (`fresh`, `meta`)
        self.built = False
        #: the allowlist each refused file needs (`complete_allowlist`), found once per file
        self.allowlists: dict[tuple[str, Optional[str], Optional[bool]], tuple[Optional[list[str]], str]] = {}

    def use_artifact(self, forward: Optional[dict[str, Any]], reference: Path, views: Optional[dict[str, View]] = None) -> None:
        """The artifact about to be loaded: its forward record and reference file give `saved_inputs`; its views the remap."""
        if views is not None and views is not self._views:
            self._views = views
            self._remaps.clear()
            self._expected.clear()
        self._saved = (forward, reference)

    def use_load_side(self, load_as: Optional[str]) -> None:
        """Build `load_as` (a ``--load-as`` factory) for the next cell; None: the case's own load side."""
        self._side = load_as
        self.built = False

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

    @property
    def load_spec(self) -> Spec:
        """The spec the cell in hand builds its model from."""
        if self._side is not None:
            data = {k: v for k, v in self.spec_data.items() if k not in ("model", "load_as")}
            return Spec.from_dict(dict(data, factory=self._side, origin="user"))
        return self.spec.load_side()

    @property
    def refactored(self) -> bool:
        """Whether the cell in hand loads into other model code than the save's."""
        return self._side is not None or self.spec.refactored

    @property
    def load_as(self) -> Optional[str]:
        """What the result line's ``load_as`` says: the ``--load-as`` factory, "variant", or None."""
        if self._side is not None:
            return self._side
        return "variant" if self.spec.refactored else None

    def _build(self, mode: str) -> torch.nn.Module:
        from harness.runtime.builder import build

        if self._side in self._problems:
            raise Unsupported(self._problems[self._side])
        try:
            return build(self.load_spec, mode, self.device).model
        except Unsupported as e:
            what = "the case to load into" if not self.refactored else f"the load-side model ({self.load_as})"
            self._problems[self._side] = f"this env cannot build {what}: {e}"
            raise Unsupported(self._problems[self._side]) from None

    def fresh(self) -> torch.nn.Module:
        from harness.runtime.builder import poison

        self.built = True
        template = self._templates.get(self._side)
        if template is None:
            template = self._templates[self._side] = self._build("empty")
            return template
        poison(template)
        return template

    def meta(self) -> torch.nn.Module:
        from harness.runtime.builder import build

        self.built = True
        try:
            return build(self.load_spec, "meta", self.device).model
        except Unsupported as e:
            raise Unsupported(f"this env cannot build the case on the meta device: {e}") from None

    def initial(self) -> dict[str, Any]:
        """The load-side model's state as its code initialises it (an added key's value in the generic migration)."""
        if self._side not in self._initial:
            self._initial[self._side] = dict(self._build("init").state_dict())
        return self._initial[self._side]

    def wanted(self) -> dict[str, Slot]:
        """The load-side model's slots (its state-dict keys and non-persistent buffers)."""
        from harness.runtime.refactor import module_slots

        if self._side not in self._wanted:
            template = self._templates.get(self._side)
            if template is None:
                template = self._templates[self._side] = self._build("empty")
            self._wanted[self._side] = module_slots(template)
        return self._wanted[self._side]

    def expected(self, view_name: str, prefix: str, remap: Remap, reference: Path) -> tuple[View, ByteSource, list[str]]:
        """`expected_view` of the artifact's view through `remap`, built once per load side while the remap is the proposal.

        Building it reads the saved bytes of every split or fused tensor; the
        cells of one artifact share it. A remap the bytes settled differently
        (ambiguous renames) is built afresh.
        """
        from harness.runtime.refactor import expected_view

        key = (self._side, view_name, prefix)
        if remap is not self._remaps.get(key):
            return expected_view(self._views[view_name], remap, self.wanted(), reference, prefix)
        if key not in self._expected:
            self._expected[key] = expected_view(self._views[view_name], remap, self.wanted(), reference, prefix)
        return self._expected[key]

    def remap(self, view_name: str = "module", prefix: str = "") -> Remap:
        """The proposed remap from the artifact's `view_name` view (names under `prefix`) to the load-side model."""
        from harness.runtime.refactor import propose, view_slots

        key = (self._side, view_name, prefix)
        if key not in self._remaps:
            view = self._views.get(view_name)
            if view is None:
                raise LookupError(f"the manifest has no {view_name!r} view to propose a remap from")
            self._remaps[key] = propose(view_slots(view, prefix), self.wanted())
        return self._remaps[key]

    def migrated(self, obj: Any, how: str) -> Any:
        """What the loader returned, after the migration `how` names ("remap" or a user's MODULE:FUNCTION)."""
        from harness.runtime.refactor import apply_remap, call_migration

        if how != "remap":
            return call_migration(how, obj)
        if not isinstance(obj, dict):
            raise TypeError(f"migrate=remap maps a state dict's keys; the file holds a {type(obj).__name__}")
        return apply_remap(obj, self.remap(), self.initial())

    def training(self, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        from harness.runtime.builder import make_training

        return make_training(model, self.load_spec)

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


def _model_prefix(view_name: str) -> Optional[str]:
    """Where a view keeps the model's tensors: a module view at the top, a training checkpoint's under ``model.``."""
    return {"module": "", "resume": "model.", "stepped": "model."}.get(view_name)


def _through_remap(
    ctx: CaseContext, loaded: Loaded, view: View, reference: Path,
) -> Optional[tuple[Remap, View, ByteSource, list[str]]]:
    """(remap, the view the load-side model must match, its bytes, added names), or None where nothing moved.

    The remap is the one proposed from names, with renames the names left
    ambiguous settled by where the load put each saved tensor's bytes.
    """
    from harness.runtime.refactor import resolve_by_digests

    prefix = _model_prefix(loaded.view)
    if prefix is None:
        return None
    remap = resolve_by_digests(ctx.remap(loaded.view, prefix), view, loaded.snapshot, prefix)
    expected, source, added = ctx.expected(loaded.view, prefix, remap, reference)
    return remap, expected, source, added


def _refactor_error(base: CellResult, found: Optional[Diagnosis], ctx: CaseContext, manifest: Manifest) -> tuple[CellResult, Optional[Diagnosis]]:
    """A load into refactored model code failed: put the proposed remap on the line, and in the fix."""
    name = next((v for v in ("module", "resume", "stepped") if v in manifest.views), None)
    prefix = _model_prefix(name) if name else None
    try:
        remap = ctx.remap(name, prefix) if name is not None and prefix is not None else None
    except Exception:  # the remap is advice; the load's own error is the outcome
        remap = None
    if remap is None:
        return base.with_(load_as=ctx.load_as), found
    base = base.with_(load_as=ctx.load_as, remap=remap.to_dict())
    if found is None or found.code != "model_code_changed" or not remap.moves:
        return base, found
    side = "its load-side variant" if ctx.load_as == "variant" else ctx.load_as
    fix = (f"migrate the checkpoint before load_state_dict: {remap.describe()} "
           f"(the harness applies this remap in the migrate=remap cell; check yours with load --migrate)")
    return base, replace(found, summary=f"{found.summary}; proposed remap onto {side}: {remap.summary()}", fix=fix)


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
    from harness.runtime.refactor import bytes_elsewhere, digest_confirmed, refactor_notes

    start = time.perf_counter()
    seen = Captured()
    ctx.use_load_side(options.load_as)
    try:
        problem = fmt.unavailable()
        if problem:
            return skip_result(base, problem)
        with captured() as seen:
            if options.apply == "step" and "stepped" not in manifest.views:
                why = manifest.saved_with.get("no_step", "saved by a harness before apply=step")
                raise Unsupported(f"the source env recorded no training step to compare with: {why}")
            ctx.use_artifact(manifest.forward, reference, manifest.views)
            loaded = fmt.load(directory, options, ctx)
            view = manifest.views.get(loaded.view)
            if view is None:
                msg = f"the manifest has no {loaded.view!r} view (saved by another harness version?)"
                raise LookupError(msg)
            recovered = fmt.recover(loaded, view)
            refactor = _through_remap(ctx, loaded, view, reference) if ctx.built and ctx.refactored else None
            if refactor is None:
                comparison = compare(view, loaded.snapshot, reference, loaded.ignore)
            else:
                remap, expected, source, added = refactor
                comparison = compare(expected, loaded.snapshot, source, [*loaded.ignore, *added])
                comparison.notes += bytes_elsewhere(expected, loaded.snapshot, [d.tensor for d in comparison.differences if d.aspect == "bits"])
            comparison.differences[:0] = [Difference(name, aspect) for name, aspect in loaded.key_problems]
            if refactor is not None:
                # Bytes confirm the remap only where something else than the remap put them there
                # (torch's own hooks, the user's migration): migrate=remap checks that it fits and loses no bit.
                confirmed = comparison.ok and options.migrate != "remap"
                base = base.with_(load_as=ctx.load_as, remap=(digest_confirmed(remap) if confirmed else remap).to_dict())
                comparison.notes += refactor_notes(remap, options.migrate)
            forward: Optional[dict[str, Any]]
            forward_diff: Optional[Difference]
            forward, forward_diff = None, None
            if loaded.module is not None:
                # A refactored model runs other code than the saver's: its outputs may differ in the
                # last bits (a fused projection split in three), so differences are drift; the tensors decide.
                key = compute_key if refactor is None else f"other code: {ctx.load_as}"
                forward, forward_diff = ctx.forward(
                    (str(directory), loaded.view, type(loaded.module).__qualname__), loaded.module, comparison.ok,
                    lambda: check_forward(loaded.module, manifest.forward, reference, key),
                )
            elif loaded.forward_skip:
                forward = {"status": "skip", "detail": loaded.forward_skip}
        if refactor is not None:
            forward_diff = None  # other code than the saver's: outputs (even their number) may differ
        if refactor is not None and forward and forward.get("status") in ("drift", "error"):
            comparison.notes.append("the load-side model runs other code than the saver's (a refactor): "
                                    f"its forward {forward['status']} is reported, not judged; the tensors decide")
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
        if ctx.built and ctx.refactored:
            base, found = _refactor_error(base, found, ctx, manifest)
        first = message.splitlines()[0] if message else ""
        return base.with_(
            outcome=Outcome.ERROR,
            detail=f"{etype}: {first}"[:400],
            notes=warned,
            error={"type": etype, "module": type(e).__module__, "message": message},
            diagnosis=found.to_dict() if found else None,
            seconds=time.perf_counter() - start,
        )
