"""Refactors: a drawn spec, the same model as its code reads after a refactor, and the truth about what moved.

`refactors` draws a save-side spec (from `specs`, without training, a key
prefix or orthogonal parametrizations, whose state-dict keys the truth could
not name) and changes its model code the way refactors change checkpoints,
all at the spec level: the load side is the spec's ``load_as`` (its variant,
`Spec.load_side`), so the drawn pair is plain JSON like every spec. The
changes, each drawn or not (at least one is made):

``rename``
    a child of a ``sequential`` or ``module_dict`` that holds tensors gets
    another name: every key under it moves (``fc1.weight`` -> ``trunk.weight``);
``split`` / ``fuse``
    a ``linear`` whose parent runs its children side by side is cut along
    dim 0 into two or three pieces (``qkv`` -> ``qkv_q``, ``qkv_k``, ...
    beside it, or ``qkv.q``, ... under it), or pieces are joined into it;
    weight and bias each make one entry, pieces in the model's order;
``reparametrize``
    legacy ``torch.nn.utils.weight_norm`` (``X.weight_g``/``X.weight_v``)
    becomes ``parametrizations.weight_norm``
    (``X.parametrizations.weight.original0``/``original1``), or back;
``drop``
    a persistent extra buffer becomes non-persistent (no longer saved);
``add``
    an extra parameter appears on the load side.

`Refactor.truth` says what moved in the schema of a remap's entries
(``harness.runtime.refactor.Remap.to_dict``): ``{"entries": [{"kind", "old",
"new", "dim"?}], "same": <keys kept under their own name>, "ambiguous":
[...]}``. ``ambiguous`` lists the moved keys whose dtype and shape another
moved key shares (another missing key for an old name, another new key for
a new name): dtype and shape alone cannot place them, only their names can.

How examples shrink: towards one change (a rename first), the smallest
spec `specs` shrinks to, two equal pieces and the first names of each pool.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, cast

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import DrawFn

from harness.runtime.spec import CONTAINERS, Spec, child_items, module_paths
from harness.strategies.compose import specs
from harness.strategies.extras import extra_record
from harness.strategies.grammar import LAYER_DTYPES
from harness.strategies.tensors import join_path, model_tensors

__all__ = ["CHANGES", "PIECE_LAYOUTS", "Refactor", "refactors", "state_slots"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The changes a refactor may make, in shrink order.
CHANGES = ("rename", "split", "fuse", "reparametrize", "drop", "add")
#: Where the pieces of a split (or fused) linear live: beside it in its
#: parent (``attn.qkv`` -> ``attn.qkv_q``, ...) or under it (``attn.qkv.q``, ...).
PIECE_LAYOUTS = ("beside", "under")

# New names for a renamed child: never a prefix the tree strategy names
# children with ("fc0", "seq1", ...), never an nn.Module attribute.
_RENAMES = ("trunk", "stem", "neck", "branch", "body", "renamed")
# Piece names of a split or fused linear (q, k, v: the qkv projection).
_PIECES = ("q", "k", "v")
# Dtypes of an added parameter (float: a parameter that requires grad) and of a created buffer.
_ADDED_DTYPES = ("float32", "float64", "float16", "bfloat16")
_BUFFER_DTYPES = ("float32", "int64", "float64", "bfloat16", "uint8", "bool")
# What a refactor's save side leaves out of the drawn spec: training would
# make the two sides' optimizer state differ and is not what a refactor is
# about; a key prefix belongs to a format; orthogonal's state-dict keys
# (a ``base`` buffer of another shape) are not predicted by `state_slots`.
_DROPPED_FIELDS = ("train", "checkpoint_extras", "state_dict_prefix")
_DROPPED_TAGS = ("trained", "checkpoint_extras", "key_prefix")


@dataclass(frozen=True)
class Refactor:
    """A drawn refactor: the save-side spec (its load side in ``spec["load_as"]``) and what moved."""

    spec: dict[str, Any]
    truth: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"spec": ..., "truth": ...}``."""
        return {"spec": copy.deepcopy(self.spec), "truth": copy.deepcopy(self.truth)}

    def load_side(self) -> dict[str, Any]:
        """The load side's spec data (`Spec.load_side`, validated)."""
        return Spec.from_dict(self.spec).load_side().to_dict()


