"""Specs: plain-JSON descriptions of architectures, and their validation.

A spec is what travels between envs (never a pickled module). Any env
rebuilds the same architecture from it with its own torch (see `builder`).
Validation happens once, here, and names the offending field with a dotted
path such as ``model.children[2].out_features``.

Top-level fields::

    name               identifier-like case name (letters, digits, _ . -)
    seed               int; seeds weight init, inputs and training
    model              a container node (below)
    batch              batch size of the synthetic inputs (default 2)
    tensors            extra parameters/buffers: name, at, kind, shape, dtype,
                       persistent, fill (formula|zeros|ones), layout
                       (strided|sparse_coo), requires_grad; dtype is any of
                       `dtypes.SPEC_DTYPES`, float8, uint16/32/64 and
                       complex32 included (a skip where the env's torch lacks it)
    ties               [{"from": "emb.weight", "to": "head.weight"}]
    plant              [{"at": "fc.weight"}]  special values (NaN payloads, ...)
    layout             [{"at": "conv.weight", "kind": channels_last|transposed|offset}]
    parametrize        [{"at": "fc", "param": "weight", "kind":
                        weight_norm|orthogonal|weight_norm_legacy}]; the first two
                       are torch.nn.utils.parametrizations (state-dict keys
                       ``fc.parametrizations.weight.original0``/``original1``),
                       weight_norm_legacy is ``torch.nn.utils.weight_norm``
                       (keys ``fc.weight_g``/``fc.weight_v``)
    train              {"optimizer": adam|adamw|sgd, "lr", "steps", "loss":
                        cross_entropy|square_mean, "target"}
    state_dict_prefix  null, "_orig_mod." (torch.compile) or "module." (DataParallel)
    checkpoint_extras  what the checkpoint holds beside the state dicts, as
                       training scripts save it: numpy_scalar, numpy_array,
                       namespace, dataclass, enum, path, loss_module, tuple,
                       set, bytes, nested (`checkpoint_extras.EXTRA_KINDS`)
    device_index       int 0..15 (default 0): the GPU a CUDA save places the model
                       on; a cuda-emulated save tags its storages ``cuda:<index>``
    tags               free-form strings that expectations can match
    origin             curated | generated | user
    description        one sentence for the report
    class_path         "roundtrip_moved.MODULE:NAME": the class the built model is
                       pickled under, a `CaseModel` subclass in a synthetic module
                       that exists only in a process that built it
                       (`casemodel.moved_class`), so a whole-model pickle of it
                       cannot be imported elsewhere: a class that moved. Default
                       (absent): ``harness.runtime.casemodel:CaseModel``
    load_as            a refactor: the model code changed between the save and
                       the load. An object of top-level fields (model, tensors,
                       ties, plant, layout, parametrize, class_path, description)
                       that replace the save side's on the load side; a field
                       set to null or [] is removed there. The result (the
                       *variant*, `Spec.load_side`) is a spec of its own and
                       must differ from the save side. Not for user cases
                       (they refactor with ``load --load-as``)

A node is a leaf ``{"kind": "linear", "in_features": 10, ..., "dtype": "float32"}``
(see `layers.KINDS`) or a container: ``sequential`` (children run as a chain;
each output feeds the next), ``module_list`` or ``module_dict`` (children run
side by side, each on its own input). ``children`` is a list; a child of a
``sequential`` or ``module_dict`` may carry a ``"name"`` (else its index names it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.runtime.checkpoint_extras import EXTRA_KINDS
from harness.runtime.dtypes import FLOAT_DTYPES, SPEC_DTYPES
from harness.runtime.errors import InputError, SpecError
from harness.runtime.layers import KINDS, REQUIRED, Sig

__all__ = [
    "CONTAINERS",
    "CORPUS_SCHEMA",
    "LOAD_AS_FIELDS",
    "MOVED_PREFIX",
    "PARAMETRIZE_KINDS",
    "SCHEMA",
    "Leaf",
    "Spec",
    "chain_signature",
    "child_items",
    "input_signatures",
    "load_specs",
    "module_paths",
    "walk_leaves",
]

#: Version of a spec's schema (its ``schema`` field).
SCHEMA = 1
#: Version of a corpus file (``{"schema": 1, "cases": [...]}``, written by `harness.corpus`).
CORPUS_SCHEMA = 1
CONTAINERS = ("sequential", "module_list", "module_dict")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
PREFIXES = ("_orig_mod.", "module.")
_TOP = {
    "schema", "name", "seed", "model", "batch", "tensors", "ties", "plant", "layout",
    "parametrize", "train", "state_dict_prefix", "tags", "origin", "description", "factory", "checkpoint_extras",
    "device_index", "class_path", "load_as",
}
#: The top-level fields a ``load_as`` may replace: the architecture, not the case's identity or training.
LOAD_AS_FIELDS = ("model", "tensors", "ties", "plant", "layout", "parametrize", "class_path", "description")
#: The package every ``class_path`` lives under. `casemodel` makes the classes
#: and imports it from here: specs are validated where torch is not imported.
MOVED_PREFIX = "roundtrip_moved."
_CLASS_PATH = re.compile(r"^roundtrip_moved(\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*$")
#: Parametrization kinds: torch.nn.utils.parametrizations' and the legacy weight_norm hook.
PARAMETRIZE_KINDS = ("weight_norm", "orthogonal", "weight_norm_legacy")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: What a user case (a factory instead of a model tree) may also carry.
_FACTORY_FIELDS = {"schema", "name", "seed", "factory", "train", "state_dict_prefix", "tags", "origin", "description", "checkpoint_extras", "device_index"}
#: GPU indexes a spec may name (``device_index``).
_MAX_DEVICE_INDEX = 15


def _check_device_index(data: dict[str, Any]) -> None:
    index = data.get("device_index", 0)
    _check_type("device_index", index, int)
    if not 0 <= index <= _MAX_DEVICE_INDEX:
        raise SpecError("device_index", f"must be between 0 and {_MAX_DEVICE_INDEX}")


def _check_class_path(data: dict[str, Any]) -> None:
    if "class_path" not in data:
        return
    path = data["class_path"]
    _check_type("class_path", path, str)
    if not _CLASS_PATH.match(path):
        msg = (f"{path!r} is not {MOVED_PREFIX}MODULE:NAME (e.g. 'roundtrip_moved.v1.models:Classifier'); "
               "leave class_path out for the default harness.runtime.casemodel:CaseModel")
        raise SpecError("class_path", msg)


def _variant_data(data: dict[str, Any]) -> dict[str, Any]:
    """The load side's data: `data` with the fields ``load_as`` names replaced (null or [] removes one)."""
    out = {k: copy.deepcopy(v) for k, v in data.items() if k != "load_as"}
    for key, value in data["load_as"].items():
        if value is None or value == []:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _architecture(data: dict[str, Any]) -> dict[str, Any]:
    """What a side builds: its data less the description, with empty fields dropped (absent and [] build alike)."""
    return {k: v for k, v in data.items() if k not in ("load_as", "description") and v is not None and v != []}


