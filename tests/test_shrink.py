"""The shrink's parts, without envs: candidates, sizes, chains, signatures, finding the cell, the command line.

The whole shrink across two envs with a planted bug is `test_shrink_planted.py`.
"""

from __future__ import annotations

import json
import sys

import pytest

from harness.runtime.errors import InputError
from harness.runtime.spec import Spec
from harness.shrink.candidates import candidates, canonical, normalized, repair_chains, size
from harness.shrink.shrinker import find_cell
from harness.shrink.signature import Signature, tensor_kinds

SPEC = {
    "name": "big", "seed": 3, "batch": 4,
    "model": {"kind": "sequential", "children": [
        {"kind": "linear", "in_features": 8, "out_features": 6},
        {"kind": "activation", "fn": "gelu"},
        {"kind": "linear", "in_features": 6, "out_features": 5, "dtype": "float32"},
        {"kind": "layer_norm", "normalized_shape": 5},
    ]},
    "tensors": [{"name": "scale", "at": "2", "shape": [3, 4], "dtype": "float16"}, {"name": "n", "shape": [2], "dtype": "int64"}],
    "ties": [], "plant": [{"at": "0.weight"}], "layout": [{"at": "2.weight", "kind": "transposed"}],
    "tags": ["x"], "description": "a case",
}
LOAD = {"apply": "strict", "map_location": "cpu", "mmap": True, "weights_only": "true", "source": "bytesio"}


def test_every_candidate_is_a_valid_spec_and_strictly_smaller():
    spec = normalized(SPEC)
    before = size(spec, LOAD)
    found = list(candidates(spec, LOAD))
    assert len(found) > 20
    for c in found:
        Spec.from_dict(c.spec)
        assert size(c.spec, c.load) < before, c.change
    passes = {c.pass_name for c in found}
    assert passes >= {"load option", "extra", "layer", "dimension", "dtype", "value"}


def test_candidates_are_deterministic_and_the_seed_reorders_them():
    spec = normalized(SPEC)
    first = [canonical(c.spec, c.load) for c in candidates(spec, LOAD)]
    assert first == [canonical(c.spec, c.load) for c in candidates(spec, LOAD)]
    shuffled = [canonical(c.spec, c.load) for c in candidates(spec, LOAD, seed=7)]
    assert shuffled == [canonical(c.spec, c.load) for c in candidates(spec, LOAD, seed=7)]
    assert shuffled != first and sorted(shuffled) == sorted(first)


def test_normalized_drops_what_builds_nothing():
    spec = normalized(SPEC)
    assert "tags" not in spec and "description" not in spec
    assert "dtype" not in spec["model"]["children"][2]  # float32 spelled out is the default
    assert Spec.from_dict(spec)


def test_dropping_a_layer_repairs_the_chain_and_renumbers_what_named_later_layers():
    spec = normalized(SPEC)
    dropped = next(c for c in candidates(spec, {}) if c.change == "drop 0 (linear)")
    kids = dropped.spec["model"]["children"]
    assert [k["kind"] for k in kids] == ["activation", "linear", "layer_norm"]
    # The extra tensor on layer "2" now lives on layer "1"; the planted value on the dropped layer is gone.
    assert dropped.spec["tensors"][0]["at"] == "1"
    assert "plant" not in dropped.spec
    assert dropped.spec["layout"] == [{"at": "1.weight", "kind": "transposed"}]


def test_a_shrunk_width_flows_down_the_chain():
    model = {"kind": "sequential", "children": [
        {"kind": "linear", "in_features": 8, "out_features": 2},
        {"kind": "linear", "in_features": 6, "out_features": 5},
        {"kind": "layer_norm", "normalized_shape": 6},
    ]}
    repair_chains(model)
    assert model["children"][1]["in_features"] == 2
    assert model["children"][2]["normalized_shape"] == 5
    Spec.from_dict({"name": "x", "model": model})


