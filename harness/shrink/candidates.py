"""Smaller versions of a failing cell: the shrink passes over a spec and its load options.

Each candidate is the current best made simpler in one way: a load option
back to its plainest value, an extra (tensor, tie, planted value, layout,
parametrization, checkpoint extra) dropped, a layer dropped or a container
flattened, a dimension shrunk, a dtype back to float32, a value made
plainer. Passes go from coarse to fine, as Hypothesis's shrinker does: a
whole list goes before its items, a layer before its widths.

Every candidate must be strictly smaller than the case it came from by
`size` (a tuple compared in order), so shrinking always ends; candidates
that are not valid specs are dropped here and never cost a step. A change
that breaks a chain of layers (a width shrunk, a layer dropped) is
repaired by giving the next layer the input width it now gets
(`repair_chains`), and extras that named a dropped module are dropped with
it.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

from harness.runtime.errors import SpecError
from harness.runtime.layers import KINDS, Sig
from harness.runtime.spec import CONTAINERS, Spec, module_paths

__all__ = ["EXTRA_LISTS", "Candidate", "candidates", "canonical", "normalized", "repair_chains", "size"]

#: Top-level lists of a spec whose items a shrink may drop, biggest effect first.
EXTRA_LISTS = ("tensors", "ties", "plant", "layout", "parametrize", "checkpoint_extras")
#: Top-level fields a shrink may drop whole (each has a plain default).
_DROPPABLE = ("train", "state_dict_prefix", "device_index", "class_path", "load_as")
#: Load-option fields and their plainest value (None: the field is left out).
#: Only a field the cell has is simplified: which fields apply is the format's business.
_PLAIN_LOAD = {
    "map_location": "none", "weights_only": "default", "mmap": False, "apply": "none",
    "source": None, "loader": None, "safe_globals": None, "device": None,
    "load_as": None, "migrate": None, "rename_class": None,
}
_FLOAT32 = "float32"


@dataclass(frozen=True)
class Candidate:
    """One simplification of the best case so far."""

    pass_name: str  #: the kind of change: "load option", "extra", "layer", "dimension", "dtype", "value"
    change: str  #: what changed, for the history: "drop tensors[1] (buf)"
    spec: dict[str, Any]
    load: dict[str, Any]


def canonical(spec: dict[str, Any], load: dict[str, Any]) -> str:
    """One string per (spec, load options): the key of the candidates already tried."""
    return json.dumps([spec, load], sort_keys=True)


def normalized(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` without what changes no build: its description and tags (tags only steer expectations), defaults spelled out."""
    out = copy.deepcopy({k: v for k, v in spec.items() if k not in ("description", "tags")})
    if "model" in out:
        for node in _walk(out["model"]):
            if node.get("dtype") == _FLOAT32:
                del node["dtype"]
    for t in out.get("tensors", []):
        for key, plain in (("dtype", _FLOAT32), ("kind", "buffer"), ("at", ""), ("fill", "formula"), ("layout", "strided")):
            if t.get(key) == plain:
                del t[key]
    return out


# -- size: the order a shrink descends ---------------------------------------


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []) if node.get("kind") in CONTAINERS else []:
        yield from _walk(child)


