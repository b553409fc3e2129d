"""Coverage: over a few hundred draws, specs() produces every feature it claims.

A strategy can quietly stop producing something (a refactor narrows a
filter, a branch becomes unreachable) while every other test stays green;
this test counts each feature in a fixed sample and fails when one is gone.
Features are read from the drawn JSON here, independently of the tags the
strategy computes.
"""

from __future__ import annotations

from collections import Counter

import pytest

from harness.runtime.dtypes import SPEC_DTYPES
from harness.runtime.layers import KINDS
from harness.runtime.spec import CONTAINERS, chain_signature, walk_leaves
from harness.strategies import LAYER_DTYPES, generate_specs

DRAWS = 500


def _depth(node: dict) -> int:
    return 1 + max(map(_depth, node["children"])) if node["kind"] in CONTAINERS else 0


def _walk(node: dict, counts: Counter, depth: int = 1, parent: str = "", fed: tuple = None) -> None:
    """Count container features, and the outputs that a chain feeds on to a next layer.

    `fed` is the signature feeding a sequential nested in a chain.
    """
    if node["kind"] not in CONTAINERS:
        return
    if depth > 1:
        counts[f"nested {node['kind']}"] += 1
    if parent == "sequential" and node["kind"] == "sequential":
        counts["sequential in a sequential"] += 1
    if any("name" in c for c in node["children"]):
        counts[f"named children of {node['kind']}"] += 1
    sig = fed
    for child in node["children"]:
        if node["kind"] != "sequential":
            _walk(child, counts, depth + 1, node["kind"])
            continue
        if sig is not None and child["kind"] not in CONTAINERS:
            counts[f"a layer after a {sig[0]} output"] += 1
        _walk(child, counts, depth + 1, node["kind"], sig)
        sig = chain_signature(child, "model", sig)


def features(data: dict) -> Counter:
    """Every feature of one spec, counted."""
    c: Counter = Counter()
    model = data["model"]
    leaves = list(walk_leaves(model))
    for leaf in leaves:
        c[f"kind {leaf.kind}"] += 1
        if KINDS[leaf.kind].has_params:
            c[f"layer dtype {leaf.dtype}"] += 1
        if leaf.kind == "linear" and 0 in (leaf.fields["in_features"], leaf.fields["out_features"]):
            c["zero-size layer"] += 1
    _walk(model, c)
    depth = _depth(model)
    c[f"depth {min(depth, 3)}{'+' if depth >= 3 else ''}"] += 1
    c[f"{'many' if len(leaves) >= 3 else 'few'} layers"] += 1
    for t in data.get("tensors", []):
        kind = t.get("kind", "buffer")
        if kind == "buffer":
            c["persistent buffer" if t.get("persistent", True) else "non-persistent buffer"] += 1
        else:
            c["frozen extra parameter" if t.get("requires_grad") is False else "extra parameter"] += 1
        c[f"extra dtype {t.get('dtype', 'float32')}"] += 1
        c["0-dim tensor" if not t["shape"] else ("zero-size tensor" if 0 in t["shape"] else "sized tensor")] += 1
        if t.get("layout") == "sparse_coo":
            c["sparse_coo buffer"] += 1
        if t.get("at"):
            c["extra tensor on a submodule"] += 1
    for tie in data.get("ties", []):
        c["tie"] += 1
        if tie["from"].rpartition(".")[0] != tie["to"].rpartition(".")[0]:
            c["tie across modules"] += 1
    c["planted"] += len(data.get("plant", []))
    for lay in data.get("layout", []):
        c[f"layout {lay['kind']}"] += 1
    for par in data.get("parametrize", []):
        c[f"parametrize {par['kind']}"] += 1
    if data.get("train"):
        c["train"] += 1
        c[f"train loss {data['train']['loss']}"] += 1
        assert not data.get("plant"), "training must not run on planted special values"
    if data.get("state_dict_prefix"):
        c["state_dict_prefix"] += 1
    return c


@pytest.fixture(scope="module")
def sample():
    # The corpus generator's draws: seeded, so the counts below are facts
    # about the strategy (for this Hypothesis version), not luck; and the
    # sample is what a generated corpus really holds.
    drawn = [spec.to_dict() for spec in generate_specs(DRAWS, 0)]
    assert len(drawn) == DRAWS
    return drawn


@pytest.fixture(scope="module")
def counts(sample):
    total: Counter = Counter()
    for data in sample:
        for feature in features(data):
            total[feature] += 1  # specs having it, not occurrences
    return total


#: Features a sample must show often: in one spec of a hundred at least.
#: Each shows in three times that or more; the margin absorbs the shifts
#: of another Hypothesis version, while a lost feature still fails.
COMMON = (
    [f"kind {k}" for k in KINDS]
    + [f"layer dtype {d}" for d in LAYER_DTYPES]
    + [f"extra dtype {d}" for d in SPEC_DTYPES]
    + [f"nested {k}" for k in CONTAINERS]
    + ["sequential in a sequential", "named children of sequential", "named children of module_dict"]
    + ["persistent buffer", "non-persistent buffer", "extra parameter", "frozen extra parameter"]
    + ["0-dim tensor", "zero-size tensor", "sparse_coo buffer", "extra tensor on a submodule"]
    + ["tie", "tie across modules", "planted", "layout channels_last", "layout transposed", "layout offset"]
    + ["parametrize weight_norm", "train", "state_dict_prefix"]
)
#: Features that need several draws to line up (a float32-only model with
#: a vector output, a chain that goes on after a given output): present.
RARE = (
    # A chain continues in every space a layer outputs (tokens: none does).
    [f"a layer after a {space} output" for space in ("vec", "seq", "img1", "img2", "img3")]
    + ["zero-size layer", "parametrize orthogonal", "train loss cross_entropy"]
)


@pytest.mark.parametrize("feature", COMMON)
def test_every_common_feature_appears_often(counts, feature):
    assert counts[feature] >= DRAWS // 100, (
        f"{feature!r} appeared in {counts[feature]} of {DRAWS} drawn specs (expected {DRAWS // 100} at least): "
        "has the strategy stopped producing it?"
    )


@pytest.mark.parametrize("feature", RARE)
def test_every_rare_feature_appears(counts, feature):
    assert counts[feature] >= 1, f"{feature!r} appeared in none of {DRAWS} drawn specs: has the strategy stopped producing it?"


def test_trees_are_deep_and_varied(counts):
    # Nesting to depth 3 and more is a feature, not an accident: a good share of the sample.
    assert counts["depth 3+"] >= DRAWS // 10, counts
    assert counts["many layers"] >= DRAWS // 5, counts
    assert counts["depth 1"] >= DRAWS // 20, "shallow specs vanished too"


def test_a_feature_count_would_catch_a_lost_feature(sample):
    # The counter itself must see features: strip ties from the sample and "tie" is gone.
    stripped = Counter()
    for data in sample:
        stripped.update(features({k: v for k, v in data.items() if k != "ties"}))
    assert stripped["tie"] == 0
