"""The report and shrinks: the shrink command of each failing cell, and shrink records beside their cells.

Shrink records are written here by hand (`ShrinkRecord.write`), the way
`python -m harness shrink` leaves them, beside the miniature run of
report_fixtures: no torch, no shrink runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

import pytest
from report_fixtures import AE, SD, A, B, line, miniature, write_expectations, write_results

from harness.report.build import build_report
from harness.report.junit import junit_xml
from harness.report.model import build_model
from harness.report.repro import shrink_commands
from harness.report.shrunk import STATUS_WORDS, read_shrunk, shrinkable
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.load_options import LoadOptions
from harness.shrink.record import STATUSES, ShrinkRecord, record_dir

OPTS = LoadOptions.from_dict(SD).id
#: The miniature's mismatch (A -> B), its regressions, and two cells that must not get a shrink command.
MISMATCH = (B, f"{A}|tied_lm|state_dict|{OPTS}")
REGRESSIONS = [(B, f"{B}|simple_net|exported|default"), (B, f"{B}|gen_7|state_dict|{OPTS}"),
               (A, f"{B}|simple_net|exported|default"), (A, f"{B}|simple_net|state_dict|{OPTS}")]
EXPECTED = (B, f"{AE}|simple_net|state_dict|{OPTS}")
PASSING = (B, f"{A}|simple_net|state_dict|{OPTS}")
UNKNOWN = ("torch-9.9.9-py3.11-cpu", f"{A}|gone_case|state_dict|{OPTS}")
FILES = {"spec": "spec.json", "save": "save.py", "load": "load.py", "readme": "README.md"}


def record(target: str, key: str, **over: Any) -> ShrinkRecord:
    source, case, fmt, _ = key.split("|")
    data: dict[str, Any] = {
        "target": target, "key": key, "source": source, "case": case, "format": fmt, "status": "done",
        # as harness.shrink.signature.Signature.to_dict writes it
        "signature": {"outcome": "mismatch", "aspect": "bits", "tensor_kind": "buffer float16", "text": "mismatch: bits of a buffer float16"},
        "steps": 120, "accepted": 9, "seconds": 3.0, "steps_per_second": 40.0,
        "initial": {"modules": 4, "tensors": 9, "elements": 4096, "extras": 2, "load_options": 4},
        "final": {"modules": 1, "tensors": 2, "elements": 8, "extras": 0, "load_options": 1},
        "load": {**SD, "map_location": "cpu"}, "shrunk_key": f"{source}|{case}_shrunk|{fmt}|{LoadOptions.from_dict({**SD, 'map_location': 'cpu'}).id}",
        "observed": {"outcome": "mismatch", "detail": "buf[3]: bits 0x3c00 -> 0x3c01", "diagnosis": None},
        "command": f"python -m harness shrink --cell '{key}'", "repro": dict(FILES),
    }
    data.update(over)
    return ShrinkRecord.from_dict({**data, "schema": 1})


def write_record(root: Path, rec: ShrinkRecord, *, folder: str | None = None, files: bool = True) -> Path:
    """A shrink's folder as `shrink` leaves it: the record and (with `files`) the reproduction's files."""
    where = root / folder if folder else record_dir(root, rec.target, rec.key)
    where.mkdir(parents=True, exist_ok=True)
    rec.write(where)
    if files:
        for name in rec.repro.values():
            if isinstance(name, str) and "problem" not in rec.repro:
                (where / name).write_text("# reproduction\n")
    return where


@pytest.fixture
def run(tmp_path):
    """The miniature's result folder and its expectations."""
    return miniature(tmp_path / "R"), write_expectations(tmp_path)


def report(tmp_path: Path, run: tuple, **kwargs: Any):
    results, exp = run
    return build_report([results], tmp_path / "out", expectations=exp, **kwargs)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