def size(spec: dict[str, Any], load: dict[str, Any]) -> tuple[int, ...]:
    """(modules, extras, integers, true flags, non-float32 dtypes, plain values, load options): smaller is simpler.

    Compared as a tuple: dropping a module is progress whatever it does to
    the widths, as deleting comes before shrinking in Hypothesis.
    """
    if spec.get("factory"):
        return (0,)
    nodes = list(_walk(spec["model"]))
    ints = trues = dtypes = 0
    for node in nodes:
        layer = KINDS.get(node["kind"])
        for f in layer.fields if layer else ():
            value = node.get(f.name, f.default)  # a default counts: bias=True holds a tensor
            if isinstance(value, bool):
                trues += int(value)
            elif isinstance(value, int):
                ints += value
        dtypes += int(node.get("dtype", _FLOAT32) != _FLOAT32)
    extras = sum(len(spec.get(k, [])) for k in EXTRA_LISTS) + sum(1 for k in _DROPPABLE if k in spec)
    values = 0
    for t in spec.get("tensors", []):
        values += int(bool(t.get("at")))  # an extra on a submodule keeps that module alive
        ints += _numel(t["shape"]) + len(t["shape"])
        dtypes += int(t.get("dtype", _FLOAT32) != _FLOAT32)
        trues += sum(int(bool(t.get(k))) for k in ("requires_grad",)) + int(t.get("kind") == "parameter")
        values += int(t.get("fill", "formula") != "zeros") + int(t.get("layout", "strided") != "strided") + int("persistent" in t)
    train = spec.get("train") or {}
    values += int(spec.get("seed", 0) != 0) + spec.get("batch", 2) - 1 + int(train.get("steps", 1))
    options = sum(1 for k, v in load.items() if k in _PLAIN_LOAD and v != _PLAIN_LOAD[k])
    return (len(nodes), extras, ints, trues, dtypes, values, options)


# -- chains -------------------------------------------------------------------


@lru_cache(maxsize=None)
def _input_field(kind: str) -> Optional[str]:
    """The field of a layer kind that sets the width it takes (in_features, num_features, ...), if one does."""
    layer = KINDS[kind]
    ints = [f.name for f in layer.fields if f.type is int]
    probe = {f.name: f.default for f in layer.fields}
    for i, name in enumerate(ints):
        probe[name] = 1000 + i
    features = layer.natural_input(probe, _FLOAT32)[1]
    return next((name for i, name in enumerate(ints) if features == 1000 + i), None)


def _repair_leaf(node: dict[str, Any], sig: Sig) -> None:
    layer = KINDS[node["kind"]]
    fields = {f.name: node.get(f.name, f.default) for f in layer.fields}
    if layer.accepts(fields, sig):
        return
    name = _input_field(node["kind"])
    if name is not None and sig[0] == layer.natural_input(fields, _FLOAT32)[0]:
        node[name] = sig[1]


def _chain(node: dict[str, Any], sig: Optional[Sig]) -> Optional[Sig]:
    """Walk a chain as validation does, repairing each leaf's input width; the output, or None where it cannot go on."""
    if node["kind"] == "sequential":
        for child in node["children"]:
            if child["kind"] in CONTAINERS and child["kind"] != "sequential":
                return None
            sig = _chain(child, sig)
            if sig is None:
                return None
        return sig
    if node["kind"] in CONTAINERS:
        for child in node["children"]:
            _chain(child, None)
        return None
    layer = KINDS[node["kind"]]
    fields = {f.name: node.get(f.name, f.default) for f in layer.fields}
    if sig is None:
        return layer.output(fields, layer.natural_input(fields, node.get("dtype", _FLOAT32)))
    _repair_leaf(node, sig)
    fields = {f.name: node.get(f.name, f.default) for f in layer.fields}
    if not layer.accepts(fields, sig):
        return None
    dtype = node.get("dtype", sig[2]) if layer.has_params else sig[2]
    return layer.output(fields, (sig[0], sig[1], dtype if sig[0] == "tokens" else sig[2]))


def repair_chains(model: dict[str, Any]) -> None:
    """Give each layer of every chain the input width its predecessor now puts out (in place)."""
    if model["kind"] == "sequential":
        _chain(model, None)
    else:
        for child in model.get("children", []):
            if child["kind"] in CONTAINERS:
                repair_chains(child)


# -- references to modules ---------------------------------------------------


def _renumber(path: str, container: str, removed: int) -> Optional[str]:
    """`path` after child `removed` of the numbered container at `container` is gone: None if it was inside it."""
    prefix = container.split(".") if container else []
    parts = path.split(".") if path else []
    if parts[: len(prefix)] != prefix or len(parts) == len(prefix):
        return path
    index = parts[len(prefix)]
    if not index.isdigit():
        return path
    if int(index) == removed:
        return None
    if int(index) > removed:
        parts[len(prefix)] = str(int(index) - 1)
    return ".".join(parts)


