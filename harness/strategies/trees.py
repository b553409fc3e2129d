"""Trees: containers (``sequential``, ``module_list``, ``module_dict``) nested around the leaves.

Chains fit by construction: each child of a ``sequential`` is drawn among
the kinds that accept the previous output's signature, and that output is
computed by `harness.runtime.spec.chain_signature`, the same function validation
uses. Children of a ``module_list`` / ``module_dict`` run side by side, so
each starts a chain of its own. `max_depth` counts containers (the root is
1) and `max_leaves` bounds the layers of the whole tree. `models` is the
public strategy; `draw_model` is what `specs` builds on.
"""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from harness.runtime.layers import Sig
from harness.runtime.spec import CONTAINERS, chain_signature
from harness.strategies.grammar import LAYER_DTYPES, LEAF_KINDS, Grammar, chance, checks_arguments
from harness.strategies.leaves import draw_leaf

__all__ = ["draw_model", "models"]

# Child name prefixes: readable state-dict keys, and never an nn.Module
# attribute (a child called "train" would clash) or an extra tensor ("xt0").
_PREFIX = {
    "linear": "fc", "layer_norm": "ln", "group_norm": "gn", "embedding": "emb", "embedding_bag": "bag",
    "rnn": "rnn", "lstm": "lstm", "gru": "gru", "multihead_attention": "attn",
    "transformer_encoder_layer": "block", "transformer_encoder": "enc", "dropout": "drop", "activation": "act",
    "sequential": "seq", "module_list": "list", "module_dict": "dict",
    **{f"conv{n}d": "conv" for n in (1, 2, 3)}, **{f"conv_transpose{n}d": "deconv" for n in (1, 2, 3)},
    **{f"batch_norm{n}d": "bn" for n in (1, 2, 3)},
}


def _name(kind: str, i: int) -> str:
    return f"{_PREFIX[kind]}{i}"


# Each child is drawn as one strategy whose span starts with a "one more"
# flag (as st.lists does), so Hypothesis's shrinker can delete a child whole
# and the next one stays aligned: a failure in the third child of a list
# shrinks to that child alone. (st.lists itself cannot stop at max_leaves.)


@st.composite
def _chain_steps(draw: DrawFn, g: Grammar, depth: int, sig: Optional[Sig], first: bool) -> Optional[tuple[dict[str, Any], Optional[Sig]]]:
    """The next child of a chain fed by `sig`, as (node, output signature), or None to stop."""
    # Two in three chains go on: layers after the first are where the
    # signature logic is exercised. Shrinks to stopping.
    more = first or draw(st.integers(0, 2)) > 0
    if not more or not g.fitting(sig) or (not first and g.leaves >= g.max_leaves):
        return None  # (a restricted `kinds` can leave nothing that fits `sig`)
    if depth < g.max_depth and g.leaves < g.max_leaves and chance(draw, 4):
        return _chain(draw, g, depth + 1, sig)
    leaf = draw_leaf(draw, g, sig)
    return leaf, chain_signature(leaf, "model", sig)


def _chain(draw: DrawFn, g: Grammar, depth: int, sig: Optional[Sig]) -> tuple[dict[str, Any], Optional[Sig]]:
    """A ``sequential`` at `depth` fed by `sig`: (node, output signature)."""
    named = draw(st.booleans())
    children: list[dict[str, Any]] = []
    while len(children) < g.max_children:
        step = draw(_chain_steps(g, depth, sig, first=not children))
        if step is None:
            break
        child, sig = step
        children.append({"name": _name(child["kind"], len(children)), **child} if named else child)
    return {"kind": "sequential", "children": children}, sig


@st.composite
def _side_by_side_steps(draw: DrawFn, g: Grammar, depth: int, first: bool) -> Optional[dict[str, Any]]:
    """The next child of a ``module_list`` / ``module_dict`` at `depth`, or None to stop."""
    more = first or draw(st.booleans())
    if not more or (not first and g.leaves >= g.max_leaves):
        return None
    choices = ["leaf"] + (["leaf", *CONTAINERS] if depth < g.max_depth else [])
    what = draw(st.sampled_from(choices))
    if what == "leaf" or g.leaves >= g.max_leaves:  # a container needs a leaf of its own
        return draw_leaf(draw, g, None)
    return _container(draw, g, what, depth + 1)


def _container(draw: DrawFn, g: Grammar, kind: str, depth: int) -> dict[str, Any]:
    """A container node of `kind` at `depth` (the root is depth 1)."""
    if kind == "sequential":
        return _chain(draw, g, depth, None)[0]
    named = kind == "module_dict" and draw(st.booleans())
    children: list[dict[str, Any]] = []
    while len(children) < g.max_children:
        child = draw(_side_by_side_steps(g, depth, first=not children))
        if child is None:
            break
        children.append({"name": _name(child["kind"], len(children)), **child} if named else child)
    return {"kind": kind, "children": children}


def draw_model(draw: DrawFn, g: Grammar) -> dict[str, Any]:
    """A root container of any kind, filled as far as `g` allows."""
    return _container(draw, g, draw(st.sampled_from(CONTAINERS)), 1)


@checks_arguments
@st.composite
def models(
    draw: DrawFn, *, max_depth: int = 4, max_children: int = 3, max_leaves: int = 6,
    max_features: int = 8, kinds: Optional[tuple[str, ...]] = None, dtypes: Optional[tuple[str, ...]] = None,
) -> dict[str, Any]:
    """A root container node: nested containers whose chains fit.

    `max_depth` counts containers (the root is 1); `max_leaves` bounds the
    layers of one model. Shrinks towards a ``sequential`` holding one layer.
    """
    g = Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features, max_depth, max_children, max_leaves)
    return draw_model(draw, g)