def test_records_show_beside_their_cells(tmp_path, run):
    out = tmp_path / "out"
    write_record(out / "shrunk", record(*MISMATCH))
    write_record(out / "shrunk", record(*UNKNOWN, status="time_limit"))
    result = report(tmp_path, run)  # OUT/shrunk is read without --shrunk
    assert result.shrunk is not None and len(result.shrunk.entries) == 2
    assert f"  shrunk: 2 records from {out / 'shrunk'} (1 not among these cells)" in result.lines()
    index = result.model.keys.index(MISMATCH[1])
    assert result.model.cells[index].target == MISMATCH[0]

    # results.json: an additive list, schema unchanged
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == 1
    known, unknown = sorted(data["shrunk"], key=lambda d: d["in_report"], reverse=True)
    folder = record_dir(Path("shrunk"), *MISMATCH).as_posix()
    assert (known["target"], known["key"], known["in_report"], known["status"]) == (*MISMATCH, True, "done")
    assert known["files"] == {role: f"{folder}/{name}" for role, name in FILES.items()}
    assert known["folder"] == folder and known["missing"] == []
    assert (known["steps"], known["steps_per_second"], known["final"]["tensors"]) == (120, 40.0, 2)
    assert known["shrunk_key"].endswith("map_location=cpu;mmap=0;weights_only=default")
    assert known["observed"]["detail"] == "buf[3]: bits 0x3c00 -> 0x3c01"
    assert (unknown["key"], unknown["in_report"], unknown["status"]) == (UNKNOWN[1], False, "time_limit")

    # index.html: the section, and the map from the cell to its record that the page's JavaScript reads
    html = (out / "index.html").read_text()
    assert '<section id="shrunk-section">' in html
    d = page_data(html)
    j = next(j for j, e in enumerate(d["shrunk"]) if e["rows"][0][1] == f"{MISMATCH[1]} in {MISMATCH[0]}")
    assert d["shrunkCells"] == {str(index): [j]}
    rows = dict(d["shrunk"][j]["rows"])
    assert rows["status"] == "done: no smaller candidate fails the same way"
    assert rows["fails as"] == "mismatch: bits of a buffer float16"
    assert rows["steps"] == "120 steps (9 accepted) in 3.0 s: 40.0 steps/s"
    assert rows["size"] == "modules 4 → 1, tensors 9 → 2, elements 4096 → 8, extras 2 → 0, load_options 4 → 1"
    assert rows["load options"] == "apply=none;map_location=cpu;mmap=0;weights_only=default"
    assert rows["observed"] == "mismatch: buf[3]: bits 0x3c00 -> 0x3c01"
    assert f'data-cell="{index}"' in html and "show the cell</a>" in html
    block = html[html.index(f'id="shrunk-{1 - j}"'):]
    assert "this cell is not among this report&#39;s cells" in block.split("</div>")[0]

    # summary.md: one line per record
    summary = (out / "summary.md").read_text()
    assert "### Shrunk failures (2)" in summary
    assert (f"- `{MISMATCH[0]}` `{MISMATCH[1]}`: done, modules 4 → 1, tensors 9 → 2, elements 4096 → 8, extras 2 → 0, "
            f"load_options 4 → 1; `{folder}/`: spec.json, save.py, load.py, README.md") in summary.splitlines()
    assert "(not among this report's cells): time_limit" in summary


def test_shrink_commands_for_regressions_and_mismatches_only(tmp_path, run):
    model = build_model([run[0]], Expectations.load(run[1]))
    cells = {(r.target, k): r for k, r in zip(model.keys, model.cells)}
    assert all(shrinkable(cells[c]) for c in [MISMATCH, *REGRESSIONS])
    assert not shrinkable(cells[EXPECTED]) and not shrinkable(cells[PASSING])
    # summary.md: beside each listed failure, and one already shrunk says so
    write_record(tmp_path / "out" / "shrunk", record(*REGRESSIONS[1], status="interrupted"))
    summary = (tmp_path / "out" / "summary.md")
    report(tmp_path, run)
    text = summary.read_text()
    for target, key in [MISMATCH, *REGRESSIONS]:
        nox = shrink_commands(target, key)[0]
        assert (nox + "  # shrunk: interrupted" if (target, key) == REGRESSIONS[1] else nox) in text.splitlines()
    for target, key in (EXPECTED, PASSING):
        assert shrink_commands(target, key)[0] not in text
    assert len(text) < 5000  # a CI job summary
    # junit.xml: under each failed test, and nowhere else
    shown = [f.text.splitlines()[-1] for f in ElementTree.fromstring(junit_xml(model)).iter("failure")]
    assert sorted(shown) == sorted(f"shrink: {shrink_commands(target, key)[0]}" for target, key in [MISMATCH, *REGRESSIONS])
    assert junit_xml(model).count("shrink: ") == 5


def test_shrink_commands_quote_the_cell():
    nox, python = shrink_commands(B, f"{A}|it's|state_dict|{OPTS}")
    assert nox == f"nox -s shrink -- '{A}|it'\"'\"'s|state_dict|{OPTS}' --target '{B}'"
    assert f"--target '{B}' --cell '{A}|it'\"'\"'s|state_dict|{OPTS}'" in python


