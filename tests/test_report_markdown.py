"""summary.md: short, with the verdict, the matrix, top failures and the baseline line."""

from __future__ import annotations

from report_fixtures import AE, A, B, history, line, miniature, write_expectations, write_results

from harness.report.aggregate import diff_baseline
from harness.report.markdown import release_map_markdown, summary_markdown
from harness.report.model import build_model
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult


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


LEGEND = ("Rows: the torch release that saved; columns: the one that loaded. `✓` safe, `~` known issues, `✗` known incompatible, "
          "`!` regression, `≠` corrupts, `·` n/a (all skipped), — not run.")


def history_model(tmp_path):
    return build_model([history(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)))


def table_after(lines: list, title: str) -> list:
    """The rows of the table under the bold `title` line."""
    start = lines.index(title) + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_release_map(tmp_path):
    model = history_model(tmp_path)
    text = summary_markdown(model)
    lines = text.splitlines()
    assert "### Release map (which format written by which torch release loads in which)" in lines
    assert LEGEND in lines
    # releases in numeric order; one symbol per verdict; the envs of a release folded into one cell
    assert table_after(lines, "**state_dict**") == [
        "| saved \\ loaded | 1.4.0 | 1.8.1 | 1.13.1 | 2.4.1 | 2.15.0 |",
        "|---|:-:|:-:|:-:|:-:|:-:|",
        "| 1.4.0 | ✓ | ✓ | ✓ | ✓ | ✓ |",
        "| 1.8.1 | ~ | ~ | ~ | ~ | ~ |",
        "| 1.13.1 | ✓ | ≠ | ✓ | ✓ | ✓ |",
        "| 2.4.1 | ~ | ~ | ~ | ~ | ~ |",
        "| 2.15.0 | ✓ | ✓ | ✓ | ✓ | ✓ |",
    ]
    assert table_after(lines, "**full_model**")[-1] == "| 2.15.0 | ! | ✓ | ✓ | ✓ | ✗ |"
    assert table_after(lines, "**torchscript**")[2] == "| 1.4.0 | · | · | · | · | · |"
    # formats in report order, and the map sits between the env matrix and the top failures
    assert [ln for ln in lines if ln.startswith("**")] == ["**state_dict**", "**full_model**", "**torchscript**"]
    assert text.index("### Matrix") < text.index("### Release map") < text.index("### Top failures")
    # the same map stands alone, for a README
    alone = release_map_markdown(model.cells)
    assert alone.startswith(LEGEND + "\n")
    assert alone in text


def test_release_map_marks_pairs_not_run():
    rows = [
        line("torch-1.8.1-py3.8-cpu", "torch-2.4.1-py3.11-cpu", "c", "state_dict", "pass"),
        line("torch-2.15.0-py3.12-cpu", "torch-1.13.1-py3.10-cpu", "c", "state_dict", "pass"),
    ]
    # only cells are needed: what a README generator has
    text = release_map_markdown([CellResult.from_dict(r) for r in rows])
    assert text.splitlines()[4:] == [
        "| saved \\ loaded | 1.13.1 | 2.4.1 |",
        "|---|:-:|:-:|",
        "| 1.8.1 | — | ✓ |",
        "| 2.15.0 | ✓ | — |",
    ]
    assert release_map_markdown([]) == ""


def test_no_release_map_with_two_releases(tmp_path):
    assert "Release map" not in summary_markdown(mini(tmp_path))  # 2.4.1 and 2.15.0 only
    folder = write_results(tmp_path / "two", [line(A, B, "a", "state_dict", "pass"), line("golden-torch-2.4.1-py3.8-cpu", A, "a", "state_dict", "pass")])
    assert "Release map" not in summary_markdown(build_model([folder], Expectations([])))
    # a third release, even as a source only, brings the map
    write_results(tmp_path / "three", [line("golden-torch-1.8.1-py3.8-cpu", A, "a", "state_dict", "pass")])
    assert "### Release map" in summary_markdown(build_model([folder, tmp_path / "three"], Expectations([])))