def _moved_refs(spec: dict[str, Any], move: Any) -> None:
    """Apply `move(path) -> path | None` to every module reference; drop the items whose module went."""
    def module_of(tensor_path: str) -> str:
        return tensor_path.rpartition(".")[0]

    def moved_tensor(path: str) -> Optional[str]:
        owner = move(module_of(path))
        if owner is None:
            return None
        name = path.rpartition(".")[2]
        return f"{owner}.{name}" if owner else name

    kept: list[dict[str, Any]] = []
    for t in spec.get("tensors", []):
        at = move(t.get("at", ""))
        if at is not None:
            kept.append({**t, "at": at} if "at" in t else t)
    spec["tensors"] = kept
    spec["parametrize"] = [{**p, "at": at} for p in spec.get("parametrize", []) if (at := move(p.get("at", ""))) is not None]
    for key in ("plant", "layout"):
        spec[key] = [{**item, "at": at} for item in spec.get(key, []) if (at := moved_tensor(item["at"])) is not None]
    ties = []
    for tie in spec.get("ties", []):
        a, b = moved_tensor(tie["from"]), moved_tensor(tie["to"])
        if a is not None and b is not None:
            ties.append({"from": a, "to": b})
    spec["ties"] = ties
    for key in (*EXTRA_LISTS,):
        if key in spec and not spec[key]:
            del spec[key]


def _prune_dangling(spec: dict[str, Any]) -> None:
    """Drop extras that name a module the model no longer has."""
    try:
        paths = set(module_paths(spec["model"]))
    except (KeyError, TypeError):
        return
    _moved_refs(spec, lambda p: p if p in paths else None)


# -- the passes ----------------------------------------------------------------


def _nodes_with_paths(node: dict[str, Any], path: str = "", where: tuple = ()) -> Iterator[tuple[str, tuple, dict[str, Any]]]:
    """(module path, position in the JSON tree as child indexes, node) of every node."""
    yield path, where, node
    if node["kind"] in CONTAINERS:
        for i, child in enumerate(node["children"]):
            name = child.get("name", str(i))
            yield from _nodes_with_paths(child, f"{path}.{name}" if path else name, (*where, i))


def _at(model: dict[str, Any], where: tuple) -> dict[str, Any]:
    node = model
    for i in where:
        node = node["children"][i]
    return node


def _load_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    for key in sorted(load):
        if key not in _PLAIN_LOAD or load[key] == _PLAIN_LOAD[key]:
            continue
        plain = _PLAIN_LOAD[key]
        new = {k: v for k, v in load.items() if k != key}
        if plain is not None:
            new[key] = plain
        yield Candidate("load option", f"load option {key}={load[key]} -> {plain if plain is not None else '(left out)'}", spec, new)


def _extras_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    for key in _DROPPABLE:
        if key in spec:
            new = copy.deepcopy(spec)
            del new[key]
            yield Candidate("extra", f"drop {key}", new, load)
    for key in EXTRA_LISTS:
        items = spec.get(key, [])
        if len(items) > 1:
            new = copy.deepcopy(spec)
            del new[key]
            yield Candidate("extra", f"drop all {len(items)} {key}", new, load)
        for i in reversed(range(len(items))):
            new = copy.deepcopy(spec)
            del new[key][i]
            if not new[key]:
                del new[key]
            item = items[i]  # checkpoint_extras are kind names, the others objects
            label = item if isinstance(item, str) else item.get("name") or item.get("at") or item.get("from") or item.get("kind")
            yield Candidate("extra", f"drop {key}[{i}] ({label})", new, load)


def _numbered(parent: dict[str, Any]) -> bool:
    return parent["kind"] == "module_list" or not any("name" in c for c in parent["children"])


