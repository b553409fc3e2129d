"""Model code that changed between save and load: the remap, migrations, and the check through them.

The proposal is tested on slots (names, shapes, dtypes) alone; the check is
tested end to end in one process with user factories from
`refactor_models`: a correct migration passes exactly, and a migration that
drops a key, transposes a square weight, changes one element or swaps two
tensors is a mismatch naming the tensor and its first differing element.
"""

from __future__ import annotations

import io
import sys
import types

import pytest

from harness.runtime.errors import InputError
from harness.runtime.refactor import Remap, Slot, UserRefactors, parse_renames, propose

pytestmark = pytest.mark.usefixtures("torch")


def S(*shape: int, dtype: str = "float32", role: str = "parameter") -> Slot:
    return Slot(dtype, tuple(shape), role)


def kinds(remap: Remap) -> list[tuple[str, list[str], list[str]]]:
    return [(e.kind, list(e.old), list(e.new)) for e in remap.entries]


# -- the proposal, from names and shapes --------------------------------------------


def test_a_renamed_module_moves_all_its_tensors():
    remap = propose(
        {"enc.fc1.weight": S(4, 4), "enc.fc1.bias": S(4), "enc.fc2.weight": S(4, 4), "enc.fc2.bias": S(4), "out.weight": S(2, 4)},
        {"enc.proj1.weight": S(4, 4), "enc.proj1.bias": S(4), "enc.proj2.weight": S(4, 4), "enc.proj2.bias": S(4), "out.weight": S(2, 4)},
    )
    assert sorted(kinds(remap)) == sorted([
        ("rename", ["enc.fc1.weight"], ["enc.proj1.weight"]), ("rename", ["enc.fc1.bias"], ["enc.proj1.bias"]),
        ("rename", ["enc.fc2.weight"], ["enc.proj2.weight"]), ("rename", ["enc.fc2.bias"], ["enc.proj2.bias"]),
    ])
    assert remap.same == 1
    assert not any(e.detail for e in remap.entries), "these renames are not ambiguous"


def test_a_split_projection_is_cut_in_the_models_order_and_a_fused_one_joined():
    split = propose({"attn.qkv.weight": S(12, 4), "attn.qkv.bias": S(12)},
                    {"attn.q.weight": S(4, 4), "attn.q.bias": S(4), "attn.k.weight": S(4, 4), "attn.k.bias": S(4),
                     "attn.v.weight": S(4, 4), "attn.v.bias": S(4)})
    assert kinds(split) == [("split", ["attn.qkv.weight"], ["attn.q.weight", "attn.k.weight", "attn.v.weight"]),
                            ("split", ["attn.qkv.bias"], ["attn.q.bias", "attn.k.bias", "attn.v.bias"])]
    assert {e.dim for e in split.entries} == {0}
    fused = propose({"a.q.weight": S(4, 4), "a.k.weight": S(4, 4), "a.v.weight": S(4, 4)}, {"a.qkv.weight": S(12, 4)})
    assert kinds(fused) == [("fuse", ["a.q.weight", "a.k.weight", "a.v.weight"], ["a.qkv.weight"])]


def test_pieces_are_told_apart_from_a_renamed_neighbour_of_the_same_shape():
    remap = propose({"attn.qkv.weight": S(12, 4), "attn.out.weight": S(4, 4)},
                    {"attn.q.weight": S(4, 4), "attn.k.weight": S(4, 4), "attn.v.weight": S(4, 4), "attn.proj.weight": S(4, 4)})
    assert kinds(remap) == [("split", ["attn.qkv.weight"], ["attn.q.weight", "attn.k.weight", "attn.v.weight"]),
                            ("rename", ["attn.out.weight"], ["attn.proj.weight"])]