def _check_load_as(data: dict[str, Any]) -> Spec:
    """Validate ``load_as`` and return the load side; errors name ``load_as.<field>``."""
    load_as = data["load_as"]
    _check_type("load_as", load_as, dict)
    if not load_as:
        raise SpecError("load_as", f"empty: name the fields the load side replaces ({', '.join(LOAD_AS_FIELDS)})")
    for key in load_as:
        if key not in LOAD_AS_FIELDS:
            raise SpecError(f"load_as.{key}", f"not a field the load side may replace (those are: {', '.join(LOAD_AS_FIELDS)})")
    variant = _variant_data(data)
    try:
        side = Spec.from_dict(variant)
    except SpecError as e:
        message = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
        top = re.split(r"[.\[]", e.field, maxsplit=1)[0]
        if top in load_as:
            raise SpecError(f"load_as.{e.field}", message) from None
        # A field the load side keeps from the save side no longer fits its model.
        raise SpecError("load_as", f"the load side keeps the save side's {e.field}, which does not fit it: {message} "
                        f"(replace {top} in load_as too)") from None
    if _architecture(variant) == _architecture(data):
        msg = f"changes nothing the load side builds: a refactor replaces at least one of {', '.join(f for f in LOAD_AS_FIELDS if f != 'description')}"
        raise SpecError("load_as", msg)
    return side


