"""Every curated case in every format round-trips in one process, exactly."""

from __future__ import annotations

from collections import defaultdict

import pytest

pytest.importorskip("torch")

from harness.runtime.expect import Expectations  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.results import Outcome  # noqa: E402
from harness.runtime.runner.inprocess import roundtrip  # noqa: E402


@pytest.fixture(scope="module")
def expectations():
    return Expectations.load()


def test_every_curated_case_in_every_format(curated_specs, expectations):
    seen = defaultdict(set)
    problems = []
    for spec in curated_specs.values():
        for r in roundtrip(spec, expectations=expectations):
            seen[(r.case, r.format)].add(r.outcome)
            if r.outcome in (Outcome.MISMATCH, Outcome.CRASH, Outcome.TIMEOUT) or r.regression:
                problems.append(f"{r.case} {r.format} {r.load}: {r.outcome.value} {r.detail}")
            if r.outcome == Outcome.SKIP:
                assert r.detail, f"a skip must say why: {r.case} {r.format}"
    assert not problems, "\n".join(problems[:20])
    # Every case x format was tried, and most of them really pass somewhere.
    assert set(seen) == {(c, f) for c in curated_specs for f in FORMATS}
    passing = [k for k, outcomes in seen.items() if Outcome.PASS in outcomes]
    assert len(passing) >= 0.85 * len(seen)


def test_known_incompatibilities_show_up_as_expected(curated_specs, expectations):
    results = roundtrip(curated_specs["compiled_prefix"], [FORMATS["state_dict"]], expectations=expectations)
    strict = [r for r in results if r.load.get("apply") == "strict"]
    assert strict and all(r.outcome == Outcome.ERROR and r.expected for r in strict)
    assert strict[0].diagnosis["code"] == "key_prefix_orig_mod"
    assert "consume_prefix_in_state_dict_if_present" in strict[0].diagnosis["fix"]
    raw = [r for r in results if r.load.get("apply") == "none" and r.load.get("weights_only") == "true"]
    assert raw and all(r.outcome == Outcome.PASS for r in raw)  # the file itself is fine
