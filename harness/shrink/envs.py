"""The two envs of a shrink: a save worker in the source env, a load worker in the target env.

Both are started once and kept: a step sends the candidate spec to the
save worker (`harness.runtime.runner.save_worker`), which saves it in the
cell's one format, then sends the one cell to the ordinary load worker
(`harness.runtime.runner.worker`), through the same `run_cells` the load
phase uses, so a crash or a hang in the target env is a ``crash`` or
``timeout`` step and a new worker, exactly as in a run. Each worker is
checked to be the env the cell names (torch, Python, device), as a phase
checks ``--expect-torch``: a shrink that ran in the wrong env would shrink
another failure.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness import build_id
from harness.runtime.child import Child, ChildDied, ChildGarbled, ChildTimeout
from harness.runtime.defaults import STARTUP_TIMEOUT
from harness.runtime.env import parse_label
from harness.runtime.errors import InputError
from harness.runtime.results import CellResult, Outcome
from harness.runtime.runner.isolation import Worker
from harness.runtime.runner.load import run_cells

__all__ = ["EnvPair", "Step", "same_env"]


def same_env(wanted: str, found: dict[str, Any]) -> Optional[str]:
    """None when the fingerprint `found` is the env label `wanted` names (golden- prefix aside); else why not."""
    want, have = parse_label(wanted), parse_label(found["label"])
    for part in ("torch", "python", "device"):
        if want[part] != have[part]:
            return f"it runs {part} {have[part] or '(none)'}, the cell's env {wanted} has {want[part]}"
    if want["numpy"] and want["numpy"] != (found.get("numpy") or ""):
        return f"it runs numpy {found.get('numpy') or '(none)'}, the cell's env {wanted} has {want['numpy']}"
    return None


@dataclass
class Step:
    """What one candidate did: its result line in the target env, or why the source env did not save it."""

    result: Optional[dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)
    artifact: Optional[Path] = None  #: the saved format folder
    problem: str = ""  #: why there is no result (the save refused or failed)


class EnvPair:
    """A save worker in the source env and a load worker in the target env, kept across steps."""

    def __init__(self, source: str, target: str, source_python: str, target_python: str, timeout: float) -> None:
        self.source, self.target = source, target
        self.source_python, self.target_python = source_python, target_python
        self.timeout = timeout
        self.save_device = parse_label(source)["device"]
        self.load_device = parse_label(target)["device"]
        self.saver: Optional[Child] = None
        self.loader = Worker(self.load_device, python=target_python)
        self.fingerprints: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        """Start both workers; InputError (one line) if either cannot start or is not the cell's env."""
        # The save worker imports torch while the load worker starts: the two start in the time of one.
        self.saver = Child("harness.runtime.runner.save_worker", [self.save_device], python=self.source_python)
        loaded = self.loader.start()
        self._check("source", self.source, self.source_python, self._saver_hello())
        self._check("target", self.target, self.target_python, loaded["hello"])

    def _start_saver(self) -> dict[str, Any]:
        self.saver = Child("harness.runtime.runner.save_worker", [self.save_device], python=self.source_python)
        return self._saver_hello()

    def _saver_hello(self) -> dict[str, Any]:
        assert self.saver is not None
        try:
            return self.saver.read(STARTUP_TIMEOUT)["hello"]
        except (ChildDied, ChildTimeout, ChildGarbled) as e:
            how = self.saver.stop()
            msg = f"the save worker could not start with --source-python {self.source_python} ({type(e).__name__}: {how})"
            raise InputError(msg) from None

    def _check(self, side: str, wanted: str, python: str, found: dict[str, Any]) -> None:
        problem = same_env(wanted, found)
        if problem:
            msg = f"--{side}-python {python} is not the {side} env: {problem} (give the interpreter of an env with that torch)"
            raise InputError(msg)
        self.fingerprints[side] = found

    def run(self, spec: dict[str, Any], fmt: str, load: dict[str, Any], case_dir: Path) -> Step:
        """Save `spec` in format `fmt` into `case_dir` in the source env and load it under `load` in the target env."""
        assert self.saver is not None
        if case_dir.exists():
            shutil.rmtree(case_dir)
        try:
            self.saver.send({"spec": spec, "case_dir": str(case_dir), "formats": [fmt]})
            answer = self.saver.read(self.timeout)
        except ChildTimeout:
            self._restart_saver()
            return Step(None, problem=f"the source env took over {self.timeout:g}s to save it")
        except (ChildDied, ChildGarbled) as e:
            self._restart_saver()
            return Step(None, problem=f"the source env's save worker died: {e}")
        if "error" in answer:
            return Step(None, problem=f"the source env refused the spec: {answer['error']}")
        saved = answer["saved"][0]
        if saved["status"] != "saved":
            return Step(None, problem=f"not saved in {self.source}: {saved['reason']}")
        artifact = case_dir / fmt
        from harness.runtime.fileio import read_json

        manifest = read_json(artifact / "manifest.json")
        base = CellResult(
            source=self.source, target=self.target, case=spec["name"], format=fmt, load=load,
            outcome=Outcome.SKIP, origin=spec.get("origin", "curated"), tags=list(spec.get("tags", [])), harness=build_id(),
        )
        results: list[CellResult] = []
        run_cells(self.loader, artifact, [base], results.append, self.timeout)
        return Step(results[0].to_dict(), manifest, artifact)

    def _restart_saver(self) -> None:
        if self.saver is not None:
            self.saver.stop()
        self._start_saver()

    def stop(self) -> None:
        """Stop both workers (idempotent)."""
        if self.saver is not None:
            self.saver.stop()
            self.saver = None
        self.loader.stop()