@dataclass(frozen=True)
class Leaf:
    """A leaf layer found while walking a spec: its module path and fields."""

    path: str
    kind: str
    fields: dict[str, Any]
    dtype: str
    where: str  # dotted spec path, for messages


def _type_name(t: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list", dict: "an object"}.get(t, t.__name__)


def _check_type(where: str, value: Any, t: type) -> None:
    ok = isinstance(value, t)
    if t is int and isinstance(value, bool):
        ok = False
    if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise SpecError(where, f"expected {_type_name(t)}, got {json.dumps(value)[:60]}")


def _children(node: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any], str]]:
    """(name, child node, spec path) of a container's children, in order.

    Children are always a list (JSON objects have no order, and manifests are
    written with sorted keys); a child may carry a ``"name"``, else its index
    names it, as in ``nn.Sequential``.
    """
    kind = node["kind"]
    kids = node.get("children", REQUIRED)
    if kids is REQUIRED:
        raise SpecError(f"{where}.children", f"a {kind} needs children")
    if not isinstance(kids, list):
        raise SpecError(f"{where}.children", 'expected a list of child nodes (give each a "name" to name it)')
    if not kids:
        raise SpecError(f"{where}.children", f"a {kind} needs at least one child")
    out = []
    for i, child in enumerate(kids):
        cw = f"{where}.children[{i}]"
        if not isinstance(child, dict) or "kind" not in child:
            raise SpecError(cw, 'expected a node object with a "kind"')
        name = child.get("name", str(i))
        if "name" in child:
            if kind == "module_list":
                raise SpecError(f"{cw}.name", "module_list children are numbered, not named")
            if not (isinstance(name, str) and _IDENT.match(name)):
                raise SpecError(f"{cw}.name", "a child name must be a Python identifier")
        out.append((name, child, cw))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}.children", "child names must be unique")
    return out


