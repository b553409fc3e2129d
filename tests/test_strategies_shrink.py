"""Shrinking: with a bug planted in the load path, Hypothesis must report a
minimal spec (one layer in one container), not the deep tree it first hit.

The planted bugs sit where real ones would: a state-dict load whose result
silently loses one kind of buffer, or corrupts one dtype. Only the
``state_dict`` format under one load option runs, so each of the hundreds
of shrink steps costs milliseconds.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, find, settings

from harness.runtime.spec import CONTAINERS, Spec
from harness.strategies import specs


def _depth(node: dict) -> int:
    return 1 + max(map(_depth, node["children"])) if node["kind"] in CONTAINERS else 0


def _drop_non_persistent_buffers(snapshot):
    for name in [n for n, (_, role) in snapshot.tensors.items() if role == "buffer_np"]:
        del snapshot.tensors[name]


def _flip_bfloat16_bits(snapshot):
    import torch

    for name, (t, role) in list(snapshot.tensors.items()):
        if t.dtype == torch.bfloat16 and t.numel():
            bad = t.detach().clone()
            bad.view(torch.int16).view(-1)[0] ^= 1
            snapshot.tensors[name] = (bad, role)


def _fails_with(spec_data: dict) -> bool:
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner.inprocess import roundtrip

    def strict_only(fmt: str, opt) -> bool:
        return opt.apply == "strict" and opt.map_location == "none" and not opt.mmap

    results = roundtrip(Spec.from_dict(spec_data), [FORMATS["state_dict"]], options=strict_only)
    return any(r.outcome.value == "mismatch" for r in results)


@pytest.mark.parametrize(
    ("corrupt", "check_extra"),
    [
        (_drop_non_persistent_buffers, lambda t: t.get("persistent") is False),
        (_flip_bfloat16_bits, lambda t: t.get("dtype") == "bfloat16"),
    ],
    ids=["drops-non-persistent-buffers", "flips-a-bfloat16-bit"],
)
def test_a_planted_load_bug_shrinks_to_one_layer(torch, monkeypatch, corrupt, check_extra):
    from harness.runtime.formats.state_dict import StateDict

    real_load = StateDict.load

    def buggy_load(self, directory, options, ctx):
        loaded = real_load(self, directory, options, ctx)
        corrupt(loaded.snapshot)
        return loaded

    monkeypatch.setattr(StateDict, "load", buggy_load)
    found = find(
        specs(),
        _fails_with,
        settings=settings(
            database=None, derandomize=True, max_examples=500, deadline=None,
            phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
        ),
    )
    spec = Spec.from_dict(found)
    assert len(spec.leaves()) == 1, f"not shrunk to one layer: {spec.to_json()}"
    assert _depth(found["model"]) == 1, f"not shrunk to one container: {spec.to_json()}"
    for key in ("ties", "plant", "layout", "parametrize", "train", "state_dict_prefix"):
        assert key not in found, f"{key} does not matter to this bug but survived shrinking: {spec.to_json()}"
    # The bug needs one tensor of the affected kind, in a layer or as an extra: no more.
    extras = found.get("tensors", [])
    assert len(extras) <= 1 and all(check_extra(t) for t in extras), spec.to_json()
    monkeypatch.undo()
    assert not _fails_with(found), "the minimal spec must pass once the bug is gone"
