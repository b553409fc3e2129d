"""Aggregation: categories, matrix counts, worst outcome, verdicts, baseline diff."""

from __future__ import annotations

import pytest
from report_fixtures import (
    AE,
    HISTORY_RELEASES,
    HISTORY_VERDICTS,
    MINIATURE_COUNTS,
    A,
    B,
    history,
    line,
    miniature,
    write_expectations,
)

from harness.report.aggregate import (
    Category,
    Counts,
    Verdict,
    category,
    diff_baseline,
    env_grid,
    env_release,
    format_view,
    release_axes,
    release_grid,
    release_order,
    shows_release_map,
    top_failures,
    totals,
    verdict,
)
from harness.report.model import build_model
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult


@pytest.fixture
def model(tmp_path):
    exp = Expectations.load(write_expectations(tmp_path))
    return build_model([miniature(tmp_path / "R")], exp)


def cell(outcome: str, expected: bool = False, **kw) -> CellResult:
    return CellResult.from_dict(line(A, B, kw.pop("case", "c"), kw.pop("fmt", "state_dict"), outcome, expected=expected, **kw))


@pytest.mark.parametrize(
    ("outcome", "expected", "want"),
    [
        ("pass", False, Category.PASS),
        ("skip", False, Category.SKIP),
        ("error", False, Category.REGRESSION),
        ("error", True, Category.EXPECTED),
        ("timeout", False, Category.REGRESSION),
        ("crash", True, Category.EXPECTED),
        ("mismatch", False, Category.MISMATCH),
        # a documented mismatch still fails the run
        ("mismatch", True, Category.MISMATCH),
    ],
)
def test_category(outcome, expected, want):
    assert category(cell(outcome, expected)) == want
    assert want.fails == (want in (Category.REGRESSION, Category.MISMATCH))


def test_worst_ignores_expected_failures():
    c = Counts()
    c.add(cell("pass"))
    c.add(cell("crash", expected=True))
    assert c.worst.value == "pass"
    c.add(cell("skip"))
    assert c.worst.value == "pass"  # a skip beside a pass does not grey the group
    only_skips = Counts()
    only_skips.add(cell("skip"))
    assert only_skips.worst.value == "skip"
    c.add(cell("timeout"))
    c.add(cell("error"))
    assert c.worst.value == "timeout"
    assert c.to_dict() == {"pass": 1, "skip": 1, "expected": 1, "regression": 2, "mismatch": 0, "total": 5, "worst": "timeout"}


def test_worst_of_only_expected_failures_is_none():
    c = Counts()
    c.add(cell("error", expected=True))
    assert c.worst is None
    assert verdict(c) == Verdict.KNOWN_INCOMPATIBLE


def test_matrix_counts_of_the_miniature(model):
    got = {pair: c.to_dict() for pair, c in env_grid(model.cells).items()}
    want = {pair: {**counts, "total": sum(v for k, v in counts.items() if k != "worst")} for pair, counts in MINIATURE_COUNTS.items()}
    assert got == want


def test_expectations_are_reapplied(model):
    by_case = {(c.source, c.target, c.case, c.format): c for c in model.cells}
    # recorded as a regression; the expectations say expected
    wo = by_case[(A, B, "simple_net", "full_model")]
    assert wo.expected and wo.expectation == "weights-only-default-refuses-pickled-module"
    # recorded as expected by an expectation that no longer exists: a regression now
    to = by_case[(B, A, "simple_net", "state_dict")]
    assert not to.expected and to.expectation is None and to.regression
    assert model.reclassified == 2
    assert any("2 cells were judged differently" in w for w in model.warnings)


def test_totals_and_failing(model):
    t = totals(model.cells)
    assert (t["pass"], t["skip"], t["expected"], t["regression"], t["mismatch"]) == (4, 1, 2, 4, 1)
    assert t.failing == 5


@pytest.mark.parametrize(
    ("outcomes", "want"),
    [
        (["pass", "pass"], Verdict.SAFE),
        (["pass", "skip"], Verdict.SAFE),
        (["pass", ("error", True)], Verdict.KNOWN_ISSUES),
        ([("error", True), "skip"], Verdict.KNOWN_INCOMPATIBLE),
        (["pass", ("error", True), "error"], Verdict.REGRESSION),
        (["pass", "error", ("mismatch", True)], Verdict.CORRUPTS),
        (["skip"], Verdict.NOT_APPLICABLE),
    ],
)
def test_verdict(outcomes, want):
    c = Counts()
    for o in outcomes:
        outcome, expected = o if isinstance(o, tuple) else (o, False)
        c.add(cell(outcome, expected))
    assert verdict(c) == want


def test_format_view_of_the_miniature(model):
    view = {k: verdict(c).value for k, c in format_view(model.cells).items()}
    assert view[("state_dict", A, B)] == "corrupts"  # tied_lm mismatches
    assert view[("state_dict", AE, B)] == "known issues"
    assert view[("full_model", A, B)] == "known incompatible"
    assert view[("exported", B, A)] == "regression"
    assert view[("torchscript", A, B)] == "n/a"
    assert view[("state_dict", A, A)] == "safe"


