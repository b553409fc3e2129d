"""Specs: validation names the offending field; building is deterministic."""

import json

import pytest

from harness.runtime.errors import InputError, SpecError
from harness.runtime.spec import Spec, load_specs

GOOD = {
    "name": "tiny",
    "model": {"kind": "sequential", "children": [
        {"kind": "linear", "in_features": 3, "out_features": 4, "name": "fc"},
        {"kind": "activation", "fn": "relu"},
        {"kind": "linear", "in_features": 4, "out_features": 2},
    ]},
}


def with_(path, value):
    data = json.loads(json.dumps(GOOD))
    node = data
    *parents, last = path
    for p in parents:
        node = node[p]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (with_(["model", "children", 0, "out_features"], "four"), "model.children[0].out_features", "expected an integer"),
        (with_(["model", "children", 2, "in_features"], 5), "model.children[2]", "does not accept the previous output vec[4]"),
        (with_(["model", "children", 0, "kind"], "lstmm"), "model.children[0].kind", "is not a layer kind"),
        (with_(["model", "children", 0, "dtype"], "float8"), "model.children[0].dtype", "is not one of"),
        (with_(["model", "children", 1, "dtype"], "float64"), "model.children[1].dtype", "has no parameters"),
        (with_(["model", "children", 0, "colour"], "red"), "model.children[0].colour", "unknown field"),
        (with_(["model", "kind"], "linear"), "model.kind", "the root must be a container"),
        (with_(["ties"], [{"from": "fc.weight", "to": "nowhere.weight"}]), "ties[0].to", "no module at 'nowhere'"),
        (with_(["state_dict_prefix"], "net."), "state_dict_prefix", "must be null or one of"),
        (with_(["tensors"], [{"name": "x", "shape": [-1]}]), "tensors[0].shape[0]", "must be >= 0"),
        (with_(["tensors"], [{"name": "x", "shape": [2], "dtype": "int64", "kind": "parameter"}]), "tensors[0].requires_grad", "only floating point"),
        (with_(["name"], "has space"), "name", "letters, digits"),
        (with_(["surprise"], 1), "surprise", "unknown top-level field"),
    ],
)
def test_invalid_specs_name_the_field(data, field, words):
    with pytest.raises(SpecError) as info:
        Spec.from_dict(data)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(f"spec field {field}:")


def test_valid_spec_round_trips_through_json():
    spec = Spec.from_dict(GOOD)
    again = Spec.from_dict(json.loads(spec.to_json()))
    assert again.to_json() == spec.to_json()
    assert again.digest() == spec.digest()
    assert [leaf.path for leaf in spec.leaves()] == ["fc", "1", "2"]


def test_children_order_survives_sorted_keys():
    # Manifests are written with sorted keys; a chain must not reorder.
    spec = Spec.from_dict(GOOD)
    reloaded = Spec.from_dict(json.loads(json.dumps(spec.to_dict(), sort_keys=True)))
    assert [leaf.path for leaf in reloaded.leaves()] == ["fc", "1", "2"]


def test_load_specs_reports_the_case_and_file(tmp_path):
    bad = tmp_path / "cases.json"
    bad.write_text(json.dumps({"cases": [GOOD, with_(["model", "children", 0, "bias"], "yes")]}))
    with pytest.raises(InputError, match=r"cases.json: case 'tiny': spec field model.children\[0\].bias"):
        load_specs(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_specs(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        load_specs(tmp_path / "broken.json")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([GOOD, GOOD]))
    with pytest.raises(InputError, match="repeated: tiny"):
        load_specs(dup)


def test_curated_cases_cover_the_issue_list(curated_specs):
    needed = {
        "simple_net", "cnn_batchnorm", "recurrent", "transformer_encoder", "tied_lm", "mixed_dtypes",
        "buffers", "layouts", "special_values", "parametrized", "zero_size", "sparse_buffer",
        "compiled_prefix", "dataparallel_prefix",
    }
    assert needed <= set(curated_specs)


def test_build_is_deterministic(torch, curated_specs):
    from harness.runtime.builder import build
    from harness.runtime.manifest import module_snapshot, record_view

    for name in ("simple_net", "tied_lm", "special_values", "cnn_batchnorm"):
        a = record_view(module_snapshot(build(curated_specs[name]).model))
        b = record_view(module_snapshot(build(curated_specs[name]).model))
        assert {k: r.digest for k, r in a.tensors.items()} == {k: r.digest for k, r in b.tensors.items()}, name


def test_simple_net_is_the_tutorial_model(torch, curated_specs):
    from harness.runtime.builder import build

    built = build(curated_specs["simple_net"])
    shapes = {k: tuple(v.shape) for k, v in built.model.state_dict().items()}
    assert shapes == {"fc1.weight": (20, 10), "fc1.bias": (20,), "fc2.weight": (2, 20), "fc2.bias": (2,)}
    assert built.step == 20 and built.inputs[0].shape == (1, 10)
    state = built.optimizer.state_dict()
    assert isinstance(built.optimizer, torch.optim.Adam) and len(state["state"]) == 4
    assert float(state["state"][0]["step"]) == 20.0
    assert built.losses[-1] < built.losses[0]  # it really trained toward class 1


def test_empty_mode_poisons_everything_it_will_load(torch, curated_specs):
    from harness.runtime.builder import POISON_BYTE, build

    model = build(curated_specs["buffers"], "empty").model
    state = model.state_dict()
    for name in ("fc.weight", "fc.bias", "running", "fc.table"):
        raw = state[name].contiguous().view(-1).view(torch.uint8)
        assert bool((raw == POISON_BYTE).all()), name
    # Non-persistent buffers are not in a state dict: they keep real values.
    assert not bool((model.scale.view(torch.uint8) == POISON_BYTE).all())
    # Ties survive the empty build (to_empty would break them).
    tied = build(curated_specs["tied_lm"], "empty").model
    assert tied.embed.weight is tied.head.weight


def test_a_corpus_of_another_schema_is_refused(tmp_path):
    from harness.runtime.spec import CORPUS_SCHEMA

    path = tmp_path / "cases.json"
    spec = {"name": "x", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}}
    path.write_text(json.dumps({"schema": CORPUS_SCHEMA, "cases": [spec]}))
    assert [s.name for s in load_specs(path)] == ["x"]
    path.write_text(json.dumps({"schema": CORPUS_SCHEMA + 1, "cases": [spec]}))
    with pytest.raises(InputError, match="corpus schema"):
        load_specs(path)
