"""Example user-case factories, for ``--user-case harness.examples:NAME``.

They show the two shapes a factory may return and exercise what user models
bring that spec'd ones do not: their own module classes (which a
``full_model`` pickle must import), tied weights and buffers of their own.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["TinyTagger", "hf_tiny_gpt2", "tagger", "tagger_without_inputs"]


def _torch() -> ModuleType:
    import torch

    return torch


class TinyTagger(_torch().nn.Module):  # type: ignore[misc]  # the base is looked up when the module is imported
    """A user's own class: embedding tied to the output, a persistent and a non-persistent buffer."""

    def __init__(self, vocab: int = 32, dim: int = 8) -> None:
        torch = _torch()
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.mix = torch.nn.Linear(dim, dim)
        self.out = torch.nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("temperature", torch.tensor(0.5))
        self.register_buffer("position", torch.arange(16, dtype=torch.float32) / 16, persistent=False)

    def forward(self, tokens: Any) -> Any:
        h = self.embed(tokens) + self.position[: tokens.shape[-1], None]
        return self.out(_torch().tanh(self.mix(h))) / self.temperature


def tagger() -> tuple[TinyTagger, torch.Tensor]:
    """TinyTagger with example inputs: forward check, trace and export all apply."""
    torch = _torch()
    g = torch.Generator().manual_seed(0)
    return TinyTagger(), torch.randint(0, 32, (2, 6), generator=g)


def tagger_without_inputs() -> TinyTagger:
    """TinyTagger alone: the forward check and tracing are skips with the reason."""
    return TinyTagger()


def hf_tiny_gpt2() -> tuple[torch.nn.Module, torch.Tensor]:
    """A Hugging Face GPT-2 from a tiny config (needs `transformers` in every env)."""
    torch = _torch()
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=32, use_cache=False,
                        attn_implementation="eager")
    model = GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(0)
    return model, torch.randint(0, 64, (1, 8), generator=g)