def test_legacy_weight_norm_maps_to_its_parametrization_both_ways():
    legacy = {"fc.weight_g": S(4, 1), "fc.weight_v": S(4, 4), "fc.bias": S(4)}
    param = {"fc.parametrizations.weight.original0": S(4, 1), "fc.parametrizations.weight.original1": S(4, 4), "fc.bias": S(4)}
    assert kinds(propose(legacy, param)) == [
        ("parametrization", ["fc.weight_g"], ["fc.parametrizations.weight.original0"]),
        ("parametrization", ["fc.weight_v"], ["fc.parametrizations.weight.original1"]),
    ]
    assert kinds(propose(param, legacy)) == [
        ("parametrization", ["fc.parametrizations.weight.original0"], ["fc.weight_g"]),
        ("parametrization", ["fc.parametrizations.weight.original1"], ["fc.weight_v"]),
    ]


def test_dropped_added_changed_and_a_buffer_no_longer_saved():
    remap = propose(
        {"w": S(4, 4), "scale": S(4, role="buffer"), "gone": S(3, dtype="int64", role="buffer"), "emb": S(10, 4)},
        {"w": S(4, 4), "scale": S(4, role="buffer_np"), "gate": S(3), "emb": S(12, 4)},
    )
    assert sorted(kinds(remap)) == sorted([("dropped", ["scale"], []), ("dropped", ["gone"], []), ("changed", ["emb"], ["emb"]), ("added", [], ["gate"])])
    by_kind = {e.kind + ":" + ",".join(e.old or e.new): e for e in remap.entries}
    assert "non-persistent" in by_kind["dropped:scale"].detail
    assert by_kind["changed:emb"].detail == "float32[10, 4] -> float32[12, 4]"
    assert remap.same == 1


def test_same_shape_other_dtype_is_not_a_rename():
    remap = propose({"a.weight": S(4, 4, dtype="float16")}, {"b.weight": S(4, 4)})
    assert kinds(remap) == [("dropped", ["a.weight"], []), ("added", [], ["b.weight"])]


def test_a_rename_the_names_cannot_decide_is_called_ambiguous():
    remap = propose({"a.weight": S(4, 4), "b.weight": S(4, 4)}, {"x.weight": S(4, 4), "y.weight": S(4, 4)})
    assert len(remap.entries) == 2
    assert all(e.detail.startswith("ambiguous") for e in remap.entries)


def test_remap_round_trips_as_plain_data():
    remap = propose({"qkv.weight": S(12, 4), "h.weight": S(2, 4)}, {"q.weight": S(4, 4), "k.weight": S(4, 4), "v.weight": S(4, 4), "c.weight": S(2, 4)})
    again = Remap.from_dict(remap.to_dict())
    assert again.entries == remap.entries and again.same == remap.same
    assert remap.to_dict()["summary"] == remap.summary()


# -- the user's flags ---------------------------------------------------------------


def test_user_refactors_parse_and_refuse_bad_input():
    r = UserRefactors.parse(["a.m:old=b.m:new"], ["a.m:old=c.mig:run"], ["a.m.Old=b.m.New"])
    assert r.load_as == {"a.m:old": "b.m:new"} and r.migrate == {"a.m:old": "c.mig:run"}
    assert r.rename_option() == "a.m.Old->b.m.New"
    for bad in (dict(load_as=["a.m:old"]), dict(load_as=["a.m:old=b"]), dict(rename_class=["Old=New"]),
                dict(load_as=["a:x=b:y", "a:x=c:z"])):
        with pytest.raises(InputError):
            UserRefactors.parse(**bad)
    with pytest.raises(InputError, match="needs\\s+--load-as"):
        UserRefactors.parse([], ["a.m:old=c.mig:run"])
    with pytest.raises(InputError):
        parse_renames("a.B=c.D")


# -- end to end, in one process ----------------------------------------------------


def _run(migration: str, load_as: str = "refactor_models:new", formats: tuple[str, ...] = ("state_dict",)):
    from harness.runtime.expect import Expectations
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner.inprocess import roundtrip
    from harness.runtime.spec import Spec

    spec = Spec.from_dict({"name": "user-refactor", "factory": "refactor_models:old", "seed": 0, "origin": "user"})
    migrate = [] if migration == "remap" else [f"refactor_models:old=refactor_models:{migration}"]
    refactors = UserRefactors.parse([f"refactor_models:old={load_as}"], migrate)
    cells = roundtrip(spec, [FORMATS[f] for f in formats], refactors=refactors, expectations=Expectations.load(),
                      options=lambda f, o: o.migrate is not None or (o.apply in ("strict", "model", "resume") and o.map_location in (None, "cpu") and not o.mmap and not o.loader))
    return {(c.format, c.load.get("migrate")): c for c in cells}


