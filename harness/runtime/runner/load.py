"""The load phase: every artifact of every source env, under every load option.

Runs in the target env. The parent (this module) plans the cells from the
manifests, skips cells already recorded for the same artifact and harness,
and hands the rest to a worker process one artifact at a time; it writes
each result line as soon as it arrives, marks results that an expectation
explains, and turns a dead or hung worker into a ``crash`` or ``timeout``
cell before starting a new worker for the remaining cells.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from harness import build_id
from harness.runtime.defaults import DEFAULT_TIMEOUT
from harness.runtime.diagnose import diagnose
from harness.runtime.digest import digest_bytes
from harness.runtime.env import check_device, label_for, labelled_numpy, require_torch
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.fileio import read_json, write_json
from harness.runtime.formats import FORMATS
from harness.runtime.formats.base import Format
from harness.runtime.load_options import LoadOptions
from harness.runtime.progress import Progress
from harness.runtime.refactor import UserRefactors
from harness.runtime.results import CellResult, EnvSidecar, Outcome, line_key
from harness.runtime.runner.isolation import Worker, WorkerDied, WorkerTimeout
from harness.runtime.store import ArtifactRef, ResultsWriter, discover_artifacts, read_results

__all__ = ["Filters", "LoadSummary", "load_phase", "refactor_tagged", "refactor_variants", "run_cells"]



@dataclass
class Filters:
    """Restrict a load to some cells (``--source``, ``--case``, ``--format``, ``--cell``)."""

    source: Optional[str] = None
    case: Optional[str] = None
    format: Optional[str] = None
    cell: Optional[str] = None

    def keep(self, base: CellResult) -> bool:
        if self.source and base.source not in self.source.split(","):
            return False
        if self.case and base.case != self.case:
            return False
        if self.format and base.format != self.format:
            return False
        return not (self.cell and base.key != self.cell)


@dataclass
class LoadSummary:
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    regressions: list[CellResult] = field(default_factory=list)
    mismatches: list[CellResult] = field(default_factory=list)
    expected: int = 0
    reused: int = 0
    total: int = 0
    results_path: Optional[Path] = None
    startup_seconds: float = 0.0  # until the worker had imported torch and said hello
    seconds: float = 0.0  # running cells, after startup
    restarts: list[float] = field(default_factory=list)  # seconds from each worker's death to its successor's hello
    startups: list[float] = field(default_factory=list)  # seconds from each forked worker's fork to its hello

    @property
    def exit_status(self) -> int:
        return 1 if self.regressions or self.mismatches else 0

    def lines(self) -> list[str]:
        counts = ", ".join(f"{self.counts[o.value]} {o.value}" for o in Outcome if self.counts[o.value])
        out = [f"load {self.target}: {self.total} cells ({counts or 'none'}); {self.expected} expected failures; {self.reused} already recorded"]
        shown = (self.mismatches + [r for r in self.regressions if r.outcome != Outcome.MISMATCH])[:15]
        for r in shown:
            out.append(f"  {r.outcome.value.upper():8} {r.source} -> {r.target} {r.case} {r.format} [{LoadOptions.from_dict(r.load).id}]: {r.detail[:200]}")
        more = len(self.regressions) + len(self.mismatches) - len(shown)
        if more > 0:
            out.append(f"  ... and {more} more: see {self.results_path}")
        return out


@dataclass
class _Artifact:
    ref: ArtifactRef
    manifest: dict[str, Any]
    id: str
    cells: list[CellResult]
    planned_skip: bool = False  # not saved in the source env: no worker needed


#: The apply modes that build the load-side model (a `--load-as` changes what they load into).
_BUILDS_MODEL = ("strict", "assign", "resume", "step", "model")


def refactor_tagged(base: CellResult, spec: dict[str, Any], refactors: UserRefactors) -> CellResult:
    """`base`, tagged ``refactor`` where the flags load its user case into changed code.

    The refactor expectations (a strict load into changed code fails) then
    apply to its failures, as they do to the curated refactor cases.
    """
    if refactors.names(spec) and "refactor" not in base.tags:
        return base.with_(tags=[*base.tags, "refactor"])
    return base


def refactor_variants(fmt: Format, spec: dict[str, Any], variants: list[LoadOptions], refactors: UserRefactors) -> list[LoadOptions]:
    """A format's options for one case, with the cells a refactor adds.

    A curated refactor case (its spec has ``load_as``) gets its remap
    applied (``migrate=remap``) where the format loads into a model, and
    its moved class mapped (``rename_class``) where the format pickles it.
    A user case named by ``--load-as`` loads every model-building cell into
    the new factory, plus its migration: the user's (``--migrate``), else
    the proposed remap; ``--rename-class`` adds a mapped load of every user
    case's whole-model pickle.
    """
    user_new = refactors.load_as.get(spec.get("factory") or "")
    if user_new:
        # A wrong-loader cell tests the loader, not the model code: it keeps the case's own model.
        variants = [replace(o, load_as=user_new) if o.apply in _BUILDS_MODEL and not o.loader else o for o in variants]
    extra: list[LoadOptions] = []
    # A moved class alone (class_path) changes no key: there is nothing to migrate.
    moves_keys = bool(set(spec.get("load_as") or {}) - {"class_path", "description"})
    if fmt.migrates and (user_new or moves_keys):
        into = (LoadOptions(apply="model", device="cpu", load_as=user_new) if fmt.name == "safetensors"
                else LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict", load_as=user_new))
        # The user's own migration is the verdict where there is one; else the remap the harness proposes, applied.
        user_migration = refactors.migrate.get(spec.get("factory") or "") if user_new else None
        extra.append(replace(into, migrate=user_migration or "remap"))
    if fmt.renames_classes:
        old_class = spec.get("class_path")
        new_class = (spec.get("load_as") or {}).get("class_path")
        renames = []
        if old_class and new_class and old_class != new_class:
            renames.append(f"{old_class.replace(':', '.')}->{new_class.replace(':', '.')}")
        user_renames = refactors.rename_option()
        if spec.get("origin") == "user" and user_renames:
            renames.append(user_renames)
        # weights_only default: torch.load given a pickle_module defaults to weights_only=False (and 1.4 has no such argument)
        extra += [LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", rename_class=r) for r in renames]
    return variants + extra


def _plan(root: Path, target: str, cuda: bool, filters: Filters, refactors: UserRefactors) -> list[_Artifact]:
    planned = []
    for ref in discover_artifacts(root):
        raw = ref.manifest_path.read_bytes()
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError:
            msg = f"{ref.manifest_path}: not valid JSON (a damaged artifact: delete it and save again)"
            raise InputError(msg) from None
        artifact_id = digest_bytes(raw)[:16]
        spec = manifest.get("spec", {})
        source = manifest.get("source", {}).get("label", ref.source)
        base = CellResult(
            source=source, target=target, case=manifest.get("case", ref.case), format=manifest.get("format", ref.format),
            load={}, outcome=Outcome.SKIP, artifact=artifact_id, origin=spec.get("origin", "curated"),
            tags=list(spec.get("tags", [])), harness=build_id(),
        )
        fmt = FORMATS.get(base.format)
        planned_skip = manifest.get("status") != "saved" or fmt is None
        if planned_skip:
            reason = manifest.get("reason") or f"unknown format {base.format!r}"
            cells = [base.with_(detail=f"not saved in {source}: {reason}")]
        else:
            assert fmt is not None  # planned_skip otherwise
            cells = [refactor_tagged(base, spec, refactors).with_(load=o.to_dict())
                     for o in refactor_variants(fmt, spec, fmt.variants(cuda), refactors)]
        cells = [c for c in cells if filters.keep(c)]
        if cells:
            planned.append(_Artifact(ref, manifest, artifact_id, cells, planned_skip))
    return planned


def _sources(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(Path(root).glob("*/env.json")):
        try:
            out[path.parent.name] = read_json(path)
        except InputError:
            continue
    return out


def _compact(path: Path) -> None:
    """Keep the last line of each cell: a re-run of a changed artifact replaces its old lines."""
    if not path.exists():
        return
    lines = {}
    total = 0
    for d in read_results(path):
        total += 1
        lines[line_key(d)] = d
    if len(lines) == total:
        return
    from harness.runtime.fileio import write_text

    write_text(path, "".join(json.dumps(d, sort_keys=True) + "\n" for d in lines.values()))


def _predicted_target(device: str) -> tuple[str, str, bool]:
    """This env's label and whether CUDA could be here, without importing torch.

    Importing torch takes seconds; a re-run whose cells are all recorded
    should not pay it. The worker's fingerprint confirms the label whenever
    a worker does start.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        raise InputError("torch is not installed in this env") from None
    try:
        numpy_version: Optional[str] = version("numpy")
    except PackageNotFoundError:
        numpy_version = None
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    cuda_possible = not sys.platform.startswith("linux") or any(Path("/dev").glob("nvidia[0-9]*"))
    # labelled_numpy refuses a numpy that is not the one the session asked for.
    return label_for(torch_version, python, device, labelled_numpy(numpy_version)), torch_version, cuda_possible


