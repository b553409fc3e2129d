"""`torchscript`: ``torch.jit.save`` of the scripted model, or of a trace when scripting fails.

Besides its own loader it sweeps one wrong one: ``torch.load`` given the
archive, as people do. torch.load hands a TorchScript archive to
torch.jit.load (with a warning), and from torch 2.6 refuses to when
weights_only is True, its default there; older releases (1.4) unpickle it
and fail on its ``__torch__`` classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.runtime.errors import InputError, Unsupported
from harness.runtime.formats.base import Format, LoadContext, Loaded, Saved
from harness.runtime.load_options import LoadOptions, map_location_value, torch_load_kwargs
from harness.runtime.manifest import View, module_snapshot

if TYPE_CHECKING:
    from harness.runtime.builder import Built

__all__ = ["DISPATCHED", "TorchScript", "jit_load"]

#: The note on a cell whose torch.load returned what torch.jit.load would.
DISPATCHED = (
    "dispatched: torch.load recognised a TorchScript archive and handed it to torch.jit.load; "
    "call torch.jit.load(f) directly (torch 2.6 and later refuse this with weights_only=True, their default)"
)


def jit_load(path: Path, options: LoadOptions) -> Any:
    """``torch.jit.load(path)`` with the map_location `options` names (it takes a device or a string, never a dict or a callable)."""
    import torch

    kw = {}
    if options.map_location not in (None, "none"):
        kw["map_location"] = map_location_value(options.map_location)
    return torch.jit.load(str(path), **kw)


class TorchScript(Format):
    name = "torchscript"
    summary = "torch.jit.save(torch.jit.script(model)), else a trace"
    filename = "model.ts"
    # The TorchScript serializer is C++ and never asks Python's location
    # taggers, so a cuda-emulated save would silently be a CPU file.
    emulatable = False

    def unavailable(self) -> Optional[str]:
        import torch

        if not hasattr(torch, "jit") or not hasattr(torch.jit, "save"):
            return "torch.jit is not available in this torch"
        return None

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        saved_with: dict[str, str] = {}
        try:
            scripted = torch.jit.script(built.model)
            saved_with["method"] = "script"
        except Exception as e:  # scripting is best effort; tracing is the documented fallback
            saved_with["method"] = "trace"
            saved_with["script_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            if built.inputs is None:
                msg = f"torch.jit.script failed ({saved_with['script_error']}) and there are no example inputs to trace with"
                raise Unsupported(msg) from None
            scripted = torch.jit.trace(built.model, built.inputs, check_trace=False)
        torch.jit.save(scripted, str(directory / self.filename))
        return Saved(files=[self.filename], views={"module": module_snapshot(scripted)}, saved_with=saved_with, forward_module=scripted)

    def variants(self, cuda: bool) -> list[LoadOptions]:
        # torch.jit.load takes a device or a string, never a dict or a callable.
        maps = ["none", "cpu", "device:cpu"] + (["cuda"] if cuda else [])
        # One wrong-loader cell: the archive given to torch.load, as people do.
        wrong = LoadOptions(map_location="cpu", weights_only="default", loader="torch.load")
        return [LoadOptions(map_location=m) for m in maps] + [wrong]

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        path = directory / self.filename
        if options.loader in (None, "torch.jit.load"):
            model = jit_load(path, options)
            return Loaded("module", module_snapshot(model), module=model)
        if options.loader != "torch.load":
            msg = f"loader={options.loader!r}: the torchscript format loads with torch.jit.load or torch.load"
            raise InputError(msg)
        model = torch.load(str(path), **torch_load_kwargs(options))
        if not isinstance(model, torch.jit.ScriptModule):
            msg = f"torch.load returned a {type(model).__name__} from a TorchScript archive, not a ScriptModule"
            raise TypeError(msg)
        snap = module_snapshot(model)
        snap.notes.append(DISPATCHED)
        return Loaded("module", snap, module=model)

    def recover(self, loaded: Loaded, expected: View) -> list[str]:
        # Archives written by torch 1.4 record buffers as plain attributes
        # for newer releases: state_dict() and named_buffers() omit them,
        # though forward still uses them. Compare them anyway, and say so:
        # re-saving such a module's state_dict() loses them.
        if loaded.module is None:
            return []
        found = []
        for name, rec in expected.tensors.items():
            if name in loaded.snapshot.tensors or rec.role not in ("buffer", "buffer_np"):
                continue
            value = _attribute(loaded.module, name)
            if value is not None:
                loaded.snapshot.tensors[name] = (value, rec.role)
                found.append(name)
        if not found:
            return []
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        return [
            f"torchscript_buffers_as_attributes: {shown} are not in this module's state_dict() or named_buffers(), "
            "only attributes (an archive from an older torch); compared as attributes. Re-saving its state_dict() "
            "would drop them: copy them by name, or re-script the model under this torch"
        ]


def _attribute(module: object, dotted: str) -> Optional[object]:
    import torch

    value = module
    for part in dotted.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            return None
    return value if isinstance(value, torch.Tensor) else None