def test_links_are_relative_and_point_at_the_files(tmp_path, run):
    # --shrunk elsewhere than OUT/shrunk: links climb out of the report's folder
    root = tmp_path / "elsewhere"
    write_record(root, record(*MISMATCH), folder="my shrink #1")  # shrink --out names the folder
    out = tmp_path / "out"
    result = report(tmp_path, run, shrunk=root)
    entry = result.shrunk.entries[0]
    assert [f.path for f in entry.files] == [f"../elsewhere/my shrink #1/{n}" for n in FILES.values()]
    html = (out / "index.html").read_text()
    section = html[html.index('<section id="shrunk-section">'):html.index('<section id="cells-section">')]
    hrefs = re.findall(r'<a href="([^"]*)">', section)
    assert hrefs == [f.href for f in entry.files] and all("%20" in h and "%23" in h for h in hrefs)
    for href in hrefs:
        assert not href.startswith(("/", "http", "file:")) and (out / unquote(href)).is_file()
    for d in page_data(html)["shrunk"]:
        for _, href, exists in d["files"]:
            assert exists and (out / unquote(href)).is_file()
    data = json.loads((out / "results.json").read_text())
    assert all((out / p).is_file() for p in data["shrunk"][0]["files"].values())


def test_missing_files_problem_and_opaque(tmp_path, run):
    root = tmp_path / "out" / "shrunk"
    gone = write_record(root, record(*REGRESSIONS[0]))
    (gone / "load.py").unlink()
    write_record(root, record(*REGRESSIONS[1], repro={"problem": "the save worker crashed"}))
    write_record(root, record(*REGRESSIONS[2], status="opaque", opaque="a user case: mypkg:make is a factory"))
    result = report(tmp_path, run)
    html = (tmp_path / "out" / "index.html").read_text()
    by_key = {(e.record.target, e.record.key): e for e in result.shrunk.entries}
    missing = by_key[REGRESSIONS[0]]
    assert [(f.name, f.exists) for f in missing.files] == [("spec.json", True), ("save.py", True), ("load.py", False), ("README.md", True)]
    assert '<span class="missing">load.py (missing)</span>' in html
    assert f'href="{missing.files[2].href}"' not in html
    problem = by_key[REGRESSIONS[1]]
    assert problem.files == [] and ("no reproduction", "the save worker crashed") in problem.rows()
    assert "<dt>no reproduction</dt><dd>the save worker crashed</dd>" in html
    opaque = dict(by_key[REGRESSIONS[2]].rows())
    assert opaque["opaque"] == "a user case: mypkg:make is a factory"
    assert opaque["status"].startswith("opaque: a user case, whose factory cannot be taken apart")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {(d["target"], d["key"]): d["missing"] for d in data["shrunk"]}[REGRESSIONS[0]] == ["load"]
    # a shrink whose cell did not fail again has no observed result, only why
    write_record(root, record(*REGRESSIONS[3], status="not_reproduced", observed={"problem": "the save worker died"},
                              repro={"problem": "nothing to reproduce"}))
    entry = next(e for e in report(tmp_path, run).shrunk.entries if e.record.status == "not_reproduced")
    rows = dict(entry.rows())
    assert rows["observed"] == "no result: the save worker died" and rows["no reproduction"] == "nothing to reproduce"
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "load.py (missing)" in summary and "; no plain-torch reproduction: the save worker crashed" in summary


def test_hostile_strings_are_escaped(tmp_path, run):
    evil = '</script><script>window.pwned = 1</script><img src=x onerror="alert(1)">'
    rec = record(*MISMATCH, observed={"outcome": "mismatch", "detail": evil}, signature={"text": evil}, opaque=evil,
                 command=evil, repro={**FILES, "load": 'x"><b onclick=alert(2)>.py'})
    write_record(tmp_path / "out" / "shrunk", rec)
    result = report(tmp_path, run)
    html = (tmp_path / "out" / "index.html").read_text()
    assert html.count("<script") == 2  # the data block and the page's own script
    assert "<img" not in html and "pwned = 1</script>" not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    # the file name is a quoted href and an escaped text
    f = result.shrunk.entries[0].files[2]
    assert f'<a href="{f.href}">x&#34;&gt;&lt;b onclick=alert(2)&gt;.py</a>' in html
    assert '"' not in f.href and "<" not in f.href
    # the page's data holds the strings as they are (the JavaScript escapes what it shows)
    rows = dict(page_data(html)["shrunk"][0]["rows"])
    assert rows["fails as"] == evil and rows["observed"] == f"mismatch: {evil}"


