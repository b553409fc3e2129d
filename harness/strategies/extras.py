"""Extras: what a spec adds around its tree, each drawn among the tensors the tree has.

Extra parameters and (non-)persistent buffers of any dtype and shape
(zero-size and 0-dim included, sometimes a sparse COO buffer), weight ties,
layout changes (transposed, channels_last, offset) and a short training
run. Each keeps the constraints the builder enforces: ties join parameters
of one shape and dtype, one source to many targets; training only for
float32/float64 models. `harness.strategies.compose` draws them in a fixed
order, so each later extra can keep off what an earlier one changed.
"""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from harness.runtime.dtypes import FLOAT_DTYPES, SPEC_DTYPES
from harness.runtime.layers import KINDS, Sig
from harness.runtime.spec import chain_signature, walk_leaves
from harness.strategies.grammar import chance
from harness.strategies.tensors import ModelTensor, has_parameters, join_path

__all__ = ["draw_ties", "extra_record", "extra_tensors", "layout_kinds", "relayouts", "train_plan"]

# Dtypes a sparse COO buffer is drawn in: the ones whose coalesce every torch has.
_SPARSE_DTYPES = ("float32", "float64", "int64")


@st.composite
def extra_tensors(draw: DrawFn, modules: list[str], max_features: int) -> dict[str, Any]:
    """One extra tensor on one of the model's modules (named once all are drawn)."""
    t: dict[str, Any] = {"at": draw(st.sampled_from(modules))}
    if not t["at"]:
        del t["at"]
    dim = st.integers(0, min(max_features, 4))
    if draw(st.booleans()):
        t["kind"] = "parameter"
        t["shape"] = draw(st.lists(dim, max_size=3))
        dtype = draw(st.sampled_from(SPEC_DTYPES))
        if dtype not in FLOAT_DTYPES or draw(st.sampled_from((False, False, True))):
            t["requires_grad"] = False  # integer parameters cannot require grad
    else:
        sparse = chance(draw, 6)
        t["shape"] = draw(st.lists(dim, min_size=2, max_size=2) if sparse else st.lists(dim, max_size=3))
        dtype = draw(st.sampled_from(_SPARSE_DTYPES if sparse else SPEC_DTYPES))
        if sparse:
            t["layout"] = "sparse_coo"
        t["persistent"] = not draw(st.booleans())
    if dtype != "float32":
        t["dtype"] = dtype
    fill = draw(st.sampled_from(("formula", "zeros", "ones")))
    if fill != "formula":
        t["fill"] = fill
    return t


def extra_record(t: dict[str, Any]) -> ModelTensor:
    """The `ModelTensor` that a drawn (and named) extra tensor adds to the model."""
    role = t.get("kind", "buffer")
    if role == "buffer" and not t.get("persistent", True):
        role = "buffer_np"
    return ModelTensor(
        join_path(t.get("at", ""), t["name"]), tuple(t["shape"]), t.get("dtype", "float32"), role,
        tieable=role == "parameter", sparse=t.get("layout") == "sparse_coo",
    )


def draw_ties(draw: DrawFn, tensors: list[ModelTensor]) -> list[dict[str, str]]:
    """Ties between parameters of one shape and dtype; each parameter in one tie group."""
    groups: dict[tuple[tuple[int, ...], str], list[str]] = {}
    for t in tensors:
        if t.tieable:
            groups.setdefault((t.shape, t.dtype), []).append(t.path)
    pairs = [(a, b) for paths in groups.values() for a in paths for b in paths if a != b]
    if not pairs:
        return []
    ties: list[dict[str, str]] = []
    sources: set[str] = set()
    targets: set[str] = set()
    for a, b in draw(st.lists(st.sampled_from(pairs), max_size=2, unique=True)):
        # One source, many targets: a target that is also a source (or tied
        # twice) would make the tie graph depend on application order.
        if b in targets or b in sources or a in targets:
            continue
        ties.append({"from": a, "to": b})
        sources.add(a)
        targets.add(b)
    return ties


def layout_kinds(t: ModelTensor) -> list[str]:
    """The layout changes `t` can take: transposed (matrices), channels_last (4-d, 5-d), offset."""
    kinds = ["transposed"] if len(t.shape) == 2 else []
    if len(t.shape) in (4, 5):
        kinds.append("channels_last")
    return kinds + ["offset"]


@st.composite
def relayouts(draw: DrawFn, relayable: dict[str, list[str]]) -> dict[str, str]:
    """One layout change. The kind first, then the tensor: channels_last has
    few candidates (conv weights) and would drown among the "offset" ones."""
    kind = draw(st.sampled_from(sorted(relayable)))
    return {"at": draw(st.sampled_from(relayable[kind])), "kind": kind}


def train_plan(draw: DrawFn, model: dict[str, Any], tensors: list[ModelTensor]) -> Optional[dict[str, Any]]:
    """A short training run, or None where training could not be bit-stable or would fail."""
    float_dtypes = {t.dtype for t in tensors if t.role == "parameter" and t.dtype in FLOAT_DTYPES}
    leaf_dtypes = {leaf.dtype for leaf in walk_leaves(model) if KINDS[leaf.kind].has_params}
    # The loss must reach a parameter, else backward() has nothing to do and raises.
    if not has_parameters(model) or not (float_dtypes | leaf_dtypes) <= {"float32", "float64"}:
        return None
    if not draw(st.integers(0, 2)):  # two in three eligible models train; shrinks to none
        return None
    train: dict[str, Any] = {
        "optimizer": draw(st.sampled_from(("adam", "adamw", "sgd"))),
        "lr": draw(st.sampled_from((0.001, 0.01, 0.1))),
        "steps": draw(st.integers(1, 3)),
        "loss": "square_mean",
    }
    first, sig = _first_output(model)
    if sig[0] == "vec" and sig[1] >= 1 and has_parameters(first) and draw(st.integers(0, 2)):
        train["loss"] = "cross_entropy"
        train["target"] = draw(st.integers(0, sig[1] - 1))
    return train


def _first_output(node: dict[str, Any]) -> tuple[dict[str, Any], Sig]:
    """The node computing the model's first output (what cross_entropy reads), and its signature."""
    while node["kind"] in ("module_list", "module_dict"):
        node = node["children"][0]
    return node, chain_signature(node, "model", None)

