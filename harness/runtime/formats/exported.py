"""`exported`: ``torch.export.save`` of ``torch.export.export(model, inputs)``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved
from harness.runtime.load_options import LoadOptions
from harness.runtime.manifest import Snapshot

if TYPE_CHECKING:
    import torch

    from harness.runtime.builder import Built

__all__ = ["Exported", "say_why_the_pt2_reader_failed"]


def program_snapshot(ep: torch.export.ExportedProgram) -> Snapshot:
    """Parameters and buffers of an ExportedProgram, plus its lifted constants."""
    import torch

    snap = Snapshot()
    for name, t in ep.state_dict.items():
        snap.tensors[name] = (t, "parameter" if isinstance(t, torch.nn.Parameter) else "buffer")
    for name, t in (getattr(ep, "constants", None) or {}).items():
        if isinstance(t, torch.Tensor):
            snap.tensors[f"$constant.{name}"] = (t, "constant")
    return snap


class Exported(Format):
    name = "exported"
    summary = "torch.export.save(torch.export.export(model, inputs))"
    filename = "model.pt2"

    def unavailable(self) -> Optional[str]:
        import torch

        export = getattr(torch, "export", None)
        if export is None or not hasattr(export, "save") or not hasattr(export, "export"):
            return "torch.export.save does not exist in this torch (it appeared in torch 2.1)"
        return None

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        if built.inputs is None:
            raise Unsupported("torch.export needs example inputs; the user case's factory gives none")
        ep = torch.export.export(built.model, tuple(built.inputs))
        torch.export.save(ep, str(directory / self.filename))
        return Saved(files=[self.filename], views={"program": program_snapshot(ep)}, forward_module=ep.module())

    def variants(self, cuda: bool) -> list[LoadOptions]:
        return [LoadOptions()]  # torch.export.load takes no map_location

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        path = str(directory / self.filename)
        try:
            ep = torch.export.load(path)
        except KeyError as e:
            say_why_the_pt2_reader_failed(path, e)
            raise
        return Loaded("program", program_snapshot(ep), module=ep.module())


def say_why_the_pt2_reader_failed(path: str, error: KeyError) -> None:
    """Surface the error torch.export.load swallowed before its fallback failed.

    torch 2.8's ``torch.export.load`` tries the PT2 archive reader, catches
    any RuntimeError from it (a CUDA storage on a CPU-only host among them)
    and falls back to the pre-2.8 layout, which then reports only a missing
    ``version`` record. The real cause goes out as a warning, which the cell
    records and its diagnosis reads.
    """
    if "version" not in str(error):
        return
    try:
        from torch.export.pt2_archive._package import load_pt2
    except ImportError:
        return
    try:
        load_pt2(path)
    except RuntimeError as cause:
        warnings.warn(f"torch.export.load fell back to the pre-2.8 archive layout after its PT2 reader failed: {cause}",
                      stacklevel=2)
