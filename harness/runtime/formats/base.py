"""The small interface every format implements.

A format saves a built case into a directory and returns the *views* to
record (snapshots of what it wrote); it lists the load options it sweeps; and
it loads the directory under one option, returning a snapshot of what came
back, the view to compare it with, and the module to run for the forward
check when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from harness.runtime.manifest import Snapshot, View, flatten, module_snapshot

if TYPE_CHECKING:
    import torch

    from harness.runtime.builder import Built
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.spec import Spec

__all__ = [
    "Format",
    "LoadContext",
    "Loaded",
    "Saved",
    "file_snapshot",
    "load_migrated",
    "meta_leftovers",
    "prefixed_state_dict",
]


@dataclass
class Saved:
    files: list[str]
    views: dict[str, Snapshot]  # name -> Snapshot
    saved_with: dict[str, Any] = field(default_factory=dict)
    #: the program the file holds, when it is not the eager model (a trace,
    #: an exported graph): its own outputs are what a load must reproduce
    forward_module: Optional[torch.nn.Module] = None


@dataclass
class Loaded:
    view: str
    snapshot: Snapshot
    module: Optional[torch.nn.Module] = None  # what to call for the forward check
    forward_skip: Optional[str] = None
    ignore: Sequence[str] = ()  # names of the view the load does not restore, by design
    #: keys a migrated state left out of, or added to, what the model takes:
    #: (name, "missing" | "unexpected"); a migration must fit the model exactly
    key_problems: Sequence[tuple[str, str]] = ()


class LoadContext:
    """What a load may need besides the file: fresh models of the case, built here."""

    device: str = "cpu"

    def fresh(self) -> torch.nn.Module:  # pragma: no cover - interface
        """A freshly built model (poisoned, so nothing passes unless loaded)."""
        raise NotImplementedError

    def meta(self) -> torch.nn.Module:  # pragma: no cover - interface
        """The model built on the meta device, for assign=True."""
        raise NotImplementedError

    def training(self, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:  # pragma: no cover - interface
        """A fresh (optimizer, scheduler) pair for `model`."""
        raise NotImplementedError

    @property
    def spec(self) -> Spec:  # pragma: no cover - interface
        """The case's spec."""
        raise NotImplementedError

    def saved_inputs(self) -> tuple[torch.Tensor, ...]:  # pragma: no cover - interface
        """The exact inputs the source env ran the model on, on this context's device."""
        raise NotImplementedError

    def migrated(self, obj: Any, how: str) -> Any:  # pragma: no cover - interface
        """`obj` (what the loader returned) after the migration `how` (`LoadOptions.migrate`) names."""
        raise NotImplementedError


class Format:
    """One way to save and load a model."""

    name: ClassVar[str] = ""
    #: whether a migration (`LoadOptions.migrate`) can run between its loader and the model
    migrates: ClassVar[bool] = False
    #: whether its file pickles the model's class, so ``rename_class`` applies
    renames_classes: ClassVar[bool] = False
    #: whether a cuda-emulated save can tag this format's storages
    emulatable: ClassVar[bool] = True
    summary: ClassVar[str] = ""

    def unavailable(self) -> Optional[str]:
        """Why this env cannot use the format at all, or None."""
        return None

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        raise NotImplementedError

    def recover(self, loaded: Loaded, expected: View) -> list[str]:
        """Find saved tensors the load holds somewhere its snapshot does not look.

        Adds them to ``loaded.snapshot`` and returns one note per kind of
        place, so the tensors are still compared bit for bit and the reader
        learns where they went. Most formats have no such place.
        """
        return []

    def variants(self, cuda: bool) -> list[LoadOptions]:
        raise NotImplementedError

    def torch_load_path(self, directory: Path) -> Optional[Path]:
        """The file this format hands to ``torch.load``, or None where torch.load is not its loader.

        A weights_only refusal of that file gets a diagnosis naming every
        global it needs (`harness.runtime.runner.cell`).
        """
        return None

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<format {self.name}>"


def prefixed_state_dict(model: torch.nn.Module, prefix: Optional[str]) -> dict[str, torch.Tensor]:
    """model.state_dict(), with every key prefixed as torch.compile or DataParallel would."""
    from collections import OrderedDict

    state = model.state_dict()
    if not prefix:
        return state
    out = OrderedDict((f"{prefix}{k}", v) for k, v in state.items())
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        out._metadata = OrderedDict((f"{prefix}{k}".rstrip(".") if k else prefix.rstrip("."), v) for k, v in meta.items())  # type: ignore[attr-defined]
    return out


def file_snapshot(obj: Any, model: torch.nn.Module, prefix: Optional[str] = None, under: str = "") -> Snapshot:
    """Snapshot of a saved dict, with parameter/buffer roles taken from `model`."""
    snap = flatten(obj)
    roles = {f"{under}{prefix or ''}{k}": role for k, (_, role) in module_snapshot(model).tensors.items()}
    for name, (t, role) in list(snap.tensors.items()):
        snap.tensors[name] = (t, roles.get(name, role))
    return snap


def load_migrated(model: torch.nn.Module, state: Any) -> list[tuple[str, str]]:
    """Load a migrated state into `model` leniently, returning what did not fit.

    A key the migration left out keeps the poisoned value of the fresh
    model, so the comparison names the tensor and its first differing
    element; a key the model does not take is reported beside it.
    """
    from harness.runtime.storage import storage_span

    own = model.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A tied key may be absent (safetensors keeps one name per storage):
    # missing is fine when its storage partner was loaded.
    loaded = {storage_span(own[k]) for k in state if k in own and not own[k].is_sparse}
    missing = [k for k in missing if own[k].is_sparse or storage_span(own[k]) not in loaded]
    return [(k, "missing") for k in missing] + [(k, "unexpected") for k in unexpected]


def meta_leftovers(snapshot: Snapshot) -> list[str]:
    return sorted(n for n, (t, _) in snapshot.tensors.items() if t.device.type == "meta")
