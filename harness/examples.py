"""Example user-case factories, for ``--user-case harness.examples:NAME``.

They show the two shapes a factory may return and exercise what user models
bring that spec'd ones do not: their own module classes (which a
``full_model`` pickle must import), tied weights and buffers of their own.

`TaggerV1` and `TaggerV2` are one model before and after a refactor, and
`migrate_tagger` is the migration that carries V1's checkpoints into V2
(``load --load-as harness.examples:tagger_v1=harness.examples:tagger_v2
--migrate harness.examples:tagger_v1=harness.examples:migrate_tagger``; the
README's section on migrations walks through it).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "TaggerV1", "TaggerV2", "TinyTagger", "hf_tiny_gpt2", "migrate_tagger", "tagger", "tagger_v1", "tagger_v2",
    "tagger_without_inputs",
]


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


# -- a refactor and its migration ---------------------------------------------
#
# TaggerV1 is the model as a checkpoint saved it; TaggerV2 is the same model
# after a refactor that changed every kind of thing a refactor changes:
#
#   V1                                    V2
#   qkv    one fused projection           q, k, v     three projections
#   proj   torch.nn.utils.weight_norm     proj        parametrizations.weight_norm
#          (weight_g, weight_v)                       (parametrizations.weight.original0/1)
#   scale  a persistent buffer            scale       non-persistent (recomputed)
#   head   the output layer               classifier  the same layer, renamed
#   -                                     gate        a new parameter (starts at 1)
#
# With gate = 1, V2 computes what V1 computed (up to rounding: three small
# matrix products instead of one), so a migrated checkpoint makes V2 the
# model V1 was.

_VOCAB, _DIM, _CLASSES, _TOKENS = 32, 8, 5, (2, 6)


def _attend(q: Any, k: Any, v: Any, scale: Any) -> Any:
    weights = _torch().softmax(q @ k.transpose(-2, -1) * scale, dim=-1)
    return weights @ v


class TaggerV1(_torch().nn.Module):  # type: ignore[misc]  # the base is looked up when the module is imported
    """The old code: a fused ``qkv``, legacy weight norm, a persistent ``scale`` buffer, a ``head``."""

    def __init__(self, vocab: int = _VOCAB, dim: int = _DIM, classes: int = _CLASSES) -> None:
        torch = _torch()
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        with warnings.catch_warnings():
            # newer torch deprecates the legacy weight_norm: that is why V2 exists
            warnings.simplefilter("ignore", FutureWarning)
            self.proj = torch.nn.utils.weight_norm(torch.nn.Linear(dim, dim))
        self.register_buffer("scale", torch.tensor(dim ** -0.5))
        self.head = torch.nn.Linear(dim, classes)

    def forward(self, tokens: Any) -> Any:
        h = self.embed(tokens)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        h = h + self.proj(_attend(q, k, v, self.scale))
        return self.head(h)


def _parametrized_weight_norm() -> Any:
    """``torch.nn.utils.parametrizations.weight_norm``, or a clear error where this torch lacks it."""
    torch = _torch()
    found = getattr(getattr(torch.nn.utils, "parametrizations", None), "weight_norm", None)
    if found is None:
        msg = (f"harness.examples.TaggerV2 needs torch.nn.utils.parametrizations.weight_norm, which torch "
               f"{torch.__version__} lacks: load TaggerV1's checkpoints into TaggerV2 with a torch that has it")
        raise RuntimeError(msg)
    return found


class TaggerV2(_torch().nn.Module):  # type: ignore[misc]  # the base is looked up when the module is imported
    """The refactored code: ``q``/``k``/``v``, parametrized weight norm, ``scale`` recomputed, ``classifier``, ``gate``."""

    def __init__(self, vocab: int = _VOCAB, dim: int = _DIM, classes: int = _CLASSES) -> None:
        torch = _torch()
        weight_norm = _parametrized_weight_norm()  # first: a torch without it fails here, saying why
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.q = torch.nn.Linear(dim, dim)
        self.k = torch.nn.Linear(dim, dim)
        self.v = torch.nn.Linear(dim, dim)
        self.proj = weight_norm(torch.nn.Linear(dim, dim))
        # the constructor computes it, so checkpoints need not carry it
        self.register_buffer("scale", torch.tensor(dim ** -0.5), persistent=False)
        self.classifier = torch.nn.Linear(dim, classes)
        # new: scales the attention branch; 1 keeps V1's behaviour
        self.gate = torch.nn.Parameter(torch.ones(()))

    def forward(self, tokens: Any) -> Any:
        h = self.embed(tokens)
        h = h + self.gate * self.proj(_attend(self.q(h), self.k(h), self.v(h), self.scale))
        return self.classifier(h)


def _tokens() -> torch.Tensor:
    torch = _torch()
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, _VOCAB, _TOKENS, generator=g)


def tagger_v1() -> tuple[TaggerV1, torch.Tensor]:
    """TaggerV1 with example inputs: the model as the old code saved it (``save --user-case``)."""
    return TaggerV1(), _tokens()


def tagger_v2() -> tuple[TaggerV2, torch.Tensor]:
    """TaggerV2 with the same inputs: the model as the new code builds it (``load --load-as``)."""
    return TaggerV2(), _tokens()


#: V1's prefixes that V2 renamed
_RENAMED = {"head.": "classifier."}
#: legacy weight norm's tensors, and where parametrizations.weight_norm keeps them
_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
#: buffers V2 no longer saves (its constructor recomputes them)
_NOT_SAVED = ("scale",)


def migrate_tagger(obj: Any) -> Any:
    """Turn a TaggerV1 state dict (what ``torch.load`` returned) into one that loads into TaggerV2.

    Each step undoes one change of the refactor:

    1. ``head.*`` becomes ``classifier.*``: the layer was renamed, its
       tensors are the same.
    2. ``qkv.weight`` (``[3 * dim, dim]``) and ``qkv.bias`` (``[3 * dim]``)
       are cut along dim 0 into ``q``, ``k`` and ``v``, in that order: the
       order of ``chunk(3)`` in V1's forward, so V2 computes what V1 did.
       Each piece is cloned so that it owns its storage (a view would make
       V2's checkpoints save the whole of ``qkv`` three times).
    3. Legacy weight norm's ``proj.weight_g`` / ``proj.weight_v`` become
       ``proj.parametrizations.weight.original0`` / ``original1``: the same
       magnitude and direction tensors, under the names
       ``parametrizations.weight_norm`` registers.
    4. The ``scale`` buffer is dropped: V2 made it non-persistent and its
       constructor recomputes the same value, so ``load_state_dict(strict=True)``
       would refuse it as unexpected.
    5. ``gate``, a parameter V1 did not have, is added with the value V2
       initialises it to (1.0), which keeps V1's behaviour.

    It returns a new dict and leaves `obj` alone. A key it does not know is
    kept under its own name, so ``load_state_dict(strict=True)`` still
    refuses what the refactor does not explain.
    """
    torch = _torch()
    out: dict[str, Any] = {}
    for key, tensor in obj.items():
        module, _, name = key.rpartition(".")
        if key in _NOT_SAVED:  # step 4
            continue
        if module == "qkv":  # step 2
            for part, piece in zip("qkv", tensor.chunk(3, dim=0)):
                out[f"{part}.{name}"] = piece.clone()
        elif module == "proj" and name in _WEIGHT_NORM:  # step 3
            out[f"proj.{_WEIGHT_NORM[name]}"] = tensor
        else:  # step 1, and the keys that did not change
            prefix = next((p for p in _RENAMED if key.startswith(p)), None)
            out[_RENAMED[prefix] + key[len(prefix):] if prefix else key] = tensor
    out["gate"] = torch.ones(())  # step 5
    return out
