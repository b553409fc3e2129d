"""The save phase: build every case and save it in every format, with manifests.

Runs in the env under test. A case is saved whole (all its formats, one
reference file) into temporary directories that are renamed into place at
the end, so a killed save never leaves a half-written artifact under its
final name, and a re-run skips cases already saved by the same harness from
the same spec.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness import build_id
from harness.runtime.env import Fingerprint, check_device, fingerprint
from harness.runtime.errors import SpecError, Unsupported
from harness.runtime.fileio import read_json, replace_dir, write_json
from harness.runtime.manifest import Manifest, Reference, record_view
from harness.runtime.progress import Progress
from harness.runtime.spec import Spec

if TYPE_CHECKING:
    from harness.runtime.builder import Built
    from harness.runtime.formats import Format

__all__ = ["SaveSummary", "build_device", "save_case", "save_phase"]


@dataclass
class SaveSummary:
    label: str
    saved: int = 0
    reused: int = 0
    unsupported: list[tuple[str, str, Optional[str]]] = field(default_factory=list)  # (case, format, reason)
    failed: list[tuple[str, str, Optional[str]]] = field(default_factory=list)


def _current(case_dir: Path, spec: Spec, formats: list[Format], label: str) -> bool:
    if not (case_dir / "reference.bin").exists():
        return False
    for fmt in formats:
        path = case_dir / fmt.name / "manifest.json"
        if not path.exists():
            return False
        try:
            m = read_json(path)
        except Exception:
            return False
        if m.get("harness") != build_id() or m.get("spec_digest") != spec.digest() or m.get("source", {}).get("label") != label:
            return False
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def _save_format(fmt: Format, built: Built, tmp: Path, manifest: Manifest, reference: Reference, device: str, compute_key: str) -> None:
    from harness.runtime.builder import torch_state
    from harness.runtime.emulation import cuda_tag, emulate_cuda, file_has_tag

    emulated = device == "cuda-emulated"
    index = int(manifest.spec.get("device_index", 0))
    problem = fmt.unavailable()
    if problem is None and emulated and not fmt.emulatable:
        problem = f"{fmt.name} cannot be saved as cuda-emulated: its serializer ignores torch.serialization location tags"
    if problem:
        manifest.status, manifest.reason = "unsupported", problem
        return
    start = time.perf_counter()
    try:
        with emulate_cuda(emulated, index), torch_state(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = fmt.save(built, tmp, manifest.spec.get("state_dict_prefix"))
    except Unsupported as e:
        manifest.status, manifest.reason = "unsupported", str(e)
        return
    except Exception as e:  # the format cannot save this model here: a fact to report, not a crash
        manifest.status, manifest.reason = "failed", f"the source env could not save it: {_first_line(e)}"
        return
    manifest.seconds = time.perf_counter() - start
    if emulated:
        untagged = [f for f in saved.files if not file_has_tag(tmp / f, index)]
        if untagged:
            manifest.status = "unsupported"
            manifest.reason = (
                f"{fmt.name} wrote no {cuda_tag(index)} storage tag under emulation ({', '.join(untagged)}), "
                "so it cannot stand for a GPU save"
            )
            return
    manifest.emulated = emulated
    manifest.files = saved.files
    manifest.saved_with = saved.saved_with
    manifest.views = {name: record_view(snap, reference) for name, snap in saved.views.items()}
    if saved.forward_module is not None:
        from harness.runtime.forward import record_forward

        manifest.forward = record_forward(saved.forward_module, built.inputs, compute_key, reference)
    manifest.status = "saved"


def build_device(spec: Spec, device: str) -> str:
    """Where a save builds the case: ``cuda:<device_index>`` for a real CUDA save, else the CPU.

    A host with fewer GPUs than the index cannot place the case there: that
    is Unsupported (the save records a skip with the reason), not a failure.
    """
    if device != "cuda":
        return "cpu"
    import torch

    index = spec.device_index
    count = torch.cuda.device_count()
    if index >= count:
        msg = f"the case is placed on cuda:{index} (device_index={index}) and this host has {count} GPU(s) (torch.cuda.device_count() is {count})"
        raise Unsupported(msg)
    return f"cuda:{index}"


def save_case(spec: Spec, case_dir: Path, fp: Fingerprint, formats: list[Format], device: str) -> list[Manifest]:
    """Save one case in every format; returns its manifests."""
    from harness.runtime.builder import build
    from harness.runtime.forward import record_forward

    case_dir.mkdir(parents=True, exist_ok=True)
    work = case_dir / ".tmp-save"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    reference = Reference(work / "reference.bin")
    built: Optional[Built] = None
    problem: Optional[str] = None
    status = "unsupported"
    try:
        built = build(spec, "init", build_device(spec, device))
    except Unsupported as e:
        problem = f"this env cannot build the case: {e}"
    except SpecError:
        raise
    except Exception as e:  # an old torch that the builder's feature detection missed: report it, go on
        status, problem = "failed", f"the source env could not build it: {_first_line(e)}"
    forward = None
    if built is not None:
        forward = record_forward(built.model, built.inputs, fp.compute_key, reference)
    manifests = []
    for fmt in formats:
        tmp = work / fmt.name
        tmp.mkdir()
        m = Manifest(
            case=spec.name, format=fmt.name, source=fp.to_dict(), spec=spec.to_dict(),
            spec_digest=spec.digest(), status=status, reason=problem, forward=forward, harness=build_id(),
        )
        if built is not None:
            _save_format(fmt, built, tmp, m, reference, device, fp.compute_key)
        write_json(tmp / "manifest.json", m.to_dict())
        manifests.append(m)
    reference.write()
    os.replace(work / "reference.bin", case_dir / "reference.bin")
    for fmt in formats:
        replace_dir(work / fmt.name, case_dir / fmt.name)
    shutil.rmtree(work, ignore_errors=True)
    return manifests


def save_phase(out: Path, specs: list[Spec], device: str, formats: list[Format], *, progress: bool = True) -> SaveSummary:
    """Save every case x format of `specs` under ``out/<label>/``."""
    check_device(device)
    if not specs:
        raise SpecError("cases", "the corpus is empty: nothing to save")
    fp = fingerprint(device)
    label_dir = Path(out) / fp.label
    label_dir.mkdir(parents=True, exist_ok=True)
    write_json(label_dir / "env.json", fp.to_dict())
    summary = SaveSummary(fp.label)
    bar = Progress(f"save {fp.label}", len(specs) * len(formats)) if progress else None
    for spec in specs:
        case_dir = label_dir / spec.name
        if _current(case_dir, spec, formats, fp.label):
            summary.reused += len(formats)
            if bar:
                bar.advance(len(formats), "reused")
            continue
        for m in save_case(spec, case_dir, fp, formats, device):
            if m.status == "saved":
                summary.saved += 1
            elif m.status == "failed":
                summary.failed.append((m.case, m.format, m.reason))
            else:
                summary.unsupported.append((m.case, m.format, m.reason))
            if bar:
                bar.advance(1, m.status)
    if bar:
        bar.close()
    return summary
