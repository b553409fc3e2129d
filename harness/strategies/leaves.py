"""Leaves: one layer node of `harness.runtime.layers.KINDS`, drawn to accept a signature.

`draw_leaf` picks a kind that takes the incoming ``(space, features,
dtype)`` (or, starting a chain, an input space first and then a kind that
starts there), draws every field of that kind and leaves defaults out, so a
falsifying spec reads like a hand-written one. `layers` is the public
strategy around it.
"""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from harness.runtime.layers import ACTIVATIONS, KINDS, Sig
from harness.strategies.grammar import (
    INPUT_FIELD,
    LAYER_DTYPES,
    LEAF_KINDS,
    Grammar,
    chance,
    checks_arguments,
)

__all__ = ["draw_leaf", "layers"]

# The input space of each kind when it starts a chain, and those spaces in shrink order.
_SPACES = ("vec", "seq", "tokens", "img1", "img2", "img3")
_START_SPACE = {
    name: kind.natural_input({f.name: 1 if f.name == INPUT_FIELD.get(name) else f.default for f in kind.fields}, "float32")[0]
    for name, kind in KINDS.items()
}


def _divisors(n: int) -> list[int]:
    """The valid group and head counts for `n` channels (``[1]`` for zero)."""
    return [d for d in range(1, n + 1) if n % d == 0] if n > 0 else [1]


def _leaf_fields(draw: DrawFn, g: Grammar, kind: str, sig: Optional[Sig]) -> dict[str, Any]:
    """Every field of a `kind` leaf; the input field comes from `sig` when given."""
    small = st.integers(1, g.max_features)
    field = INPUT_FIELD.get(kind)
    size_in = sig[1] if sig is not None and field else None

    def size(zero_ok: bool = False) -> int:
        # Zero-size layers are rare on purpose: they make most extras no-ops.
        if zero_ok and chance(draw, 8):
            return 0
        return draw(small)

    f: dict[str, Any] = {}
    if kind == "linear":
        f["in_features"] = size_in if size_in is not None else size(zero_ok=True)
        f["out_features"] = size(zero_ok=True)
        f["bias"] = not draw(st.booleans())
    elif kind.startswith("conv"):
        f["in_channels"] = size_in or size()
        f["out_channels"] = draw(small)
        f["kernel_size"] = draw(st.sampled_from((1, 3)))
        common = [d for d in _divisors(f["in_channels"]) if f["out_channels"] % d == 0]
        f["groups"] = draw(st.sampled_from(common))
        f["bias"] = not draw(st.booleans())
    elif kind.startswith("batch_norm"):
        f["num_features"] = size_in or size()
        f["affine"] = not draw(st.booleans())
        f["track_running_stats"] = not draw(st.booleans())
    elif kind == "layer_norm":
        f["normalized_shape"] = size_in or size()
        f["elementwise_affine"] = not draw(st.booleans())
    elif kind == "group_norm":
        f["num_channels"] = size_in or size()
        f["num_groups"] = draw(st.sampled_from(_divisors(f["num_channels"])))
        f["affine"] = not draw(st.booleans())
    elif kind in ("embedding", "embedding_bag"):
        f["num_embeddings"] = size_in or size()
        f["embedding_dim"] = draw(small)
        if kind == "embedding":
            f["padding_idx"] = draw(st.none() | st.integers(0, f["num_embeddings"] - 1))
        else:
            f["mode"] = draw(st.sampled_from(("mean", "sum", "max")))
    elif kind in ("rnn", "lstm", "gru"):
        f["input_size"] = size_in or size()
        f["hidden_size"] = draw(small)
        f["num_layers"] = draw(st.integers(1, 2))
        f["bidirectional"] = draw(st.booleans())
        f["batch_first"] = draw(st.booleans())
        f["bias"] = not draw(st.booleans())
        if kind == "rnn":
            f["nonlinearity"] = draw(st.sampled_from(("tanh", "relu")))
    elif kind == "multihead_attention":
        f["embed_dim"] = size_in or size()
        f["num_heads"] = draw(st.sampled_from(_divisors(f["embed_dim"])))
        f["bias"] = not draw(st.booleans())
        f["add_bias_kv"] = draw(st.booleans())
        f["batch_first"] = draw(st.booleans())
    elif kind.startswith("transformer_encoder"):
        f["d_model"] = size_in or size()
        f["nhead"] = draw(st.sampled_from(_divisors(f["d_model"])))
        f["dim_feedforward"] = draw(small)
        f["dropout"] = draw(st.sampled_from((0.0, 0.1)))
        f["activation"] = draw(st.sampled_from(("relu", "gelu")))
        f["batch_first"] = draw(st.booleans())
        f["norm_first"] = draw(st.booleans())
        if kind == "transformer_encoder":
            f["num_layers"] = draw(st.integers(1, 2))
    elif kind == "dropout":
        f["p"] = draw(st.sampled_from((0.5, 0.0, 0.25)))
    elif kind == "activation":
        f["fn"] = draw(st.sampled_from(ACTIVATIONS))
    return f


def draw_leaf(draw: DrawFn, g: Grammar, sig: Optional[Sig]) -> dict[str, Any]:
    """One leaf that accepts `sig` (or starts a chain when `sig` is None)."""
    fitting = g.fitting(sig)
    if sig is None:
        # The input space first, then a kind that takes it: otherwise the
        # many image kinds would start most chains and the few that start
        # a sequence chain (where recurrent layers follow) would be rare.
        spaces = [s for s in _SPACES if any(_START_SPACE[k] == s for k in fitting)]
        space = draw(st.sampled_from(spaces))
        fitting = [k for k in fitting if _START_SPACE[k] == space]
    kind = draw(st.sampled_from(fitting))
    layer = KINDS[kind]
    node: dict[str, Any] = {"kind": kind}
    defaults = {f.name: f.default for f in layer.fields}
    for name, value in _leaf_fields(draw, g, kind, sig).items():
        # Defaults are left out, so a falsifying spec reads like a hand-written one.
        if value != defaults[name] or type(value) is not type(defaults[name]):
            node[name] = value
    if layer.has_params:
        if sig is None or sig[0] == "tokens":
            # float32 twice: it is what most models use, and only float32
            # and float64 chains admit recurrent layers and training.
            allowed = g.layer_dtypes(kind)
            dtype = draw(st.sampled_from(allowed[:1] + allowed if allowed[0] == "float32" else allowed))
        else:
            dtype = sig[2]  # a chain keeps one dtype: validation rejects a change
        if dtype != "float32":
            node["dtype"] = dtype
    g.leaves += 1
    return node


@checks_arguments
@st.composite
def layers(
    draw: DrawFn, *, accepting: Optional[Sig] = None, kinds: Optional[tuple[str, ...]] = None,
    dtypes: Optional[tuple[str, ...]] = None, max_features: int = 8,
) -> dict[str, Any]:
    """One leaf node; with `accepting`, one that takes that ``(space, features, dtype)``.

    Shrinks towards the first kind of `kinds` (``linear``) in float32 with
    one feature and default fields.
    """
    g = Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features)
    return draw_leaf(draw, g, accepting)