def test_size_counts_defaults_so_turning_off_a_default_bias_is_progress():
    spec = {"name": "x", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}}
    no_bias = json.loads(json.dumps(spec))
    no_bias["model"]["children"][0]["bias"] = False
    assert size(no_bias, {}) < size(spec, {})
    assert any(c.change == "0.bias True -> False" for c in candidates(spec, {}))


def test_a_user_case_has_no_candidates():
    assert list(candidates({"name": "u", "factory": "mod:fn"}, {})) == []


def test_load_options_simplify_only_the_fields_the_cell_has():
    changes = {c.change for c in candidates(normalized(SPEC), LOAD) if c.pass_name == "load option"}
    assert "load option mmap=True -> False" in changes
    assert "load option source=bytesio -> (left out)" in changes
    assert not any("loader" in c for c in changes)


def _line(outcome: str, **kw) -> dict:
    return {"outcome": outcome, **kw}


def test_signature_of_a_mismatch_is_the_aspect_and_the_kind_of_tensor():
    manifest = {"views": {"file": {"tensors": [
        {"name": "a", "role": "parameter", "dtype": "float16"}, {"name": "b", "role": "parameter", "dtype": "float32"},
        {"name": "c", "role": "buffer", "dtype": "float16"},
    ]}}}
    kinds = tensor_kinds(manifest)
    sig = Signature.of(_line("mismatch", differences=[{"tensor": "a", "aspect": "bits"}]), kinds)
    assert sig.text() == "mismatch: bits of a parameter float16"
    assert sig.matches(_line("mismatch", differences=[{"tensor": "b", "aspect": "dtype"}, {"tensor": "a", "aspect": "bits"}]), kinds)
    # Another kind of tensor, another aspect, another outcome: another failure.
    assert not sig.matches(_line("mismatch", differences=[{"tensor": "b", "aspect": "bits"}]), kinds)
    assert not sig.matches(_line("mismatch", differences=[{"tensor": "c", "aspect": "bits"}]), kinds)
    assert not sig.matches(_line("mismatch", differences=[{"tensor": "a", "aspect": "shape"}]), kinds)
    assert not sig.matches(_line("error", differences=[{"tensor": "a", "aspect": "bits"}]), kinds)


def test_signature_of_an_error_is_its_diagnosis_or_its_exception_type():
    sig = Signature.of(_line("error", diagnosis={"code": "weights_only_unpickler"}), {})
    assert sig.matches(_line("error", diagnosis={"code": "weights_only_unpickler"}), {})
    assert not sig.matches(_line("error", diagnosis={"code": "file_truncated"}), {})
    assert not sig.matches(_line("crash", diagnosis={"code": "weights_only_unpickler"}), {})
    bare = Signature.of(_line("error", error={"type": "KeyError"}), {})
    assert bare.text() == "error: KeyError"
    assert bare.matches(_line("error", error={"type": "KeyError"}), {})
    assert not bare.matches(_line("error", error={"type": "ValueError"}), {})


def _results(tmp_path, lines, cases=None):
    res = tmp_path / "results"
    res.mkdir()
    target = "torch-2.15.0-py3.11-cpu"
    base = {"schema": 1, "target": target, "format": "state_dict", "expected": False, "detail": "", "diagnosis": None, "seconds": 0.0}
    with open(res / f"{target}.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps({**base, **line}) + "\n")
    (res / f"{target}.env.json").write_text(json.dumps({"schema": 1, "target": {"label": target}, "sources": {}, "cases": cases or {}}))
    return res


def test_find_cell_refuses_what_cannot_be_shrunk_in_one_line(tmp_path):
    src = "torch-2.4.1-py3.11-cpu"
    res = _results(tmp_path, [
        {"source": src, "case": "ok", "load": {}, "outcome": "pass"},
        {"source": src, "case": "bad", "load": {}, "outcome": "mismatch"},
        {"source": src, "case": "lost", "load": {}, "outcome": "error"},
    ], cases={"bad": SPEC})
    cell, spec = find_cell(res, f"{src}|bad|state_dict|default")
    assert cell.outcome.value == "mismatch" and spec["name"] == "big"
    for key, words in ((f"{src}|ok|state_dict|default", "is a pass"), (f"{src}|nope|state_dict|default", "no cell"),
                       (f"{src}|lost|state_dict|default", "does not hold the spec")):
        with pytest.raises(InputError, match=words) as e:
            find_cell(res, key)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="no results of target"):
        find_cell(res, f"{src}|bad|state_dict|default", target="torch-9.9.9-py3.11-cpu")


