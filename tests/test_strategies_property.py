"""The property: every spec Hypothesis draws round-trips, in every format
and under every load option, with no mismatch, no crash and no regression.

Known incompatibilities are marked by the shipped expectations file; any
other failure shrinks to a small spec, printed as JSON with the command that
replays it (``python -m harness replay SPEC.json``). Examples per run come
from the settings profile (see hypothesis_profiles.py).
"""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path

import pytest
from hypothesis import event, given, note
from hypothesis_profiles import PROFILE

from harness.runtime.spec import CONTAINERS, Spec
from harness.strategies import specs

FALSIFYING_DIR = Path(tempfile.gettempdir()) / "torch-roundtrip-hypothesis"


@pytest.fixture(scope="module")
def expectations():
    from harness.runtime.expect import Expectations

    return Expectations.load()


def _depth(node: dict) -> int:
    return 1 + max(map(_depth, node["children"])) if node["kind"] in CONTAINERS else 0


def failure_report(spec: Spec, failures: list, test: str) -> str:
    """The assertion message: what failed, the spec as JSON, and how to replay it.

    The spec is also written to a file, so the replay line works as printed;
    the last failing run (Hypothesis's minimal example) is what it holds.
    """
    FALSIFYING_DIR.mkdir(parents=True, exist_ok=True)
    path = FALSIFYING_DIR / f"{test}.json"
    path.write_text(spec.to_json() + "\n", encoding="utf-8")
    lines = [f"{len(failures)} cell(s) failed for this generated spec:"]
    lines += [f"  {line}" for line in failures[:20]]
    lines += ["spec:", spec.to_json(), f"reproduce (the spec above is saved there): python -m harness replay {path}"]
    return "\n".join(lines)


def roundtrip_failures(spec: Spec, expectations) -> tuple:
    """(results, one line per failing cell): mismatches, crashes, and failures no expectation explains."""
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.runner.inprocess import roundtrip

    try:
        results = roundtrip(spec, expectations=expectations)
    except Exception:  # the harness itself fell over: the in-process crash
        return [], [f"roundtrip raised:\n{traceback.format_exc()}"]
    failures = [
        f"{r.format} [{LoadOptions.from_dict(r.load).id}]: {r.outcome.value}"
        f"{'' if r.outcome.value == 'mismatch' else ' (regression)'} {r.detail[:300]}"
        for r in results
        if r.outcome.value in ("mismatch", "crash") or r.regression
    ]
    if not results:
        failures.append("roundtrip returned no cells")
    return results, failures


@PROFILE
@given(specs())
def test_every_generated_spec_round_trips_in_every_format(torch, expectations, data):
    spec = Spec.from_dict(data)
    note(f"spec as JSON:\n{spec.to_json()}")
    event(f"depth {_depth(data['model'])}")
    event(f"{len(spec.leaves())} layers")
    results, failures = roundtrip_failures(spec, expectations)
    assert not failures, failure_report(spec, failures, "roundtrip")
    for r in results:
        event(f"{r.format}: {r.outcome.value}{' (expected)' if r.expected else ''}")


def test_the_property_catches_a_planted_load_bug(torch, expectations, monkeypatch):
    from harness.runtime.formats.state_dict import StateDict

    real_load = StateDict.load

    def forgets_non_persistent_buffers(self, directory, options, ctx):
        loaded = real_load(self, directory, options, ctx)
        for name in [n for n, (_, role) in loaded.snapshot.tensors.items() if role == "buffer_np"]:
            del loaded.snapshot.tensors[name]
        return loaded

    spec = Spec.from_dict({
        "name": "hypothesis",
        "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]},
        "tensors": [{"name": "xt0", "shape": [], "persistent": False}],
    })
    assert roundtrip_failures(spec, expectations)[1] == [], "the spec must pass before the bug is planted"
    monkeypatch.setattr(StateDict, "load", forgets_non_persistent_buffers)
    _, failures = roundtrip_failures(spec, expectations)
    # state_dict_legacy shares the loader (a subclass): both formats, and nothing else, fail.
    assert failures and all(line.startswith(("state_dict [", "state_dict_legacy [")) for line in failures), failures
    assert any("mismatch missing key xt0" in line for line in failures), failures


def test_the_failure_report_carries_the_spec_and_the_replay_line():
    data = {"name": "hypothesis", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 1, "out_features": 1}]}}
    spec = Spec.from_dict(data)
    text = failure_report(spec, ["state_dict [apply=strict]: mismatch fc.weight"], "report-check")
    path = FALSIFYING_DIR / "report-check.json"
    assert f"python -m harness replay {path}" in text
    assert spec.to_json() in text
    assert Spec.from_dict(json.loads(path.read_text())) == spec, "the written file must replay the same spec"
