"""Generated refactors (`harness.strategies.refactors`): the remap proposal and the generic migration, as properties.

For every drawn refactor (a spec and its ``load_as`` variant, with the
truth about what moved):

- the truth fits the two models the specs build, key for key;
- `propose` finds that truth from the two models' slots (names, dtypes,
  shapes) alone: renames, splits and fusions (pieces beside the whole) with
  their dim and piece order, weight_norm's mapping, dropped and added keys;
  where dtype and shape cannot tell moved keys apart it may give up (call
  them dropped and added), never move them wrongly;
- `apply_remap` through the true remap, then a strict ``load_state_dict``
  into the poisoned load-side model, gives every tensor the bytes the remap
  says (`expected_view` + `compare`), and added tensors their new code's;
- the harness's own ``migrate=remap`` cell (in process, state_dict) passes
  with that remap, confirmed by digests;
- damage to the migrated state (one key dropped, one square weight
  transposed, one element changed) is always caught, naming that tensor;
- a planted migration bug shrinks to one split of one linear.

Counterexamples the properties found in the core are kept at the end as
strict xfails (each says what is wrong): when the core learns the case, the
xfail fails, and the example (and the ``assume`` that steps around it in
the properties) should go.

All in process, no files beyond a reference file per example. The examples
are few (the profile's, scaled); ``TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE=ci``
runs many, derandomized.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis_profiles import scaled

from harness.runtime.spec import Spec
from harness.strategies import refactors
from harness.strategies.extras import extra_record
from harness.strategies.refactors import CHANGES, Refactor, state_slots


def _entries(remap_entries) -> set:
    """Entries as comparable tuples: (kind, old, new, dim), the detail left out."""
    return {(e["kind"], tuple(e["old"]), tuple(e["new"]), e.get("dim")) for e in remap_entries}


def _sides(r: Refactor):
    """(save-side model as saved, load-side model as its code initialises it, poisoned load-side model)."""
    spec = Spec.from_dict(r.spec)
    variant = spec.load_side()
    from harness.runtime.builder import build

    return build(spec, "init").model, build(variant, "init").model, build(variant, "empty").model


def _truth_remap(r: Refactor):
    """The drawn truth as a Remap, with the non-persistent buffers that moved with a renamed module.

    Those are in no state dict, so the strategy's truth (state-dict keys) lacks
    them; a renamed module takes them along: ``a.c.xt`` -> ``b.c.xt`` when
    ``a.c.weight`` -> ``b.c.weight`` (heads found from the truth's own renames).
    """
    from harness.runtime.refactor import Remap

    entries = list(r.truth["entries"])
    heads = []
    for e in entries:
        if e["kind"] == "rename":
            a, b = e["old"][0].split("."), e["new"][0].split(".")
            tail = 0
            while tail < min(len(a), len(b)) and a[-1 - tail] == b[-1 - tail]:
                tail += 1
            heads.append((".".join(a[:len(a) - tail]), ".".join(b[:len(b) - tail])))
    for new in _moved_np_buffers(r):
        for head_old, head_new in sorted(heads, key=lambda h: -len(h[1])):
            if head_new and new.startswith(head_new + "."):
                entries.append({"kind": "rename", "old": [head_old + new[len(head_new):]], "new": [new]})
                break
    return Remap.from_dict({"entries": entries, "same": r.truth["same"]})


class Migrated:
    """A migration through `remap` of what the save side holds, loaded into the poisoned load side."""

    def __init__(self, r: Refactor, workdir: Path) -> None:
        from harness.runtime.manifest import Reference, module_snapshot, record_view
        from harness.runtime.refactor import module_slots

        self.spec = r.spec
        self.saved, self.initial, self.target = _sides(r)
        self.reference = workdir / "reference.bin"
        ref = Reference(self.reference)
        self.view = record_view(module_snapshot(self.saved), ref)
        ref.write()
        self.wanted = module_slots(self.target)

    def state(self, remap) -> dict:
        from harness.runtime.refactor import apply_remap

        return apply_remap(self.saved.state_dict(), remap, self.initial.state_dict())

    def load_and_compare(self, state: dict, remap, strict: bool = True):
        """Load `state` into a freshly poisoned load-side model; compare it with what `remap` says it must hold."""
        from harness.runtime.builder import build
        from harness.runtime.compare import compare
        from harness.runtime.manifest import module_snapshot
        from harness.runtime.refactor import expected_view

        self.target = build(Spec.from_dict(self.spec).load_side(), "empty").model
        self.target.load_state_dict(state, strict=strict)
        view, source, ignore = expected_view(self.view, remap, self.wanted, self.reference)
        return compare(view, module_snapshot(self.target), source, ignore)


# -- the strategy itself ----------------------------------------------------------------


@scaled(4)
@given(refactors())
def test_the_truth_fits_the_models_both_specs_build(torch, r):
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict(), "a drawn refactor must be plain JSON"
    spec = Spec.from_dict(r.spec)
    assert spec.refactored and "refactor" in spec.tags
    assert spec.load_side().to_dict() == Spec.from_dict(r.load_side()).to_dict()
    saved, _, target = _sides(r)
    for data, model in ((r.spec, saved), (r.load_side(), target)):
        built = {k: (str(t.dtype).replace("torch.", ""), tuple(t.shape)) for k, t in model.state_dict().items()}
        assert state_slots(data) == built
    old, new = state_slots(r.spec), state_slots(r.load_side())
    moved_old = {k for e in r.truth["entries"] for k in e["old"]}
    moved_new = {k for e in r.truth["entries"] for k in e["new"]}
    kept = set(old) - moved_old
    assert kept == set(new) - moved_new and len(kept) == r.truth["same"]
    assert all(old[k] == new[k] for k in kept)


@scaled(3)
@given(st.data())
def test_each_change_alone_is_drawn_when_asked_for(data):
    change = data.draw(st.sampled_from(CHANGES), label="change")
    r = data.draw(refactors(changes=(change,)), label="refactor")
    kinds = {e["kind"] for e in r.truth["entries"]}
    wanted = {"rename": "rename", "split": "split", "fuse": "fuse", "reparametrize": "parametrization",
              "drop": "dropped", "add": "added"}[change]
    # A change that finds no place in the drawn spec (no child to rename, no
    # weight to reparametrize, a chain where no linear can be cut) falls back
    # to adding a parameter: a refactor always changes something.
    assert kinds in ({wanted}, {"added"})


def test_every_change_shows_up_in_a_sample():
    from hypothesis import HealthCheck, Phase, settings

    counts: dict = {}

    @settings(database=None, max_examples=150, derandomize=True, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(refactors())
    def sample(r):
        for kind in {e["kind"] for e in r.truth["entries"]}:
            counts[kind] = counts.get(kind, 0) + 1

    sample()
    for kind in ("rename", "split", "fuse", "parametrization", "dropped", "added"):
        assert counts.get(kind, 0) >= 3, f"{kind!r} in {counts.get(kind, 0)} of 150 drawn refactors: has the strategy stopped drawing it? {counts}"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: refactors(changes=()), "changes=() must be a non-empty tuple among rename, split"),
        (lambda: refactors(changes="rename"), "changes='rename' must be a non-empty tuple"),
        (lambda: refactors(changes=("rename", "shuffle")), "changes=('rename', 'shuffle') must be"),
        (lambda: refactors(max_depth=0), "max_depth=0 must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_when_the_strategy_is_made(call, message):
    with pytest.raises(InvalidArgument) as info:
        call()
    assert message in str(info.value)


def test_reprs_read_like_the_call():
    assert repr(refactors()) == "refactors()"
    assert repr(refactors(changes=("split",), max_leaves=2)) == "refactors(changes=('split',), max_leaves=2)"


# -- the proposal -----------------------------------------------------------------------------


def _misjudged(found: set, r: Refactor) -> list:
    """What a proposal (`_entries`) got wrong about `r`'s truth; empty when it is right.

    Every move whose keys no other moved key could stand in for, by dtype and
    shape, must be found exactly. Where one could (the truth's
    ``ambiguous``), the proposal may give up and call those keys dropped and
    added; it may never move them wrongly, since a wrong move is one that a
    check through the remap would confirm.
    """
    truth, ambiguous = _entries(e.to_dict() for e in _truth_remap(r).entries), set(r.truth["ambiguous"])

    def unsure(e: tuple) -> bool:
        return bool((set(e[1]) | set(e[2])) & ambiguous)

    missed = [("missed", e) for e in truth - found if not unsure(e)]
    wrong = [("wrong", e) for e in found - truth if e[0] not in ("dropped", "added") or not unsure(e)]
    return missed + wrong


@scaled(4)
@given(refactors())
def test_the_proposal_recovers_the_drawn_truth(torch, r):
    from harness.runtime.refactor import module_slots, propose

    saved, _, target = _sides(r)
    remap = propose(module_slots(saved), module_slots(target))
    found = _entries(e.to_dict() for e in remap.entries)
    problems = _misjudged(found, r)
    assert not problems, (
        f"the proposal differs from the truth: {problems}\n  slot-ambiguous keys: {r.truth['ambiguous']}\n"
        f"  spec: {json.dumps(r.spec)}"
    )
    if found == _entries(r.truth["entries"]):
        assert remap.same == r.truth["same"]


# -- the generic migration, through the true remap ----------------------------------------------


def _moved_np_buffers(r: Refactor) -> list:
    """Non-persistent buffers of the load side that the save side has under no name (their module was renamed)."""
    def np_paths(data: dict) -> set:
        return {extra_record(t).path for t in data.get("tensors", []) if extra_record(t).role == "buffer_np"}

    return sorted(np_paths(r.load_side()) - np_paths(r.spec) - set(state_slots(r.spec)))


@scaled(4)
@given(refactors())
def test_a_migration_through_the_remap_is_exact(torch, r):
    remap = _truth_remap(r)
    with tempfile.TemporaryDirectory() as tmp:
        m = Migrated(r, Path(tmp))
        comparison = m.load_and_compare(m.state(remap), remap)
        assert comparison.ok, comparison.summary()
        # Added tensors are not in the checkpoint: they hold what the new code initialises.
        target, initial = m.target.state_dict(), m.initial.state_dict()
        for e in r.truth["entries"]:
            if e["kind"] == "added":
                name = e["new"][0]
                assert torch.equal(_bits(torch, target[name]), _bits(torch, initial[name])), name


@scaled(2)
@given(refactors(pieces=("beside",)))
def test_the_migrate_remap_cell_passes_with_the_true_remap(torch, r):
    """The harness's own cell (state_dict, ``migrate=remap``): the remap it proposes, applies and confirms is the truth."""
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner.inprocess import roundtrip

    cells = roundtrip(Spec.from_dict(r.spec), [FORMATS["state_dict"]], options=lambda fmt, opt: opt.migrate == "remap")
    assert cells, "state_dict sweeps no migrate=remap cell for a refactored case"
    for cell in cells:
        assert cell.outcome.value == "pass", f"{cell.outcome.value}: {cell.detail}"
        assert cell.load_as == "variant"
        # the remap applied by the harness itself: the bytes show it fits, not that it is right
        assert cell.remap["found_by"] == "names" and cell.remap["same"] == r.truth["same"]
        assert not _misjudged(_entries(cell.remap["entries"]), r), cell.remap


def _flip(torch, t, index: int):
    """A copy of `t` with the lowest bit of element `index` (in logical order) flipped."""
    c = t.detach().clone().contiguous()
    c.reshape(-1).view(torch.uint8)[index * c.element_size()] ^= 1
    return c


def _damageable(torch, state: dict, r: Refactor, m: Migrated) -> dict:
    """Damage kind -> keys it can hit: keys the check compares, dense, not sharing storage with another key."""
    from harness.runtime.manifest import alias_groups, module_snapshot

    added = {k for e in r.truth["entries"] if e["kind"] == "added" for k in e["new"]}
    tied = set(alias_groups(module_snapshot(m.target).tensors))
    keys = [k for k, t in state.items() if k not in added and k not in tied and not t.is_sparse]
    square = [k for k in keys if state[k].dim() == 2 and state[k].shape[0] == state[k].shape[1]
              and not torch.equal(_bits(torch, state[k]), _bits(torch, state[k].t()))]
    return {"drop": keys, "transpose": square, "element": [k for k in keys if state[k].numel()]}


def _bits(torch, t):
    c = t.detach().contiguous()
    return c.reshape(-1).view(torch.uint8) if c.numel() else c.reshape(-1)


@scaled(4)
@given(refactors(), st.data())
def test_damage_after_the_migration_is_caught_naming_the_tensor(torch, r, data):
    remap = _truth_remap(r)
    with tempfile.TemporaryDirectory() as tmp:
        m = Migrated(r, Path(tmp))
        state = m.state(remap)
        targets = {k: v for k, v in _damageable(torch, state, r, m).items() if v}
        if not targets:
            return  # nothing the check compares (every tensor is new): no damage to draw
        # What the undamaged migration shows (nothing, unless the check itself
        # is wrong: the test above says so); the damage must add exactly its tensor.
        before = {d.describe() for d in m.load_and_compare(copy.copy(state), remap).differences}
        damage = data.draw(st.sampled_from(sorted(targets)), label="damage")
        event(f"damage: {damage}")
        key = data.draw(st.sampled_from(targets[damage]), label="key")
        if damage == "drop":
            del state[key]
            try:
                comparison = m.load_and_compare(state, remap)
            except RuntimeError as e:  # what a strict load says
                assert f'"{key}"' in str(e).split("Missing key(s)", 1)[-1].split(".\n", 1)[0], str(e)
                return
            # A module may fill a key that an old checkpoint lacks (BatchNorm's
            # num_batches_tracked, where the state's metadata has no version for
            # a moved module): the load goes through, and the value is wrong.
            assert [d.tensor for d in comparison.differences if d.describe() not in before] == [key], comparison.summary()
            return
        if damage == "transpose":
            state[key] = state[key].detach().t().contiguous()
            index = None
        else:
            index = data.draw(st.integers(0, state[key].numel() - 1), label="element")
            state[key] = _flip(torch, state[key], index)
        comparison = m.load_and_compare(state, remap)
        new = [d for d in comparison.differences if d.describe() not in before]
        assert [d.tensor for d in new] == [key], comparison.summary()
        diff = new[0]
        assert diff.aspect == "bits"
        if index is not None:
            from harness.runtime.compare import unravel_index

            assert diff.index == unravel_index(index, list(state[key].shape)), comparison.summary()


#: A square weight renamed and another split: every damage has a target in every run.
SQUARE = {
    "name": "square", "seed": 3,
    "model": {"kind": "module_dict", "children": [
        {"name": "fc", "kind": "linear", "in_features": 3, "out_features": 3},
        {"name": "qkv", "kind": "linear", "in_features": 2, "out_features": 4}]},
    "load_as": {"model": {"kind": "module_dict", "children": [
        {"name": "head", "kind": "linear", "in_features": 3, "out_features": 3},
        {"name": "qkv_q", "kind": "linear", "in_features": 2, "out_features": 2},
        {"name": "qkv_k", "kind": "linear", "in_features": 2, "out_features": 2}]}},
}


@pytest.mark.parametrize(("damage", "key", "index"), [
    ("drop", "qkv_k.bias", None), ("transpose", "head.weight", None), ("element", "qkv_q.weight", [1, 0]),
])
def test_each_damage_is_caught_on_a_fixed_refactor(torch, damage, key, index):
    from harness.runtime.refactor import module_slots, propose

    saved, _, target = _sides(Refactor(SQUARE, {}))
    remap = propose(module_slots(saved), module_slots(target))
    assert sorted(e.kind for e in remap.entries) == ["rename", "rename", "split", "split"], remap.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        m = Migrated(Refactor(SQUARE, {}), Path(tmp))
        state = m.state(remap)
        assert m.load_and_compare(copy.copy(state), remap).ok
        if damage == "drop":
            del state[key]
            with pytest.raises(RuntimeError, match=f'Missing key.*"{key}"'):
                m.load_and_compare(state, remap)
            return
        state[key] = state[key].detach().t().contiguous() if damage == "transpose" else _flip(torch, state[key], 2)
        comparison = m.load_and_compare(state, remap)
        assert [(d.tensor, d.aspect) for d in comparison.differences] == [(key, "bits")]
        if index is not None:
            assert comparison.differences[0].index == index


@pytest.mark.slow
def test_a_planted_migration_bug_shrinks_to_one_split(torch, monkeypatch):
    """A migration that puts a split's pieces in reverse order: Hypothesis reports one split of one linear."""
    from hypothesis import HealthCheck, Phase, find, settings

    import harness.runtime.refactor as core

    real = core.apply_remap

    def reversed_pieces(state, remap, initial):
        entries = [core.RemapEntry(e.kind, e.old, tuple(reversed(e.new)) if e.kind == "split" else e.new, e.dim) for e in remap.entries]
        return real(state, core.Remap(entries, remap.same), initial)

    monkeypatch.setattr(core, "apply_remap", reversed_pieces)

    def fails(r: Refactor) -> bool:
        remap = _truth_remap(r)
        with tempfile.TemporaryDirectory() as tmp:
            m = Migrated(r, Path(tmp))
            return not m.load_and_compare(m.state(remap), remap).ok

    found = find(refactors(), fails, settings=settings(
        database=None, derandomize=True, max_examples=500, deadline=None,
        phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
    ))
    spec = Spec.from_dict(found.spec)
    assert {e["kind"] for e in found.truth["entries"]} == {"split"}, found.to_dict()
    assert len(spec.leaves()) <= 2, found.to_dict()  # the linear cut, and the one leaf a drawn spec has
    for key in ("tensors", "ties", "plant", "layout", "parametrize"):
        assert key not in found.spec, f"{key} does not matter to this bug but survived shrinking: {found.to_dict()}"
    monkeypatch.undo()
    assert not fails(found), "the minimal refactor must migrate exactly once the bug is gone"


# -- counterexamples the properties found, kept as examples ---------------------------------------

#: A linear fused from pieces that lived under it (``1.0``, ``1.1`` -> ``1``):
#: the only way the bytes fit, yet `propose` looks for pieces beside the
#: whole only, so it proposes two dropped and two added keys per tensor.
PIECES_UNDER = {
    "name": "pieces-under", "seed": 0,
    "model": {"kind": "module_list", "children": [
        {"kind": "dropout"},
        {"kind": "module_list", "children": [{"kind": "linear", "in_features": 2, "out_features": 1},
                                             {"kind": "linear", "in_features": 2, "out_features": 1}]}]},
    "load_as": {"model": {"kind": "module_list", "children": [
        {"kind": "dropout"}, {"kind": "linear", "in_features": 2, "out_features": 2}]}},
}
#: A module renamed (``fc0`` -> ``trunk``) that holds a non-persistent buffer.
NP_BUFFER_RENAMED = {
    "name": "np-buffer-renamed", "seed": 0,
    "model": {"kind": "sequential", "children": [{"name": "fc0", "kind": "linear", "in_features": 1, "out_features": 1}]},
    "tensors": [{"name": "xt0", "at": "fc0", "shape": [], "persistent": False}],
    "load_as": {
        "model": {"kind": "sequential", "children": [{"name": "trunk", "kind": "linear", "in_features": 1, "out_features": 1}]},
        "tensors": [{"name": "xt0", "at": "trunk", "shape": [], "persistent": False}],
    },
}


#: Pieces ``qkv_q``/``qkv_k`` fused into ``qkv`` while module ``1`` becomes
#: ``trunk``: ``1.bias`` + ``qkv_q.bias`` add up to ``qkv.bias`` as well as
#: ``qkv_q.bias`` + ``qkv_k.bias`` do, but only the second leaves ``trunk.bias``
#: a source, and only its names share ``qkv``.
FUSED_BESIDE_A_RENAME = {
    "name": "fused-beside-a-rename", "seed": 0,
    "model": {"kind": "module_dict", "children": [
        {"kind": "batch_norm1d", "num_features": 2, "dtype": "float64"},
        {"name": "qkv_q", "kind": "linear", "in_features": 1, "out_features": 1, "dtype": "float64"},
        {"name": "qkv_k", "kind": "linear", "in_features": 1, "out_features": 2, "dtype": "float64"}]},
    "load_as": {"model": {"kind": "module_dict", "children": [
        {"name": "trunk", "kind": "batch_norm1d", "num_features": 2, "dtype": "float64"},
        {"name": "qkv", "kind": "linear", "in_features": 1, "out_features": 3, "dtype": "float64"}]}},
}


def test_a_fusion_beside_a_rename_is_proposed_whole(torch):
    from harness.runtime.refactor import module_slots, propose

    saved, _, target = _sides(Refactor(FUSED_BESIDE_A_RENAME, {}))
    found = _entries(e.to_dict() for e in propose(module_slots(saved), module_slots(target)).entries)
    assert ("fuse", ("qkv_q.bias", "qkv_k.bias"), ("qkv.bias",), 0) in found
    assert ("rename", ("0.bias",), ("trunk.bias",), None) in found


#: A layer removed (``old_head``) and a parameter added (``scale``) whose
#: shape happens to be its bias's: nothing of the name is shared, and the
#: new code initialises ``scale``, so no saved byte belongs there.
REMOVED_AND_ADDED = {
    "name": "removed-and-added", "seed": 0,
    "model": {"kind": "module_dict", "children": [
        {"name": "old_head", "kind": "linear", "in_features": 2, "out_features": 3},
        {"name": "fc", "kind": "linear", "in_features": 2, "out_features": 2}]},
    "load_as": {"model": {"kind": "module_dict", "children": [{"name": "fc", "kind": "linear", "in_features": 2, "out_features": 2}]},
                "tensors": [{"name": "scale", "kind": "parameter", "shape": [3]}]},
}


def test_a_removed_layer_and_an_added_parameter_are_not_a_rename(torch):
    from harness.runtime.formats import FORMATS
    from harness.runtime.refactor import module_slots, propose
    from harness.runtime.runner.inprocess import roundtrip

    saved, _, target = _sides(Refactor(REMOVED_AND_ADDED, {}))
    found = _entries(e.to_dict() for e in propose(module_slots(saved), module_slots(target)).entries)
    cells = roundtrip(Spec.from_dict(REMOVED_AND_ADDED), [FORMATS["state_dict"]], options=lambda fmt, opt: opt.migrate == "remap")
    assert ("rename", ("old_head.bias",), ("scale",), None) not in found
    assert ("dropped", ("old_head.bias",), (), None) in found and ("added", (), ("scale",), None) in found
    assert all(c.remap["found_by"] != "digests" for c in cells)


def test_pieces_under_the_whole_are_proposed_as_a_fusion(torch):
    from harness.runtime.refactor import module_slots, propose

    r = Refactor(PIECES_UNDER, {})
    saved, _, target = _sides(r)
    found = _entries(e.to_dict() for e in propose(module_slots(saved), module_slots(target)).entries)
    assert found == {("fuse", ("1.0.weight", "1.1.weight"), ("1.weight",), 0), ("fuse", ("1.0.bias", "1.1.bias"), ("1.bias",), 0)}


def test_a_migration_that_loses_saved_weights_says_so(torch):
    """A layer removed and another added: nothing of the checkpoint reaches the new one. Not a mismatch
    (no tensor the remap names differs), but the cell names the lost and the unchecked tensors."""
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner.inprocess import roundtrip

    cells = roundtrip(Spec.from_dict(REMOVED_AND_ADDED), [FORMATS["state_dict"]], options=lambda fmt, opt: opt.migrate == "remap")
    assert cells
    for cell in cells:
        assert cell.outcome.value == "pass", cell.detail
        notes = " ".join(cell.notes)
        assert "are lost: " in notes and "old_head.bias" in notes
        assert "not checked" in notes and "scale" in notes


def test_a_renamed_module_with_a_non_persistent_buffer_migrates_exactly(torch):
    from harness.runtime.formats import FORMATS
    from harness.runtime.refactor import Remap, RemapEntry
    from harness.runtime.runner.inprocess import roundtrip

    r = Refactor(NP_BUFFER_RENAMED, {})
    cells = roundtrip(Spec.from_dict(r.spec), [FORMATS["state_dict"]], options=lambda fmt, opt: opt.migrate == "remap")
    assert [c.outcome.value for c in cells] == ["pass"], [c.detail for c in cells]
    # the buffer is in no state dict, but the remap pairs it with its module, and the check follows it
    remap = Remap([RemapEntry("rename", ("fc0.weight",), ("trunk.weight",)), RemapEntry("rename", ("fc0.bias",), ("trunk.bias",)),
                   RemapEntry("rename", ("fc0.xt0",), ("trunk.xt0",))])
    with tempfile.TemporaryDirectory() as tmp:
        m = Migrated(r, Path(tmp))
        assert _moved_np_buffers(r) == ["trunk.xt0"]
        comparison = m.load_and_compare(m.state(remap), remap)
        assert comparison.ok, comparison.summary()