# -- what a spec's state dict holds, without torch --------------------------------


def state_slots(data: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """State-dict key -> (dtype, shape) of the model a spec builds (persistent tensors only).

    Follows `harness.strategies.tensors.model_tensors` (a test checks it
    against real builds) plus the extras and parametrizations: weight_norm
    turns ``X.weight`` into ``X.parametrizations.weight.original0`` (the
    magnitude, ``[out, 1, ...]``) and ``original1``; the legacy hook into
    ``X.weight_g`` and ``X.weight_v``. Orthogonal is not predicted (ValueError).
    """
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for t in model_tensors(data["model"]):
        out[t.path] = (t.dtype, t.shape)
    for extra in data.get("tensors", []):
        rec = extra_record(extra)
        if rec.role != "buffer_np":
            out[rec.path] = (rec.dtype, rec.shape)
    for par in data.get("parametrize", []):
        at, param, kind = par.get("at", ""), par.get("param", "weight"), par["kind"]
        dtype, shape = out.pop(join_path(at, param))
        magnitude = (dtype, (shape[0],) + (1,) * (len(shape) - 1))
        if kind == "weight_norm":
            out[join_path(at, f"parametrizations.{param}.original0")] = magnitude
            out[join_path(at, f"parametrizations.{param}.original1")] = (dtype, shape)
        elif kind == "weight_norm_legacy":
            out[join_path(at, f"{param}_g")] = magnitude
            out[join_path(at, f"{param}_v")] = (dtype, shape)
        else:
            msg = f"state_slots does not predict the keys of a {kind} parametrization"
            raise ValueError(msg)
    return out


# -- the tree, as plain JSON -------------------------------------------------------


def _node(model: dict[str, Any], path: str) -> dict[str, Any]:
    node = model
    for part in path.split(".") if path else ():
        node = dict(child_items(node))[part]
    return node


def _sites(model: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any], int]]:
    """(path, parent node, index in the parent) of every node but the root."""
    out = []
    for i, (name, child) in enumerate(child_items(model)):
        p = join_path(path, name)
        out.append((p, model, i))
        if child["kind"] in CONTAINERS:
            out.extend(_sites(child, p))
    return out


def _moved(path: str, old: str, new: str) -> str:
    """`path` after module `old` is renamed `new` (unchanged when it is not under `old`)."""
    if path == old:
        return new
    if path.startswith(old + "."):
        return new + path[len(old):]
    return path


def _referenced(data: dict[str, Any]) -> set[str]:
    """Tensor and module paths the spec's extras name: a refactor keeps off them."""
    out = {t.get("at", "") for t in data.get("tensors", [])}
    out |= {p.get("at", "") for p in data.get("parametrize", [])}
    for tie in data.get("ties", []):
        out |= {tie["from"], tie["to"]}
    out |= {p["at"] for p in data.get("plant", [])}
    out |= {lay["at"] for lay in data.get("layout", [])}
    return out


def _touches(path: str, referenced: set[str]) -> bool:
    return any(r == path or r.startswith(path + ".") for r in referenced)


def _rename_extras(data: dict[str, Any], old: str, new: str) -> None:
    """Point every path of the extras at module `old` to module `new`, in place."""
    for t in data.get("tensors", []):
        if t.get("at"):
            t["at"] = _moved(t["at"], old, new)
    for p in data.get("parametrize", []):
        if p.get("at"):
            p["at"] = _moved(p["at"], old, new)
    for tie in data.get("ties", []):
        tie["from"], tie["to"] = _moved(tie["from"], old, new), _moved(tie["to"], old, new)
    for item in data.get("plant", []) + data.get("layout", []):
        item["at"] = _moved(item["at"], old, new)


# -- the save side -----------------------------------------------------------------------