@pytest.fixture(scope="module")
def good_run():
    """The user's correct migration, and (without --migrate) the proposed remap applied."""
    return {**_run("good", formats=("state_dict", "safetensors", "checkpoint")), **_run("remap", formats=("state_dict", "safetensors"))}


def test_without_a_migration_the_cell_names_what_no_longer_fits(good_run):
    plain = good_run[("state_dict", None)]
    assert plain.outcome.value == "error" and plain.expected, "loaded into changed code: the refactor expectation applies"
    assert "refactor" in plain.tags
    assert plain.load_as == "refactor_models:new"
    assert plain.diagnosis["code"] == "model_code_changed"
    assert "proposed remap" in plain.diagnosis["summary"]
    assert "attn.qkv.weight -> attn.q.weight, attn.k.weight, attn.v.weight" in plain.diagnosis["fix"]
    assert plain.remap["found_by"] == "names"
    assert sorted(kinds(Remap.from_dict(plain.remap))) == sorted([
        ("split", ["attn.qkv.weight"], ["attn.q.weight", "attn.k.weight", "attn.v.weight"]),
        ("split", ["attn.qkv.bias"], ["attn.q.bias", "attn.k.bias", "attn.v.bias"]),
        ("rename", ["head.weight"], ["classifier.weight"]), ("rename", ["head.bias"], ["classifier.bias"]),
        ("dropped", ["scale"], []), ("added", [], ["gate"]),
    ])


def test_a_checkpoints_resume_into_changed_code_gets_the_remap_of_its_model_part(good_run):
    resume = good_run[("checkpoint", None)]
    assert resume.outcome.value == "error" and resume.diagnosis["code"] == "model_code_changed"
    assert any(e["kind"] == "split" for e in resume.remap["entries"])


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_a_correct_migration_passes_exactly_and_the_digests_confirm_the_remap(good_run, fmt):
    cell = good_run[(fmt, "refactor_models:good")]
    assert cell.outcome.value == "pass", cell.detail
    assert cell.remap["found_by"] == "digests", "the user's migration put every saved byte where the remap says"
    assert cell.load_as == "refactor_models:new"
    assert any("gate" in n and "not checked" in n for n in cell.notes)


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_the_proposed_remap_applied_passes_but_does_not_confirm_itself(good_run, fmt):
    cell = good_run[(fmt, "remap")]
    assert cell.outcome.value == "pass", cell.detail
    # its bytes went where the remap itself put them: that shows a fit, not that the map is right
    assert cell.remap["found_by"] == "names"
    assert any("migrate=remap applies the remap proposed" in n for n in cell.notes)


@pytest.mark.parametrize(("migration", "tensor", "aspect", "index"), [
    ("drops_a_key", "attn.k.bias", "bits", [0]),
    ("transposes_a_weight", "attn.v.weight", "bits", [0, 1]),
    ("changes_an_element", "classifier.bias", "bits", [1]),
    ("swaps_q_and_k", "attn.k.weight", "bits", None),
    ("leaves_a_key", "head.extra", "unexpected", None),
])
def test_a_broken_migration_is_a_mismatch_naming_the_tensor(migration, tensor, aspect, index):
    cell = _run(migration)[("state_dict", f"refactor_models:{migration}")]
    assert cell.outcome.value == "mismatch", cell.detail
    found = [d for d in cell.differences if d["tensor"] == tensor and d["aspect"] == aspect]
    assert found, cell.differences
    if aspect == "bits":
        assert found[0]["expected"] != found[0]["actual"] and "index" in found[0]
        if index is not None:
            assert found[0]["index"] == index
    assert cell.remap["found_by"] == "names", "a failed check does not confirm the remap"
    if migration == "drops_a_key":
        assert any(d["aspect"] == "missing" and d["tensor"] == tensor for d in cell.differences)
    if migration == "swaps_q_and_k":
        assert "attn.k.weight holds the bytes that belong in attn.q.weight" in cell.notes