def load_phase(
    artifacts: Path,
    results: Path,
    *,
    device: str = "cpu",
    timeout: float = DEFAULT_TIMEOUT,
    expectations: Optional[Expectations] = None,
    filters: Optional[Filters] = None,
    expect_torch: Optional[str] = None,
    progress: bool = True,
    worker_env: Optional[dict[str, str]] = None,
    refactors: Optional[UserRefactors] = None,
) -> LoadSummary:
    """Load every planned cell in this env and append the results.

    `refactors` (``--load-as``, ``--migrate``, ``--rename-class``) load user
    cases into changed model code (`refactor_variants`).
    """
    check_device(device, for_load=True)
    if timeout <= 0:
        raise InputError(f"--timeout={timeout!r} must be a positive number of seconds")
    discover_artifacts(artifacts)  # fail on a bad path before starting a worker
    expectations = expectations or Expectations.load()
    filters = filters or Filters()
    target, torch_version, cuda_possible = _predicted_target(device)
    require_torch(torch_version, expect_torch)
    worker = Worker(device, env=worker_env)
    summary = LoadSummary(target)
    hello: dict[str, Any] = {}

    def ensure_worker() -> dict[str, Any]:
        if not hello:
            started = time.perf_counter()
            hello.update(worker.start())
            summary.startup_seconds = time.perf_counter() - started
            require_torch(hello["hello"]["torch"], expect_torch)
            if hello["hello"]["label"] != target:
                msg = f"the worker runs as {hello['hello']['label']}, not {target}: is another torch on its path?"
                raise InputError(msg)
        return hello

    try:
        cuda = bool(ensure_worker().get("cuda")) if cuda_possible else False
        plan = _plan(Path(artifacts), target, cuda, filters, refactors or UserRefactors())
        with ResultsWriter(Path(results), target) as writer:
            summary.results_path = writer.path
            recorded = writer.recorded()
            todo = []
            for art in plan:
                # A cell asked for by name (--cell, the report's reproduce
                # command) runs again even when it is already recorded.
                pending = [c for c in art.cells if filters.cell or recorded.get(c.key) != (art.id, build_id())]
                summary.reused += len(art.cells) - len(pending)
                if pending:
                    todo.append((art, pending))
            total = sum(len(p) for _, p in todo)
            if any(not art.planned_skip for art, _ in todo):
                ensure_worker()
            ready = time.perf_counter()
            bar = Progress(f"load {target}", total) if progress and total else None

            def record(result: CellResult) -> None:
                result = expectations.apply(result)
                writer.write(result)
                summary.total += 1
                summary.counts[result.outcome.value] += 1
                summary.expected += int(result.expected)
                if result.outcome == Outcome.MISMATCH:
                    summary.mismatches.append(result)
                elif result.regression:
                    summary.regressions.append(result)
                if bar:
                    bar.advance(1, result.outcome.value)

            for art, pending in todo:
                _run_artifact(worker, art, pending, record, timeout)
            writer.sync()
            summary.seconds = time.perf_counter() - ready
            if bar:
                bar.close()
        _compact(writer.path)
        _write_sidecar(Path(results), target, hello.get("hello"), Path(artifacts), plan, ensure_worker)
        return summary
    finally:
        summary.restarts, summary.startups = list(worker.restarts), list(worker.startups)
        worker.stop()  # the worker and its fork server: nothing outlives the phase (also on Ctrl-C)


