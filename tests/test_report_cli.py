"""``report`` and ``merge`` on the command line: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import run_cli
from report_fixtures import A, B, copy_real, line, miniature, write_expectations, write_results


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "TORCH_ROUNDTRIP_PLAIN": "1", **(env or {})}
    full.pop("TORCH_ROUNDTRIP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=full, timeout=300)


@pytest.fixture
def main(cli):
    """Run harness.cli.main in this process: (exit status, stderr)."""

    def run(*argv: str) -> tuple:
        done = cli(*argv)
        return done.returncode, done.stderr

    return run


def test_clean_run_exits_0_and_writes_everything(main, tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "skip")])
    code, err = main("report", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["index.html", "junit.xml", "results.json", "summary.md"]
    assert err.splitlines()[0] == "report: 2 cells, 1 sources x 1 targets: 1 pass, 0 expected, 0 regressions, 0 mismatches, 1 skips"


def test_regressions_exit_1(main, tmp_path):
    exp = write_expectations(tmp_path)
    code, err = main("report", str(miniature(tmp_path / "R")), "--out", str(tmp_path / "out"), "--expectations", str(exp))
    assert code == 1
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["summary"]["exit_status"] == 1 and data["summary"]["regression"] == 4


def test_an_expected_mismatch_still_exits_1(main, tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('[[expectation]]\nid = "known-drift"\nreason = "documented"\noutcome = "mismatch"\n')
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "mismatch")])
    code, _ = main("report", str(folder), "--out", str(tmp_path / "out"), "--expectations", str(exp))
    assert code == 1
    cells = json.loads((tmp_path / "out" / "results.json").read_text())["cells"]
    assert [c["expectation"] for c in cells if c["outcome"] == "mismatch"] == ["known-drift"]


def test_expected_failures_alone_exit_0(main, tmp_path):
    exp = write_expectations(tmp_path)
    wo = {"code": "weights_only_refused", "summary": "s", "fix": "f"}
    folder = write_results(tmp_path / "R", [line(A, B, "a", "full_model", "error", diagnosis=wo), line(A, B, "a", "state_dict", "pass")])
    code, err = main("report", str(folder), "--out", str(tmp_path / "out"), "--expectations", str(exp))
    assert code == 0, err


def _bad_line(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    path = folder / f"{B}.jsonl"
    path.write_text(path.read_text() + '{"schema": 1}\n' + path.read_text())
    return folder, f"{path}:2: result line lacks source, target, case, format, load, outcome"


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "no-lines", "file", "bad-line", "bad-baseline", "bad-bench", "bad-expectations", "out-is-a-file"],
)
def test_bad_input_is_one_line_and_exit_2(main, tmp_path, case):
    good = str(write_results(tmp_path / "good", [line(A, B, "a", "state_dict", "pass")]))
    out = tmp_path / "out"
    args = [good]
    extra: list = []
    if case == "missing":
        args, want = [str(tmp_path / "nope")], f"RESULTS_DIR '{tmp_path / 'nope'}' does not exist"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args, want = [str(tmp_path / "empty")], f"RESULTS_DIR '{tmp_path / 'empty'}' holds no results"
    elif case == "no-lines":
        (tmp_path / "blank").mkdir()
        (tmp_path / "blank" / f"{B}.jsonl").write_text("")
        args, want = [str(tmp_path / "blank")], f"no result lines in '{tmp_path / 'blank'}': every <target>.jsonl is empty"
    elif case == "file":
        (tmp_path / "f.txt").write_text("x")
        args, want = [str(tmp_path / "f.txt")], f"RESULTS_DIR '{tmp_path / 'f.txt'}' is not a directory"
    elif case == "bad-line":
        folder, want = _bad_line(tmp_path)
        args = [str(folder)]
    elif case == "bad-baseline":
        (tmp_path / "old.json").write_text("{}")
        extra, want = ["--baseline", str(tmp_path / "old.json")], f"{tmp_path / 'old.json'}: not a torch-roundtrip report"
    elif case == "bad-bench":
        (tmp_path / "b.json").write_text('{"x": {"value": "fast"}}')
        extra, want = ["--bench", str(tmp_path / "b.json")], f"{tmp_path / 'b.json'}: figure 'x': value='fast'"
    elif case == "bad-expectations":
        extra, want = ["--expectations", str(tmp_path / "none.toml")], f"expectations file '{tmp_path / 'none.toml'}' does not exist"
    else:
        out.write_text("x")
        want = f"--out '{out}' is a file, not a folder"
    code, err = main("report", *args, "--out", str(out), *extra)
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("torch-roundtrip report: error: " + want), err
    assert "Traceback" not in err
    # nothing half-written
    assert not out.is_dir()


def test_bad_input_through_a_real_process(tmp_path):
    folder, want = _bad_line(tmp_path)
    p = cli("report", str(folder), "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert p.stderr == f"torch-roundtrip report: error: {want}\n"
    assert p.stdout == ""


def test_report_end_to_end_in_a_process(tmp_path):
    p = cli("report", str(copy_real(tmp_path / "R")), "--out", str(tmp_path / "out"))
    # the real sample has 2.15.0 -> 2.4.1 exported regressions
    assert p.returncode == 1, p.stderr
    assert "report: 196 cells, 4 sources x 2 targets" in p.stderr
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("## torch-roundtrip: ❌ 4 regressions, 0 mismatches")


def test_baseline(main, tmp_path):
    exp = str(write_expectations(tmp_path))
    old = write_results(tmp_path / "old", [line(A, B, "a", "state_dict", "error"), line(A, B, "b", "state_dict", "error"), line(A, B, "c", "state_dict", "pass")])
    new = write_results(tmp_path / "new", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "error"), line(A, B, "c", "state_dict", "crash")])
    assert main("report", str(old), "--out", str(tmp_path / "r1"), "--expectations", exp)[0] == 1
    code, err = main("report", str(new), "--out", str(tmp_path / "r2"), "--baseline", str(tmp_path / "r1" / "results.json"), "--expectations", exp)
    assert code == 1
    assert "  since the baseline: 1 new failures, 1 fixed, 1 still failing" in err.splitlines()
    data = json.loads((tmp_path / "r2" / "results.json").read_text())
    case = lambda keys: [k[1].split("|")[1] for k in keys]  # noqa: E731
    assert (case(data["baseline"]["new"]), case(data["baseline"]["fixed"]), case(data["baseline"]["unchanged"])) == (["c"], ["a"], ["b"])
    html = (tmp_path / "r2" / "index.html").read_text()
    assert 'data-baseline="new" class="linkish">1 new failures</button>' in html


def test_bench_in_the_out_folder_is_shown(main, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"figures": {"verify_overhead_ratio": {"value": 1.5, "target": "<= 1.10"}, "cells_per_second": 900}}))
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    assert main("report", str(folder), "--out", str(out))[0] == 0
    html = (out / "index.html").read_text()
    assert '<section id="bench-section">' in html
    assert "<code>verify_overhead_ratio</code></th><td class=\"num\">1.5</td>" in html
    assert "MISSED" in html
    # without a bench file there is no section
    assert main("report", str(folder), "--out", str(tmp_path / "plain"))[0] == 0
    assert '<section id="bench-section">' not in (tmp_path / "plain" / "index.html").read_text()


def test_merge_then_report_equals_report_of_all(main, tmp_path):
    lines = [line(A, B, "a", "state_dict", "pass"), line(A, A, "a", "state_dict", "error"), line(B, B, "b", "full_model", "pass")]
    one = write_results(tmp_path / "m1", [d for d in lines if d["target"] == A])
    two = write_results(tmp_path / "m2", [d for d in lines if d["target"] == B])
    code, err = main("merge", str(one), str(two), "--out", str(tmp_path / "merged"))
    assert code == 0, err
    assert err.startswith("merge: 3 cells of 2 target envs from 2 folders into ")
    assert main("report", str(tmp_path / "merged"), "--out", str(tmp_path / "r1"))[0] == 1
    assert main("report", str(one), str(two), "--out", str(tmp_path / "r2"))[0] == 1
    cells = lambda d: json.loads((tmp_path / d / "results.json").read_text())["cells"]  # noqa: E731
    assert cells("r1") == cells("r2")


def test_merge_reports_conflicts_and_bad_input(main, tmp_path):
    one = write_results(tmp_path / "m1", [line(A, B, "a", "state_dict", "pass")])
    two = write_results(tmp_path / "m2", [line(A, B, "a", "state_dict", "error")])
    code, err = main("merge", str(one), str(two), "--out", str(tmp_path / "merged"))
    assert code == 0
    assert "1 conflicts" in err.splitlines()[0]
    assert err.splitlines()[1].startswith(f"  cell conflict: {B}: {A}|a|state_dict|")
    code, err = main("merge", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert (code, err) == (2, f"torch-roundtrip merge: error: RESULTS_DIR '{tmp_path / 'nope'}' does not exist\n")
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / f"{B}.jsonl").write_text("\n")
    code, err = main("merge", str(tmp_path / "blank"), "--out", str(tmp_path / "x"))
    assert (code, err) == (2, f"torch-roundtrip merge: error: no result lines in '{tmp_path / 'blank'}': every <target>.jsonl is empty\n")
    assert not (tmp_path / "x").exists()


def test_wired_into_the_harness_cli():
    p = run_cli("report", "--help")
    assert p.returncode == 0, p.stderr
    assert "--baseline" in p.stdout
    p = run_cli("merge", "--help")
    assert p.returncode == 0, p.stderr


def test_envs_restricts_the_report_to_one_matrix(main, tmp_path):
    other = "torch-2.0.1-py3.9-cpu"
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(other, B, "a", "state_dict", "error")])
    code, _ = main("report", str(folder), "--out", str(tmp_path / "all"))
    assert code == 1  # the old env's error counts when everything is reported
    code, err = main("report", str(folder), "--out", str(tmp_path / "mine"), "--envs", f"{A},{B}")
    assert code == 0, err
    assert other not in (tmp_path / "mine" / "summary.md").read_text()


def test_a_bench_file_of_another_schema_is_one_line_and_exit_2(main, tmp_path):
    folder = miniature(tmp_path / "R")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"schema": 99, "figures": {"cells_per_second": 800}}))
    code, err = main("report", str(folder), "--out", str(tmp_path / "out"), "--bench", str(bench))
    assert code == 2 and "bench schema" in err and len(err.strip().splitlines()) == 1, err