def test_a_migration_that_returns_nothing_is_an_error_saying_so():
    cell = _run("returns_nothing")[("state_dict", "refactor_models:returns_nothing")]
    assert cell.outcome.value == "error"
    assert "returned None" in cell.detail


def test_forward_differences_of_refactored_code_are_drift_not_the_verdict():
    cell = _run("good", load_as="refactor_models:new_nudged")[("state_dict", "refactor_models:good")]
    assert cell.outcome.value == "pass", cell.detail
    assert cell.forward["status"] == "drift" and cell.forward["max_abs_diff"] > 0
    assert any("runs other code" in n for n in cell.notes)


def test_a_renamed_pair_the_names_cannot_decide_is_settled_by_the_bytes(torch):
    from harness.runtime.compare import compare
    from harness.runtime.manifest import Snapshot, module_snapshot, record_view
    from harness.runtime.refactor import expected_view, resolve_by_digests

    src = torch.nn.Module()
    src.a, src.b = torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 3, bias=False)
    dst = torch.nn.Module()
    dst.x, dst.y = torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 3, bias=False)
    from harness.runtime.refactor import module_slots

    view = record_view(module_snapshot(src))
    remap = propose(module_slots(src), module_slots(dst))
    pairs = {e.old[0]: e.new[0] for e in remap.entries}
    # load them crossed from what the names proposed: the bytes say which went where
    with torch.no_grad():
        getattr(dst, pairs["a.weight"].split(".")[0]).weight.copy_(src.b.weight)
        getattr(dst, pairs["b.weight"].split(".")[0]).weight.copy_(src.a.weight)
    snap: Snapshot = module_snapshot(dst)
    settled = resolve_by_digests(remap, view, snap)
    assert {e.old[0]: e.new[0] for e in settled.entries} == {"a.weight": pairs["b.weight"], "b.weight": pairs["a.weight"]}
    expected, source, _ = expected_view(view, settled, module_slots(dst), _no_reference(), "")
    assert compare(expected, snap, source).ok
    # damage: without settling, the crossed load is a mismatch
    expected, source, _ = expected_view(view, remap, module_slots(dst), _no_reference(), "")
    assert not compare(expected, snap, source).ok


def _no_reference():
    from pathlib import Path

    return Path("/nonexistent/reference.bin")


# -- whole-model pickles of a moved class --------------------------------------------


def test_rename_class_maps_a_moved_class_in_the_unpickler(torch):
    from harness.runtime.diagnose import diagnose
    from harness.runtime.refactor import renaming_pickle

    old_mod = types.ModuleType("old_home_for_test")
    new_mod = types.ModuleType("new_home_for_test")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    Net.__module__, Net.__qualname__ = "old_home_for_test", "Net"
    old_mod.Net = Net
    sys.modules["old_home_for_test"] = old_mod
    buf = io.BytesIO()
    try:
        torch.save(Net(), buf)
    finally:
        del sys.modules["old_home_for_test"]

    class Moved(Net):
        pass

    Moved.__module__, Moved.__qualname__ = "new_home_for_test", "Moved"
    new_mod.Moved = Moved
    sys.modules["new_home_for_test"] = new_mod
    try:
        buf.seek(0)
        with pytest.raises(ModuleNotFoundError) as e:
            torch.load(buf, weights_only=False)
        found = diagnose("ModuleNotFoundError", str(e.value), "full_model", {})
        assert found is not None and found.code == "class_not_importable"
        assert "old_home_for_test" in found.summary and "--rename-class" in found.fix
        buf.seek(0)
        model = torch.load(buf, weights_only=False, pickle_module=renaming_pickle({"old_home_for_test.Net": "new_home_for_test.Moved"}))
        assert type(model) is Moved
        # damage: a mapping for another class leaves the load failing
        buf.seek(0)
        with pytest.raises(ModuleNotFoundError):
            torch.load(buf, weights_only=False, pickle_module=renaming_pickle({"old_home_for_test.Other": "new_home_for_test.Moved"}))
    finally:
        del sys.modules["new_home_for_test"]


# -- the curated refactor cases, each with the right remap --------------------------------