def test_shrink_command_errors_are_one_line_exit_2(tmp_path, cli):
    res = _results(tmp_path, [{"source": "torch-2.4.1-py3.11-cpu", "case": "ok", "load": {}, "outcome": "pass"}])
    done = cli("shrink", "--results", str(res), "--cell", "torch-2.4.1-py3.11-cpu|ok|state_dict|default")
    assert done.returncode == 2 and "is a pass" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = cli("shrink", "--results", str(tmp_path / "none"), "--cell", "a|b|c|d")
    assert done.returncode == 2 and "is not a folder" in done.stderr
    done = cli("shrink", "--results", str(res), "--cell", "a|b|c|d", "--max-steps", "0")
    assert done.returncode == 2 and "--max-steps" in done.stderr


def test_an_out_folder_that_is_not_a_shrinks_is_refused_untouched(tmp_path, cli):
    src = "torch-2.4.1-py3.11-cpu"
    res = _results(tmp_path, [{"source": src, "case": "bad", "load": {}, "outcome": "mismatch"}], cases={"bad": SPEC})
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    done = cli("shrink", "--results", str(res), "--cell", f"{src}|bad|state_dict|default", "--out", str(precious))
    assert done.returncode == 2 and "is not a shrink's folder" in done.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.slow  # starts both workers (each imports torch)
def test_a_worker_that_is_not_the_cells_env_is_refused_before_the_folder_is_made(tmp_path, cli):
    """This interpreter runs torch 2.15 on Python 3.11; the cell names another torch: one line, exit 2, no folder."""
    src = "torch-1.4.0-py3.8-cpu"
    res = _results(tmp_path, [{"source": src, "case": "bad", "load": {}, "outcome": "mismatch"}], cases={"bad": SPEC})
    out = tmp_path / "out"
    done = cli("shrink", "--results", str(res), "--cell", f"{src}|bad|state_dict|default", "--out", str(out), "-q")
    assert done.returncode == 2, done.stderr
    assert "--source-python" in done.stderr and "is not the source env" in done.stderr and "1.4.0" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # Without --source-python, the interpreter nox recorded for the env (RESULTS/../envs/LABEL.json) is the one tried.
    envs = tmp_path / "envs"
    envs.mkdir()
    recorded = tmp_path / "recorded-python"
    recorded.symlink_to(sys.executable)
    (envs / f"{src}.json").write_text(json.dumps({"label": src, "python": str(recorded)}))
    done = cli("shrink", "--results", str(res), "--cell", f"{src}|bad|state_dict|default", "--out", str(out), "-q")
    assert done.returncode == 2 and str(recorded) in done.stderr, done.stderr


def test_generated_and_curated_specs_shrink_alike(curated_specs):
    """Every candidate of every curated case and of generated ones is a valid spec, strictly smaller, and new."""
    from harness.strategies.corpus import generate_specs

    specs = [*curated_specs.values(), *generate_specs(25, seed=11)]
    for spec in specs:
        data = normalized(spec.to_dict())
        before = size(data, LOAD)
        seen = set()
        for c in candidates(data, LOAD):
            Spec.from_dict(c.spec)
            assert size(c.spec, c.load) < before, (spec.name, c.change)
            key = canonical(c.spec, c.load)
            assert key not in seen, (spec.name, c.change)
            seen.add(key)


def test_sigterm_stops_a_shrink_as_ctrl_c_does():
    """A cancelled CI job sends SIGTERM: the shrink must see it as KeyboardInterrupt, and keep its best case."""
    import os
    import signal

    from harness.shrink.shrinker import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.1)  # let the handler run
    assert signal.getsignal(signal.SIGTERM) == before
