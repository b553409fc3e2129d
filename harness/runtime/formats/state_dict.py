"""`state_dict`: ``torch.save(model.state_dict())`` in the zip format (the default since 1.6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.file_sources import opened
from harness.runtime.formats.base import (
    Format,
    LoadContext,
    Loaded,
    Saved,
    file_snapshot,
    load_migrated,
    meta_leftovers,
    prefixed_state_dict,
)
from harness.runtime.load_options import (
    LoadOptions,
    apply_sweep,
    check_assign,
    device_index_sweep,
    source_sweep,
    torch_load_kwargs,
    torch_load_sweep,
)
from harness.runtime.manifest import flatten, module_snapshot

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["StateDict"]


class StateDict(Format):
    name = "state_dict"
    migrates = True
    summary = "torch.save(model.state_dict()), zip serialization"
    filename = "model.pt"
    zip_serialization = True
    #: sweep the map_locations that name a GPU index (one format is enough)
    sweeps_device_index = True

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        state = prefixed_state_dict(built.model, prefix)
        path = directory / self.filename
        kwargs = {} if self.zip_serialization else {"_use_new_zipfile_serialization": False}
        torch.save(state, str(path), **kwargs)
        return Saved(
            files=[self.filename],
            views={"file": file_snapshot(state, built.model, prefix), "module": module_snapshot(built.model)},
        )

    def variants(self, cuda: bool) -> list[LoadOptions]:
        # The device-index map_locations and the ways the file reaches
        # torch.load are swept narrowly, once each and not crossed with the
        # rest: the matrix multiplies every option by every case and env.
        # mmap with a source only where the file format can be mapped at all.
        indexes = device_index_sweep(cuda) if self.sweeps_device_index else []
        return torch_load_sweep(cuda) + apply_sweep(("strict", "assign"), cuda) + indexes + source_sweep(mmap=self.zip_serialization)

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        kwargs = torch_load_kwargs(options)
        with opened(directory / self.filename, options.source) as f:
            state = torch.load(f, **kwargs)
        if options.migrate:
            model = ctx.fresh()
            problems = load_migrated(model, ctx.migrated(state, options.migrate))
            return Loaded("module", module_snapshot(model), module=model, key_problems=problems)
        if options.apply == "strict":
            model = ctx.fresh()
            model.load_state_dict(state, strict=True)
            return Loaded("module", module_snapshot(model), module=model)
        if options.apply == "assign":
            check_assign()
            model = ctx.meta()
            model.load_state_dict(state, strict=True, assign=True)
            snap = module_snapshot(model)
            # Non-persistent buffers are not in a state dict, so assign=True
            # leaves them on the meta device: not a loading defect, but the
            # user must re-create them. Compare what the file carries.
            left: Sequence[str] = tuple(n for n in meta_leftovers(snap) if snap.tensors[n][1] == "buffer_np")
            if left:
                skip = (
                    f"{', '.join(left)} stay on the meta device after load_state_dict(assign=True): "
                    "non-persistent buffers are not in a state dict; re-create them after loading"
                )
                snap.notes.append(skip)
                return Loaded("module", snap, forward_skip=skip, ignore=left)
            return Loaded("module", snap, module=model)
        return Loaded("file", flatten(state))
