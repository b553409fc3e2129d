"""Refactor specs: ``load_as`` and ``class_path``, their builds, and the curated refactor cases.

A curated refactor case is a spec whose load side (`Spec.load_side`) builds
other model code. These tests pin what each case changes in the state dict,
that a moved class pickles by a path only the saving process can import,
and that validation refuses a refactor that changes nothing.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import sys

import pytest

from harness.runtime.errors import SpecError
from harness.runtime.spec import LOAD_AS_FIELDS, MOVED_PREFIX, Spec

BASE = {
    "name": "tiny_refactor",
    "seed": 3,
    "model": {"kind": "sequential", "children": [
        {"name": "fc", "kind": "linear", "in_features": 4, "out_features": 8},
        {"name": "act", "kind": "activation", "fn": "relu"},
        {"name": "out", "kind": "linear", "in_features": 8, "out_features": 2},
    ]},
}


def renamed_model(old: str = "fc", new: str = "proj") -> dict:
    model = copy.deepcopy(BASE["model"])
    for child in model["children"]:
        if child["name"] == old:
            child["name"] = new
    return model


def spec(**fields) -> dict:
    data = copy.deepcopy(BASE)
    data.update(fields)
    return data


def refused(data: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        Spec.from_dict(data)
    return info.value


# ---------------------------------------------------------------- validation


def test_class_path_under_the_moved_prefix_is_accepted():
    s = Spec.from_dict(spec(class_path="roundtrip_moved.v1.models:Classifier"))
    assert s.class_path == "roundtrip_moved.v1.models:Classifier"
    assert Spec.from_dict(spec()).class_path is None  # the default: CaseModel
    assert MOVED_PREFIX == "roundtrip_moved."


@pytest.mark.parametrize("bad, words", [
    ("mypkg.models:Classifier", "roundtrip_moved.MODULE:NAME"),  # damage: another module prefix
    ("harness.runtime.casemodel:CaseModel", "leave class_path out"),  # the default is spelled by its absence
    ("roundtrip_moved:Classifier", "roundtrip_moved.MODULE:NAME"),  # no module under the prefix
    ("roundtrip_moved.v1.models", "roundtrip_moved.MODULE:NAME"),  # no class name
    ("roundtrip_moved.v1.models:Outer.Inner", "roundtrip_moved.MODULE:NAME"),
    ("roundtrip_moved.v1-x:Classifier", "roundtrip_moved.MODULE:NAME"),
])
def test_a_bad_class_path_is_refused_naming_the_field(bad, words):
    e = refused(spec(class_path=bad))
    assert e.field == "class_path" and words in str(e)


def test_a_class_path_must_be_a_string():
    assert refused(spec(class_path=7)).field == "class_path"


def test_load_as_gives_a_variant_that_replaces_the_named_fields():
    s = Spec.from_dict(spec(load_as={"model": renamed_model(), "description": "fc renamed proj"}, description="old"))
    side = s.load_side()
    assert s.refactored and not side.refactored
    assert "load_as" not in side.data and side.name == s.name and side.seed == s.seed
    assert [leaf.path for leaf in side.leaves()] == ["proj", "act", "out"]
    assert [leaf.path for leaf in s.leaves()] == ["fc", "act", "out"]
    assert side.data["description"] == "fc renamed proj" and s.data["description"] == "old"
    assert s.load_side() is side  # cached
    plain = Spec.from_dict(spec())
    assert not plain.refactored and plain.load_side() is plain


def test_null_or_an_empty_list_removes_a_field_on_the_load_side():
    tensors = [{"name": "scale", "shape": [2]}]
    s = Spec.from_dict(spec(tensors=tensors, class_path="roundtrip_moved.a.b:C", load_as={"tensors": [], "class_path": None}))
    assert "tensors" not in s.load_side().data and "class_path" not in s.load_side().data
    assert s.data["tensors"] == tensors


def test_the_digest_covers_load_as():
    a = Spec.from_dict(spec(load_as={"model": renamed_model()}))
    b = Spec.from_dict(spec(load_as={"model": renamed_model(new="dense")}))
    assert len({a.digest(), b.digest(), Spec.from_dict(spec()).digest()}) == 3
    assert Spec.from_dict(json.loads(a.to_json())).load_side().data == a.load_side().data


@pytest.mark.parametrize("load_as, field, words", [
    ({"seed": 4}, "load_as.seed", "not a field the load side may replace"),
    ({"train": {"steps": 1}}, "load_as.train", "not a field the load side may replace"),
    ({"load_as": {}}, "load_as.load_as", "not a field"),
    ({}, "load_as", "empty"),
    ([], "load_as", "expected an object"),
    ({"model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 4, "out_features": "x"}]}},
     "load_as.model.children[0].out_features", "expected an integer"),
    ({"model": {"kind": "linear", "in_features": 4, "out_features": 2}}, "load_as.model.kind", "container"),
    ({"parametrize": [{"at": "fc", "kind": "spectral"}]}, "load_as.parametrize[0].kind", "weight_norm_legacy"),
    ({"class_path": "elsewhere.models:Classifier"}, "load_as.class_path", "roundtrip_moved.MODULE:NAME"),
    ({"model": None}, "load_as.model", "required"),
])
def test_a_bad_load_as_is_refused_naming_the_field(load_as, field, words):
    e = refused(spec(load_as=load_as))
    assert e.field == field and words in str(e), str(e)


def test_a_kept_field_that_no_longer_fits_the_new_model_is_named():
    # The save side's tie names "fc", which the load side's model renamed.
    e = refused(spec(ties=[{"from": "fc.bias", "to": "out.bias"}], load_as={"model": renamed_model()}))
    assert e.field == "load_as" and "ties[0].from" in str(e) and "replace ties in load_as too" in str(e)


@pytest.mark.parametrize("load_as", [
    {"model": BASE["model"]},  # damage: the same model again
    {"description": "only the words change"},
    {"tensors": []},  # absent and [] build alike
    {"model": BASE["model"], "class_path": None},
])
def test_a_load_as_that_changes_nothing_is_refused(load_as):
    e = refused(spec(load_as=load_as))
    assert e.field == "load_as" and "changes nothing" in str(e)


def test_user_cases_refactor_with_the_cli_not_load_as():
    e = refused({"name": "u", "factory": "mypkg.models:make", "load_as": {"model": BASE["model"]}})
    assert e.field == "load_as" and "--load-as" in str(e)
    assert refused({"name": "u", "factory": "mypkg.models:make", "class_path": "roundtrip_moved.a:B"}).field == "class_path"


def test_parametrize_knows_the_legacy_weight_norm():
    Spec.from_dict(spec(parametrize=[{"at": "fc", "param": "weight", "kind": "weight_norm_legacy"}]))
    e = refused(spec(parametrize=[{"at": "fc", "param": "weight", "kind": "weight_norm_old"}]))
    assert e.field == "parametrize[0].kind" and "weight_norm_legacy" in str(e)


def test_load_as_fields_are_the_architecture():
    assert set(LOAD_AS_FIELDS) == {"model", "tensors", "ties", "plant", "layout", "parametrize", "class_path", "description"}


# ---------------------------------------------------------------- curated refactor cases


@pytest.fixture(scope="module")
def refactor_specs(curated_specs):
    return {name: s for name, s in curated_specs.items() if "refactor" in s.tags}


#: case -> (state-dict keys only the save side has, keys only the load side has)
KEY_CHANGES = {
    "refactor_renamed": ({"encoder.fc.weight", "encoder.fc.bias"}, {"encoder.proj.weight", "encoder.proj.bias"}),
    "refactor_split_qkv": ({"attn.qkv.weight", "attn.qkv.bias"},
                           {f"attn.{p}.{t}" for p in "qkv" for t in ("weight", "bias")}),
    "refactor_fused_qkv": ({f"attn.{p}.{t}" for p in "qkv" for t in ("weight", "bias")},
                           {"attn.qkv.weight", "attn.qkv.bias"}),
    "refactor_weight_norm": ({"fc.weight_g", "fc.weight_v"},
                             {"fc.parametrizations.weight.original0", "fc.parametrizations.weight.original1"}),
    "refactor_buffer_nonpersistent": ({"scale"}, set()),
    "refactor_added_parameter": (set(), {"shift"}),
    "refactor_class_moved": (set(), set()),
}


def test_every_change_the_issue_lists_has_a_curated_refactor_case(refactor_specs):
    assert set(refactor_specs) == set(KEY_CHANGES)
    for s in refactor_specs.values():
        assert s.refactored and s.origin == "curated" and s.data.get("description"), s.name
        assert s.load_side().to_dict() != s.to_dict()


def _shapes(model) -> dict:
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(KEY_CHANGES))
@pytest.mark.parametrize("mode", ["empty", "init"])
def test_the_load_side_changes_the_state_dict_as_intended(torch, refactor_specs, name, mode):
    from harness.runtime.builder import build

    s = refactor_specs[name]
    old = _shapes(build(s, mode, "cpu").model)
    new = _shapes(build(s.load_side(), mode, "cpu").model)
    only_old, only_new = KEY_CHANGES[name]
    assert set(old) - set(new) == only_old
    assert set(new) - set(old) == only_new
    kept = set(old) & set(new)
    assert kept and all(old[k] == new[k] for k in kept), {k: (old[k], new[k]) for k in kept if old[k] != new[k]}


def test_split_and_fused_cases_keep_the_element_count(torch, refactor_specs):
    from harness.runtime.builder import build

    for name in ("refactor_split_qkv", "refactor_fused_qkv"):
        s = refactor_specs[name]
        counts = [sum(t.numel() for k, t in build(side, "empty").model.state_dict().items() if k.startswith("attn."))
                  for side in (s, s.load_side())]
        assert counts[0] == counts[1] == 3 * (4 * 4 + 4), name


def test_the_non_persistent_buffer_still_exists_on_the_load_side(torch, refactor_specs):
    from harness.runtime.builder import build

    model = build(refactor_specs["refactor_buffer_nonpersistent"].load_side()).model
    assert "scale" in dict(model.named_buffers()) and "scale" not in model.state_dict()


# ---------------------------------------------------------------- weight_norm_legacy


@pytest.mark.parametrize("mode", ["init", "empty", "meta"])
def test_weight_norm_legacy_gives_weight_g_and_weight_v(torch, mode):
    from harness.runtime.builder import build

    s = Spec.from_dict(spec(parametrize=[{"at": "fc", "param": "weight", "kind": "weight_norm_legacy"}]))
    model = build(s, mode).model
    params = dict(model.named_parameters())
    assert {"fc.weight_g", "fc.weight_v"} <= set(params) and "fc.weight" not in params
    assert params["fc.weight_g"].shape == (8, 1) and params["fc.weight_v"].shape == (8, 4)
    assert not any(".parametrizations." in k for k in model.state_dict())


def test_weight_norm_legacy_builds_a_model_that_copies_and_computes_its_weight(torch):
    import torch.nn.utils

    from harness.runtime.builder import build

    s = Spec.from_dict(spec(parametrize=[{"at": "fc", "param": "weight", "kind": "weight_norm_legacy"}]))
    model = build(s).model
    # The hook's weight is kept a graph leaf, so a checkpoint save can copy the model.
    copy.deepcopy(model)
    fc = model.fc
    v, g = fc.weight_v.detach(), fc.weight_g.detach()
    expected = v * (g / v.norm(dim=1, keepdim=True))
    assert torch.allclose(fc.weight, expected)


def test_weight_norm_legacy_warns_nothing(torch, recwarn):
    from harness.runtime.builder import build

    build(Spec.from_dict(spec(parametrize=[{"at": "fc", "param": "weight", "kind": "weight_norm_legacy"}])))
    assert not [w for w in recwarn if "weight_norm" in str(w.message)]


# ---------------------------------------------------------------- moved classes


@pytest.fixture
def moved(torch):
    from harness.runtime import casemodel

    yield casemodel
    casemodel.forget_moved()


def test_moved_class_is_a_case_model_spelled_as_its_path_and_idempotent(moved):
    cls = moved.moved_class("roundtrip_moved.t1.models:Classifier")
    assert issubclass(cls, moved.CaseModel) and cls is not moved.CaseModel
    assert (cls.__module__, cls.__qualname__, cls.__name__) == ("roundtrip_moved.t1.models", "Classifier", "Classifier")
    assert sys.modules["roundtrip_moved.t1.models"].Classifier is cls
    assert sys.modules["roundtrip_moved"].t1.models is sys.modules["roundtrip_moved.t1.models"]
    assert moved.moved_class("roundtrip_moved.t1.models:Classifier") is cls
    moved.forget_moved()
    assert not [m for m in sys.modules if m.startswith("roundtrip_moved")]
    assert moved.moved_class("roundtrip_moved.t1.models:Classifier") is cls  # the same class, registered again
    moved.forget_moved()
    moved.forget_moved()  # idempotent too


def test_moved_class_refuses_paths_that_clash_or_leave_the_prefix(moved):
    with pytest.raises(SpecError):
        moved.moved_class("harness.runtime.casemodel:CaseModel")
    moved.moved_class("roundtrip_moved.t2.a:b")
    with pytest.raises(SpecError, match="already the class"):
        moved.moved_class("roundtrip_moved.t2.a.b:C")


def _pickled(torch, model) -> bytes:
    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


def _unpickled(torch, data: bytes):
    kwargs = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    return torch.load(io.BytesIO(data), **kwargs)


def test_a_whole_model_pickle_of_a_moved_class_loads_only_where_the_class_exists(torch, moved, refactor_specs):
    from harness.runtime.builder import build

    s = refactor_specs["refactor_class_moved"]
    model = build(s).model
    data = _pickled(torch, model)
    assert b"roundtrip_moved.v1.models" in data and b"harness.runtime.casemodel" not in data
    back = _unpickled(torch, data)  # the saving process has the class
    assert type(back) is type(model)
    moved.forget_moved()  # what another env sees
    with pytest.raises(ModuleNotFoundError, match="roundtrip_moved"):
        _unpickled(torch, data)
    build(s.load_side(), "empty")  # the new code (v2) exists there, v1 does not
    with pytest.raises(ModuleNotFoundError, match="roundtrip_moved.v1"):
        _unpickled(torch, data)


def test_the_class_moved_case_keeps_its_tensors(torch, moved, refactor_specs):
    from harness.runtime.builder import build
    from harness.runtime.manifest import module_snapshot, record_view

    s = refactor_specs["refactor_class_moved"]
    old, new = (record_view(module_snapshot(build(side).model)).to_dict() for side in (s, s.load_side()))
    assert [t["name"] for t in old["tensors"]] == [t["name"] for t in new["tensors"]]
    assert old == new  # same names, roles and digests: only the class path moved


def test_an_in_process_roundtrip_loads_as_another_env_would(torch, moved, refactor_specs, monkeypatch, tmp_path):
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner import inprocess

    seen = []

    def fake_run_cell(base, *args, **kwargs):
        seen.append([m for m in sys.modules if m.startswith("roundtrip_moved")])
        return base

    monkeypatch.setattr(inprocess, "run_cell", fake_run_cell)
    inprocess.roundtrip(refactor_specs["refactor_class_moved"], [FORMATS["full_model"]], workdir=tmp_path)
    assert seen and seen == [[]] * len(seen)
