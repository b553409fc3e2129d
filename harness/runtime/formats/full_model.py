"""`full_model`: ``torch.save(model)``, the whole pickled module.

Loading needs the model's classes importable and, since torch 2.6 made
``weights_only=True`` the default, an explicit ``weights_only=False``.

Besides torch.load it sweeps one wrong loader: ``torch.jit.load`` given the
file, as people do with a "model file"; it is no TorchScript archive.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.errors import InputError
from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved
from harness.runtime.formats.torchscript import jit_load
from harness.runtime.load_options import LoadOptions, torch_load_kwargs, torch_load_sweep
from harness.runtime.manifest import module_snapshot
from harness.runtime.refactor import parse_renames, renaming_pickle

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["FullModel"]


def _resolve_class(module: str, name: str) -> type:
    """A class a renamed path points to; the harness's moved classes are made, not imported (`casemodel.moved_class`)."""
    import importlib

    from harness.runtime.casemodel import MOVED_PREFIX, moved_class

    if module.startswith(MOVED_PREFIX):
        return moved_class(f"{module}:{name}")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


class FullModel(Format):
    name = "full_model"
    renames_classes = True
    summary = "torch.save(model): the pickled nn.Module"
    filename = "model.full.pt"

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        torch.save(built.model, str(directory / self.filename))
        return Saved(files=[self.filename], views={"module": module_snapshot(built.model)})

    def variants(self, cuda: bool) -> list[LoadOptions]:
        # One wrong-loader cell: the pickled module given to torch.jit.load.
        return torch_load_sweep(cuda) + [LoadOptions(map_location="cpu", loader="torch.jit.load")]

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        path = directory / self.filename
        if options.loader == "torch.jit.load":
            # No release measured (1.4 to 2.15) reads a torch.save file this
            # way; if one ever does, what it returns is compared, and said.
            model = jit_load(path, options)
            loaded = Loaded("module", module_snapshot(model), module=model)
            loaded.snapshot.notes.append("torch.jit.load read a torch.save file (a pickled module)")
            return loaded
        if options.loader not in (None, "torch.load"):
            msg = f"loader={options.loader!r}: the full_model format loads with torch.load or torch.jit.load"
            raise InputError(msg)
        kwargs = torch_load_kwargs(options)
        if options.rename_class:
            kwargs["pickle_module"] = renaming_pickle(parse_renames(options.rename_class), resolve=_resolve_class)
        model = torch.load(str(path), **kwargs)
        if not isinstance(model, torch.nn.Module):
            msg = f"torch.load returned a {type(model).__name__}, not an nn.Module"
            raise TypeError(msg)
        return Loaded("module", module_snapshot(model), module=model)
