"""`CaseModel`: the module every spec builds, and its forward.

The class path ``harness.runtime.casemodel.CaseModel`` is part of the artifact format:
`full_model` pickles reference it, so it must stay importable, under this
name, in every env of a matrix. Its forward interprets a *plan*, a nested
tuple of plain strings, so that the same class serves every architecture.

Plan nodes: ``("chain", children)`` feeds one input through its children in
turn; ``("parallel", children)`` gives each child its own input;
``("leaf", path, call)`` calls the submodule at `path`.

A spec with a ``class_path`` builds a *moved class* instead (`moved_class`):
a `CaseModel` subclass whose module (under `MOVED_PREFIX`) exists only as a
synthetic entry of ``sys.modules`` in a process that built it. A whole-model
pickle names that module, so any other process (another env) cannot import
it, as when a model class moved between the save and the load;
`forget_moved` makes this process see what another env sees.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

from harness.runtime.errors import SpecError
from harness.runtime.spec import MOVED_PREFIX

__all__ = ["MOVED_PREFIX", "CaseModel", "forget_moved", "moved_class"]


def _call(module: nn.Module, call: str, x: torch.Tensor) -> torch.Tensor:
    if call == "first":  # RNN, LSTM, GRU return (output, state)
        return module(x)[0]
    if call == "attention":  # self-attention: query = key = value
        return module(x, x, x, need_weights=False)[0]
    return module(x)


class CaseModel(nn.Module):
    """A container whose forward follows its plan; outputs are a flat tuple."""

    def __init__(self, plan: tuple) -> None:
        super().__init__()
        self.plan = plan

    def _submodule(self, path: str) -> nn.Module:
        # Attribute by attribute rather than get_submodule(): torch.export's
        # tracer (dynamo) in torch < 2.8 cannot follow get_submodule calls.
        module: nn.Module = self
        for name in path.split("."):
            module = getattr(module, name)
        return module

    def _apply_chain(self, node: tuple, x: torch.Tensor) -> torch.Tensor:
        if node[0] == "leaf":
            return _call(self._submodule(node[1]), node[2], x)
        for child in node[1]:
            x = self._apply_chain(child, x)
        return x

    def _run(self, node: tuple, inputs: Iterator[torch.Tensor], outputs: list) -> None:
        if node[0] == "parallel":
            for child in node[1]:
                self._run(child, inputs, outputs)
        else:
            outputs.append(self._apply_chain(node, next(inputs)))

    def forward(self, *inputs: torch.Tensor) -> Any:
        outputs: list = []
        self._run(self.plan, iter(inputs), outputs)
        return tuple(outputs)


#: class path -> its class: made once per process, so a pickle made before
#: `forget_moved` finds the very same class object once it is registered again
_MOVED_CLASSES: dict[str, type] = {}
#: the synthetic modules this process has put into sys.modules, by name
_MOVED_MODULES: dict[str, types.ModuleType] = {}


def _synthetic_module(name: str) -> types.ModuleType:
    module = _MOVED_MODULES.get(name)
    if module is None:
        module = types.ModuleType(name, "A synthetic module of torch-roundtrip: a model class that moved (see harness.runtime.casemodel).")
        # A package (an empty __path__): importing a sibling that was never
        # made fails with ModuleNotFoundError naming it, as in another env.
        module.__path__ = []
        _MOVED_MODULES[name] = module
    return module


def moved_class(path: str) -> type:
    """The `CaseModel` subclass spelled `path` (``roundtrip_moved.MODULE:NAME``), importable in this process.

    The class is made once per process; every call (after `forget_moved`
    too) registers its module and parent packages in ``sys.modules`` again,
    so ``pickle`` saves it by reference and ``find_class`` resolves it here.
    """
    module_name, _, qualname = path.partition(":")
    if not module_name.startswith(MOVED_PREFIX) or not qualname.isidentifier():
        msg = f"{path!r} is not {MOVED_PREFIX}MODULE:NAME"
        raise SpecError("class_path", msg)
    cls = _MOVED_CLASSES.get(path)
    if cls is None:
        cls = type(qualname, (CaseModel,), {"__module__": module_name, "__qualname__": qualname, "__doc__": f"`CaseModel` pickled as {path}."})
        _MOVED_CLASSES[path] = cls
    parts = module_name.split(".")
    parent: types.ModuleType = _synthetic_module(parts[0])
    sys.modules[parts[0]] = parent
    for i in range(1, len(parts)):
        name = ".".join(parts[: i + 1])
        child = _synthetic_module(name)
        held = getattr(parent, parts[i], child)
        if held is not child:  # e.g. roundtrip_moved.a:b beside roundtrip_moved.a.b:C
            msg = f"{path!r}: {name} is already the class {held.__module__}.{held.__qualname__} in this process"
            raise SpecError("class_path", msg)
        setattr(parent, parts[i], child)
        sys.modules[name] = child
        parent = child
    held = getattr(parent, qualname, cls)
    if held is not cls:
        msg = f"{path!r}: {module_name}.{qualname} is already the module {getattr(held, '__name__', held)!s} in this process"
        raise SpecError("class_path", msg)
    setattr(parent, qualname, cls)
    return cls


def forget_moved() -> None:
    """Take every synthetic module out of ``sys.modules``: what a process that never built a moved class sees."""
    for name, module in _MOVED_MODULES.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]
        # Unlink it from its parent too: nothing reaches it by attribute either.
        parent_name, _, attr = name.rpartition(".")
        parent = _MOVED_MODULES.get(parent_name)
        if parent is not None and getattr(parent, attr, None) is module:
            delattr(parent, attr)
