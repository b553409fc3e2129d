"""Reading result folders, validating lines, merging folders (later wins, conflicts listed)."""

from __future__ import annotations

import json

import pytest
from report_fixtures import (
    AE,
    A,
    B,
    fingerprint,
    line,
    miniature,
    miniature_lines,
    spec,
    write_results,
)

from harness.report.merge import merge_dirs, write_merged
from harness.report.resultsdir import read_results_dir
from harness.runtime.errors import InputError


def test_reads_every_target_with_its_sidecar(tmp_path):
    rd = read_results_dir(miniature(tmp_path / "R"))
    assert sorted(rd.targets) == sorted([A, B])
    assert len(rd.targets[B].lines) == 9 and len(rd.targets[A].lines) == 3
    assert rd.targets[B].sidecar.target["label"] == B
    assert [n for n, _ in rd.targets[A].lines] == [1, 2, 3]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: "{not json", ":2: not a JSON result line"),
        (lambda d: json.dumps([1, 2]), ":2: a result line is a JSON object, not list"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "case"}), ":2: result line lacks case"),
        (lambda d: json.dumps({**d, "outcome": "exploded"}), ":2: outcome='exploded' is not one of pass, skip, error, timeout, crash, mismatch"),
        (lambda d: json.dumps({**d, "schema": 9}), ":2: schema=9 but this harness reads result schema 1"),
        (lambda d: json.dumps({**d, "load": "cpu"}), ":2: load='cpu' is not an object of load options"),
        (lambda d: json.dumps({**d, "seconds": True}), ":2: seconds=True is not a number"),
        (lambda d: json.dumps({**d, "notes": "x"}), ":2: notes='x' is not a list"),
        (lambda d: json.dumps({**d, "target": A}), f":2: target='{A}' but this file holds the results of '{B}'"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, mangle, message):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "pass")])
    path = folder / f"{B}.jsonl"
    rows = path.read_text().splitlines()
    rows[1] = mangle(json.loads(rows[1]))
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as e:
        read_results_dir(folder)
    text = str(e.value)
    assert text.startswith(f"{path}:2: ")
    assert message in text
    assert "\n" not in text


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    path = folder / f"{B}.jsonl"
    path.write_text(path.read_text() + '{"schema": 1, "sour')
    merged = merge_dirs([folder])
    assert merged.total == 1
    assert merged.warnings == [f"{path}: the last line is incomplete (a load was killed while writing it) and was ignored"]


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "error")])
    path = folder / f"{B}.jsonl"
    path.write_text(path.read_text().rstrip("\n"))
    merged = merge_dirs([folder])
    assert merged.total == 2 and merged.warnings == []


def test_a_bad_line_in_the_middle_is_an_error_even_unterminated_ones_later(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    path = folder / f"{B}.jsonl"
    path.write_text('{"torn\n' + path.read_text())
    with pytest.raises(InputError, match=r":1: not a JSON result line"):
        read_results_dir(folder)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "RESULTS_DIR '{p}' does not exist"),
        (lambda p: p.write_text("x"), "RESULTS_DIR '{p}' is not a directory"),
        (lambda p: p.mkdir(), "RESULTS_DIR '{p}' holds no results (no <target>.jsonl files"),
    ],
)
def test_bad_folders(tmp_path, setup, message):
    p = tmp_path / "R"
    setup(p)
    with pytest.raises(InputError) as e:
        read_results_dir(p)
    assert str(e.value).startswith(message.format(p=p))


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "an env sidecar is a JSON object"),
        (json.dumps({"schema": 2, "target": {}, "sources": {}, "cases": {}}), "schema=2 but this harness reads env sidecar schema 1"),
        (json.dumps({"schema": 1, "target": {"label": A}, "sources": {}, "cases": {}}), f"target.label='{A}' but the file is named for '{B}'"),
        (json.dumps({"schema": 1, "target": {"label": B}, "sources": [], "cases": {}}), "'sources' must be an object"),
    ],
)
def test_bad_sidecars(tmp_path, sidecar, message):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    (folder / f"{B}.env.json").write_text(sidecar)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_results_dir(folder)


