"""The matrix: configuration, overrides and env resolution (no torch needed)."""

from __future__ import annotations

import pytest

from harness.matrix import (
    Matrix,
    parse_overrides,
    pick_python,
    posargs,
    python_support,
    requirements,
)
from harness.runtime.errors import InputError

REPO_PYPROJECT = __import__("conftest").REPO / "pyproject.toml"


def test_default_matrix_straddles_the_weights_only_flip():
    m = Matrix.from_pyproject(REPO_PYPROJECT)
    from harness.runtime.versions import matches

    assert any(matches(v, "<2.6") for v in m.torch) and any(matches(v, ">=2.6") for v in m.torch)
    assert "cuda-emulated" in m.devices and "cpu" in m.devices
    plan = m.plan()
    assert {e.device for e in plan.save} == {"cpu", "cuda-emulated"}
    assert {e.device for e in plan.load} == {"cpu"}
    assert len(plan.load) == len(m.torch) * len(m.python)


def test_overrides_replace_lists_and_cuda_adds():
    m = Matrix()
    m2 = parse_overrides(m, ["--torch", "2.4.1", "2.8.0", "--formats", "state_dict,full_model", "--generated", "5"])
    assert m2.torch == ("2.4.1", "2.8.0") and m2.formats == ("state_dict", "full_model") and m2.generated == 5
    m3 = parse_overrides(m, ["--device", "cuda"])
    assert m3.devices == ("cpu", "cuda-emulated", "cuda")
    assert {e.device for e in m3.plan().load} == {"cpu", "cuda"}
    m4 = parse_overrides(m, ["--device", "cpu"])
    assert m4.devices == ("cpu",)


def test_unknown_overrides_are_reported_not_silently_dropped():
    said = []
    parse_overrides(Matrix(), ["--torhc", "2.4.1"], warn=said.append)
    assert said and "--torhc" in said[0]


@pytest.mark.parametrize(("args", "words"), [
    (["--torch", "1.3.1"], "older than 1.4"),
    (["--matrix", "nosuch"], "no matrix named 'nosuch'"),
    (["--torch", "latest"], "not a release number"),
    (["--device", "tpu"], "device 'tpu'"),
    (["--formats", "onnx"], "format 'onnx'"),
])
def test_bad_overrides(args, words):
    with pytest.raises(InputError, match=words):
        parse_overrides(Matrix(), args)


def test_unknown_pyproject_key(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.torch-roundtrip]\ntorch = ["2.4.1"]\ntorchh = 1\n')
    with pytest.raises(InputError, match="unknown key 'torchh'"):
        Matrix.from_pyproject(p)


def test_env_resolution_skips_impossible_pythons_with_reasons():
    plan = Matrix(torch=("2.0.1", "2.15.0"), python=("3.9", "3.13"), devices=("cpu",)).plan()
    labels = {e.label for e in plan.save}
    assert labels == {"torch-2.0.1-py3.9-cpu", "torch-2.15.0-py3.13-cpu"}
    skipped = dict(plan.skipped)
    assert "Python 3.8 to 3.11 only" in skipped["torch-2.0.1-py3.13-cpu"]
    assert "Python 3.11 to 3.15 only" in skipped["torch-2.15.0-py3.9-cpu"]


def test_a_matrix_where_nothing_can_exist_is_an_error():
    with pytest.raises(InputError, match="no env of the matrix can exist"):
        Matrix(torch=("2.0.1",), python=("3.13",)).plan(have=lambda v: False)


def test_requirements_pin_torch_and_numpy_by_release():
    assert requirements("2.1.2") == ["torch==2.1.2", "safetensors>=0.3", "numpy<2"]
    assert "numpy>=2" in requirements("2.3.0")
    assert python_support("2.99.0") == python_support("2.15.0")  # newer than the table: newest known


def test_posargs():
    assert posargs(["nox", "-s", "roundtrip", "--", "--torch", "2.4.1"]) == ["--torch", "2.4.1"]
    assert posargs(["nox", "-l"]) == []


def test_an_old_release_gets_the_newest_python_it_supports_that_the_machine_has():
    m = Matrix(torch=("1.4.0", "1.13.1", "2.15.0"), python=("3.11",), devices=("cpu",))
    plan = m.plan(have=lambda v: v in ("3.8", "3.9", "3.11"))
    assert [e.label for e in plan.save] == ["torch-1.4.0-py3.8-cpu", "torch-1.13.1-py3.11-cpu", "torch-2.15.0-py3.11-cpu"]
    assert plan.notes == ["torch 1.4.0 has no wheels for Python 3.11: using 3.8"]
    # torch 1.8 supports 3.7 to 3.9; the harness's floor is 3.8
    assert pick_python("1.8.1", lambda v: v in ("3.7", "3.8")) == "3.8"
    assert pick_python("1.8.1", lambda v: v == "3.7") is None


def test_an_old_release_without_a_python_here_is_skipped_with_the_way_out():
    plan = Matrix(torch=("1.4.0", "2.15.0"), python=("3.11",), devices=("cpu",)).plan(have=lambda v: v == "3.11")
    assert [e.label for e in plan.save] == ["torch-2.15.0-py3.11-cpu"]
    why = dict(plan.skipped)["torch-1.4.0-py3.11-cpu"]
    assert "Python 3.6 to 3.8 only" in why and "pyenv install 3.8" in why


def test_numpy_pins_import_cleanly_beside_each_release():
    assert "numpy<1.20" in requirements("1.4.0")
    assert "numpy<2" in requirements("1.13.1") and "numpy<2" in requirements("2.2.2")
    assert "numpy>=2" in requirements("2.15.0")


def test_the_history_matrix_spans_six_years_in_both_directions():
    m = parse_overrides(Matrix.from_pyproject(REPO_PYPROJECT), ["--matrix", "history", "--generated", "2"])
    for release in ("1.4.0", "1.8.1", "1.13.1", "2.0.1", "2.4.1", "2.8.0"):
        assert release in m.torch
    assert m.generated == 2  # options after --matrix apply on top of it
    plan = m.plan(have=lambda v: True)
    assert {e.device for e in plan.save} == {"cpu", "cuda-emulated"}
    # every release saves and loads, so every ordered pair has cells in both directions
    assert {e.torch for e in plan.save} == {e.torch for e in plan.load} == set(m.torch)


def test_a_named_matrix_is_checked_when_read(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.torch-roundtrip]\ntorch = ["2.4.1"]\n[tool.torch-roundtrip.matrix.old]\ntorchh = ["1.4.0"]\n')
    with pytest.raises(InputError, match="matrix.old: unknown key 'torchh'"):
        Matrix.from_pyproject(p)