def test_top_failures_put_mismatches_first(model):
    top = top_failures(model.cells, model.keys, 3)
    assert [r.outcome.value for _, r in top] == ["mismatch", "crash", "timeout"]
    assert top[0][0] == f"{A}|tied_lm|state_dict|apply=none;map_location=none;mmap=0;weights_only=default"
    assert len(top_failures(model.cells, model.keys, 100)) == 5


def test_baseline_diff():
    def cells(spec):
        out = [CellResult.from_dict(line(A, B, case, "state_dict", outcome)) for case, outcome in spec]
        return out, [c.key for c in out]

    base, base_keys = cells([("a", "pass"), ("b", "error"), ("c", "error"), ("d", "mismatch"), ("e", "skip")])
    now, now_keys = cells([("a", "error"), ("b", "pass"), ("c", "timeout"), ("e", "skip"), ("f", "crash")])
    diff = diff_baseline(now, now_keys, base, base_keys)
    names = lambda keys: sorted(k[1].split("|")[1] for k in keys)  # noqa: E731
    assert names(diff.new) == ["a", "f"]
    assert names(diff.fixed) == ["b"]
    assert names(diff.unchanged) == ["c"]
    assert names(diff.vanished) == ["d"]
    assert diff.baseline_cells == 5
    assert diff.status_of()[(B, now_keys[0])] == "new"


def test_release_grid_folds_pythons_devices_and_golden_sources():
    sources = ["golden-torch-1.8.1-py3.8-cpu", "torch-1.8.1-py3.9-cpu", "torch-1.8.1-py3.8-cuda-emulated"]
    targets = ["torch-2.4.1-py3.11-cpu", "torch-2.4.1-py3.12-cpu"]
    cells = [CellResult.from_dict(line(s, t, "c", "state_dict", "pass")) for s in sources for t in targets]
    cells.append(CellResult.from_dict(line(sources[2], targets[0], "c", "state_dict", "error", expected=True)))
    cells.append(CellResult.from_dict(line(sources[0], targets[1], "c", "full_model", "skip")))
    grid = release_grid(cells)
    assert sorted(grid) == [("full_model", "1.8.1", "2.4.1"), ("state_dict", "1.8.1", "2.4.1")]
    one = grid[("state_dict", "1.8.1", "2.4.1")]
    assert one.to_dict() == {"pass": 6, "skip": 0, "expected": 1, "regression": 0, "mismatch": 0, "total": 7, "worst": "pass"}
    assert verdict(one) == Verdict.KNOWN_ISSUES
    assert verdict(grid[("full_model", "1.8.1", "2.4.1")]) == Verdict.NOT_APPLICABLE


def test_env_release_of_live_golden_and_odd_labels():
    assert env_release("torch-1.13.1-py3.10-cuda-emulated") == "1.13.1"
    assert env_release("golden-torch-1.4.0-py3.8-cpu") == "1.4.0"
    assert env_release("my-laptop") == "my-laptop"  # not an env label: its own release


def test_releases_are_ordered_by_number():
    labels = ["torch-2.15.0-py3.12-cpu", "torch-1.13.1-py3.10-cpu", "weird", "golden-torch-1.8.1-py3.8-cpu",
              "torch-2.4.1-py3.11-cpu", "torch-1.8.1-py3.8-cuda-emulated", "torch-1.4.0-py3.8-cpu"]
    # 1.13.1 after 1.8.1 and 2.15.0 after 2.4.1 (as strings they sort the other way); odd labels last
    assert release_order(labels) == ["1.4.0", "1.8.1", "1.13.1", "2.4.1", "2.15.0", "weird"]


def test_release_grid_of_the_history_run(tmp_path):
    model = build_model([history(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)))
    assert model.reclassified == 0
    assert {k: verdict(c).value for k, c in release_grid(model.cells).items()} == HISTORY_VERDICTS
    assert release_axes(model.cells) == (list(HISTORY_RELEASES), list(HISTORY_RELEASES))
    # every cell lands in exactly one release cell
    assert sum(c.total for c in release_grid(model.cells).values()) == len(model.cells)


def test_release_map_needs_three_releases(model):
    assert not shows_release_map(model.cells)  # the miniature: 2.4.1 and 2.15.0 only
    two = [CellResult.from_dict(line(s, t, "c", "state_dict", "pass")) for s, t in [(A, B), (AE, A), ("golden-torch-2.4.1-py3.8-cpu", B)]]
    assert not shows_release_map(two)
    # a third release, as a source only, is enough
    three = [*two, CellResult.from_dict(line("golden-torch-1.8.1-py3.8-cpu", B, "c", "state_dict", "pass"))]
    assert shows_release_map(three)
    assert release_axes(three) == (["1.8.1", "2.4.1"], ["2.4.1", "2.15.0"])
