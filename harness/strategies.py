"""Hypothesis strategies that draw specs, and seeded corpora of generated cases.

`specs()` draws one spec as plain JSON (a dict that `Spec.from_dict`
accepts): a tree of containers (``sequential``, ``module_list``,
``module_dict``, nested as deep as ``max_depth``) whose leaves are the layer
kinds of `harness.layers.KINDS` in the dtypes each allows, plus the extras a
spec can carry: extra parameters and (non-)persistent buffers of any dtype
and shape (zero-size and 0-dim included, sometimes a sparse COO buffer),
weight ties, planted special values, non-contiguous / offset /
channels_last layouts, parametrizations, a key prefix and a short training
run. `models()` draws the tree alone and `layers()` one leaf.

Chains fit by construction: each child of a ``sequential`` is drawn among
the kinds that accept the previous output's signature ``(space, features,
dtype)`` (see `harness.layers`), and that output is computed by the same
``spec._chain_sig`` that validation uses. Every extra is drawn among the
tensors the tree really has (`layer_tensors`), with the constraints the
builder enforces (ties join parameters of one shape and dtype; special
values go into contiguous floating point tensors that a load restores;
training only for float32/float64 models without planted values).

How examples shrink: every choice is ordered simplest first, so a failing
spec shrinks towards a ``sequential`` root holding one float32 ``linear``
with small features, no extras and no training; lists (children, extra
tensors, ties, plants, layouts) shrink towards fewer items.

`generate_specs(n, seed)` turns the strategy into a corpus: Hypothesis's own
generation, seeded and without its example database, so one Hypothesis
version gives the same specs for the same ``n`` and ``seed`` on every run.
The load side never calls it: generated specs travel as JSON.

The property tests' settings profiles (``dev``, ``ci``) live in
``tests/hypothesis_profiles.py``, chosen by TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from harness.dtypes import FLOAT_DTYPES, SPEC_DTYPES
from harness.layers import ACTIVATIONS, KINDS, Sig
from harness.spec import CONTAINERS, Spec, _chain_sig, _module_paths, walk_leaves

__all__ = ["generate_specs", "layer_tensors", "layers", "models", "specs"]

#: Leaf kinds in shrink order: a failure shrinks towards the first that fits.
LEAF_KINDS = tuple(KINDS)
#: Spec dtypes of layers, simplest first.
LAYER_DTYPES = ("float32", "float64", "float16", "bfloat16", "complex64")

# The field that must equal the incoming signature's features, per kind.
_INPUT_FIELD = {
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
# Kinds whose parameters are plain attributes of the leaf module: ties need
# that (RNNs keep a flat weight list, attention hides its weights in
# submodules), and validation only knows the spec's own module paths.
_TIEABLE = tuple(k for k in LEAF_KINDS if k.startswith(("linear", "conv", "batch_norm", "layer_norm", "group_norm", "embedding")))
# The input space of each kind when it starts a chain, and those spaces in shrink order.
_SPACES = ("vec", "seq", "tokens", "img1", "img2", "img3")
_START_SPACE = {
    name: kind.natural_input({f.name: 1 if f.name == _INPUT_FIELD.get(name) else f.default for f in kind.fields}, "float32")[0]
    for name, kind in KINDS.items()
}
# Dtypes a sparse COO buffer is drawn in: the ones whose coalesce every torch has.
_SPARSE_DTYPES = ("float32", "float64", "int64")


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0] if n > 0 else [1]


def _chance(draw: Callable, one_in: int) -> bool:
    """True about once in `one_in` draws; shrinks to False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


# -- options ------------------------------------------------------------------


def _check_options(
    max_depth: int = 1, max_children: int = 1, max_leaves: int = 1, max_features: int = 1,
    max_tensors: int = 0, kinds: Optional[tuple] = None, dtypes: Optional[tuple] = None,
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
        g = _Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features)
        if not g.fitting(accepting):
            msg = f"no layer kind among kinds={kinds!r} accepts accepting={accepting!r} in dtypes={dtypes!r}"
            raise InvalidArgument(msg)


def _checks_arguments(strategy_fn: Callable) -> Callable:
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

    return checked


