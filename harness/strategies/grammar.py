"""What a draw may use: the allowed layer kinds and dtypes, and which kinds take a signature.

`Grammar` carries one draw's options (kinds, dtypes, sizes, depth) and
counts the leaves drawn so far; `Grammar.fitting` says which kinds accept
an incoming ``(space, features, dtype)``. `checks_arguments` validates a
public strategy's options when it is called, with messages in Hypothesis's
``name=value`` wording. `chance` is the one biased coin every module draws.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, cast

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import DrawFn

from harness.runtime.layers import KINDS, Sig

__all__ = ["INPUT_FIELD", "LAYER_DTYPES", "LEAF_KINDS", "Grammar", "chance", "checks_arguments"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Leaf kinds in shrink order: a failure shrinks towards the first that fits.
LEAF_KINDS = tuple(KINDS)
#: Spec dtypes of layers, simplest first.
LAYER_DTYPES = ("float32", "float64", "float16", "bfloat16", "complex64")


# The field that must equal the incoming signature's features, per kind.
INPUT_FIELD = {
    "linear": "in_features",
    **{f"conv{t}{n}d": "in_channels" for t in ("", "_transpose") for n in (1, 2, 3)},
    **{f"batch_norm{n}d": "num_features" for n in (1, 2, 3)},
    "layer_norm": "normalized_shape",
    "group_norm": "num_channels",
    "embedding": "num_embeddings",
    "embedding_bag": "num_embeddings",
    "rnn": "input_size", "lstm": "input_size", "gru": "input_size",
    "multihead_attention": "embed_dim",
    "transformer_encoder_layer": "d_model",
    "transformer_encoder": "d_model",
}


def chance(draw: DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws; shrinks to False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def _check_options(
    max_depth: int = 1, max_children: int = 1, max_leaves: int = 1, max_features: int = 1,
    max_tensors: int = 0, kinds: Optional[tuple[str, ...]] = None, dtypes: Optional[tuple[str, ...]] = None,
    accepting: Optional[Sig] = None,
) -> None:
    for name, value, low in (
        ("max_depth", max_depth, 1), ("max_children", max_children, 1), ("max_leaves", max_leaves, 1),
        ("max_features", max_features, 1), ("max_tensors", max_tensors, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            msg = f"{name}={value!r} must be an integer >= {low}"
            raise InvalidArgument(msg)
    if kinds is not None:
        unknown = [k for k in kinds if k not in KINDS]
        if isinstance(kinds, str) or unknown or not kinds:
            msg = f"kinds={kinds!r} must be a non-empty tuple of layer kinds among {', '.join(LEAF_KINDS)}"
            raise InvalidArgument(msg)
    if dtypes is not None:
        unknown = [d for d in dtypes if d not in LAYER_DTYPES]
        if isinstance(dtypes, str) or unknown or not dtypes:
            msg = f"dtypes={dtypes!r} must be a non-empty tuple among {', '.join(LAYER_DTYPES)}"
            raise InvalidArgument(msg)
        usable = [k for k in (kinds or LEAF_KINDS) if not KINDS[k].has_params or set(KINDS[k].dtypes) & set(dtypes)]
        if not usable:
            msg = f"no layer kind among kinds={kinds!r} comes in dtypes={dtypes!r}"
            raise InvalidArgument(msg)
    if accepting is not None:
        g = Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features)
        if not g.fitting(accepting):
            msg = f"no layer kind among kinds={kinds!r} accepts accepting={accepting!r} in dtypes={dtypes!r}"
            raise InvalidArgument(msg)


def checks_arguments(strategy_fn: _F) -> _F:
    """Validate a strategy's arguments when it is called, not at the first draw.

    The composite keeps its own repr (``specs(max_depth=2)``), which is what
    Hypothesis prints in a falsifying example.
    """
    sig = inspect.signature(strategy_fn)

    @functools.wraps(strategy_fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        _check_options(**bound.arguments)
        return strategy_fn(*args, **kwargs)

    return cast(_F, checked)


@dataclass
class Grammar:
    """What one draw may use, and how many leaves it has used so far."""

    kinds: tuple[str, ...]
    dtypes: tuple[str, ...]
    max_features: int
    max_depth: int = 1
    max_children: int = 1
    max_leaves: int = 1
    leaves: int = 0

    def fitting(self, sig: Optional[Sig]) -> list[str]:
        """The allowed kinds that can take `sig` (any allowed kind starts a chain)."""
        return [k for k in self.kinds if self._fits(k, sig)]

    def _fits(self, kind: str, sig: Optional[Sig]) -> bool:
        layer = KINDS[kind]
        if sig is None:
            return not layer.has_params or bool(self.layer_dtypes(kind))
        field = INPUT_FIELD.get(kind)
        fields = {f.name: f.default for f in layer.fields}
        if field:
            fields[field] = sig[1]
        if not layer.accepts(fields, sig):
            return False
        if field and kind != "linear" and sig[1] < 1:  # only Linear takes zero features
            return False
        if layer.has_params and sig[0] == "tokens":
            return bool(self.layer_dtypes(kind))
        return not layer.has_params or sig[2] in layer.dtypes

    def layer_dtypes(self, kind: str) -> list[str]:
        return [d for d in self.dtypes if d in KINDS[kind].dtypes]