def test_an_older_sidecar_without_cases_is_read(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")])
    side = folder / f"{B}.env.json"
    data = json.loads(side.read_text())
    del data["cases"]
    side.write_text(json.dumps(data))
    merged = merge_dirs([folder])
    assert merged.total == 1 and merged.cases == {} and merged.conflicts == []
    data["cases"] = []
    side.write_text(json.dumps(data))
    with pytest.raises(InputError, match="'cases' must be an object"):
        read_results_dir(folder)


def test_a_missing_sidecar_is_a_warning(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")], sidecar=False)
    merged = merge_dirs([folder])
    assert merged.total == 1
    assert merged.warnings == [f"{folder / (B + '.env.json')} is missing: the fingerprints of {B} and its sources are unknown"]


def test_later_folder_wins_and_disagreements_are_conflicts(tmp_path):
    one = write_results(tmp_path / "one", [line(A, B, "a", "state_dict", "pass"), line(A, B, "b", "state_dict", "error")])
    two = write_results(tmp_path / "two", [line(A, B, "a", "state_dict", "mismatch"), line(A, B, "b", "state_dict", "error", detail="again")])
    merged = merge_dirs([one, two])
    cells = {k.split("|")[1]: v[0] for k, v in merged.lines[B].items()}
    assert cells["a"]["outcome"] == "mismatch"
    assert cells["b"]["detail"] == "again"
    assert merged.superseded == 1
    assert len(merged.conflicts) == 1
    c = merged.conflicts[0]
    assert (c.kind, c.target) == ("cell", B)
    assert c.line() == (
        f"cell conflict: {B}: {A}|a|state_dict|apply=none;map_location=none;mmap=0;weights_only=default: "
        f"pass at {one / (B + '.jsonl')}:1 vs mismatch at {two / (B + '.jsonl')}:1 (kept the later)"
    )
    # the other order keeps the other line
    assert {k.split("|")[1]: v[0]["outcome"] for k, v in merge_dirs([two, one]).lines[B].items()}["a"] == "pass"


def test_a_later_line_in_one_file_wins(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "error"), line(A, B, "a", "state_dict", "pass")])
    merged = merge_dirs([folder])
    assert merged.total == 1
    assert next(iter(merged.lines[B].values()))[0]["outcome"] == "pass"
    assert [c.kind for c in merged.conflicts] == ["cell"]


def test_env_and_case_conflicts(tmp_path):
    one = write_results(tmp_path / "one", [line(A, B, "a", "state_dict", "pass")])
    two = write_results(
        tmp_path / "two", [line(A, B, "a", "full_model", "pass")],
        envs={A: fingerprint(A, torch_git="different")}, cases={"a": {**spec("a"), "seed": 99}},
    )
    merged = merge_dirs([one, two])
    kinds = sorted((c.kind, c.subject) for c in merged.conflicts)
    assert kinds == [("case", "a"), ("env", f"{A} as source")]
    env = next(c for c in merged.conflicts if c.kind == "env")
    assert "torch_git '0123456789abcdef2.4.1' vs 'different'" in env.later
    assert merged.envs[A]["torch_git"] == "different"
    assert merged.cases["a"]["seed"] == 99


def test_save_and_load_fingerprints_of_one_label_may_differ(tmp_path):
    # CI saves on one runner and loads on another: not a conflict.
    folder = write_results(tmp_path / "R", [line(A, A, "a", "state_dict", "pass")])
    side = folder / f"{A}.env.json"
    data = json.loads(side.read_text())
    data["target"]["platform"] = "Linux-other-runner"
    side.write_text(json.dumps(data))
    merged = merge_dirs([folder])
    assert merged.conflicts == []
    assert merged.envs[A]["platform"] == "Linux-other-runner"  # as loaded
    # two load-time fingerprints of one target are a conflict
    other = write_results(tmp_path / "S", [line(A, A, "b", "state_dict", "pass")])
    assert [c.subject for c in merge_dirs([folder, other]).conflicts] == [f"{A} as target"]


def test_write_merged_is_a_result_folder_again(tmp_path):
    lines = miniature_lines()
    one = write_results(tmp_path / "one", [d for d in lines if d["target"] == A])
    two = write_results(tmp_path / "two", [d for d in lines if d["target"] == B])
    out = tmp_path / "merged"
    written = write_merged(merge_dirs([one, two]), out)
    assert sorted(p.name for p in written) == sorted([f"{A}.jsonl", f"{A}.env.json", f"{B}.jsonl", f"{B}.env.json"])
    again = read_results_dir(out)
    assert sorted(d["case"] + d["format"] + d["source"] for t in again.targets.values() for _, d in t.lines) == sorted(
        d["case"] + d["format"] + d["source"] for d in lines
    )
    side = json.loads((out / f"{B}.env.json").read_text())
    assert side["schema"] == 1 and side["target"]["label"] == B
    assert sorted(side["sources"]) == sorted([A, AE, B])
    assert sorted(side["cases"]) == ["gen_7", "simple_net", "tied_lm"]


def test_merge_refuses_a_folder_with_other_results(tmp_path):
    src = miniature(tmp_path / "R")
    other = write_results(tmp_path / "other", [line(A, "torch-2.6.0-py3.11-cpu", "a", "state_dict", "pass")])
    with pytest.raises(InputError, match="already holds results"):
        write_merged(merge_dirs([src]), other)
    # ... but merging into one of the inputs is how results accumulate
    write_merged(merge_dirs([other, src]), other)
    assert sorted(read_results_dir(other).targets) == sorted([A, B, "torch-2.6.0-py3.11-cpu"])
