"""`CaseModel`: the module every spec builds, and its forward.

The class path ``harness.runtime.casemodel.CaseModel`` is part of the artifact format:
`full_model` pickles reference it, so it must stay importable, under this
name, in every env of a matrix. Its forward interprets a *plan*, a nested
tuple of plain strings, so that the same class serves every architecture.

Plan nodes: ``("chain", children)`` feeds one input through its children in
turn; ``("parallel", children)`` gives each child its own input;
``("leaf", path, call)`` calls the submodule at `path`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn

__all__ = ["CaseModel"]


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