def _base(draw: DrawFn, options: dict[str, Any]) -> dict[str, Any]:
    """A drawn spec without what a refactor does not cover (see `_DROPPED_FIELDS`)."""
    data = draw(specs(**options))
    for key in _DROPPED_FIELDS:
        data.pop(key, None)
    kept = [p for p in data.get("parametrize", []) if p["kind"] != "orthogonal"]
    if kept:
        data["parametrize"] = kept
    else:
        data.pop("parametrize", None)
    tags = [t for t in data["tags"] if t not in _DROPPED_TAGS and (t != "parametrized" or kept)]
    data["tags"] = tags + ["refactor"]
    if data.get("batch", 2) == 2:
        data.pop("batch", None)
    return data


def _beside(data: dict[str, Any], path: str) -> Optional[list[str]]:
    """Names for pieces beside the linear at `path` (``<name>_q``, ...), or None where they would shift a child's index.

    Only a ``module_dict`` names its children; every child from the linear
    on must carry a name, else a piece would push an unnamed one to another index.
    """
    parent_path, _, name = path.rpartition(".")
    parent = _node(data["model"], parent_path)
    names = [n for n, _ in child_items(parent)]
    index = names.index(name)
    pieces = [f"{name}_{p}" for p in _PIECES]
    if parent["kind"] != "module_dict" or not name.isidentifier() or set(names) & set(pieces):
        return None
    if not all("name" in c for c in parent["children"][index:]):
        return None
    return pieces


def _linear_site(draw: DrawFn, data: dict[str, Any], dtypes: tuple[str, ...], max_features: int, pieces: tuple[str, ...]) -> Optional[str]:
    """The path of a linear a split or fusion may cut: one of the tree's, or one added after the root's children.

    Only where its pieces can go as `pieces` allows: ``beside`` needs a
    ``module_dict`` parent (`_beside`), ``under`` a parent that runs its
    children side by side.
    """
    referenced = _referenced(data)
    candidates = [
        p for p, parent, i in _sites(data["model"])
        if parent["kind"] in ("module_list", "module_dict") and parent["children"][i]["kind"] == "linear"
        and parent["children"][i].get("out_features", 0) >= 2 and not _touches(p, referenced)
        and ("under" in pieces or _beside(data, p))
    ]
    if candidates and draw(st.integers(0, 3)) > 0:  # one in four adds a fresh one anyway
        return draw(st.sampled_from(candidates))
    root = data["model"]
    if root["kind"] == "sequential" or (root["kind"] == "module_list" and "under" not in pieces):
        return None  # a chain cannot take pieces that run side by side; a list numbers them
    node: dict[str, Any] = {"kind": "linear", "in_features": draw(st.integers(1, max(1, max_features))),
                            "out_features": draw(st.integers(2, max(2, max_features)))}
    if draw(st.booleans()):
        node["bias"] = False
    dtype = draw(st.sampled_from([d for d in LAYER_DTYPES if d in dtypes] or ["float32"]))
    if dtype != "float32":
        node["dtype"] = dtype
    names = [n for n, _ in child_items(root)]
    if root["kind"] == "module_dict":
        node = {"name": next(n for n in ("qkv", "proj", "proj2", "proj3") if n not in names), **node}
    root["children"].append(node)
    return join_path("", node.get("name", str(len(names))))


def _pieces(draw: DrawFn, data: dict[str, Any], path: str, layouts: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[str], Optional[str]]:
    """Pieces of the linear at `path`: (nodes, their module paths in order, the container holding them or None).

    ``beside`` it (``<name>_q``, ``<name>_k``, ...) where `_beside` allows and
    `layouts` has it; else ``under`` it, in a ``module_dict`` (``q``, ``k``,
    ``v``) or a ``module_list``.
    """
    parent_path = path.rpartition(".")[0]
    whole = _node(data["model"], path)
    out = whole["out_features"]
    count = draw(st.integers(2, min(3, out)))
    equal = out % count == 0 and draw(st.booleans())
    cuts = [out * i // count for i in range(1, count)] if equal else sorted(
        draw(st.lists(st.integers(1, out - 1), min_size=count - 1, max_size=count - 1, unique=True)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, out])]
    nodes = [{**{k: v for k, v in whole.items() if k != "name"}, "out_features": s} for s in sizes]
    beside = _beside(data, path) if "beside" in layouts else None
    if beside and ("under" not in layouts or draw(st.booleans())):
        names = beside[:count]
        return [{"name": n, **node} for n, node in zip(names, nodes)], [join_path(parent_path, n) for n in names], None
    if draw(st.booleans()):
        return [{"name": n, **node} for n, node in zip(_PIECES, nodes)], [join_path(path, n) for n in _PIECES[:count]], "module_dict"
    return nodes, [join_path(path, str(i)) for i in range(count)], "module_list"


