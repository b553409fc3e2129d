"""Save and load one spec in this process: replay, property tests, quick checks.

The same save and cell code as the two-phase run, without the worker: a
failure here reproduces in any env with ``python -m harness replay SPEC.json``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

from harness import build_id
from harness.runtime.env import fingerprint
from harness.runtime.expect import Expectations
from harness.runtime.formats import FORMATS, Format
from harness.runtime.load_options import LoadOptions
from harness.runtime.manifest import Manifest
from harness.runtime.refactor import UserRefactors
from harness.runtime.results import CellResult, Outcome
from harness.runtime.runner.cell import CaseContext, run_cell
from harness.runtime.runner.load import refactor_tagged, refactor_variants
from harness.runtime.runner.save import save_case
from harness.runtime.spec import Spec

__all__ = ["roundtrip"]


def roundtrip(
    spec: Spec,
    formats: Optional[list[Format]] = None,
    *,
    workdir: Optional[Path] = None,
    options: Optional[Callable[[str, LoadOptions], bool]] = None,
    expectations: Optional[Expectations] = None,
    device: str = "cpu",
    refactors: Optional[UserRefactors] = None,
) -> list[CellResult]:
    """Save `spec` in each format and load every variant back; the results.

    `options(fmt_name, LoadOptions) -> bool` selects variants (default: all).
    `refactors` load a user case into changed code, as ``load --load-as`` does.
    """
    formats = formats or list(FORMATS.values())
    fp = fingerprint(device)
    target = fingerprint("cpu" if device != "cuda" else "cuda")
    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="roundtrip-") if own_dir else None
    root = Path(tmp.name) if tmp else Path(workdir)  # type: ignore[arg-type]  # workdir is set whenever tmp is None
    try:
        case_dir = root / fp.label / spec.name
        manifests = save_case(spec, case_dir, fp, formats, device)
        # The save made its moved class (a class_path) importable here; a load
        # in another env cannot import it, and neither may the loads below.
        # (Imported here: casemodel imports torch, this module does not.)
        from harness.runtime.casemodel import forget_moved

        forget_moved()
        ctx = CaseContext(spec.to_dict(), target.device)
        results = []
        from harness.runtime.env import cuda_available

        for m in manifests:
            base = CellResult(
                source=fp.label, target=target.label, case=spec.name, format=m.format, load={},
                outcome=Outcome.SKIP, origin=spec.origin, tags=list(spec.tags), harness=build_id(),
            )
            base = refactor_tagged(base, spec.to_dict(), refactors or UserRefactors())
            if m.status != "saved":
                results.append(base.with_(detail=f"not saved in {fp.label}: {m.reason}"))
                continue
            manifest = Manifest.from_dict(m.to_dict())
            fmt = FORMATS[m.format]
            for opt in refactor_variants(fmt, spec.to_dict(), fmt.variants(cuda_available()), refactors or UserRefactors()):
                if options is not None and not options(m.format, opt):
                    continue
                r = run_cell(base.with_(load=opt.to_dict()), manifest, fmt, LoadOptions.from_dict(opt.to_dict()),
                             case_dir / m.format, case_dir / "reference.bin", ctx, target.compute_key)
                results.append(expectations.apply(r) if expectations else r)
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()