@dataclass
class _Grammar:
    """What one draw may use, and how many leaves it has used so far."""

    kinds: tuple
    dtypes: tuple
    max_features: int
    max_depth: int = 1
    max_children: int = 1
    max_leaves: int = 1
    leaves: int = 0

    def fitting(self, sig: Optional[Sig]) -> list:
        """The allowed kinds that can take `sig` (any allowed kind starts a chain)."""
        return [k for k in self.kinds if self._fits(k, sig)]

    def _fits(self, kind: str, sig: Optional[Sig]) -> bool:
        layer = KINDS[kind]
        if sig is None:
            return not layer.has_params or bool(self.layer_dtypes(kind))
        field = _INPUT_FIELD.get(kind)
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

    def layer_dtypes(self, kind: str) -> list:
        return [d for d in self.dtypes if d in KINDS[kind].dtypes]


# -- leaves -------------------------------------------------------------------


def _leaf_fields(draw: Callable, g: _Grammar, kind: str, sig: Optional[Sig]) -> dict:
    """Every field of a `kind` leaf; the input field comes from `sig` when given."""
    small = st.integers(1, g.max_features)
    field = _INPUT_FIELD.get(kind)
    size_in = sig[1] if sig is not None and field else None

    def size(zero_ok: bool = False) -> int:
        # Zero-size layers are rare on purpose: they make most extras no-ops.
        if zero_ok and _chance(draw, 8):
            return 0
        return draw(small)

    f: dict = {}
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


def _leaf(draw: Callable, g: _Grammar, sig: Optional[Sig]) -> dict:
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
    node: dict = {"kind": kind}
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


@_checks_arguments
@st.composite
def layers(
    draw: Callable, *, accepting: Optional[Sig] = None, kinds: Optional[tuple] = None,
    dtypes: Optional[tuple] = None, max_features: int = 8,
) -> dict:
    """One leaf node; with `accepting`, one that takes that ``(space, features, dtype)``.

    Shrinks towards the first kind of `kinds` (``linear``) in float32 with
    one feature and default fields.
    """
    g = _Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features)
    return _leaf(draw, g, accepting)


# -- trees --------------------------------------------------------------------


def _name(kind: str, i: int) -> str:
    return f"{_PREFIX[kind]}{i}"


# Each child is drawn as one strategy whose span starts with a "one more"
# flag (as st.lists does), so Hypothesis's shrinker can delete a child whole
# and the next one stays aligned: a failure in the third child of a list
# shrinks to that child alone. (st.lists itself cannot stop at max_leaves.)


@st.composite
def _chain_steps(draw: Callable, g: _Grammar, depth: int, sig: Optional[Sig], first: bool) -> Optional[tuple]:
    """The next child of a chain fed by `sig`, as (node, output signature), or None to stop."""
    # Two in three chains go on: layers after the first are where the
    # signature logic is exercised. Shrinks to stopping.
    more = first or draw(st.integers(0, 2)) > 0
    if not more or not g.fitting(sig) or (not first and g.leaves >= g.max_leaves):
        return None  # (a restricted `kinds` can leave nothing that fits `sig`)
    if depth < g.max_depth and g.leaves < g.max_leaves and _chance(draw, 4):
        return _chain(draw, g, depth + 1, sig)
    leaf = _leaf(draw, g, sig)
    return leaf, _chain_sig(leaf, "model", sig)


def _chain(draw: Callable, g: _Grammar, depth: int, sig: Optional[Sig]) -> tuple:
    """A ``sequential`` at `depth` fed by `sig`: (node, output signature)."""
    named = draw(st.booleans())
    children: list = []
    while len(children) < g.max_children:
        step = draw(_chain_steps(g, depth, sig, first=not children))
        if step is None:
            break
        child, sig = step
        children.append({"name": _name(child["kind"], len(children)), **child} if named else child)
    return {"kind": "sequential", "children": children}, sig


@st.composite
def _side_by_side_steps(draw: Callable, g: _Grammar, depth: int, first: bool) -> Optional[dict]:
    """The next child of a ``module_list`` / ``module_dict`` at `depth`, or None to stop."""
    more = first or draw(st.booleans())
    if not more or (not first and g.leaves >= g.max_leaves):
        return None
    choices = ["leaf"] + (["leaf", *CONTAINERS] if depth < g.max_depth else [])
    what = draw(st.sampled_from(choices))
    if what == "leaf" or g.leaves >= g.max_leaves:  # a container needs a leaf of its own
        return _leaf(draw, g, None)
    return _container(draw, g, what, depth + 1)


