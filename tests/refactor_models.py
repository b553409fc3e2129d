"""Model code before and after a refactor, and migrations good and broken, for the refactor tests.

Importable as ``refactor_models`` (tests/ is on the path), so the harness
can name them as user cases: ``refactor_models:old``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Old(nn.Module):
    """Fused attention projection, a head, a persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(4, 12)
        self.head = nn.Linear(4, 3)
        self.register_buffer("scale", torch.arange(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.qkv(x).chunk(3, -1)
        return self.head(q + k + v) * self.scale[:3]


class New(nn.Module):
    """q/k/v split, head renamed to classifier, the buffer recomputed (non-persistent), a gate added."""

    def __init__(self, nudge: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.q = nn.Linear(4, 4)
        self.attn.k = nn.Linear(4, 4)
        self.attn.v = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 3)
        self.register_buffer("scale", torch.arange(4.0), persistent=False)
        self.gate = nn.Parameter(torch.ones(3))
        self.nudge = nudge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn.q(x) + self.attn.k(x) + self.attn.v(x)
        return self.classifier(h) * self.scale[:3] * self.gate + self.nudge


def old() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return Old(), torch.linspace(-1, 1, 8).reshape(2, 4)


def new() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    return New(), torch.linspace(-1, 1, 8).reshape(2, 4)


def new_nudged() -> tuple[nn.Module, torch.Tensor]:
    """New code whose forward computes something slightly different: drift, never the verdict."""
    torch.manual_seed(1)
    return New(nudge=1e-3), torch.linspace(-1, 1, 8).reshape(2, 4)


def good(state: dict) -> dict:
    """The right migration from Old's state dict to New's."""
    state = dict(state)
    w, b = state.pop("attn.qkv.weight"), state.pop("attn.qkv.bias")
    for i, name in enumerate("qkv"):
        state[f"attn.{name}.weight"] = w[4 * i:4 * i + 4].clone()
        state[f"attn.{name}.bias"] = b[4 * i:4 * i + 4].clone()
    state["classifier.weight"] = state.pop("head.weight")
    state["classifier.bias"] = state.pop("head.bias")
    del state["scale"]
    state["gate"] = torch.ones(3)
    return state


def drops_a_key(state: dict) -> dict:
    state = good(state)
    del state["attn.k.bias"]
    return state


def transposes_a_weight(state: dict) -> dict:
    state = good(state)
    state["attn.v.weight"] = state["attn.v.weight"].t().contiguous()
    return state


def changes_an_element(state: dict) -> dict:
    state = good(state)
    bias = state["classifier.bias"].clone()
    bias[1] += 1
    state["classifier.bias"] = bias
    return state


def swaps_q_and_k(state: dict) -> dict:
    state = good(state)
    state["attn.q.weight"], state["attn.k.weight"] = state["attn.k.weight"], state["attn.q.weight"]
    return state


def leaves_a_key(state: dict) -> dict:
    state = good(state)
    state["head.extra"] = torch.zeros(1)
    return state


def returns_nothing(state: dict) -> None:
    state.clear()
