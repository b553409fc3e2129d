"""harness.strategies: drawn specs validate and build, the tensor table is
right, arguments are checked early, reprs read like source."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis_profiles import scaled

from harness.runtime.layers import KINDS
from harness.runtime.spec import Spec
from harness.strategies import layer_tensors, layers, models, specs


@scaled(5)
@given(specs())
def test_every_drawn_spec_validates_and_builds_in_every_mode(torch, data):
    from harness.runtime.builder import build
    from harness.runtime.errors import Unsupported

    spec = Spec.from_dict(data)
    assert json.loads(json.dumps(data)) == data, "a spec must be plain JSON"
    for mode in ("init", "empty", "meta"):
        try:
            build(spec, mode)
        except Unsupported:
            pass  # a reasoned skip in this env; anything else fails the test
    assert "generated" in data["tags"] and data["origin"] == "generated"


@scaled(10)
@given(layers())
def test_layer_tensors_match_what_torch_registers(torch, node):
    from harness.runtime.dtypes import to_dtype

    kind = KINDS[node["kind"]]
    fields = {f.name: node.get(f.name, f.default) for f in kind.fields}
    dtype = node.get("dtype", "float32")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op": zero-size layers are drawn on purpose
        module = kind.build(fields, to_dtype(dtype) if kind.has_params else None)
    actual = {n: (list(t.shape), str(t.dtype).replace("torch.", ""), "parameter") for n, t in module.named_parameters()}
    actual.update({n: (list(t.shape), str(t.dtype).replace("torch.", ""), "buffer") for n, t in module.named_buffers()})
    predicted = {n: (shape, dt, role) for n, shape, dt, role in layer_tensors(node["kind"], fields, dtype)}
    assert predicted == actual


@scaled(10)
@given(st.data())
def test_layers_accepting_a_signature_fit_after_it(data):
    from harness.runtime.spec import chain_signature

    first = data.draw(layers(), label="first")
    sig = chain_signature(first, "model", None)
    second = data.draw(layers(accepting=sig), label="second")
    Spec.from_dict({"name": "chain", "model": {"kind": "sequential", "children": [first, second]}})


@scaled(10)
@given(models(max_depth=2, max_leaves=3, kinds=("conv2d", "activation"), dtypes=("float64",)))
def test_models_respect_their_bounds(model):
    spec = Spec.from_dict({"name": "bounded", "model": model})
    leaves = spec.leaves()
    assert 1 <= len(leaves) <= 3
    assert {leaf.kind for leaf in leaves} <= {"conv2d", "activation"}
    assert {leaf.dtype for leaf in leaves if leaf.kind == "conv2d"} <= {"float64"}
    for child in model["children"]:
        for grandchild in child.get("children", []):
            assert grandchild["kind"] not in ("sequential", "module_list", "module_dict"), "max_depth=2 allows one nested level"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: specs(max_depth=0), "max_depth=0 must be an integer >= 1"),
        (lambda: models(max_leaves=True), "max_leaves=True must be an integer >= 1"),
        (lambda: specs(max_tensors=-1), "max_tensors=-1 must be an integer >= 0"),
        (lambda: layers(kinds=("lstm", "conv9d")), "kinds=('lstm', 'conv9d') must be a non-empty tuple of layer kinds"),
        (lambda: layers(kinds="linear"), "kinds='linear' must be a non-empty tuple"),
        (lambda: models(dtypes=("float8",)), "dtypes=('float8',) must be a non-empty tuple among float32"),
        (lambda: models(kinds=("lstm",), dtypes=("float16",)), "no layer kind among kinds=('lstm',) comes in dtypes=('float16',)"),
        (lambda: layers(accepting=("tokens", 5, "float32"), kinds=("linear",)), "no layer kind among kinds=('linear',) accepts"),
    ],
)
def test_bad_arguments_are_refused_when_the_strategy_is_made(call, message):
    with pytest.raises(InvalidArgument) as info:
        call()  # no draw: the check runs when the strategy is created
    assert message in str(info.value)


def test_reprs_read_like_the_call():
    assert repr(specs()) == "specs()"
    assert repr(specs(max_depth=2, kinds=("linear",))) == "specs(max_depth=2, kinds=('linear',))"
    assert repr(models(max_leaves=3)) == "models(max_leaves=3)"
    assert repr(layers(accepting=("vec", 4, "float32"))) == "layers(accepting=('vec', 4, 'float32'))"


# Minimal specs that drawn examples reduced to, each once a crash in the core
# (fixed where noted); kept so the fixes stay fixed.
FOUND = {
    # spec._validate_node checked a nested sequential as if it started a chain
    "nested-chain-fed-by-its-predecessor": {
        "model": {"kind": "sequential", "children": [
            {"kind": "conv2d", "in_channels": 2, "out_channels": 3},
            {"kind": "sequential", "children": [{"kind": "activation"}, {"kind": "conv_transpose2d", "in_channels": 3, "out_channels": 2}]},
        ]},
    },
    # builder: torch.optim refused the empty parameter list of a model without parameters
    "no-parameters": {"model": {"kind": "module_list", "children": [{"kind": "dropout"}]}},
    # builder.poison asked a sparse non-persistent buffer for its storage (torch 2.4)
    "sparse-non-persistent-buffer": {
        "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]},
        "tensors": [{"name": "xt0", "shape": [3, 2], "layout": "sparse_coo", "persistent": False}],
    },
    # builder: orthogonal's right_inverse calls .item() on the meta device for a square weight
    "orthogonal-square-weight": {
        "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]},
        "parametrize": [{"at": "0", "param": "weight", "kind": "orthogonal"}],
    },
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_specs_the_strategy_found_build_or_skip_with_a_reason(torch, name):
    from harness.runtime.builder import build
    from harness.runtime.errors import Unsupported

    spec = Spec.from_dict({"name": name, **FOUND[name]})
    for mode in ("init", "empty", "meta"):
        try:
            build(spec, mode)
        except Unsupported as e:
            assert name == "orthogonal-square-weight" and mode == "meta", f"{mode}: {e}"
            assert "cannot apply orthogonal" in str(e)


def test_a_model_without_parameters_skips_only_the_checkpoint(torch):
    from harness.runtime.runner.inprocess import roundtrip

    results = roundtrip(Spec.from_dict({"name": "no-parameters", **FOUND["no-parameters"]}))
    skipped = {r.format for r in results if r.outcome.value == "skip" and "no parameter that requires grad" in r.detail}
    assert skipped == {"checkpoint"}
    assert not [r for r in results if r.outcome.value == "mismatch"]
