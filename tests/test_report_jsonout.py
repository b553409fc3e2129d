"""results.json: what it holds, and that it reads back as the same model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixtures import A, B, line, miniature, write_expectations, write_results

from harness.report.jsonout import REPORT_KIND, read_report, report_dict, write_report_json
from harness.report.merge import merge_dirs
from harness.report.model import build_model, model_from_merged
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult


@pytest.fixture
def model(tmp_path):
    return build_model([miniature(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)), expectations_path="mini.toml")


def test_contents(model):
    d = report_dict(model, generated="2024-01-01T00:00:00Z", exit_status=1)
    assert d["schema"] == 1 and d["kind"] == REPORT_KIND
    assert d["summary"] == {"pass": 4, "skip": 1, "expected": 2, "regression": 4, "mismatch": 1, "total": 12, "worst": "mismatch", "exit_status": 1, "reclassified": 2}
    assert d["targets"] == [A, B]  # by torch release: 2.4.1 before 2.15.0
    assert sorted(d["envs"]) == sorted(["torch-2.4.1-py3.11-cpu", "torch-2.4.1-py3.11-cuda-emulated", "torch-2.15.0-py3.11-cpu"])
    assert d["envs"][A]["label"] == A
    assert sorted(d["cases"]) == ["gen_7", "simple_net", "tied_lm"]
    assert d["expectations"]["path"] == "mini.toml"
    assert set(d["expectations"]["items"]) == {"weights-only-default-refuses-pickled-module", "cuda-storages-need-map-location"}
    assert len(d["cells"]) == 12
    json.dumps(d)  # plain JSON all the way down


def test_round_trip(model, tmp_path):
    path = tmp_path / "out" / "results.json"
    write_report_json(path, model, generated="2024-01-01T00:00:00Z", exit_status=1)
    back = read_report(path)
    assert [c.to_dict() for c in back.cells] == [c.to_dict() for c in model.cells]
    assert back.keys == model.keys
    assert back.envs == model.envs and back.cases == model.cases
    assert back.expectations == model.expectations
    assert back.reclassified == model.reclassified
    assert back.conflicts == model.conflicts
    # the folder works as well as the file
    assert read_report(path.parent).keys == model.keys


def test_conflicts_round_trip(tmp_path):
    one = write_results(tmp_path / "one", [line(A, B, "a", "state_dict", "pass")])
    two = write_results(tmp_path / "two", [line(A, B, "a", "state_dict", "error")])
    model = model_from_merged(merge_dirs([one, two]), Expectations([]))
    write_report_json(tmp_path / "r.json", model, generated="x", exit_status=1)
    back = read_report(tmp_path / "r.json")
    assert len(back.conflicts) == 1 and back.conflicts == model.conflicts


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_cells = st.builds(
    line,
    source=st.sampled_from([A, B, "torch-2.6.0-py3.12-cuda"]),
    target=st.sampled_from([A, B]),
    case=_text.filter(bool),
    fmt=st.sampled_from(["state_dict", "full_model", "exported", "a_new_format"]),
    outcome=st.sampled_from(["pass", "skip", "error", "timeout", "crash", "mismatch"]),
    load=st.fixed_dictionaries({}, optional={
        "map_location": st.sampled_from(["none", "cpu", "dict:cuda:0->cpu"]), "mmap": st.booleans(),
        "weights_only": st.sampled_from(["default", "true", "false"]), "apply": st.sampled_from(["none", "strict"]),
    }),
    detail=_text,
    notes=st.lists(_text, max_size=2),
    differences=st.lists(st.dictionaries(st.sampled_from(["tensor", "aspect", "expected", "actual", "index"]), _json), max_size=2),
    forward=st.none() | st.dictionaries(_text, _json, max_size=3),
    seconds=st.floats(0, 1e6, allow_nan=False),
    tags=st.lists(_text, max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_cells, min_size=1, max_size=8))
def test_any_cells_round_trip(lines):
    with tempfile.TemporaryDirectory() as tmp:
        model = model_from_merged(merge_dirs([write_results(Path(tmp) / "R", lines)]), Expectations([]))
        path = Path(tmp) / "results.json"
        write_report_json(path, model, generated="x", exit_status=0)
        back = read_report(path)
    assert [c.to_dict() for c in back.cells] == [c.to_dict() for c in model.cells]
    assert back.keys == model.keys
    assert len(back.cells) == len({(d["target"], d["source"], d["case"], d["format"], json.dumps(d["load"], sort_keys=True)) for d in lines})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--baseline '{p}' does not exist"),
        ("{", "{p}: not valid JSON"),
        ('{"cells": []}', "{p}: not a torch-roundtrip report"),
        (json.dumps({"kind": REPORT_KIND, "schema": 7, "cells": []}), "{p}: report schema=7 but this harness reads schema 1"),
        (json.dumps({"kind": REPORT_KIND, "schema": 1, "cells": {}}), "{p}: 'cells' must be a list"),
        (json.dumps({"kind": REPORT_KIND, "schema": 1, "cells": [{"source": A}]}), "{p}: cells[0]: result line lacks target, case, format, load, outcome"),
    ],
)
def test_bad_reports(tmp_path, content, message):
    p = tmp_path / "results.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(InputError) as e:
        read_report(p)
    assert str(e.value).startswith(message.format(p=p))


def test_a_folder_without_results_json(tmp_path):
    with pytest.raises(InputError, match="is a folder without results.json"):
        read_report(tmp_path)


def test_cells_are_plain_results(model):
    d = report_dict(model, generated="x", exit_status=1)
    for c in d["cells"]:
        assert CellResult.from_dict(c).to_dict() == c
