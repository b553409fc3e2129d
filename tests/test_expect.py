"""Expectations match documented incompatibilities, and nothing else."""

from __future__ import annotations

import pytest

from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult, Outcome


def cell(**kw):
    base = dict(source="torch-2.4.1-py3.11-cpu", target="torch-2.15.0-py3.11-cpu", case="simple_net",
                format="full_model", load={"map_location": "cpu", "weights_only": "default", "mmap": False, "apply": "none"},
                outcome=Outcome.ERROR, diagnosis={"code": "weights_only_refused"})
    base.update(kw)
    return CellResult(**base)


@pytest.fixture(scope="module")
def shipped():
    return Expectations.load()


def test_weights_only_flip_is_expected_only_from_2_6(shipped):
    assert shipped.apply(cell()).expected
    assert shipped.apply(cell()).expectation == "weights-only-default-refuses-pickled-module"
    old_target = shipped.apply(cell(target="torch-2.5.1-py3.11-cpu"))
    assert not old_target.expected and old_target.regression
    other_format = shipped.apply(cell(format="state_dict"))
    assert not other_format.expected


def test_passes_and_mismatches_are_never_expected(shipped):
    assert not shipped.apply(cell(outcome=Outcome.PASS)).expected
    assert not shipped.apply(cell(outcome=Outcome.MISMATCH)).expected
    assert not shipped.apply(cell(outcome=Outcome.SKIP)).regression


def test_diagnosis_must_match(shipped):
    assert not shipped.apply(cell(diagnosis={"code": "corrupt_file"})).expected
    assert not shipped.apply(cell(diagnosis=None)).expected


def test_emulated_cuda_needs_map_location(shipped):
    r = cell(source="torch-2.4.1-py3.11-cuda-emulated", format="state_dict",
             load={"map_location": "none", "weights_only": "true", "mmap": False, "apply": "none"},
             diagnosis={"code": "cuda_storage_on_cpu_host"})
    assert shipped.apply(r).expected
    assert not shipped.apply(r.with_(load={**r.load, "map_location": "cpu"})).expected
    assert not shipped.apply(r.with_(target="torch-2.15.0-py3.11-cuda")).expected


@pytest.mark.parametrize(("text", "words"), [
    ('[[expectation]]\nid = "x"\n', "needs 'reason'"),
    ('[[expectation]]\nid = "x"\nreason = "r"\nformats = "state_dict"\n', "unknown key 'formats'"),
    ('[[expectation]]\nid = "x"\nreason = "r"\ntarget_torch = ">>2"\n', "target_torch"),
    ('[[expectation]\n', "not valid TOML"),
])
def test_bad_expectation_files(tmp_path, text, words):
    p = tmp_path / "e.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=words):
        Expectations.load(p)


def test_every_shipped_expectation_has_reason_and_link(shipped):
    assert len(shipped.items) >= 6
    for e in shipped.items:
        assert e.reason and e.link.startswith("https://"), e.id


def test_direction_rule(shipped):
    newer_to_older = cell(source="torch-2.15.0-py3.11-cpu", target="torch-2.8.0-py3.11-cpu", format="exported", load={},
                          diagnosis={"code": "export_archive_from_newer_torch"})
    assert shipped.apply(newer_to_older).expectation == "export-archive-not-forward-compatible"
    older_to_newer = newer_to_older.with_(source="torch-2.8.0-py3.11-cpu", target="torch-2.15.0-py3.11-cpu")
    assert not shipped.apply(older_to_newer).expected


def test_bad_direction_is_named(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text('[[expectation]]\nid = "x"\nreason = "r"\ndirection = "sideways"\n')
    with pytest.raises(InputError, match="direction 'sideways'"):
        Expectations.load(p)
