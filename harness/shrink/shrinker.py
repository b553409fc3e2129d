"""The shrink loop: take the first smaller candidate that still fails the same way, until none does.

Greedy, as Hypothesis's shrinker and delta debugging are: from the best
case so far, try its candidates (`candidates.candidates`, coarse passes
first) one by one; the first that fails the same way (`Signature.matches`)
becomes the best case, and the candidates are drawn again from it. A
candidate already tried is never run twice. It ends when no candidate of
the best case fails the same way (``done``), at ``--max-seconds`` or
``--max-steps``, or on Ctrl-C / SIGTERM; in every case the best case found
so far is what is written: ``spec.json`` and the best step's artifact after
every accepted step, the record and the plain-torch reproduction at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.runtime.defaults import DEFAULT_TIMEOUT
from harness.runtime.env import parse_label
from harness.runtime.errors import InputError
from harness.runtime.fileio import read_json, write_text
from harness.runtime.load_options import LoadOptions
from harness.runtime.results import CellResult, cell_key
from harness.runtime.spec import module_paths
from harness.runtime.store import read_results
from harness.shrink.candidates import EXTRA_LISTS, candidates, canonical, normalized
from harness.shrink.envs import EnvPair, Step
from harness.shrink.record import RECORD_NAME, ShrinkRecord, record_dir
from harness.shrink.signature import Signature, tensor_kinds

__all__ = ["ShrinkRequest", "find_cell", "shrink_cell", "sigterm_interrupts"]

_FAILURES = ("mismatch", "error", "crash", "timeout")


@dataclass
class ShrinkRequest:
    """What to shrink and where: one cell of a results folder, the two envs' interpreters, the bounds."""

    results: Path
    key: str
    target: Optional[str] = None  #: the target env; needed only when several targets hold the key
    source_python: Optional[str] = None  #: default: the env nox made for the source (`envs`), else this interpreter
    target_python: Optional[str] = None  #: default: the env nox made for the target (`envs`), else this interpreter
    #: env records of nox's sessions (``<label>.json`` with the env's ``python``), default RESULTS/../envs:
    #: where the interpreters are not given, the envs nox made are used
    envs: Optional[Path] = None
    out: Optional[Path] = None  #: default: RESULTS/../shrunk/<case>-<format>-<digest>
    max_seconds: float = 300.0
    max_steps: Optional[int] = None
    seed: int = 0
    timeout: float = DEFAULT_TIMEOUT  #: one step's save, and one step's load


@dataclass
class _Cell:
    line: CellResult
    spec: dict[str, Any]


def find_cell(results: Path, key: str, target: Optional[str] = None) -> tuple[CellResult, dict[str, Any]]:
    """The failing cell `key` of a results folder and its case's spec (from the env sidecar); InputError otherwise."""
    results = Path(results)
    if not results.is_dir():
        msg = f"--results {results} is not a folder (run the load phase first: nox -s roundtrip)"
        raise InputError(msg)
    files = [results / f"{target}.jsonl"] if target else sorted(results.glob("*.jsonl"))
    found: dict[str, CellResult] = {}
    for path in files:
        if not path.exists():
            msg = f"no results of target {target} in {results} (targets there: {', '.join(p.stem for p in sorted(results.glob('*.jsonl'))) or 'none'})"
            raise InputError(msg)
        for line in read_results(path):
            if isinstance(line, dict) and line.get("case") and _key(line) == key:
                found[path.stem] = CellResult.from_dict(line)
    if not found:
        where = f"target {target} of {results}" if target else str(results)
        msg = f"no cell {key!r} in {where} (cell keys are SOURCE|CASE|FORMAT|OPTIONS, as the report prints them)"
        raise InputError(msg)
    if len(found) > 1:
        msg = f"cell {key!r} was loaded in {len(found)} target envs ({', '.join(sorted(found))}): say which with --target"
        raise InputError(msg)
    label, cell = next(iter(found.items()))
    if cell.outcome.value not in _FAILURES:
        msg = f"cell {key!r} of {label} is a {cell.outcome.value}: only a {', '.join(_FAILURES)} can be shrunk"
        raise InputError(msg)
    sidecar = results / f"{label}.env.json"
    spec = (read_json(sidecar).get("cases") or {}).get(cell.case) if sidecar.exists() else None
    if not isinstance(spec, dict):
        msg = f"{sidecar} does not hold the spec of case {cell.case!r} (a results folder of an older harness? run the load again)"
        raise InputError(msg)
    return cell, spec