#: what each curated refactor moved, as (kind, old, new)
CURATED_REMAPS = {
    "refactor_renamed": {("rename", ("encoder.fc.weight",), ("encoder.proj.weight",)), ("rename", ("encoder.fc.bias",), ("encoder.proj.bias",))},
    "refactor_split_qkv": {("split", ("attn.qkv.weight",), ("attn.q.weight", "attn.k.weight", "attn.v.weight")),
                           ("split", ("attn.qkv.bias",), ("attn.q.bias", "attn.k.bias", "attn.v.bias"))},
    "refactor_fused_qkv": {("fuse", ("attn.q.weight", "attn.k.weight", "attn.v.weight"), ("attn.qkv.weight",)),
                           ("fuse", ("attn.q.bias", "attn.k.bias", "attn.v.bias"), ("attn.qkv.bias",))},
    "refactor_weight_norm": {("parametrization", ("fc.weight_g",), ("fc.parametrizations.weight.original0",)),
                             ("parametrization", ("fc.weight_v",), ("fc.parametrizations.weight.original1",))},
    "refactor_buffer_nonpersistent": {("dropped", ("scale",), ())},
    "refactor_added_parameter": {("added", (), ("shift",))},
    "refactor_class_moved": set(),
}


@pytest.mark.parametrize("case", sorted(CURATED_REMAPS))
def test_each_curated_refactor_is_reported_with_its_remap_and_its_fix_loads_exactly(curated_specs, case):
    from harness.runtime.expect import Expectations
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner.inprocess import roundtrip

    spec = curated_specs[case]
    wanted = {"state_dict": lambda o: o.migrate == "remap" or (o.apply == "strict" and o.map_location == "cpu" and not o.mmap),
              "full_model": lambda o: bool(o.rename_class) or (o.weights_only == "false" and o.map_location == "cpu" and not o.mmap)}
    cells = roundtrip(spec, [FORMATS["state_dict"], FORMATS["full_model"]], expectations=Expectations.load(),
                      options=lambda f, o: wanted[f](o))
    by = {(c.format, c.load.get("migrate") or c.load.get("rename_class")): c for c in cells}
    strict = by[("state_dict", None)]
    assert strict.load_as == "variant" and strict.remap is not None
    assert {(e["kind"], tuple(e["old"]), tuple(e["new"])) for e in strict.remap["entries"]} == CURATED_REMAPS[case]
    if case == "refactor_class_moved":
        # same keys: the state dict is the fix, and it loads exactly; the pickle needs its class mapped
        assert strict.outcome.value == "pass", strict.detail
        plain = by[("full_model", None)]
        assert plain.outcome.value == "error" and plain.diagnosis["code"] == "class_not_importable" and plain.expected
        renamed = [c for (f, how), c in by.items() if f == "full_model" and how]
        assert [c.outcome.value for c in renamed] == ["pass"], [c.detail for c in renamed]
        return
    if case == "refactor_weight_norm":
        # torch >= 2.1 maps weight_g/weight_v itself: the bytes confirm the remap without a migration
        assert strict.outcome.value == "pass" and strict.remap["found_by"] == "digests", strict.detail
    else:
        assert strict.outcome.value == "error" and strict.diagnosis["code"] == "model_code_changed" and strict.expected
    fixed = by[("state_dict", "remap")]
    assert fixed.outcome.value == "pass", fixed.detail


def test_a_migrated_state_may_leave_out_a_tied_key_but_no_other(torch):
    """safetensors keeps one name per storage: a tied key the migration leaves out is loaded through its partner."""
    from harness.runtime.formats.base import load_migrated

    model = torch.nn.Module()
    model.a, model.b, model.c = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
    model.b.weight = model.a.weight
    state = {"a.weight": torch.ones(2, 2), "c.weight": torch.ones(2, 2)}
    assert load_migrated(model, state) == []
    assert torch.equal(model.b.weight, torch.ones(2, 2))
    # damage: the untied key left out is reported, and so is a key the model does not take
    assert load_migrated(model, {"a.weight": torch.ones(2, 2), "x": torch.zeros(1)}) == [("c.weight", "missing"), ("x", "unexpected")]