# -- the strategy ----------------------------------------------------------------------------


def _check_changes(changes: Any, pieces: Any) -> None:
    for name, value, allowed in (("changes", changes, CHANGES), ("pieces", pieces, PIECE_LAYOUTS)):
        if isinstance(value, str) or not isinstance(value, tuple) or not value or set(value) - set(allowed):
            msg = f"{name}={value!r} must be a non-empty tuple among {', '.join(allowed)}"
            raise InvalidArgument(msg)


def _checks_options(strategy_fn: _F) -> _F:
    """Validate `changes` and the spec options when the strategy is made; the repr stays the call's."""
    sig = inspect.signature(strategy_fn)

    @functools.wraps(strategy_fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        options = dict(bound.arguments)
        _check_changes(options.pop("changes"), options.pop("pieces"))
        specs(**options)  # checks its options when it is made
        return strategy_fn(*args, **kwargs)

    return cast(_F, checked)


def _ambiguous(entries: list[dict[str, Any]], old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Moved keys whose dtype and shape another moved key on the same side shares."""
    missing = [k for e in entries for k in e["old"]]
    unexpected = [k for e in entries for k in e["new"]]
    out = [k for k in missing if sum(old[m] == old[k] for m in missing) > 1]
    out += [k for k in unexpected if sum(new[u] == new[k] for u in unexpected) > 1]
    return sorted(set(out))


@_checks_options
@st.composite
def refactors(
    draw: DrawFn, *, changes: tuple[str, ...] = CHANGES, pieces: tuple[str, ...] = PIECE_LAYOUTS, max_depth: int = 3, max_children: int = 3, max_leaves: int = 4,
    max_features: int = 6, max_tensors: int = 2, kinds: Optional[tuple[str, ...]] = None,
    dtypes: Optional[tuple[str, ...]] = None,
) -> Refactor:
    """A save-side spec whose ``load_as`` refactors it, and the truth about what moved (`Refactor`).

    `changes` are the kinds of change that may be drawn (see the module
    docstring); the spec options go to `specs`. Every example validates
    (`Spec.from_dict`) on both sides. Changes keep to separate modules (a
    rename moves none of the modules another change touches), so each
    entry of the truth is one change. Shrinks towards one rename of a
    minimal spec.
    """
    save = _base(draw, {"max_depth": max_depth, "max_children": max_children, "max_leaves": max_leaves,
                        "max_features": max_features, "max_tensors": max_tensors, "kinds": kinds, "dtypes": dtypes})
    chosen = [c for c in changes if draw(st.booleans())] or [draw(st.sampled_from(changes))]
    if "split" in chosen and "fuse" in chosen:  # one linear site: the one or the other
        chosen.remove(draw(st.sampled_from(("split", "fuse"))))
    load = copy.deepcopy(save)
    moves: list[dict[str, Any]] = []  # truth entries other than renames and additions
    busy: set[str] = set()  # module paths a change took: a rename keeps off them

    site = _linear_site(draw, save, dtypes or LAYER_DTYPES, max_features, pieces) if {"split", "fuse"} & set(chosen) else None
    if site is not None:
        load = copy.deepcopy(save)  # the site may be a linear added to the save side just now
        whole = _node(save["model"], site)
        parts, piece_paths, holder = _pieces(draw, save, site, pieces)
        placed = [{"kind": holder, "children": parts}] if holder else parts
        leaves = ["weight"] + (["bias"] if whole.get("bias", True) else [])
        if "split" in chosen:
            _replace(load, site, copy.deepcopy(placed))
            moves += [{"kind": "split", "old": [join_path(site, leaf)], "new": [join_path(p, leaf) for p in piece_paths], "dim": 0}
                      for leaf in leaves]
        else:
            _replace(save, site, copy.deepcopy(placed))
            load = copy.deepcopy(save)
            _replace(load, site if holder else piece_paths[0], [copy.deepcopy(whole)])
            for path in [] if holder else piece_paths[1:]:
                _replace(load, path, [])
            moves += [{"kind": "fuse", "old": [join_path(p, leaf) for p in piece_paths], "new": [join_path(site, leaf)], "dim": 0}
                      for leaf in leaves]
        busy |= {site, *piece_paths}

    if "reparametrize" in chosen:
        referenced = _referenced(save) - {p.get("at", "") for p in save.get("parametrize", [])}
        weights = [t.path for t in model_tensors(save["model"])
                   if t.parametrizable and not _near(t.path.rpartition(".")[0], busy) and not _touches(t.path, referenced)]
        if weights:
            at, _, param = draw(st.sampled_from(weights)).rpartition(".")
            # Mostly the migration users make (legacy -> parametrization); shrinks to it.
            legacy_first = draw(st.integers(0, 3)) < 3
            kinds_ = ("weight_norm_legacy", "weight_norm") if legacy_first else ("weight_norm", "weight_norm_legacy")
            for data, kind in zip((save, load), kinds_):
                pars = [p for p in data.get("parametrize", []) if (p.get("at", ""), p.get("param", "weight")) != (at, param)]
                data["parametrize"] = [*pars, {"at": at, "param": param, "kind": kind}]
            legacy = [join_path(at, f"{param}_g"), join_path(at, f"{param}_v")]
            modern = [join_path(at, f"parametrizations.{param}.original{i}") for i in (0, 1)]
            for a, b in zip(*((legacy, modern) if legacy_first else (modern, legacy))):
                moves.append({"kind": "parametrization", "old": [a], "new": [b]})
            busy.add(at)

    if "drop" in chosen:
        planted = {p["at"] for p in save.get("plant", [])} | {lay["at"] for lay in save.get("layout", [])}
        buffers = [i for i, t in enumerate(save.get("tensors", []))
                   if t.get("kind", "buffer") == "buffer" and t.get("persistent", True) and extra_record(t).path not in planted]
        if buffers and draw(st.integers(0, 2)) > 0:
            index = draw(st.sampled_from(buffers))
        else:  # a persistent buffer of its own, on a module both sides have
            at = draw(st.sampled_from(sorted(set(module_paths(save["model"])) & set(module_paths(load["model"])))))
            buf = _draw_extra(draw, {"name": f"xt{len(save.get('tensors', []))}"}, _BUFFER_DTYPES, at)
            for data in (save, load):
                data["tensors"] = [*data.get("tensors", []), copy.deepcopy(buf)]
            index = len(save["tensors"]) - 1
        load["tensors"][index]["persistent"] = False
        moves.append({"kind": "dropped", "old": [extra_record(save["tensors"][index]).path], "new": []})
        busy.add(save["tensors"][index].get("at", ""))

    renamed: Optional[tuple[str, str]] = None
    if "rename" in chosen:
        load_keys, save_modules = state_slots(load), module_paths(save["model"])
        movable = [
            p for p, parent, _ in _sites(load["model"])
            if parent["kind"] in ("sequential", "module_dict") and p in save_modules and not _near(p, busy)
            and any(k.startswith(p + ".") for k in load_keys)
        ]
        if movable:
            old_path = draw(st.sampled_from(movable))
            parent_path = old_path.rpartition(".")[0]
            siblings = {n for n, _ in child_items(_node(load["model"], parent_path))}
            new_name = draw(st.sampled_from([n for n in _RENAMES if n not in siblings]))
            renamed = (old_path, join_path(parent_path, new_name))
            _rename_child(load, old_path, new_name)
            _rename_extras(load, *renamed)

    added: list[dict[str, Any]] = []
    if "add" in chosen or not (moves or renamed):  # nothing else applied: a refactor changes something
        at = draw(st.sampled_from(sorted(module_paths(load["model"]))))
        extra = _draw_extra(draw, {"name": f"xt{len(load.get('tensors', []))}", "kind": "parameter"}, _ADDED_DTYPES, at)
        load["tensors"] = [*load.get("tensors", []), extra]
        added.append({"kind": "added", "old": [], "new": [extra_record(extra).path]})

    old_slots, new_slots = state_slots(save), state_slots(load)
    taken = {k for e in moves for k in e["old"]}
    renames, kept = [], set()
    for key in old_slots:
        moved = _moved(key, *renamed) if renamed else key
        if key in taken:
            continue
        if moved == key:
            kept.add(key)
        else:
            renames.append({"kind": "rename", "old": [key], "new": [moved]})
    entries = renames + moves + added
    # The truth accounts for every key of both sides, each once: else the strategy is wrong.
    if kept | {k for e in entries for k in e["new"]} != set(new_slots) or kept | {k for e in entries for k in e["old"]} != set(old_slots):
        msg = f"refactors drew a truth that does not fit its specs (a bug in the strategy): {entries} for {save} -> {load}"
        raise AssertionError(msg)
    save["load_as"] = {key: load.get(key) for key in LOAD_SIDE_FIELDS if load.get(key) != save.get(key)}
    made = sorted({e["kind"] for e in entries}, key=ENTRY_KINDS.index)
    save["description"] = f"Drawn by harness.strategies.refactors: {', '.join(made)} in a drawn spec."
    return Refactor(save, {"entries": entries, "same": len(kept), "ambiguous": _ambiguous(entries, old_slots, new_slots)})


#: The spec fields a drawn refactor changes (a subset of ``load_as``'s).
LOAD_SIDE_FIELDS = ("model", "tensors", "ties", "plant", "layout", "parametrize")
#: Entry kinds, in the order the truth lists them.
ENTRY_KINDS = ("rename", "split", "fuse", "parametrization", "dropped", "added")


def _near(path: str, busy: set[str]) -> bool:
    """Whether renaming module `path` would move a module of `busy` (it is one, or above one)."""
    return any(b == path or b.startswith(path + ".") for b in busy)


def _replace(data: dict[str, Any], path: str, nodes: list[dict[str, Any]]) -> None:
    """Put `nodes` where the child at `path` is, in place; one unnamed node takes the old child's name."""
    parent_path, _, name = path.rpartition(".")
    parent = _node(data["model"], parent_path)
    index = [n for n, _ in child_items(parent)].index(name)
    old = parent["children"][index]
    if len(nodes) == 1 and "name" in old and "name" not in nodes[0]:
        nodes = [{"name": old["name"], **nodes[0]}]
    parent["children"][index:index + 1] = nodes


def _draw_extra(draw: DrawFn, extra: dict[str, Any], dtypes: Sequence[str], at: str) -> dict[str, Any]:
    """An extra tensor (spec ``tensors`` item): `extra`'s fields plus a drawn shape and dtype, at module `at`."""
    extra = dict(extra, shape=draw(st.lists(st.integers(0, 4), max_size=3)))
    dtype = draw(st.sampled_from(dtypes))
    if dtype != "float32":
        extra["dtype"] = dtype
    if at:
        extra["at"] = at
    return extra


def _rename_child(data: dict[str, Any], path: str, new_name: str) -> None:
    """Give the child at `path` the name `new_name`, in place (its parent is a sequential or module_dict)."""
    parent_path, _, name = path.rpartition(".")
    parent = _node(data["model"], parent_path)
    index = [n for n, _ in child_items(parent)].index(name)
    child = parent["children"][index]
    parent["children"][index] = {"name": new_name, **{k: v for k, v in child.items() if k != "name"}}