def _container(draw: Callable, g: _Grammar, kind: str, depth: int) -> dict:
    """A container node of `kind` at `depth` (the root is depth 1)."""
    if kind == "sequential":
        return _chain(draw, g, depth, None)[0]
    named = kind == "module_dict" and draw(st.booleans())
    children: list = []
    while len(children) < g.max_children:
        child = draw(_side_by_side_steps(g, depth, first=not children))
        if child is None:
            break
        children.append({"name": _name(child["kind"], len(children)), **child} if named else child)
    return {"kind": kind, "children": children}


def _draw_model(draw: Callable, g: _Grammar) -> dict:
    return _container(draw, g, draw(st.sampled_from(CONTAINERS)), 1)


@_checks_arguments
@st.composite
def models(
    draw: Callable, *, max_depth: int = 4, max_children: int = 3, max_leaves: int = 6,
    max_features: int = 8, kinds: Optional[tuple] = None, dtypes: Optional[tuple] = None,
) -> dict:
    """A root container node: nested containers whose chains fit.

    `max_depth` counts containers (the root is 1); `max_leaves` bounds the
    layers of one model. Shrinks towards a ``sequential`` holding one layer.
    """
    g = _Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features, max_depth, max_children, max_leaves)
    return _draw_model(draw, g)


# -- the tensors a tree has ------------------------------------------------------


