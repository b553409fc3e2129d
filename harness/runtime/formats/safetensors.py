"""`safetensors`: ``safetensors.torch.save_model`` / ``load_model``.

safetensors stores dense, contiguous tensors without device tags and without
pickle; ``save_model`` drops tied duplicates and ``load_model`` re-ties them.

Besides its own loader it sweeps one wrong one: ``torch.load`` given the
file. Releases that do not know the format (2.4 and older) try to unpickle
it, reading its header length as pickle opcodes; newer ones (2.15) hand a
path ending in ``.safetensors`` to ``safetensors.torch.load_file``, and the
tensors they return are put into the model as ``load_model`` puts them, and
compared.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional

from harness.runtime.dtypes import dtype_name
from harness.runtime.errors import InputError, Unsupported
from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved, load_migrated
from harness.runtime.load_options import LoadOptions, torch_load_kwargs
from harness.runtime.manifest import module_snapshot
from harness.runtime.storage import storage_span

if TYPE_CHECKING:
    import torch

    from harness.runtime.builder import Built

__all__ = ["DISPATCHED", "Safetensors", "load_tensors_into"]

#: The note on a cell whose torch.load returned the file's tensors.
DISPATCHED = (
    "dispatched: torch.load handed the .safetensors path to safetensors.torch.load_file; "
    "call safetensors.torch.load_file(f) or load_model(model, f) directly (older torch releases cannot read it)"
)


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


def _unheld_dtype(st: ModuleType, model: torch.nn.Module) -> Optional[str]:
    """Why this safetensors cannot hold one of the model's dtypes, or None.

    The file format has no complex dtypes, and releases before float8 (or
    uint16/32/64) support refuse those: an empty tensor of each dtype tells.
    """
    import torch

    seen = set()
    for t in model.state_dict().values():
        if not isinstance(t, torch.Tensor) or t.dtype in seen:
            continue
        seen.add(t.dtype)
        try:
            st.save({"probe": torch.empty((0,), dtype=t.dtype)})
        except Exception as e:
            version = getattr(__import__("safetensors"), "__version__", "?")
            return f"safetensors {version} cannot hold {dtype_name(t.dtype)} tensors ({type(e).__name__}: {e})"[:300]
    return None


class Safetensors(Format):
    name = "safetensors"
    summary = "safetensors.torch.save_model / load_model"
    filename = "model.safetensors"
    migrates = True
    emulatable = False  # the file format has no device tags to emulate

    def unavailable(self) -> Optional[str]:
        return _unusable()

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        st = _st()
        problem = _unheld_dtype(st, built.model)
        if problem:
            raise Unsupported(problem)
        kw = {}
        if "force_contiguous" in inspect.signature(st.save_model).parameters:
            kw["force_contiguous"] = True
        st.save_model(built.model, str(directory / self.filename), **kw)
        return Saved(files=[self.filename], views={"module": module_snapshot(built.model)})

    def variants(self, cuda: bool) -> list[LoadOptions]:
        own = [LoadOptions(apply="model", device=d) for d in ["cpu"] + (["cuda"] if cuda else [])]
        # One wrong-loader cell: the file given to torch.load, as people do.
        return own + [LoadOptions(map_location="cpu", weights_only="default", apply="model", loader="torch.load")]

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        if options.loader == "torch.load":
            return self._torch_load(directory, options, ctx)
        if options.loader not in (None, "safetensors.torch.load_file"):
            msg = f"loader={options.loader!r}: the safetensors format loads with safetensors.torch or torch.load"
            raise InputError(msg)
        st = _st()
        if options.migrate:
            model = ctx.fresh()
            state = st.load_file(str(directory / self.filename), device=options.device or "cpu")
            problems = load_migrated(model, ctx.migrated(state, options.migrate))
            return Loaded("module", module_snapshot(model), module=model, key_problems=problems)
        model = ctx.fresh()
        kw = {}
        if options.device and "device" in inspect.signature(st.load_model).parameters:
            kw["device"] = options.device
        st.load_model(model, str(directory / self.filename), strict=True, **kw)
        return Loaded("module", module_snapshot(model), module=model)

    def _torch_load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        state = torch.load(str(directory / self.filename), **torch_load_kwargs(options))
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            msg = f"torch.load returned a {type(state).__name__} from a safetensors file, not a dict of tensors"
            raise TypeError(msg)
        model = ctx.fresh()
        load_tensors_into(model, state)
        snap = module_snapshot(model)
        snap.notes.append(DISPATCHED)
        return Loaded("module", snap, module=model)


def load_tensors_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put a safetensors file's tensors into `model` strictly, as ``load_model`` does.

    The file holds one name per group of tied tensors (``save_model`` drops
    the others): a model key the file lacks is fine only when it shares its
    storage with a key the file has. Anything else missing, and any key the
    model does not have, raises as ``load_state_dict(strict=True)`` would.
    """
    own = model.state_dict()
    loaded = {storage_span(own[k]) for k in state if k in own}
    missing, unexpected = model.load_state_dict(state, strict=False)
    untied = sorted(k for k in missing if storage_span(own[k]) not in loaded)
    if untied or unexpected:
        msg = f"Error(s) in loading state_dict for {type(model).__name__}:"
        if untied:
            msg += f"\n    Missing key(s) in state_dict: {', '.join(repr(k) for k in untied)}"
        if unexpected:
            msg += f"\n    Unexpected key(s) in state_dict: {', '.join(repr(k) for k in sorted(unexpected))}"
        raise RuntimeError(msg)
