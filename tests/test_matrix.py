"""The matrix: configuration, overrides and env resolution (no torch needed)."""

from __future__ import annotations

import pytest

from harness.matrix import Matrix, parse_overrides, posargs, python_support, requirements
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
    (["--torch", "1.13.1"], "older than 2.0"),
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
        Matrix(torch=("2.0.1",), python=("3.13",)).plan()


def test_requirements_pin_torch_and_numpy_by_release():
    assert requirements("2.1.2") == ["torch==2.1.2", "safetensors>=0.3", "numpy<2"]
    assert "numpy>=2" in requirements("2.3.0")
    assert python_support("2.99.0") == python_support("2.15.0")  # newer than the table: newest known


def test_posargs():
    assert posargs(["nox", "-s", "roundtrip", "--", "--torch", "2.4.1"]) == ["--torch", "2.4.1"]
    assert posargs(["nox", "-l"]) == []