def _write_sidecar(
    results: Path, target: str, fp: Optional[dict[str, Any]], artifacts: Path, plan: list[_Artifact],
    fingerprint: Callable[[], dict[str, Any]],
) -> None:
    """RESULTS/<target>.env.json: the fingerprints of the envs and the specs of the cases."""
    path = results / f"{target}.env.json"
    old: Optional[EnvSidecar] = None
    if path.exists():
        try:
            old = EnvSidecar.from_dict(read_json(path))
        except ValueError:  # an older or damaged sidecar: this load writes a whole new one
            old = None
    if fp is None:  # no worker ran: keep the recorded fingerprint, or take one now
        fp = old.target if old else fingerprint()["hello"]
    cases = dict(old.cases) if old else {}
    cases.update({a.manifest["case"]: a.manifest.get("spec") for a in plan if a.manifest.get("spec")})
    write_json(path, EnvSidecar(fp, _sources(artifacts), cases).to_dict())


def _run_artifact(worker: Worker, art: _Artifact, cells: list[CellResult], record: Callable[[CellResult], None], timeout: float) -> None:
    """Run `cells` of one artifact; crash or timeout costs one cell and a new worker."""
    if art.planned_skip:
        for cell in cells:
            record(cell)
        return
    run_cells(worker, art.ref.directory, cells, record, timeout)


