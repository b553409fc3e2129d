"""generate_specs and ``cases --generated``: the same seed gives the same
corpus, byte for byte, in every process; another seed gives another."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from hypothesis.errors import InvalidArgument

from harness.corpus import write_corpus
from harness.runtime.cases import curated
from harness.strategies import generate_specs


def _texts(specs: list) -> list:
    return [s.to_json() for s in specs]


def test_same_seed_same_specs_other_seed_other_specs():
    first = generate_specs(25, 7)
    assert _texts(first) == _texts(generate_specs(25, 7))
    other = generate_specs(25, 8)
    assert len({s.to_json() for s in first} & {s.to_json() for s in other}) < 5, "seeds 7 and 8 drew nearly the same corpus"
    assert {json.dumps(s.data["model"]) for s in first} != {json.dumps(s.data["model"]) for s in other}


def test_a_longer_corpus_is_drawn_independently_of_a_shorter_one():
    # Not a promise of prefixes (Hypothesis paces its draws by max_examples),
    # but each call must stand alone: no state leaks from one call to the next.
    generate_specs(5, 3)
    assert _texts(generate_specs(12, 3)) == _texts(generate_specs(12, 3))


def test_generated_specs_are_named_labelled_and_distinct():
    specs = generate_specs(40, 11)
    assert [s.name for s in specs] == [f"gen-11-{i}" for i in range(40)]
    assert all(s.origin == "generated" and "generated" in s.tags for s in specs)
    models = [json.dumps(s.data["model"], sort_keys=True) for s in specs]
    assert len(set(models)) == len(models), "two generated specs share a model"
    trivial = [s.name for s in specs if len(s.leaves()) == 1 and not any(
        s.data.get(k) for k in ("tensors", "ties", "plant", "layout", "parametrize", "train", "state_dict_prefix"))]
    assert not trivial, f"bare single-layer specs in the corpus: {trivial}"


def test_bad_counts_and_seeds_are_refused():
    assert generate_specs(0, 1) == []
    with pytest.raises(InvalidArgument, match="n=-1 must be an integer >= 0"):
        generate_specs(-1, 1)
    with pytest.raises(InvalidArgument, match="seed='7' must be an integer"):
        generate_specs(3, "7")


def test_write_corpus_is_byte_identical_for_one_seed(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_corpus(a, generated=10, seed=7)
    write_corpus(b, generated=10, seed=7)
    write_corpus(c, generated=10, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    data = json.loads(a.read_text())
    assert data["generated"] == {"count": 10, "seed": 7}
    assert len(data["cases"]) == len(curated()) + 10


@pytest.mark.slow
def test_cases_cli_is_deterministic_across_processes(tmp_path):
    # Separate interpreters with different hash seeds: nothing in the draw
    # may depend on set or dict iteration order, or on process state.
    outs = []
    for i, hash_seed in enumerate(("0", "12345")):
        out = tmp_path / f"cases{i}.json"
        proc = run_cli("cases", "--generated", "15", "--seed", "7", "--out", str(out), env={"PYTHONHASHSEED": hash_seed})
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_the_corpus_ignores_constants_in_the_callers_own_modules(tmp_path, monkeypatch):
    # Hypothesis mixes literals from "local" (non-site-packages) modules into
    # its draws; importing one must not change a seeded corpus, or the corpus
    # would depend on harness's source and on how it is installed.
    before = _texts(generate_specs(20, 5))
    (tmp_path / "roundtrip_local_constants.py").write_text(
        "SIZES = [" + ", ".join(str(v) for v in (*range(9), 255, 4096, 31337, 65535, 12345)) + "]\n"
        "NAMES = ['relu', 'seq0', 'weight', 'float16']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import roundtrip_local_constants  # noqa: F401 - imported for its constants

    assert _texts(generate_specs(20, 5)) == before
