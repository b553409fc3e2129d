"""What the runtime does where an old torch lacks a feature, shown on this torch by taking the feature away.

`tests/test_old_release.py` runs the real torch 1.4.0; these fast tests pin
each fallback down one by one, so a fallback that breaks fails here first.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.runtime.builder import build  # noqa: E402
from harness.runtime.formats.checkpoint import canonical_optimizer_state  # noqa: E402
from harness.runtime.layers import make_module  # noqa: E402
from harness.runtime.manifest import all_parameters  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402
from harness.runtime.storage import storage_span, tensor_from_bytes  # noqa: E402


def test_module_dict_keeps_the_specs_order_where_torch_sorts_a_plain_dict(monkeypatch):
    real_update = torch.nn.ModuleDict.update

    def update_as_torch_1_4(self, modules):  # torch < 1.5 sorted a plain dict's keys
        if type(modules) is dict:
            modules = dict(sorted(modules.items()))
        return real_update(self, modules)

    monkeypatch.setattr(torch.nn.ModuleDict, "update", update_as_torch_1_4)
    spec = Spec.from_dict({"schema": 1, "name": "order", "seed": 1, "model": {"kind": "module_dict", "children": [
        {"kind": "linear", "name": "zeta", "in_features": 2, "out_features": 2},
        {"kind": "linear", "name": "alpha", "in_features": 2, "out_features": 2},
    ]}})
    model = build(spec, "init").model
    assert [n for n, _ in model.named_parameters()] == ["zeta.weight", "zeta.bias", "alpha.weight", "alpha.bias"]


class _NoDtype(torch.nn.Linear):
    """A Linear as torch < 1.9 built it: no dtype= and no batch_first=."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias=bias)


def test_a_module_without_dtype_is_built_then_cast():
    m = make_module(_NoDtype, 3, 2, bias=True, dtype=torch.float64)
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    assert make_module(_NoDtype, 3, 2, dtype=None).weight.dtype == torch.float32


def test_a_missing_knob_is_dropped_only_when_it_asks_for_the_default():
    assert isinstance(make_module(_NoDtype, 3, 2, batch_first=False, defaults={"batch_first": False}), _NoDtype)
    with pytest.raises(TypeError, match="has no batch_first="):
        make_module(_NoDtype, 3, 2, batch_first=True, defaults={"batch_first": False})


class _OldTensor:
    """A tensor as torch < 2.0 shows it: storage() only, typed, sized in elements."""

    def __init__(self, t):
        self._t = t

    def storage(self):
        return self._t.storage()


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_storage_span_without_untyped_storage_counts_bytes():
    t = torch.arange(6, dtype=torch.float64)[2:]
    assert storage_span(_OldTensor(t)) == storage_span(t) == (t.untyped_storage().data_ptr(), 48)


def test_tensor_from_bytes_matches_frombuffer():
    t = torch.tensor([[1.5, -0.0], [float("nan"), 3.25]], dtype=torch.bfloat16)
    data = t.contiguous().view(torch.uint8).numpy().tobytes()
    back = tensor_from_bytes(data, torch.bfloat16, [2, 2])
    assert back.view(torch.int16).tolist() == t.view(torch.int16).tolist()
    with pytest.raises(ValueError, match="cannot fill"):
        tensor_from_bytes(data[:-1], torch.bfloat16, [2, 2])


def test_optimizer_state_keyed_by_id_is_numbered_and_step_compared_as_a_number():
    old = {"state": {140001: {"step": 3, "exp_avg": torch.ones(2)}, 140002: {"step": 3}},
           "param_groups": [{"lr": 0.1, "params": [140002, 140001]}]}
    new = {"state": {0: {"step": torch.tensor(3.0)}, 1: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
           "param_groups": [{"lr": 0.1, "params": [0, 1]}]}
    a, b = canonical_optimizer_state(old), canonical_optimizer_state(new)
    assert a["param_groups"] == b["param_groups"] == [{"lr": 0.1, "params": [0, 1]}]
    assert a["state"][0] == {"step": 3.0} and b["state"][0] == {"step": 3.0}
    assert torch.equal(a["state"][1]["exp_avg"], b["state"][1]["exp_avg"])
    # every other state tensor is kept as saved: a moved or recast one still differs
    assert canonical_optimizer_state({"state": {0: {"exp_avg": torch.ones(2, dtype=torch.float64)}},
                       "param_groups": [{"params": [0]}]})["state"][0]["exp_avg"].dtype == torch.float64


class _NoRemoveDuplicate(torch.nn.Module):
    """named_parameters as torch < 1.12 has it: no remove_duplicate=."""

    def named_parameters(self, prefix="", recurse=True):
        return super().named_parameters(prefix=prefix, recurse=recurse)


def test_tied_parameters_are_found_under_every_name_without_remove_duplicate():
    m = _NoRemoveDuplicate()
    m.a, m.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    m.b.weight = m.a.weight
    params = all_parameters(m)
    assert params["a.weight"] is params["b.weight"]
    assert set(params) == {"a.weight", "a.bias", "b.weight", "b.bias"}