def child_items(node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, child) pairs of a validated container node."""
    return [(c.get("name", str(i)), c) for i, c in enumerate(node["children"])]


def _validate_leaf(node: dict[str, Any], where: str) -> dict[str, Any]:
    kind = KINDS[node["kind"]]
    known = {f.name for f in kind.fields} | {"kind", "dtype", "name"}
    for key in node:
        if key not in known:
            raise SpecError(f"{where}.{key}", f"unknown field for {kind.name} (known: {', '.join(sorted(known - {'kind'}))})")
    fields: dict[str, Any] = {}
    for f in kind.fields:
        if f.name in node:
            _check_type(f"{where}.{f.name}", node[f.name], f.type)
            fields[f.name] = node[f.name]
        elif f.default is REQUIRED:
            raise SpecError(f"{where}.{f.name}", f"required for {kind.name}")
        else:
            fields[f.name] = f.default
    for f in kind.fields:
        if f.check:
            problem = f.check(fields[f.name], fields)
            if problem:
                raise SpecError(f"{where}.{f.name}", f"{fields[f.name]!r} {problem}")
    if "dtype" in node:
        if not kind.has_params:
            raise SpecError(f"{where}.dtype", f"{kind.name} has no parameters, so no dtype (it takes its input's)")
        if node["dtype"] not in kind.dtypes:
            raise SpecError(f"{where}.dtype", f"{node['dtype']!r} is not one of {', '.join(kind.dtypes)} for {kind.name}")
    return fields


def walk_leaves(node: dict[str, Any], path: str = "", where: str = "model") -> Iterator[Leaf]:
    """Every leaf of a (validated) node tree, in forward order."""
    if node["kind"] in CONTAINERS:
        for name, child, cw in _children(node, where):
            yield from walk_leaves(child, f"{path}.{name}" if path else name, cw)
    else:
        kind = KINDS[node["kind"]]
        yield Leaf(path, kind.name, {f.name: node.get(f.name, f.default) for f in kind.fields}, node.get("dtype", "float32"), where)


def chain_signature(node: dict[str, Any], where: str, sig: Optional[Sig]) -> Sig:
    """The output signature ``(space, features, dtype)`` of `node` fed by `sig`.

    `sig` None means the node starts a chain and takes its natural input.
    A ``sequential`` feeds each child the previous child's output; raises
    `SpecError` at `where` (a dotted path) where a child does not accept it.
    Validation and the Hypothesis strategies share this one computation, so
    a drawn chain fits exactly when validation says it does.
    """
    if node["kind"] == "sequential":
        for _, child, cw in _children(node, where):
            if child["kind"] in ("module_list", "module_dict"):
                raise SpecError(cw, "a sequential chains its children, so it cannot hold a module_list or module_dict (their children run side by side)")
            sig = chain_signature(child, cw, sig)
        assert sig is not None
        return sig
    kind = KINDS[node["kind"]]
    fields = {f.name: node.get(f.name, f.default) for f in kind.fields}
    if sig is None:
        return kind.output(fields, kind.natural_input(fields, node.get("dtype", "float32")))
    dtype = node.get("dtype", sig[2]) if kind.has_params else sig[2]
    if not kind.accepts(fields, sig) or (kind.has_params and dtype != sig[2] and sig[0] != "tokens"):
        raise SpecError(where, f"{kind.name} does not accept the previous output {sig[0]}[{sig[1]}] of dtype {sig[2]}")
    return kind.output(fields, (sig[0], sig[1], dtype if sig[0] == "tokens" else sig[2]))


def input_signatures(node: dict[str, Any]) -> list[Sig]:
    """Signatures of a (validated) model's forward inputs, in the order its forward takes them.

    A ``module_list`` or ``module_dict`` takes one input per child; a chain
    takes its first leaf's natural input. The builder makes its synthetic
    inputs from these, and a reproduction's plain code writes the same.
    """
    if node["kind"] in ("module_list", "module_dict"):
        out: list[Sig] = []
        for child in node["children"]:
            out.extend(input_signatures(child))
        return out
    while node["kind"] == "sequential":
        node = node["children"][0]
    layer = KINDS[node["kind"]]
    fields = {f.name: node.get(f.name, f.default) for f in layer.fields}
    return [layer.natural_input(fields, node.get("dtype", "float32"))]


def _validate_node(node: Any, where: str, depth: int = 0, chained: bool = False) -> None:
    if not isinstance(node, dict):
        raise SpecError(where, "expected a node object")
    kind = node.get("kind")
    if kind in CONTAINERS:
        extra = set(node) - {"kind", "children", "name"}
        if extra:
            raise SpecError(f"{where}.{sorted(extra)[0]}", f"unknown field for a {kind}")
        if depth > 12:
            raise SpecError(where, "nesting deeper than 12 containers")
        for _, child, cw in _children(node, where):
            _validate_node(child, cw, depth + 1, chained=kind == "sequential")
        # A sequential inside a sequential is fed by its predecessor, not by
        # its own first child's natural input: the outermost chain checks it.
        if kind == "sequential" and not chained:
            chain_signature(node, where, None)
    elif kind in KINDS:
        _validate_leaf(node, where)
    else:
        raise SpecError(f"{where}.kind", f"{kind!r} is not a layer kind (known: {', '.join(sorted(set(KINDS) | set(CONTAINERS)))})")


def module_paths(node: dict[str, Any], path: str = "") -> dict[str, str]:
    """Module path -> kind, for every module in the tree (the root is ``""``).

    Paths are dotted as in a state dict (``"0.fc1"``); these are the places
    extras (``at``) may name.
    """
    out = {path: node["kind"]}
    if node["kind"] in CONTAINERS:
        for name, child in child_items(node):
            out.update(module_paths(child, f"{path}.{name}" if path else name))
    return out


def _expect_list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    _check_type(key, value, list)
    for i, item in enumerate(value):
        _check_type(f"{key}[{i}]", item, dict)
    return value


def _validate_extras(data: dict[str, Any], modules: dict[str, str]) -> None:
    def known_keys(item: dict[str, Any], where: str, allowed: set[str]) -> None:
        for k in item:
            if k not in allowed:
                raise SpecError(f"{where}.{k}", f"unknown field (known: {', '.join(sorted(allowed))})")

    def module_at(where: str, at: str) -> None:
        if at not in modules:
            raise SpecError(where, f"no module at {at!r} (modules: {', '.join(repr(m) for m in sorted(modules))})")

    for i, t in enumerate(_expect_list(data, "tensors")):
        w = f"tensors[{i}]"
        known_keys(t, w, {"name", "at", "kind", "shape", "dtype", "persistent", "fill", "layout", "requires_grad"})
        for req in ("name", "shape"):
            if req not in t:
                raise SpecError(f"{w}.{req}", "required")
        if not (isinstance(t["name"], str) and _IDENT.match(t["name"])):
            raise SpecError(f"{w}.name", "must be a Python identifier")
        module_at(f"{w}.at", t.get("at", ""))
        if t.get("kind", "buffer") not in ("parameter", "buffer"):
            raise SpecError(f"{w}.kind", "must be 'parameter' or 'buffer'")
        _check_type(f"{w}.shape", t["shape"], list)
        for j, d in enumerate(t["shape"]):
            _check_type(f"{w}.shape[{j}]", d, int)
            if d < 0:
                raise SpecError(f"{w}.shape[{j}]", "must be >= 0")
        dtype = t.get("dtype", "float32")
        if dtype not in SPEC_DTYPES:
            raise SpecError(f"{w}.dtype", f"{dtype!r} is not one of {', '.join(SPEC_DTYPES)}")
        if t.get("fill", "formula") not in ("formula", "zeros", "ones"):
            raise SpecError(f"{w}.fill", "must be 'formula', 'zeros' or 'ones'")
        layout = t.get("layout", "strided")
        if layout not in ("strided", "sparse_coo"):
            raise SpecError(f"{w}.layout", "must be 'strided' or 'sparse_coo'")
        if layout == "sparse_coo" and (len(t["shape"]) != 2 or t.get("kind", "buffer") != "buffer"):
            raise SpecError(f"{w}.layout", "sparse_coo is supported for 2-D buffers")
        if t.get("kind") == "parameter" and t.get("requires_grad", True) and dtype not in FLOAT_DTYPES:
            raise SpecError(f"{w}.requires_grad", f"only floating point parameters can require grad, not {dtype}")
        if "persistent" in t and t.get("kind", "buffer") != "buffer":
            raise SpecError(f"{w}.persistent", "only buffers are persistent or not")
    names = [(t.get("at", ""), t["name"]) for t in data.get("tensors", [])]
    if len(set(names)) != len(names):
        raise SpecError("tensors", "two extra tensors with the same name at the same module")

    for i, tie in enumerate(_expect_list(data, "ties")):
        known_keys(tie, f"ties[{i}]", {"from", "to"})
        for end in ("from", "to"):
            v = tie.get(end)
            if not (isinstance(v, str) and _PATH.match(v)):
                raise SpecError(f"ties[{i}].{end}", "a parameter path such as 'emb.weight'")
            module_at(f"ties[{i}].{end}", v.rpartition(".")[0])
    for i, p in enumerate(_expect_list(data, "plant")):
        known_keys(p, f"plant[{i}]", {"at"})
        if not isinstance(p.get("at"), str):
            raise SpecError(f"plant[{i}].at", "a tensor path such as 'fc.weight'")
    for i, lay in enumerate(_expect_list(data, "layout")):
        known_keys(lay, f"layout[{i}]", {"at", "kind"})
        if not isinstance(lay.get("at"), str):
            raise SpecError(f"layout[{i}].at", "a parameter path such as 'conv.weight'")
        if lay.get("kind") not in ("channels_last", "transposed", "offset"):
            raise SpecError(f"layout[{i}].kind", "must be 'channels_last', 'transposed' or 'offset'")
    for i, par in enumerate(_expect_list(data, "parametrize")):
        known_keys(par, f"parametrize[{i}]", {"at", "param", "kind"})
        module_at(f"parametrize[{i}].at", par.get("at", ""))
        if par.get("kind") not in PARAMETRIZE_KINDS:
            raise SpecError(f"parametrize[{i}].kind", f"must be one of {', '.join(map(repr, PARAMETRIZE_KINDS))}")
    train = data.get("train")
    if train is not None:
        _check_type("train", train, dict)
        known_keys(train, "train", {"optimizer", "lr", "steps", "loss", "target"})
        if train.get("optimizer", "adam") not in ("adam", "adamw", "sgd"):
            raise SpecError("train.optimizer", "must be 'adam', 'adamw' or 'sgd'")
        if train.get("loss", "square_mean") not in ("cross_entropy", "square_mean"):
            raise SpecError("train.loss", "must be 'cross_entropy' or 'square_mean'")
        _check_type("train.steps", train.get("steps", 1), int)
        _check_type("train.lr", train.get("lr", 1e-3), float)
        if not 0 <= train.get("steps", 1) <= 1000:
            raise SpecError("train.steps", "must be between 0 and 1000")
    _validate_checkpoint_extras(data)


def _validate_checkpoint_extras(data: dict[str, Any]) -> None:
    extras = data.get("checkpoint_extras", [])
    _check_type("checkpoint_extras", extras, list)
    for i, kind in enumerate(extras):
        if kind not in EXTRA_KINDS:
            raise SpecError(f"checkpoint_extras[{i}]", f"{kind!r} is not one of {', '.join(EXTRA_KINDS)}")
    if len(set(extras)) != len(extras):
        raise SpecError("checkpoint_extras", "each kind at most once")


@dataclass(frozen=True)
class Spec:
    """A validated spec. `data` is the canonical JSON object."""

    data: dict[str, Any] = field(repr=False)
    #: `load_side`'s cache: the variant, validated once
    _variant: Optional[Spec] = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def class_path(self) -> Optional[str]:
        """``roundtrip_moved.MODULE:NAME`` the model is built (and pickled) as; None: `CaseModel`."""
        return self.data.get("class_path")

    @property
    def refactored(self) -> bool:
        """Whether the load side builds other model code (``load_as``): a refactor case."""
        return "load_as" in self.data

    def load_side(self) -> Spec:
        """The spec the load side builds: the ``load_as`` variant, or this very spec when there is none."""
        if not self.refactored:
            return self
        if self._variant is None:
            object.__setattr__(self, "_variant", _check_load_as(self.data))
        assert self._variant is not None
        return self._variant

    @property
    def seed(self) -> int:
        return self.data["seed"]

    @property
    def origin(self) -> str:
        return self.data.get("origin", "curated")

    @property
    def device_index(self) -> int:
        """The GPU a CUDA save places the model on (``cuda:<device_index>``); 0 unless the spec says."""
        return int(self.data.get("device_index", 0))

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.data.get("tags", ()))

    def __repr__(self) -> str:
        return f"Spec(name={self.name!r}, seed={self.seed}, leaves={len(list(self.leaves()))})"

    @property
    def factory(self) -> Optional[str]:
        """``MODULE:FUNCTION`` of a user case, or None for a spec'd architecture."""
        return self.data.get("factory")

    def leaves(self) -> list[Leaf]:
        return [] if self.factory else list(walk_leaves(self.data["model"]))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "spec") -> Spec:
        """Validate `data` and wrap it; SpecError names the first bad field."""
        if not isinstance(data, dict):
            raise SpecError(where, "expected a JSON object")
        data = copy.deepcopy(data)
        for key in data:
            if key not in _TOP:
                raise SpecError(key, f"unknown top-level field (known: {', '.join(sorted(_TOP))})")
        if data.setdefault("schema", SCHEMA) != SCHEMA:
            raise SpecError("schema", f"{data['schema']!r} is not the schema this harness reads ({SCHEMA})")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError("name", "required: letters, digits, '_', '.', '-' (at most 120)")
        _check_type("seed", data.setdefault("seed", 0), int)
        if "factory" in data:
            return cls._user_case(data)
        _check_type("batch", data.setdefault("batch", 2), int)
        if not 1 <= data["batch"] <= 64:
            raise SpecError("batch", "must be between 1 and 64")
        model = data.get("model")
        if model is None:
            raise SpecError("model", "required: the root container node (or a factory, for a user case)")
        if not isinstance(model, dict) or model.get("kind") not in CONTAINERS:
            kind = model.get("kind") if isinstance(model, dict) else type(model).__name__
            raise SpecError("model.kind", f"the root must be a container ({', '.join(CONTAINERS)}), not {kind!r}")
        _validate_node(model, "model")
        _validate_extras(data, module_paths(model))
        prefix = data.get("state_dict_prefix")
        if prefix is not None and prefix not in PREFIXES:
            raise SpecError("state_dict_prefix", f"must be null or one of {', '.join(map(repr, PREFIXES))}")
        if data.get("origin", "curated") not in ("curated", "generated", "user"):
            raise SpecError("origin", "must be 'curated', 'generated' or 'user'")
        tags = data.get("tags", [])
        _check_type("tags", tags, list)
        _check_device_index(data)
        _check_class_path(data)
        spec = cls(data)
        if "load_as" in data:
            object.__setattr__(spec, "_variant", _check_load_as(data))
        return spec

    @classmethod
    def _user_case(cls, data: dict[str, Any]) -> Spec:
        ref = data["factory"]
        if not isinstance(ref, str) or not _FACTORY.match(ref):
            raise SpecError("factory", f"{ref!r} is not MODULE:FUNCTION, e.g. 'mypkg.models:make_model'")
        if "load_as" in data:
            msg = "a user case builds its model with its factory: refactor it with `load --load-as OLD_MOD:FN=NEW_MOD:FN`"
            raise SpecError("load_as", msg)
        extra = set(data) - _FACTORY_FIELDS
        if extra:
            raise SpecError(sorted(extra)[0], "a user case builds its model with its factory: it takes no architecture fields")
        prefix = data.get("state_dict_prefix")
        if prefix is not None and prefix not in PREFIXES:
            raise SpecError("state_dict_prefix", f"must be null or one of {', '.join(map(repr, PREFIXES))}")
        _check_device_index(data)
        _validate_checkpoint_extras(data)
        data.setdefault("origin", "user")
        return cls(data)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def to_json(self) -> str:
        """Canonical JSON: same spec, same bytes."""
        return json.dumps(self.data, sort_keys=True, indent=1, ensure_ascii=True)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()[:16]


