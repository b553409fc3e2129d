"""Load options: how a file is opened, as plain data, and the sweep of them.

A `LoadOptions` names each option by a string so that it travels in JSON
(`map_location` cannot: it may be a device, a dict or a callable). The same
sweep runs in every env; an option this torch lacks (``mmap`` before 2.1,
``assign`` before 2.1) becomes a skip with the reason, found by looking at
``torch.load``'s signature, never at its version.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from harness.runtime.errors import InputError, Unsupported

__all__ = [
    "INDEX_MAP_LOCATIONS",
    "LOADERS",
    "MAP_LOCATIONS",
    "MMAP_SOURCES",
    "SOURCES",
    "LoadOptions",
    "apply_sweep",
    "check_assign",
    "device_index_sweep",
    "map_location_value",
    "source_sweep",
    "torch_load_kwargs",
    "torch_load_sweep",
]

#: How map_location is spelled in results, and what it means.
MAP_LOCATIONS = {
    "none": "no map_location: storages go back where they were saved",
    "cpu": 'map_location="cpu"',
    "device:cpu": 'map_location=torch.device("cpu")',
    "dict:cuda:0->cpu": 'map_location={"cuda:0": "cpu"}',
    "callable": "map_location=lambda storage, loc: storage",
    "cuda": 'map_location="cuda"',
    "cuda:0": 'map_location="cuda:0"',
    "device:cuda:0": 'map_location=torch.device("cuda", 0)',
    "dict:cuda:1->cuda:0": 'map_location={"cuda:1": "cuda:0"}',
    "dict:cuda:1->cpu": 'map_location={"cuda:1": "cpu"}',
}
#: The forms that name a GPU index: swept once each (`device_index_sweep`),
#: not crossed with weights_only and mmap in every torch.load sweep.
INDEX_MAP_LOCATIONS = ("cuda:0", "device:cuda:0", "dict:cuda:1->cuda:0", "dict:cuda:1->cpu")
#: The forms that put storages on a GPU: swept only where the loading env has one.
_NEEDS_CUDA = ("cuda", "cuda:0", "device:cuda:0", "dict:cuda:1->cuda:0")
#: How the file reaches torch.load (`LoadOptions.source`; None: its path as a
#: str). `harness.runtime.file_sources` makes each one.
SOURCES = {
    "pathlib": "a pathlib.Path",
    "file": 'an open binary file: open(path, "rb")',
    "bytesio": "io.BytesIO of the file's bytes",
    "stream": "a file-like that reads but cannot seek or tell (a pipe, a socket, an HTTP body)",
    "stream-buffered": "that unseekable stream read whole into io.BytesIO first (the fix for stream)",
    "nonascii": "a copy of the file under a path with non-ASCII characters (modèle-模型.pt)",
    "gzip": "the file gzip-compressed (model.pt.gz), given as its path",
    "gzip-decompressed": "that gzip file decompressed into io.BytesIO first (the fix for gzip)",
    "lfs-pointer": "a Git LFS pointer file in place of the file (a clone made without git lfs)",
    "html-page": "an HTML error page in place of the file (a download that failed)",
    "truncated": "the first half of the file (an interrupted copy)",
}
#: Sources swept with mmap=True too: the real paths it maps, and an open
#: file, to record that torch.load(mmap=True) needs a path.
MMAP_SOURCES = ("pathlib", "nonascii", "file")
WEIGHTS_ONLY = ("default", "true", "false")
#: The loaders a wrong-loader cell (`LoadOptions.loader`) may call, and what
#: each reads: every format names the loader it is meant for, and a few
#: formats also sweep one that is not (issue 12, point 8).
LOADERS = {
    "torch.load": "torch.load(f): torch.save files (it hands TorchScript archives to torch.jit.load)",
    "torch.jit.load": "torch.jit.load(f): TorchScript archives (torch.jit.save)",
    "safetensors.torch.load_file": "safetensors.torch.load_file(f): safetensors files",
}


@dataclass(frozen=True)
class LoadOptions:
    """One way of opening a file. None means "does not apply to this format"."""

    map_location: Optional[str] = None
    weights_only: Optional[str] = None
    mmap: Optional[bool] = None
    apply: Optional[str] = None  # none | strict | assign | resume | step | model
    device: Optional[str] = None  # safetensors' device argument
    #: "needed": allowlist every global the file needs (torch.serialization's
    #: safe globals, found by `harness.runtime.allowlist`): the weights_only fix, applied
    safe_globals: Optional[str] = None
    #: how the file reaches torch.load: one of SOURCES; None is its path as a str
    source: Optional[str] = None
    #: the loader called on the file when it is not the format's own (a
    #: wrong-loader cell): one of LOADERS; None is the format's own loader
    loader: Optional[str] = None
    #: the factory ``MODULE:FUNCTION`` that builds the load-side model in place
    #: of the case's own (``load --load-as OLD=NEW``): model code that changed
    #: between the save and the load. None: the case's own model (a curated
    #: refactor case carries its load-side variant in its spec, `Spec.load_side`)
    load_as: Optional[str] = None
    #: the migration run on what the loader returned before it goes into the
    #: load-side model: "remap" (the remap the harness proposes, applied: the
    #: fix for a refactor) or a user's ``MODULE:FUNCTION`` (``load --migrate``)
    migrate: Optional[str] = None
    #: class paths the unpickler maps, ``old.mod.Cls->new.mod.Cls`` (several
    #: joined by ","): ``load --rename-class``, or a curated case's moved class
    rename_class: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def id(self) -> str:
        """A stable, readable key: ``apply=none;map_location=cpu;mmap=0;weights_only=default``."""
        parts = []
        for k, v in sorted(self.to_dict().items()):
            parts.append(f"{k}={int(v) if isinstance(v, bool) else v}")
        return ";".join(parts) or "default"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadOptions:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def torch_load_sweep(cuda: bool) -> list[LoadOptions]:
    """Every map_location x weights_only x mmap, loading the file as it is."""
    maps = [m for m in MAP_LOCATIONS if m not in INDEX_MAP_LOCATIONS and (m != "cuda" or cuda)]
    return [
        LoadOptions(map_location=m, weights_only=w, mmap=mm, apply="none")
        for m in maps for w in WEIGHTS_ONLY for mm in (False, True)
    ]


def device_index_sweep(cuda: bool) -> list[LoadOptions]:
    """Each map_location that names a GPU index once: ``{"cuda:1": "cpu"}`` everywhere, the CUDA ones where `cuda`."""
    return [
        LoadOptions(map_location=m, weights_only="default", mmap=False, apply="none")
        for m in INDEX_MAP_LOCATIONS if cuda or m not in _NEEDS_CUDA
    ]


def source_sweep(mmap: bool) -> list[LoadOptions]:
    """Each source form once (``map_location="cpu"``, weights_only default), and MMAP_SOURCES with mmap=True when `mmap`."""
    out = [LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source=s) for s in SOURCES]
    if mmap:
        out += [LoadOptions(map_location="cpu", weights_only="default", mmap=True, apply="none", source=s) for s in MMAP_SOURCES]
    return out


def apply_sweep(applies: tuple[str, ...], cuda: bool) -> list[LoadOptions]:
    """Loading into a model: each apply mode, with and without mmap, mapped or not."""
    maps = ["none", "cpu"] + (["cuda"] if cuda else [])
    return [
        LoadOptions(map_location=m, weights_only="default", mmap=mm, apply=a)
        for a in applies for mm in (False, True) for m in maps
    ]


def _identity_location(storage: Any, location: str) -> Any:
    return storage


def map_location_value(name: str) -> Any:
    """The Python value that `name` stands for."""
    import torch

    values: dict[str, Callable[[], Any]] = {
        "cpu": lambda: "cpu",
        "device:cpu": lambda: torch.device("cpu"),
        "dict:cuda:0->cpu": lambda: {"cuda:0": "cpu"},
        "callable": lambda: _identity_location,
        "cuda": lambda: "cuda",
        "cuda:0": lambda: "cuda:0",
        "device:cuda:0": lambda: torch.device("cuda", 0),
        "dict:cuda:1->cuda:0": lambda: {"cuda:1": "cuda:0"},
        "dict:cuda:1->cpu": lambda: {"cuda:1": "cpu"},
    }
    if name not in values:
        msg = f"map_location={name!r} is not one of {', '.join(MAP_LOCATIONS)}"
        raise InputError(msg)
    return values[name]()


def _has_param(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def torch_load_kwargs(options: LoadOptions) -> dict[str, Any]:
    """Keyword arguments for ``torch.load``; Unsupported for options this torch lacks."""
    import torch

    kw: dict[str, Any] = {}
    if options.map_location not in (None, "none"):
        kw["map_location"] = map_location_value(options.map_location)
    if options.weights_only not in (None, "default"):
        if not _has_param(torch.load, "weights_only"):
            raise Unsupported("torch.load has no weights_only parameter in this torch")
        kw["weights_only"] = options.weights_only == "true"
    if options.mmap:
        if not _has_param(torch.load, "mmap"):
            raise Unsupported("torch.load has no mmap parameter in this torch (it appeared in torch 2.1)")
        kw["mmap"] = True
    return kw


def check_assign() -> None:
    """load_state_dict(assign=True) needs a torch that has the parameter."""
    import torch

    if not _has_param(torch.nn.Module.load_state_dict, "assign"):
        raise Unsupported("nn.Module.load_state_dict has no assign parameter in this torch (it appeared in torch 2.1)")
