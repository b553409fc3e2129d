"""summary.md: short, with the verdict, the matrix, top failures and the baseline line."""

from __future__ import annotations

from report_fixtures import AE, A, B, line, miniature, write_expectations, write_results

from harness.report.aggregate import diff_baseline
from harness.report.markdown import summary_markdown
from harness.report.model import build_model
from harness.runtime.expect import Expectations


def mini(tmp_path):
    return build_model([miniature(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)))


def test_failing_run(tmp_path):
    text = summary_markdown(mini(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "## torch-roundtrip: ❌ 4 regressions, 1 mismatches"
    assert "12 cells in 3 source × 2 target envs: 4 pass · 2 expected · 4 regression · 1 mismatch · 1 skip." in lines
    header = f"| source \\ target | `{A}` | `{B}` |"
    assert header in lines
    # rows in torch-release order; a missing pair is a dash
    rows = [ln for ln in lines if ln.startswith("| `torch-")]
    assert rows == [
        f"| `{A}` | ✅ 1 pass | 🟥 2 pass · 1 expected · 1 mismatch · 1 skip |",
        f"| `{AE}` | — | ✅ 1 pass · 1 expected |",
        f"| `{B}` | ⌛ 0 pass · 2 regression | 💥 0 pass · 2 regression |",
    ]
    assert "### Top failures (5 of 5)" in lines
    failures = [ln for ln in lines if ln.startswith(("| mismatch", "| error", "| crash", "| timeout"))]
    assert failures[0].startswith(f"| mismatch | `{A}` → `{B}` | tied_lm | state_dict |")
    # a pipe in a detail does not break the table
    assert any("RuntimeError: boom \\| with a pipe" in ln for ln in failures)
    assert f"nox -s \"load({B})\" -- --cell '{A}|tied_lm|state_dict|apply=none;map_location=none;mmap=0;weights_only=default'" in lines
    assert "Since the baseline" not in text
    assert len(text) < 4000


def test_clean_run(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "skip")])
    text = summary_markdown(build_model([folder], Expectations([])))
    assert text.startswith("## torch-roundtrip: ✅ no regressions, no mismatches\n")
    assert "Top failures" not in text
    assert f"| `{A}` | ✅ 1 pass · 1 skip |" in text


def test_baseline_line(tmp_path):
    model = mini(tmp_path)
    old = build_model([write_results(tmp_path / "old", [line(A, B, "tied_lm", "state_dict", "pass")])], Expectations([]))
    diff = diff_baseline(model.cells, model.keys, old.cells, old.keys)
    text = summary_markdown(model, baseline=diff)
    assert "### Since the baseline" in text
    assert "5 new failures, 0 fixed, 0 still failing." in text


def test_conflicts_are_mentioned(tmp_path):
    one = write_results(tmp_path / "one", [line(A, B, "a", "state_dict", "pass")])
    two = write_results(tmp_path / "two", [line(A, B, "a", "state_dict", "error")])
    text = summary_markdown(build_model([one, two], Expectations([])))
    assert "1 conflicts and 0 warnings between the inputs: see index.html." in text
