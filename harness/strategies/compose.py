"""A whole spec: a tree from `trees`, then the extras of `extras` in a fixed order.

`specs` draws one spec as plain JSON (a dict that `Spec.from_dict`
accepts), tagged with the features it has (``deep``, ``tied``, ...) for
reports and expectations. Special values are planted only in contiguous
floating point tensors that a load restores, and only in models that do
not train.
"""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from harness.runtime.checkpoint_extras import EXTRA_KINDS
from harness.runtime.dtypes import FLOAT_DTYPES
from harness.runtime.layers import KINDS
from harness.runtime.spec import CONTAINERS, module_paths, walk_leaves
from harness.strategies.extras import (
    draw_ties,
    extra_record,
    extra_tensors,
    layout_kinds,
    relayouts,
    train_plan,
)
from harness.strategies.grammar import LAYER_DTYPES, LEAF_KINDS, Grammar, chance, checks_arguments
from harness.strategies.tensors import model_tensors
from harness.strategies.trees import draw_model

__all__ = ["specs"]

def _depth(node: dict[str, Any]) -> int:
    """How many containers deep `node` nests (a leaf is 0, the root sequential of leaves 1)."""
    if node["kind"] not in CONTAINERS:
        return 0
    return 1 + max(_depth(c) for c in node["children"])


def _tags(data: dict[str, Any]) -> list[str]:
    """Feature tags for reports and expectations (``key_prefix`` is one the shipped file matches)."""
    leaves = list(walk_leaves(data["model"]))
    dtypes = {leaf.dtype for leaf in leaves if KINDS[leaf.kind].has_params}
    dtypes |= {t.get("dtype", "float32") for t in data.get("tensors", [])}
    tags = ["generated"]
    checks = (
        ("deep", _depth(data["model"]) >= 3),
        ("tied", bool(data.get("ties"))),
        ("planted", bool(data.get("plant"))),
        ("layout", bool(data.get("layout"))),
        ("parametrized", bool(data.get("parametrize"))),
        ("trained", bool(data.get("train"))),
        ("sparse", any(t.get("layout") == "sparse_coo" for t in data.get("tensors", []))),
        ("complex", "complex64" in dtypes),
        ("half", bool(dtypes & {"float16", "bfloat16"})),
        ("key_prefix", data.get("state_dict_prefix") is not None),
        ("checkpoint_extras", bool(data.get("checkpoint_extras"))),
    )
    return tags + [name for name, on in checks if on]


def _draw_spec(draw: DrawFn, g: Grammar, max_tensors: int) -> dict[str, Any]:
    """One spec: the tree, then extra tensors, a parametrization, ties, a
    training plan, planted values, layouts, the batch and a key prefix, in
    that order (the order is part of what a seed draws)."""
    model = draw_model(draw, g)
    data: dict[str, Any] = {"name": "hypothesis", "seed": draw(st.integers(0, 2**16)), "model": model}
    tensors = model_tensors(model)

    modules = sorted(module_paths(model))  # "" (the root) first: extras shrink onto it
    extra = draw(st.lists(extra_tensors(modules, g.max_features), max_size=max_tensors))
    extra = [{"name": f"xt{i}", **t} for i, t in enumerate(extra)]
    if extra:
        data["tensors"] = extra
        tensors += [extra_record(t) for t in extra]

    # Each later extra keeps off the tensors an earlier one changed: a
    # parametrized weight is no longer a plain parameter, and a relaid-out
    # parameter is a new Parameter object (it would untie a tie).
    parametrized: set[str] = set()
    if draw(st.booleans()):
        kind = draw(st.sampled_from(("weight_norm", "orthogonal")))
        # orthogonal wants a matrix: Linear weights, not conv kernels
        candidates = [t for t in tensors if t.parametrizable and (kind == "weight_norm" or len(t.shape) == 2)]
        if candidates:
            t = draw(st.sampled_from(candidates))
            owner, _, param = t.path.rpartition(".")
            data["parametrize"] = [{"at": owner, "param": param, "kind": kind}]
            parametrized.add(t.path)

    ties = draw_ties(draw, [t for t in tensors if t.path not in parametrized])
    if ties:
        data["ties"] = ties
    tied = {end for tie in ties for end in (tie["from"], tie["to"])}

    train = train_plan(draw, model, tensors)
    # Special values go where a load restores them: not into non-persistent
    # buffers (a state dict does not carry them), not into sparse ones.
    plantable = [
        t.path for t in tensors
        if t.dtype in FLOAT_DTYPES and t.role != "buffer_np" and not t.sparse and t.numel and t.path not in parametrized
    ]
    if plantable and train is None:
        plant = draw(st.lists(st.sampled_from(plantable), max_size=3, unique=True))
        if plant:
            data["plant"] = [{"at": p} for p in plant]

    busy = parametrized | tied
    relayable: dict[str, list[str]] = {}
    for t in tensors:
        if not t.sparse and t.path not in busy:
            for kind in layout_kinds(t):
                relayable.setdefault(kind, []).append(t.path)
    if relayable:
        layout = draw(st.lists(relayouts(relayable), max_size=3, unique_by=lambda lay: lay["at"]))
        if layout:
            data["layout"] = layout

    # BatchNorm on batch statistics (training, or no running stats) and
    # GroupNorm on a (B, C) vector need more than one value per channel or
    # group: a batch of two.
    batch_stats = any(
        (leaf.kind.startswith("batch_norm") and not leaf.fields["track_running_stats"]) or leaf.kind == "group_norm"
        for leaf in walk_leaves(model)
    )
    batch = draw(st.integers(2 if train or batch_stats else 1, 3))
    if batch != 2:
        data["batch"] = batch
    if train is not None:
        data["train"] = train
    # A key prefix makes every strict load an expected error: keep it rare.
    if chance(draw, 10):
        data["state_dict_prefix"] = draw(st.sampled_from(("_orig_mod.", "module.")))
    # What a checkpoint holds beside its state dicts, only where there is
    # optimizer state to checkpoint, and rarely: every weights_only load of
    # such a checkpoint is an expected refusal (drawn last, so the draws
    # before it are what they were).
    if train is not None and chance(draw, 4):
        data["checkpoint_extras"] = draw(st.lists(st.sampled_from(tuple(EXTRA_KINDS)), min_size=1, max_size=4, unique=True))
    data["origin"] = "generated"
    data["tags"] = _tags(data)
    data["description"] = (
        f"Drawn by harness.strategies: {g.leaves} layer{'s' * (g.leaves != 1)}, "
        f"containers nested {_depth(model)} deep."
    )
    return data


@checks_arguments
@st.composite
def specs(
    draw: DrawFn, *, max_depth: int = 4, max_children: int = 3, max_leaves: int = 6, max_features: int = 8,
    max_tensors: int = 3, kinds: Optional[tuple[str, ...]] = None, dtypes: Optional[tuple[str, ...]] = None,
) -> dict[str, Any]:
    """Specs as plain JSON: a model from `models` plus extras drawn among its tensors.

    Every example validates (`Spec.from_dict`) and builds in every mode.
    Shrinks towards one float32 ``linear`` in a ``sequential``, no extras.
    """
    g = Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features, max_depth, max_children, max_leaves)
    return _draw_spec(draw, g, max_tensors)
