"""`full_model`: ``torch.save(model)``, the whole pickled module.

Loading needs the model's classes importable and, since torch 2.6 made
``weights_only=True`` the default, an explicit ``weights_only=False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved
from harness.runtime.load_options import LoadOptions, torch_load_kwargs, torch_load_sweep
from harness.runtime.manifest import module_snapshot

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["FullModel"]


class FullModel(Format):
    name = "full_model"
    summary = "torch.save(model): the pickled nn.Module"
    filename = "model.full.pt"

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        torch.save(built.model, str(directory / self.filename))
        return Saved(files=[self.filename], views={"module": module_snapshot(built.model)})

    def variants(self, cuda: bool) -> list[LoadOptions]:
        return torch_load_sweep(cuda)

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        model = torch.load(str(directory / self.filename), **torch_load_kwargs(options))
        if not isinstance(model, torch.nn.Module):
            msg = f"torch.load returned a {type(model).__name__}, not an nn.Module"
            raise TypeError(msg)
        return Loaded("module", module_snapshot(model), module=model)