def load_specs(path: Path) -> list[Spec]:
    """Specs from a cases file (``{"cases": [...]}``), a list, or one spec object."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"cases file {str(path)!r} does not exist"
        raise InputError(msg) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        msg = f"cannot read cases file {str(path)!r}: {e.__class__.__name__}"
        raise InputError(msg) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        msg = f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})"
        raise InputError(msg) from None
    if isinstance(data, dict) and "cases" in data and data.get("schema", CORPUS_SCHEMA) != CORPUS_SCHEMA:
        msg = f"{path}: schema={data['schema']!r} but this harness reads corpus schema {CORPUS_SCHEMA} (rewrite it with `cases`)"
        raise InputError(msg)
    items = data["cases"] if isinstance(data, dict) and "cases" in data else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        msg = f"{path}: expected a spec object, a list of specs or {{\"cases\": [...]}}"
        raise InputError(msg)
    specs = []
    for i, item in enumerate(items):
        try:
            specs.append(Spec.from_dict(item))
        except SpecError as e:
            name = item.get("name") if isinstance(item, dict) else None
            label = f"case {name!r}" if isinstance(name, str) else f"case #{i}"
            msg = f"{path}: {label}: {e}"
            raise InputError(msg) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"{path}: case names must be unique; repeated: {', '.join(dupes)}"
        raise InputError(msg)
    return specs