def layer_tensors(kind: str, fields: dict, dtype: str) -> list:
    """``(name, shape, dtype, role)`` of every tensor a `kind` leaf registers.

    Role is ``parameter`` or ``buffer`` (all persistent). Mirrors torch's
    constructors so that strategies need no torch; a test checks it against
    real builds.
    """
    f = fields
    out: list = []

    def param(name: str, shape: list) -> None:
        out.append((name, shape, dtype, "parameter"))

    if kind == "linear":
        param("weight", [f["out_features"], f["in_features"]])
        if f["bias"]:
            param("bias", [f["out_features"]])
    elif kind.startswith("conv"):
        n = int(kind[-2])
        cin, cout, g, k = f["in_channels"], f["out_channels"], f["groups"], f["kernel_size"]
        first = [cin, cout // g] if "transpose" in kind else [cout, cin // g]
        param("weight", first + [k] * n)
        if f["bias"]:
            param("bias", [cout])
    elif kind.startswith("batch_norm"):
        c = f["num_features"]
        if f["affine"]:
            param("weight", [c])
            param("bias", [c])
        if f["track_running_stats"]:
            out.append(("running_mean", [c], dtype, "buffer"))
            out.append(("running_var", [c], dtype, "buffer"))
            out.append(("num_batches_tracked", [], "int64", "buffer"))
    elif kind in ("layer_norm", "group_norm"):
        c = f["normalized_shape"] if kind == "layer_norm" else f["num_channels"]
        if f.get("elementwise_affine", f.get("affine")):
            param("weight", [c])
            param("bias", [c])
    elif kind in ("embedding", "embedding_bag"):
        param("weight", [f["num_embeddings"], f["embedding_dim"]])
    elif kind in ("rnn", "lstm", "gru"):
        h = f["hidden_size"]
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[kind] * h
        dirs = 2 if f["bidirectional"] else 1
        for layer in range(f["num_layers"]):
            for suffix in ("", "_reverse")[:dirs]:
                width = f["input_size"] if layer == 0 else h * dirs
                param(f"weight_ih_l{layer}{suffix}", [gates, width])
                param(f"weight_hh_l{layer}{suffix}", [gates, h])
                if f["bias"]:
                    param(f"bias_ih_l{layer}{suffix}", [gates])
                    param(f"bias_hh_l{layer}{suffix}", [gates])
    elif kind == "multihead_attention":
        out.extend(_attention_tensors(f["embed_dim"], f["bias"], f["add_bias_kv"], dtype, ""))
    elif kind.startswith("transformer_encoder"):
        layers_ = range(f.get("num_layers", 1)) if kind == "transformer_encoder" else [None]
        d, ff = f["d_model"], f["dim_feedforward"]
        for i in layers_:
            pre = "" if i is None else f"layers.{i}."
            out.extend(_attention_tensors(d, True, False, dtype, f"{pre}self_attn."))
            for name, shape in (
                ("linear1.weight", [ff, d]), ("linear1.bias", [ff]), ("linear2.weight", [d, ff]), ("linear2.bias", [d]),
                ("norm1.weight", [d]), ("norm1.bias", [d]), ("norm2.weight", [d]), ("norm2.bias", [d]),
            ):
                param(f"{pre}{name}", shape)
    return out


def _attention_tensors(e: int, bias: bool, bias_kv: bool, dtype: str, pre: str) -> list:
    out = [(f"{pre}in_proj_weight", [3 * e, e], dtype, "parameter")]
    if bias:
        out.append((f"{pre}in_proj_bias", [3 * e], dtype, "parameter"))
    if bias_kv:
        out += [(f"{pre}bias_k", [1, 1, e], dtype, "parameter"), (f"{pre}bias_v", [1, 1, e], dtype, "parameter")]
    out.append((f"{pre}out_proj.weight", [e, e], dtype, "parameter"))
    if bias:
        out.append((f"{pre}out_proj.bias", [e], dtype, "parameter"))
    return out


@dataclass(frozen=True)
class _Tensor:
    """A tensor the drawn model will have, as the extras see it."""

    path: str
    shape: tuple
    dtype: str
    role: str  # parameter | buffer | buffer_np
    tieable: bool = False
    sparse: bool = False
    parametrizable: bool = False

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _model_tensors(model: dict) -> list:
    out = []
    for leaf in walk_leaves(model):
        for name, shape, dtype, role in layer_tensors(leaf.kind, leaf.fields, leaf.dtype):
            direct = "." not in name
            out.append(_Tensor(
                _join(leaf.path, name), tuple(shape), dtype, role,
                tieable=direct and role == "parameter" and leaf.kind in _TIEABLE,
                parametrizable=name == "weight" and leaf.kind in ("linear", "conv1d", "conv2d", "conv3d")
                and dtype in ("float32", "float64") and all(shape),
            ))
    return out


# -- extras -------------------------------------------------------------------


@st.composite
def _extra_tensors(draw: Callable, modules: list, max_features: int) -> dict:
    """One extra tensor on one of the model's modules (named once all are drawn)."""
    t: dict = {"at": draw(st.sampled_from(modules))}
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
        sparse = _chance(draw, 6)
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


def _extra_record(t: dict) -> _Tensor:
    role = t.get("kind", "buffer")
    if role == "buffer" and not t.get("persistent", True):
        role = "buffer_np"
    return _Tensor(
        _join(t.get("at", ""), t["name"]), tuple(t["shape"]), t.get("dtype", "float32"), role,
        tieable=role == "parameter", sparse=t.get("layout") == "sparse_coo",
    )


def _ties(draw: Callable, tensors: list) -> list:
    """Ties between parameters of one shape and dtype; each parameter in one tie group."""
    groups: dict = {}
    for t in tensors:
        if t.tieable:
            groups.setdefault((t.shape, t.dtype), []).append(t.path)
    pairs = [(a, b) for paths in groups.values() for a in paths for b in paths if a != b]
    if not pairs:
        return []
    ties: list = []
    sources: set = set()
    targets: set = set()
    for a, b in draw(st.lists(st.sampled_from(pairs), max_size=2, unique=True)):
        # One source, many targets: a target that is also a source (or tied
        # twice) would make the tie graph depend on application order.
        if b in targets or b in sources or a in targets:
            continue
        ties.append({"from": a, "to": b})
        sources.add(a)
        targets.add(b)
    return ties


def _layout_kinds(t: _Tensor) -> list:
    kinds = ["transposed"] if len(t.shape) == 2 else []
    if len(t.shape) in (4, 5):
        kinds.append("channels_last")
    return kinds + ["offset"]


@st.composite
def _relayouts(draw: Callable, relayable: dict) -> dict:
    """One layout change. The kind first, then the tensor: channels_last has
    few candidates (conv weights) and would drown among the "offset" ones."""
    kind = draw(st.sampled_from(sorted(relayable)))
    return {"at": draw(st.sampled_from(relayable[kind])), "kind": kind}


def _train_plan(draw: Callable, model: dict, tensors: list) -> Optional[dict]:
    """A short training run, or None where training could not be bit-stable or would fail."""
    float_dtypes = {t.dtype for t in tensors if t.role == "parameter" and t.dtype in FLOAT_DTYPES}
    leaf_dtypes = {leaf.dtype for leaf in walk_leaves(model) if KINDS[leaf.kind].has_params}
    # The loss must reach a parameter, else backward() has nothing to do and raises.
    if not _has_parameters(model) or not (float_dtypes | leaf_dtypes) <= {"float32", "float64"}:
        return None
    if not draw(st.integers(0, 2)):  # two in three eligible models train; shrinks to none
        return None
    train: dict = {
        "optimizer": draw(st.sampled_from(("adam", "adamw", "sgd"))),
        "lr": draw(st.sampled_from((0.001, 0.01, 0.1))),
        "steps": draw(st.integers(1, 3)),
        "loss": "square_mean",
    }
    first, sig = _first_output(model)
    if sig[0] == "vec" and sig[1] >= 1 and _has_parameters(first) and draw(st.integers(0, 2)):
        train["loss"] = "cross_entropy"
        train["target"] = draw(st.integers(0, sig[1] - 1))
    return train


def _first_output(node: dict) -> tuple:
    """The node computing the model's first output (what cross_entropy reads), and its signature."""
    while node["kind"] in ("module_list", "module_dict"):
        node = node["children"][0]
    return node, _chain_sig(node, "model", None)


def _has_parameters(node: dict) -> bool:
    return any(
        role == "parameter" for leaf in walk_leaves(node) for *_, role in layer_tensors(leaf.kind, leaf.fields, leaf.dtype)
    )


def _depth(node: dict) -> int:
    if node["kind"] not in CONTAINERS:
        return 0
    return 1 + max(_depth(c) for c in node["children"])


def _tags(data: dict) -> list:
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
    )
    return tags + [name for name, on in checks if on]