def _layer_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    nodes = list(_nodes_with_paths(spec["model"]))
    for path, where, node in nodes:
        if node["kind"] not in CONTAINERS:
            continue
        children = node["children"]
        # A container with one child is replaced by that child (the root must stay a container).
        if where and len(children) == 1:
            new = copy.deepcopy(spec)
            parent = _at(new["model"], where[:-1])
            child = copy.deepcopy(children[0])
            name = parent["children"][where[-1]].get("name")
            child.pop("name", None)
            if name is not None:
                child["name"] = name
            parent["children"][where[-1]] = child
            inner = children[0].get("name", "0")

            def flatten(p: str, path: str = path, inner: str = inner) -> Optional[str]:
                if p == path or not p.startswith(path + "."):
                    return p
                rest = p[len(path) + 1:]
                head, _, tail = rest.partition(".")
                if head != inner:
                    return None
                return f"{path}.{tail}" if tail else path

            _moved_refs(new, flatten)
            yield Candidate("layer", f"flatten {path or 'model'} ({node['kind']} of one)", new, load)
        if len(children) < 2:
            continue
        for i in reversed(range(len(children))):
            new = copy.deepcopy(spec)
            container = _at(new["model"], where)
            gone = container["children"].pop(i)
            name = gone.get("name", str(i))
            full = f"{path}.{name}" if path else name
            if _numbered(node):
                _moved_refs(new, lambda p, c=path, i=i: _renumber(p, c, i))
            _prune_dangling(new)
            repair_chains(new["model"])
            yield Candidate("layer", f"drop {full} ({gone['kind']})", new, load)