def _damage(rec_dir: Path, **changes: Any) -> None:
    path = rec_dir / "shrink.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema": 7}, "schema=7 but this harness reads shrink schema 1"),
        ({"status": "finished"}, "status='finished' is not one of running, done"),
        ({"steps": "many"}, "steps=many is not a count"),
        ({"accepted": -1}, "accepted=-1 is not a count"),
        ({"steps_per_second": None}, "steps_per_second=null is not a number"),
        ({"initial": [1, 2]}, "initial=[1, 2] is not an object"),
        ({"key": 5}, "key=5 is not a string"),
        ({"opaque": 3}, "opaque=3 is not a string"),
        ({"repro": {"spec": "../../etc/passwd"}}, "repro.spec=../../etc/passwd is not a file name inside the shrink's folder"),
        ({"repro": {"spec": "/etc/passwd"}}, "repro.spec=/etc/passwd is not a file name inside"),
        ({"repro": {"spec": 3}}, "repro.spec=3 is not a file name inside"),
        ({"repro": {"spec": ""}}, "repro.spec= is not a file name inside"),
        ({"repro": {"save": "..\\..\\save.py"}}, "repro.save=..\\..\\save.py is not a file name inside"),
    ],
)
def test_a_bad_record_is_an_input_error(tmp_path, run, changes, message):
    where = write_record(tmp_path / "S", record(*MISMATCH))
    _damage(where, **changes)
    model = build_model([run[0]], Expectations.load(run[1]))
    with pytest.raises(InputError) as e:
        read_shrunk(tmp_path / "S", tmp_path / "out", model)
    assert str(e.value).startswith(f"{where / 'shrink.json'}: ") and message in str(e.value), str(e.value)
    # undamaged, it reads
    where2 = write_record(tmp_path / "T", record(*MISMATCH))
    assert len(read_shrunk(where2.parent, tmp_path / "out", model).entries) == 1


@pytest.mark.parametrize("case", ["schema", "not-json", "missing-dir", "a-file"])
def test_bad_shrunk_input_is_one_line_and_exit_2(cli, tmp_path, case):
    results = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "error")])
    out = tmp_path / "out"
    root = tmp_path / "S"
    if case == "schema":
        where = write_record(root, record(B, f"{A}|a|state_dict|{OPTS}"))
        _damage(where, schema=2)
        want = f"{where / 'shrink.json'}: schema=2 but this harness reads shrink schema 1"
    elif case == "not-json":
        (root / "x").mkdir(parents=True)
        (root / "x" / "shrink.json").write_text("{")
        want = f"{root / 'x' / 'shrink.json'}: unreadable shrink record (JSONDecodeError)"
    elif case == "missing-dir":
        want = f"--shrunk '{root}' does not exist"
    else:
        root.write_text("x")
        want = f"--shrunk '{root}' is not a folder"
    done = cli("report", str(results), "--out", str(out), "--shrunk", str(root))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("torch-roundtrip report: error: " + want), done.stderr
    assert not out.exists()  # nothing half-written


def test_no_records_no_section(tmp_path, run):
    result = report(tmp_path, run)
    assert result.shrunk is None
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'id="shrunk-section"' not in html
    assert page_data(html)["shrunk"] == [] and page_data(html)["shrunkCells"] == {}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["shrunk"] == []
    assert "### Shrunk failures" not in (tmp_path / "out" / "summary.md").read_text()
    # an empty --shrunk folder: no records, nothing shown, and the CLI says so
    (tmp_path / "S").mkdir()
    result = report(tmp_path, run, shrunk=tmp_path / "S")
    assert result.shrunk is not None and result.shrunk.entries == []
    assert f"  shrunk: 0 records from {tmp_path / 'S'}" in result.lines()
    assert 'id="shrunk-section"' not in (tmp_path / "out" / "index.html").read_text()


def test_a_cell_shrunk_twice_shows_both(tmp_path, run):
    root = tmp_path / "out" / "shrunk"
    write_record(root, record(*MISMATCH, status="interrupted", steps=10), folder="first")
    write_record(root, record(*MISMATCH), folder="second")
    result = report(tmp_path, run)
    index = result.model.keys.index(MISMATCH[1])
    assert result.shrunk.by_cell() == {index: [0, 1]}
    assert [e.folder for e in result.shrunk.entries] == ["shrunk/first", "shrunk/second"]


def test_a_signature_without_its_text_is_worded_from_its_fields(tmp_path, run):
    write_record(tmp_path / "S", record(*MISMATCH, signature={"outcome": "error", "code": "weights_only_refused", "aspect": None}))
    entry = read_shrunk(tmp_path / "S", tmp_path / "out", build_model([run[0]], Expectations.load(run[1]))).entries[0]
    assert entry.signature_text() == "code weights_only_refused, outcome error"


def test_every_status_has_its_words():
    # A status harness.shrink adds must be worded here, or the report could not show it.
    assert set(STATUS_WORDS) == set(STATUSES)