def _draw_spec(draw: Callable, g: _Grammar, max_tensors: int) -> dict:
    model = _draw_model(draw, g)
    data: dict = {"name": "hypothesis", "seed": draw(st.integers(0, 2**16)), "model": model}
    tensors = _model_tensors(model)

    modules = sorted(_module_paths(model))  # "" (the root) first: extras shrink onto it
    extra = draw(st.lists(_extra_tensors(modules, g.max_features), max_size=max_tensors))
    extra = [{"name": f"xt{i}", **t} for i, t in enumerate(extra)]
    if extra:
        data["tensors"] = extra
        tensors += [_extra_record(t) for t in extra]

    # Each later extra keeps off the tensors an earlier one changed: a
    # parametrized weight is no longer a plain parameter, and a relaid-out
    # parameter is a new Parameter object (it would untie a tie).
    parametrized: set = set()
    if draw(st.booleans()):
        kind = draw(st.sampled_from(("weight_norm", "orthogonal")))
        # orthogonal wants a matrix: Linear weights, not conv kernels
        candidates = [t for t in tensors if t.parametrizable and (kind == "weight_norm" or len(t.shape) == 2)]
        if candidates:
            t = draw(st.sampled_from(candidates))
            owner, _, param = t.path.rpartition(".")
            data["parametrize"] = [{"at": owner, "param": param, "kind": kind}]
            parametrized.add(t.path)

    ties = _ties(draw, [t for t in tensors if t.path not in parametrized])
    if ties:
        data["ties"] = ties
    tied = {end for tie in ties for end in (tie["from"], tie["to"])}

    train = _train_plan(draw, model, tensors)
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
    relayable: dict = {}
    for t in tensors:
        if not t.sparse and t.path not in busy:
            for kind in _layout_kinds(t):
                relayable.setdefault(kind, []).append(t.path)
    if relayable:
        layout = draw(st.lists(_relayouts(relayable), max_size=3, unique_by=lambda lay: lay["at"]))
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
    if _chance(draw, 10):
        data["state_dict_prefix"] = draw(st.sampled_from(("_orig_mod.", "module.")))
    data["origin"] = "generated"
    data["tags"] = _tags(data)
    data["description"] = (
        f"Drawn by harness.strategies: {g.leaves} layer{'s' * (g.leaves != 1)}, "
        f"containers nested {_depth(model)} deep."
    )
    return data