def run_cells(worker: Worker, directory: Path, cells: list[CellResult], record: Callable[[CellResult], None], timeout: float) -> None:
    """Run `cells` of the artifact in `directory` on `worker`, recording each result in order.

    A cell that kills the worker is a ``crash`` (diagnosed from the worker's
    last words) and one that outlives `timeout` a ``timeout``; either costs
    that cell and a new worker, and the cells after it still run. The load
    phase and a shrink's steps run cells through here.
    """
    cell: Optional[CellResult]
    remaining = list(cells)
    while remaining:
        first = remaining[0]
        request = {"artifact": str(Path(directory).resolve()), "source": first.source, "cells": [c.to_dict() for c in remaining]}
        try:
            worker.send(request)
            while remaining:
                message = worker.read(timeout)
                if "result" not in message:
                    continue
                record(CellResult.from_dict(message["result"]))
                remaining.pop(0)
            done = worker.read(timeout)
            if not done.get("done"):
                raise WorkerDied("the worker answered out of turn")
        except WorkerTimeout:
            cell = remaining.pop(0)
            worker.stop_child()
            record(cell.with_(outcome=Outcome.TIMEOUT, detail=f"no result within --timeout {timeout:g}s; the worker was killed"))
            worker.restart()  # forked from the warm fork server: milliseconds, no new import of torch
        except WorkerDied as e:
            cell = remaining.pop(0) if remaining else None
            worker.stop_child()
            if cell is not None:
                found = diagnose("crash", e.detail, cell.format, cell.load)
                record(cell.with_(outcome=Outcome.CRASH, detail=f"the worker process died: {e.detail}",
                                  diagnosis=found.to_dict() if found else None))
            worker.restart()
