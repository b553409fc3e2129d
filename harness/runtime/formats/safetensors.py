"""`safetensors`: ``safetensors.torch.save_model`` / ``load_model``.

safetensors stores dense, contiguous tensors without device tags and without
pickle; ``save_model`` drops tied duplicates and ``load_model`` re-ties them.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional

from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved
from harness.runtime.load_options import LoadOptions
from harness.runtime.manifest import module_snapshot

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["Safetensors"]


def _st() -> ModuleType:
    import safetensors.torch

    return safetensors.torch


@functools.lru_cache(maxsize=None)
def _unusable() -> Optional[str]:
    """Why safetensors cannot round-trip a tensor with this torch, or None.

    The library installs beside any torch, but its loader calls torch APIs
    that old releases lack (``torch.frombuffer`` arrived in 1.10): one tiny
    round trip in memory tells, instead of a failed cell per file.
    """
    try:
        st = _st()
    except ImportError as e:
        return f"safetensors is not installed in this env ({e})"
    import torch

    try:
        st.load(st.save({"probe": torch.zeros(2)}))
    except Exception as e:
        version = getattr(__import__("safetensors"), "__version__", "?")
        return f"safetensors {version} does not work with this torch: {type(e).__name__}: {e}"[:300]
    return None


class Safetensors(Format):
    name = "safetensors"
    summary = "safetensors.torch.save_model / load_model"
    filename = "model.safetensors"
    emulatable = False  # the file format has no device tags to emulate

    def unavailable(self) -> Optional[str]:
        return _unusable()

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        st = _st()
        kw = {}
        if "force_contiguous" in inspect.signature(st.save_model).parameters:
            kw["force_contiguous"] = True
        st.save_model(built.model, str(directory / self.filename), **kw)
        return Saved(files=[self.filename], views={"module": module_snapshot(built.model)})

    def variants(self, cuda: bool) -> list[LoadOptions]:
        return [LoadOptions(apply="model", device=d) for d in ["cpu"] + (["cuda"] if cuda else [])]

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        st = _st()
        model = ctx.fresh()
        kw = {}
        if options.device and "device" in inspect.signature(st.load_model).parameters:
            kw["device"] = options.device
        st.load_model(model, str(directory / self.filename), strict=True, **kw)
        return Loaded("module", module_snapshot(model), module=model)