@_checks_arguments
@st.composite
def specs(
    draw: Callable, *, max_depth: int = 4, max_children: int = 3, max_leaves: int = 6, max_features: int = 8,
    max_tensors: int = 3, kinds: Optional[tuple] = None, dtypes: Optional[tuple] = None,
) -> dict:
    """Specs as plain JSON: a model from `models` plus extras drawn among its tensors.

    Every example validates (`Spec.from_dict`) and builds in every mode.
    Shrinks towards one float32 ``linear`` in a ``sequential``, no extras.
    """
    g = _Grammar(kinds or LEAF_KINDS, dtypes or LAYER_DTYPES, max_features, max_depth, max_children, max_leaves)
    return _draw_spec(draw, g, max_tensors)


# -- corpora ------------------------------------------------------------------


def _model_key(data: dict) -> str:
    """Generated specs differ in their models: Hypothesis often mutates one
    example into the next, and a corpus of near-copies would test less."""
    return json.dumps(data["model"], sort_keys=True)


def _trivial(data: dict) -> bool:
    """The bare single-layer spec Hypothesis starts from: the curated cases cover it."""
    extras = ("tensors", "ties", "plant", "layout", "parametrize", "train", "state_dict_prefix")
    return len(list(walk_leaves(data["model"]))) == 1 and not any(data.get(k) for k in extras)


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing the caller's source constants into its draws.

    Hypothesis (6.131 and later) sometimes draws a literal found in "local"
    modules, which is any module outside site-packages: harness itself when
    installed editable, but not from a wheel. A corpus would then change
    with harness's source, with how it is installed and with which modules
    happen to be imported. Empty that pool while a corpus is drawn, so the
    draws depend on the seed and the Hypothesis version alone. These are
    Hypothesis internals: where they are missing there is nothing to undo,
    and the corpus determinism tests say whether that still holds.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another Hypothesis layout
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if original is None:  # pragma: no cover - another Hypothesis layout
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty  # type: ignore[attr-defined]
    if cache is not None:
        cache.clear()  # it holds each choice type's local constants
    try:
        yield
    finally:
        providers._get_local_constants = original  # type: ignore[attr-defined]
        if cache is not None:
            cache.clear()


def _collect(strategy: Any, seed: int, budget: int, keep: Callable[[dict], bool]) -> None:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as seed_decorator

    # Only the generate phase, no example database and a fixed seed: the
    # draws depend on nothing but the seed and the Hypothesis version.
    @settings(
        database=None, max_examples=budget, phases=(Phase.generate,), derandomize=False, deadline=None,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
        report_multiple_bugs=False,
    )
    @seed_decorator(seed)
    @given(strategy)
    def run(data: dict) -> None:
        keep(data)

    with _no_local_constants():
        run()


def generate_specs(n: int, seed: int, **options: Any) -> list:
    """`n` distinct generated specs, the same for the same `n`, `seed` and Hypothesis version.

    Names are ``gen-<seed>-<index>``; `options` go to `specs`. Specs whose
    model repeats an earlier one, and the bare single-layer spec, are
    dropped, so the corpus is `n` different architectures.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        msg = f"n={n!r} must be an integer >= 0"
        raise InvalidArgument(msg)
    if not isinstance(seed, int) or isinstance(seed, bool):
        msg = f"seed={seed!r} must be an integer"
        raise InvalidArgument(msg)
    strategy = specs(**options)
    found: list = []
    seen: set = set()

    def keep(data: dict) -> None:
        key = _model_key(data)
        if len(found) < n and key not in seen and not _trivial(data):
            seen.add(key)
            found.append(data)

    for attempt in range(16):
        if len(found) >= n:
            break
        # A later attempt (rare: only when most draws were duplicates) uses
        # a seed of its own, still a function of `seed` alone.
        _collect(strategy, seed if attempt == 0 else seed * 1_000_003 + attempt, 2 * (n - len(found)) + 10, keep)
    if len(found) < n:
        msg = f"could draw only {len(found)} distinct specs of the {n} asked for (options {options!r})"
        raise InvalidArgument(msg)
    out = []
    for i, data in enumerate(found):
        data = dict(data, name=f"gen-{seed}-{i}")
        out.append(Spec.from_dict(data))
    return out