def _smaller_ints(value: int, lowest: int) -> list[int]:
    out = []
    for v in (lowest, value // 2, value - 1):
        if lowest <= v < value and v not in out:
            out.append(v)
    return out


def _dimension_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    for path, where, node in list(_nodes_with_paths(spec["model"])):
        if node["kind"] in CONTAINERS:
            continue
        layer = KINDS[node["kind"]]
        for f in layer.fields:
            value = node.get(f.name, f.default)
            if f.type is bool and value is True:
                new = copy.deepcopy(spec)
                _at(new["model"], where)[f.name] = False
                repair_chains(new["model"])
                yield Candidate("dimension", f"{path}.{f.name} True -> False", new, load)
            elif f.type is int and isinstance(value, int) and not isinstance(value, bool):
                for v in _smaller_ints(value, 0):
                    new = copy.deepcopy(spec)
                    _at(new["model"], where)[f.name] = v
                    repair_chains(new["model"])
                    yield Candidate("dimension", f"{path}.{f.name} {value} -> {v}", new, load)
    for i, t in enumerate(spec.get("tensors", [])):
        shape = t["shape"]
        for j in reversed(range(len(shape))):
            new = copy.deepcopy(spec)
            del new["tensors"][i]["shape"][j]
            yield Candidate("dimension", f"tensors[{i}] ({t['name']}) shape {shape} -> drop dim {j}", new, load)
        for j, d in enumerate(shape):
            for v in _smaller_ints(d, 0):
                new = copy.deepcopy(spec)
                new["tensors"][i]["shape"][j] = v
                yield Candidate("dimension", f"tensors[{i}] ({t['name']}) shape[{j}] {d} -> {v}", new, load)


def _dtype_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    leaves = [(p, w) for p, w, n in _nodes_with_paths(spec["model"]) if "dtype" in n and n["dtype"] != _FLOAT32]
    if len(leaves) > 1:
        new = copy.deepcopy(spec)
        for _, where in leaves:
            del _at(new["model"], where)["dtype"]
        yield Candidate("dtype", f"every layer float32 ({len(leaves)} layers)", new, load)
    for path, where in leaves:
        new = copy.deepcopy(spec)
        old = _at(new["model"], where).pop("dtype")
        yield Candidate("dtype", f"{path} {old} -> float32", new, load)
    for i, t in enumerate(spec.get("tensors", [])):
        if t.get("dtype", _FLOAT32) != _FLOAT32:
            new = copy.deepcopy(spec)
            new["tensors"][i].pop("dtype")
            if new["tensors"][i].get("kind") == "parameter":
                new["tensors"][i].pop("requires_grad", None)
            yield Candidate("dtype", f"tensors[{i}] ({t['name']}) {t['dtype']} -> float32", new, load)


#: Plainer stand-ins for a layer, plainest first: one without tensors (a chain may
#: need a link, not its weights), then the smallest layer with one (a format that
#: needs a parameter, as an optimizer does, keeps it).
_PLAIN_LEAVES: tuple[dict[str, Any], ...] = (
    {"kind": "activation"},
    {"kind": "linear", "in_features": 1, "out_features": 1, "bias": False},
)


def _plain_leaf_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    """A layer replaced by a plainer one (`_PLAIN_LEAVES`), its chain mended."""
    for path, where, node in list(_nodes_with_paths(spec["model"])):
        if node["kind"] in CONTAINERS or not KINDS[node["kind"]].has_params:
            continue
        for stand_in in _PLAIN_LEAVES:
            if stand_in["kind"] == node["kind"]:
                continue
            new = copy.deepcopy(spec)
            parent = _at(new["model"], where[:-1])
            plain = dict(stand_in)
            if "name" in node:
                plain["name"] = node["name"]
            parent["children"][where[-1]] = plain
            _prune_dangling(new)
            repair_chains(new["model"])
            yield Candidate("layer", f"{path} ({node['kind']}) -> {stand_in['kind']}", new, load)


def _value_pass(spec: dict[str, Any], load: dict[str, Any]) -> Iterator[Candidate]:
    for top, lowest in (("seed", 0), ("batch", 1)):
        if spec.get(top, lowest) != lowest:
            yield Candidate("value", f"{top} {spec[top]} -> {lowest}", {**copy.deepcopy(spec), top: lowest}, load)
    train = spec.get("train")
    if train and train.get("steps", 1) > 0:
        new = copy.deepcopy(spec)
        new["train"]["steps"] = train.get("steps", 1) // 2
        yield Candidate("value", f"train.steps {train.get('steps', 1)} -> {new['train']['steps']}", new, load)
    for i, t in enumerate(spec.get("tensors", [])):
        if t.get("at") and not any(u.get("name") == t["name"] and not u.get("at") for u in spec["tensors"]):
            new = copy.deepcopy(spec)
            del new["tensors"][i]["at"]
            yield Candidate("value", f"tensors[{i}] ({t['name']}) moved from {t['at']} to the root module", new, load)
        for key, plain in (("fill", "zeros"), ("layout", None), ("persistent", None), ("requires_grad", None), ("kind", None)):
            if key not in t or t[key] == plain:
                continue
            new = copy.deepcopy(spec)
            if plain is None:
                del new["tensors"][i][key]
                if key == "kind":
                    new["tensors"][i].pop("requires_grad", None)
            else:
                new["tensors"][i][key] = plain
            yield Candidate("value", f"tensors[{i}] ({t['name']}) {key} {t[key]} -> {plain if plain is not None else '(default)'}", new, load)


_PASSES = (_load_pass, _extras_pass, _layer_pass, _plain_leaf_pass, _dimension_pass, _dtype_pass, _value_pass)


def _valid(candidate: Candidate) -> bool:
    try:
        Spec.from_dict(candidate.spec)
    except SpecError:
        return False
    return True


def candidates(spec: dict[str, Any], load: dict[str, Any], seed: int = 0) -> Iterator[Candidate]:
    """Every valid simplification of (spec, load) that is smaller by `size`, coarse passes first.

    `seed` 0 keeps each pass's natural order; another seed shuffles each
    pass with `random.Random(seed)`, the same way every time.
    """
    if spec.get("factory"):
        return
    current = size(spec, load)
    rng = random.Random(seed) if seed else None
    seen: set[str] = set()  # two changes may give one case (either dim of a [2, 2] dropped)
    for make in _PASSES:
        batch = list(make(spec, load))
        if rng is not None:
            rng.shuffle(batch)
        for candidate in batch:
            key = canonical(candidate.spec, candidate.load)
            if key not in seen and size(candidate.spec, candidate.load) < current and _valid(candidate):
                seen.add(key)
                yield candidate