def _key(line: dict[str, Any]) -> str:
    return cell_key(line["source"], line["case"], line["format"], LoadOptions.from_dict(line.get("load") or {}).id)


def _sizes(spec: dict[str, Any], load: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """What a person reads as the size of a case: modules, tensors and elements saved, extras, load options."""
    views = manifest.get("views") or {}
    view: dict[str, Any] = views.get("file") or next(iter(views.values()), {})
    tensors = view.get("tensors") or []
    elements = sum(math.prod(t.get("shape") or []) for t in tensors)
    return {
        "modules": len(module_paths(spec["model"])) if "model" in spec else 0, "tensors": len(tensors), "elements": elements,
        "extras": sum(len(spec.get(k, [])) for k in EXTRA_LISTS), "load": LoadOptions.from_dict(load).id,
    }


def _observed(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("outcome", "detail", "diagnosis", "error", "forward", "notes")
    out = {k: result[k] for k in keep if result.get(k)}
    out["differences"] = (result.get("differences") or [])[:5]
    return out


class _Reporter:
    """A live line on a terminal (rich), plain lines in CI: every accepted step, and every 10 s."""

    def __init__(self, what: str, enabled: bool) -> None:
        import os

        self.what = what
        self.enabled = enabled
        self.last = time.monotonic()
        self.status: Any = None
        if enabled and sys.stderr.isatty() and not (os.environ.get("TORCH_ROUNDTRIP_PLAIN") or os.environ.get("CI")):
            with contextlib.suppress(ImportError):
                from rich.console import Console

                self.status = Console(stderr=True).status(what)
                self.status.start()

    def line(self, text: str, *, always: bool = False) -> None:
        if not self.enabled:
            return
        if self.status is not None:
            self.status.update(f"{self.what}: {text}")
            if always:
                self.status.console.print(f"{self.what}: {text}")
            return
        now = time.monotonic()
        if always or now - self.last >= 10:
            self.last = now
            print(f"{self.what}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) stops a shrink as Ctrl-C does: the best case is still written."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Shrink:
    """One shrink in progress: the best case, the steps, the files."""

    def __init__(self, request: ShrinkRequest, cell: CellResult, spec: dict[str, Any], out: Path, pair: EnvPair) -> None:
        self.request, self.cell, self.out, self.pair = request, cell, out, pair
        self.original_spec = spec
        self.best_spec = normalized(spec)
        self.best_load = dict(cell.load)
        self.best: Optional[Step] = None
        self.signature: Optional[Signature] = None
        self.kinds: dict[str, str] = {}
        self.steps = 0
        self.history: list[dict[str, Any]] = []
        self.tried: set[str] = set()
        self.started = time.monotonic()
        self.initial: dict[str, Any] = {}
        #: the first step: the cell run again as it was recorded
        self.first: Optional[Step] = None
        self.startup_seconds = 0.0

    def run_step(self, spec: dict[str, Any], load: dict[str, Any]) -> Step:
        self.steps += 1
        self.tried.add(canonical(spec, load))
        case_dir = self.out / ".steps" / str(self.steps) / self.cell.source / self.cell.case
        step = self.pair.run(spec, self.cell.format, load, case_dir)
        return step

    def fails_alike(self, step: Step) -> bool:
        if step.result is None or self.signature is None:
            return False
        return self.signature.matches(step.result, {**self.kinds, **tensor_kinds(step.manifest)})

    def keep(self, spec: dict[str, Any], load: dict[str, Any], step: Step, change: Optional[dict[str, Any]]) -> None:
        """Make `step` the best case: its spec and artifact are written at once (a kill loses nothing found)."""
        assert step.artifact is not None
        self.best_spec, self.best_load = spec, load
        target = self.out / "artifact" / self.cell.source / self.cell.case
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(step.artifact.parent), str(target))
        self.best = Step(step.result, step.manifest, target / self.cell.format)
        write_text(self.out / "spec.json", json.dumps(spec, indent=1, sort_keys=True) + "\n")
        if change is not None:
            self.history.append({"step": self.steps, **change})
        self.clean_steps()

    def clean_steps(self) -> None:
        shutil.rmtree(self.out / ".steps", ignore_errors=True)

    def out_of_budget(self) -> Optional[str]:
        if time.monotonic() - self.started >= self.request.max_seconds:
            return "time_limit"
        if self.request.max_steps is not None and self.steps >= self.request.max_steps:
            return "step_limit"
        return None


def shrink_cell(request: ShrinkRequest, *, progress: bool = True) -> ShrinkRecord:
    """Shrink one failing cell; writes the folder (`ShrinkRecord`, spec.json, the reproduction) and returns the record."""
    cell, spec = find_cell(Path(request.results), request.key, request.target)
    out = Path(request.out) if request.out else record_dir(Path(request.results).resolve().parent / "shrunk", cell.target, request.key)
    _check_out(out)
    envs = Path(request.envs) if request.envs else Path(request.results).resolve().parent / "envs"
    source_python = _interpreter(request.source_python, cell.source, envs)
    target_python = _interpreter(request.target_python, cell.target, envs)
    parse_label(cell.source)  # a key's source must be an env label: one line if not
    pair = EnvPair(cell.source, cell.target, source_python, target_python, request.timeout)
    reporter = _Reporter(f"shrink {cell.case} {cell.format} ({cell.source} -> {cell.target})", progress)
    shrink = _Shrink(request, cell, spec, out, pair)
    status = "running"
    try:
        with sigterm_interrupts():
            try:
                pair.start()  # before the folder is touched: a wrong interpreter leaves nothing behind
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir(parents=True)
                shrink.startup_seconds = time.monotonic() - shrink.started
                shrink.started = time.monotonic()
                status = _search(shrink, reporter)
            except KeyboardInterrupt:
                status = "interrupted"
    finally:
        pair.stop()
        reporter.close()
        shrink.clean_steps()
    record = _record(shrink, status, source_python, target_python)
    out.mkdir(parents=True, exist_ok=True)  # interrupted while the workers started: the record still says so
    if shrink.best is not None:
        record.repro = _write_repro(shrink, record)
    record.write(out)
    return record


def _check_out(out: Path) -> None:
    """Refuse an --out that holds anything but an earlier shrink: a shrink replaces its folder whole."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RECORD_NAME).exists())):
        msg = f"--out {out} exists and is not a shrink's folder (no {RECORD_NAME} in it): give a new or empty folder"
        raise InputError(msg)


def _interpreter(given: Optional[str], label: str, envs: Path) -> str:
    """The interpreter of env `label`: the one given, else the one nox recorded in ENVS/<label>.json, else this one.

    Whichever it is, `EnvPair.start` checks that it runs the env the label names.
    """
    if given:
        return given
    record = envs / f"{label.removeprefix('golden-')}.json"
    if record.exists():
        python = read_json(record).get("python")
        if isinstance(python, str) and Path(python).exists():
            return python
    return sys.executable


def _search(shrink: _Shrink, reporter: _Reporter) -> str:
    """Reproduce, then shrink; how it ended (a `ShrinkRecord.status`)."""
    cell = shrink.cell
    first = shrink.run_step(shrink.best_spec, shrink.best_load)
    # Tags or the description may matter after all (an expectation, a
    # tag-driven case): then try the spec exactly as it was.
    if (first.result is None or first.result.get("outcome") != cell.outcome.value) and shrink.original_spec != shrink.best_spec:
        shrink.best_spec = dict(shrink.original_spec)
        first = shrink.run_step(shrink.best_spec, shrink.best_load)
    shrink.first = first
    shrink.kinds = tensor_kinds(first.manifest)
    shrink.signature = Signature.of(cell.to_dict(), shrink.kinds)
    shrink.initial = _sizes(shrink.best_spec, shrink.best_load, first.manifest)
    if not shrink.fails_alike(first):
        shrink.best = None
        shrink.history.append({"step": shrink.steps, "pass": "reproduce", "change": first.problem or _describe(first.result)})
        return "not_reproduced"
    shrink.keep(shrink.best_spec, shrink.best_load, first, None)
    if shrink.best_spec.get("factory"):
        return "opaque"
    reporter.line(f"reproduced ({shrink.signature.text()}); shrinking", always=True)
    while True:
        improved = False
        for candidate in candidates(shrink.best_spec, shrink.best_load, shrink.request.seed):
            if canonical(candidate.spec, candidate.load) in shrink.tried:
                continue
            budget = shrink.out_of_budget()
            if budget:
                return budget
            step = shrink.run_step(candidate.spec, candidate.load)
            if shrink.fails_alike(step):
                shrink.keep(candidate.spec, candidate.load, step, {"pass": candidate.pass_name, "change": candidate.change})
                reporter.line(f"step {shrink.steps}: {candidate.change}", always=True)
                improved = True
                break
            reporter.line(f"step {shrink.steps}, {len(shrink.history)} accepted, {_rate(shrink):.1f} steps/s")
        if not improved:
            return "done"


def _describe(result: Optional[dict[str, Any]]) -> str:
    if result is None:
        return "no result"
    return f"{result.get('outcome')}: {str(result.get('detail', ''))[:200]}"


def _rate(shrink: _Shrink) -> float:
    elapsed = time.monotonic() - shrink.started
    return shrink.steps / elapsed if elapsed > 0 else 0.0


def _command(request: ShrinkRequest, cell: CellResult, source_python: str, target_python: str) -> str:
    from harness.report.repro import shell_quote

    parts = ["python -m harness shrink", f"--results {shell_quote(str(request.results))}",
             f"--target {shell_quote(cell.target)}", f"--cell {shell_quote(request.key)}",
             f"--source-python {shell_quote(source_python)}", f"--target-python {shell_quote(target_python)}",
             f"--max-seconds {request.max_seconds:g}", f"--seed {request.seed}"]
    if request.max_steps is not None:
        parts.append(f"--max-steps {request.max_steps}")
    return " ".join(parts)


def _record(shrink: _Shrink, status: str, source_python: str, target_python: str) -> ShrinkRecord:
    cell, request = shrink.cell, shrink.request
    elapsed = time.monotonic() - shrink.started
    best = shrink.best
    envs = {
        side: {"label": label, "python": python, "torch": shrink.pair.fingerprints.get(side, {}).get("torch"),
               "fingerprint": shrink.pair.fingerprints.get(side, {})}
        for side, label, python in (("source", cell.source, source_python), ("target", cell.target, target_python))
    }
    record = ShrinkRecord(
        target=cell.target, key=request.key, source=cell.source, case=cell.case, format=cell.format, status=status,
        signature=shrink.signature.to_dict() if shrink.signature else Signature.of(cell.to_dict(), {}).to_dict(),
        steps=shrink.steps, accepted=len([h for h in shrink.history if h.get("pass") != "reproduce"]),
        seconds=round(elapsed, 3), steps_per_second=round(shrink.steps / elapsed, 2) if elapsed > 0 else 0.0,
        startup_seconds=round(shrink.startup_seconds, 3),
        initial=shrink.initial, command=_command(request, cell, source_python, target_python),
        seed=request.seed, envs=envs, history=shrink.history,
        opaque=(f"a user case: its model comes from the factory {shrink.best_spec['factory']}, which the harness cannot "
                "take apart, so the case is not shrunk; the reproduction calls the factory") if shrink.best_spec.get("factory") else None,
    )
    if best is not None and best.result is not None:
        record.final = _sizes(shrink.best_spec, shrink.best_load, best.manifest)
        record.load = shrink.best_load
        record.shrunk_key = cell_key(cell.source, shrink.best_spec.get("name", cell.case), cell.format, LoadOptions.from_dict(shrink.best_load).id)
        record.observed = _observed(best.result)
    elif shrink.first is not None:
        seen = shrink.first.result
        record.observed = _observed(seen) if seen else {"problem": shrink.first.problem}
    return record


def _write_repro(shrink: _Shrink, record: ShrinkRecord) -> dict[str, Any]:
    """The plain-torch reproduction of the best case; {"problem": why} where none can be written."""
    from harness.runtime.spec import Spec
    from harness.shrink.script import ReproUnsupported, write_repro

    assert shrink.best is not None and shrink.best.artifact is not None
    files: dict[str, Any] = {"spec": "spec.json"}
    try:
        files.update(write_repro(
            shrink.out, spec=Spec.from_dict(shrink.best_spec), fmt=shrink.cell.format, load=shrink.best_load,
            artifact=shrink.best.artifact, envs=record.envs, observed=record.observed, signature=record.signature,
            key=record.key, command=record.command,
        ))
    except ReproUnsupported as e:
        files["problem"] = str(e)
    return files
