"""The matrix: configuration, overrides and env resolution (no torch needed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from harness.matrix import (
    EXPECT_NUMPY,
    Env,
    Matrix,
    numpy_allowed,
    numpy_python,
    parse_overrides,
    pick_python,
    posargs,
    python_support,
    requirements,
)
from harness.report.model import env_sort_key
from harness.runtime.env import label_for, labelled_numpy, parse_label
from harness.runtime.errors import InputError

REPO = __import__("conftest").REPO
REPO_PYPROJECT = REPO / "pyproject.toml"


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


def test_other_sessions_options_are_not_called_typos():
    """`nox -s shrink -- KEY --target L --max-seconds=9` reaches the matrix too: its options are shrink's, not typos."""
    said = []
    parse_overrides(Matrix(), ["a|b|c|d", "--target", "torch-2.4.1-py3.11-cpu", "--max-seconds=9", "--max-steps", "3", "-q"], warn=said.append)
    assert said == []


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


# -- the numpy axis --------------------------------------------------------------


def test_the_numpy_axis_gives_each_release_the_numpy_it_works_beside():
    plan = Matrix(torch=("1.13.1", "2.4.1"), numpy=("1.24.4", "1.26.4", "2.0.2"), devices=("cpu",)).plan(have=lambda v: True)
    assert [e.label for e in plan.save] == [
        "torch-1.13.1-py3.11-cpu-numpy-1.24.4", "torch-1.13.1-py3.11-cpu-numpy-1.26.4",
        "torch-2.4.1-py3.11-cpu-numpy-1.24.4", "torch-2.4.1-py3.11-cpu-numpy-1.26.4", "torch-2.4.1-py3.11-cpu-numpy-2.0.2",
    ]
    assert [e.label for e in plan.load] == [e.label for e in plan.save]
    assert dict(plan.skipped) == {"torch-1.13.1-py3.11-cpu-numpy-2.0.2": "torch 1.13.1 works beside numpy <2 only"}
    assert plan.save[0].requirements == ["torch==1.13.1", "safetensors>=0.3", "numpy==1.24.4"]
    assert plan.save[0].phase_env == {EXPECT_NUMPY: "1.24.4"}


def test_a_release_that_allows_one_numpy_of_the_list_gets_that_one():
    plan = Matrix(torch=("1.4.0", "2.4.1"), numpy=("1.19.5", "1.24.4"), devices=("cpu",)).plan(have=lambda v: v in ("3.8", "3.11"))
    assert [e.label for e in plan.save] == ["torch-1.4.0-py3.8-cpu-numpy-1.19.5", "torch-2.4.1-py3.11-cpu-numpy-1.24.4"]
    skipped = dict(plan.skipped)
    assert skipped["torch-1.4.0-py3.8-cpu-numpy-1.24.4"] == "torch 1.4.0 works beside numpy <1.20 only"
    assert skipped["torch-2.4.1-py3.11-cpu-numpy-1.19.5"] == "torch 2.4.1 works beside numpy >=1.23 only"
    assert numpy_allowed("2.15.0") == ">=1.23" and numpy_allowed("2.2.2") == "<2"


def test_a_numpy_without_wheels_for_the_python_is_skipped_with_the_reason():
    plan = Matrix(torch=("2.4.1",), python=("3.12",), numpy=("1.24.4", "1.26.4"), devices=("cpu",)).plan()
    assert [e.label for e in plan.save] == ["torch-2.4.1-py3.12-cpu-numpy-1.26.4"]
    assert dict(plan.skipped)["torch-2.4.1-py3.12-cpu-numpy-1.24.4"] == "numpy 1.24.4 has wheels for Python 3.8 to 3.11 only"
    assert numpy_python("2.9.0") == numpy_python("2.4.4")  # newer than the table: newest known


def test_without_the_axis_labels_pins_and_phases_are_unchanged():
    # Labels are a contract: paths, cell keys and session names use them.
    plan = Matrix.from_pyproject(REPO_PYPROJECT).plan(have=lambda v: True)
    assert all("numpy" not in e.label for e in plan.save + plan.load)
    assert Env("2.4.1", "3.11", "cpu").label == "torch-2.4.1-py3.11-cpu"
    assert Env("2.4.1", "3.11", "cpu").phase_env == {EXPECT_NUMPY: ""}  # clears one the outer environment holds
    assert requirements("2.4.1") == ["torch==2.4.1", "safetensors>=0.3", "numpy>=2"]


@pytest.mark.parametrize("label", ["torch-2.4.1-py3.11-cpu-numpy-1.24.4", "golden-torch-1.4.0-py3.8-cuda-emulated-numpy-1.19.5"])
def test_labels_with_numpy_parse_back(label):
    parts = parse_label(label)
    assert label.endswith(label_for(parts["torch"], parts["python"], parts["device"], parts["numpy"]))
    assert parts["numpy"] in ("1.24.4", "1.19.5") and parts["device"] in ("cpu", "cuda-emulated")
    assert parse_label("torch-2.4.1-py3.11-cpu")["numpy"] == ""


@pytest.mark.parametrize("label", ["torch-2.4.1-py3.11-cpu-numpy-", "torch-2.4.1-py3.11-cpu-numpy-x", "torch-2.4.1-py3.11-numpy-1.24.4"])
def test_malformed_numpy_labels_are_refused(label):
    with pytest.raises(InputError, match="not an env label"):
        parse_label(label)


def test_reports_order_envs_by_numpy_release():
    labels = ["torch-2.4.1-py3.11-cpu-numpy-1.24.4", "torch-2.4.1-py3.11-cpu-numpy-1.9.3", "torch-2.4.1-py3.11-cpu",
              "torch-2.4.1-py3.11-cpu-numpy-2.0.2"]
    assert sorted(labels, key=env_sort_key) == [
        "torch-2.4.1-py3.11-cpu", "torch-2.4.1-py3.11-cpu-numpy-1.9.3", "torch-2.4.1-py3.11-cpu-numpy-1.24.4",
        "torch-2.4.1-py3.11-cpu-numpy-2.0.2",
    ]


def test_the_numpy_matrix_and_the_numpy_override():
    m = parse_overrides(Matrix.from_pyproject(REPO_PYPROJECT), ["--matrix", "numpy"])
    assert m.numpy == ("1.24.4", "1.26.4", "2.0.2") and not m.golden and m.devices == ("cpu",)
    plan = m.plan(have=lambda v: True)
    by_numpy = {(e.torch, e.numpy) for e in plan.save}
    # both directions: numpy 2 saves that numpy 1.24 (fails) and 1.26 (loads) load, and the reverse
    assert {("2.4.1", "1.24.4"), ("2.4.1", "1.26.4"), ("2.4.1", "2.0.2"), ("2.15.0", "2.0.2")} <= by_numpy
    assert {(e.torch, e.numpy) for e in plan.load} == by_numpy
    assert parse_overrides(m, ["--numpy", "1.26.4"]).numpy == ("1.26.4",)
    assert parse_overrides(Matrix(), ["--numpy", "2.0.2"]).plan(have=lambda v: True).save[0].label == "torch-2.4.1-py3.11-cpu-numpy-2.0.2"


@pytest.mark.parametrize(("args", "words"), [
    (["--numpy", "1.19.5"], "numpy 1.19.5 works beside none of the torch releases of the matrix (torch 2.4.1: numpy >=1.23"),
    (["--numpy", "1.26"], "numpy '1.26' is not a full release number like 1.26.4"),
    (["--numpy", "latest"], "numpy 'latest' is not a full release number"),
])
def test_bad_numpy_is_one_line(args, words):
    with pytest.raises(InputError) as e:
        parse_overrides(Matrix(), args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_nox_refuses_a_bad_numpy_with_one_line_and_exit_2():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_")}
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--", "--numpy", "1.19.5"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "matrix error" in lines[0] and "numpy 1.19.5 works beside none" in lines[0]


def test_nox_names_the_numpy_matrix_sessions_by_their_numpy():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_")}
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--json", "--", "--matrix", "numpy"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sessions = {s["session"] for s in json.loads(done.stdout)}
    assert {"save(torch-2.4.1-py3.11-cpu-numpy-1.24.4)", "load(torch-2.4.1-py3.11-cpu-numpy-1.26.4)",
            "load(torch-2.15.0-py3.11-cpu-numpy-2.0.2)"} <= sessions


def test_golden_must_be_true_or_false(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[tool.torch-roundtrip]\ntorch = ["2.4.1"]\ngolden = "no"\n')
    with pytest.raises(InputError, match="golden must be true or false"):
        Matrix.from_pyproject(p)


# -- the numpy guard: the numpy that runs is the numpy asked for --------------------


def test_the_guard_names_the_numpy_asked_for_and_refuses_another(monkeypatch):
    monkeypatch.delenv(EXPECT_NUMPY, raising=False)
    assert labelled_numpy("2.0.2") is None  # no axis: the label names no numpy
    assert labelled_numpy("1.24.4", "1.24.4") == "1.24.4"
    monkeypatch.setenv(EXPECT_NUMPY, "1.24.4")
    assert labelled_numpy("1.24.4") == "1.24.4"
    # damage: a numpy-1.26 env that would be recorded as 1.24
    with pytest.raises(InputError, match=r"runs numpy 1\.26\.4 but numpy 1\.24\.4 was asked for"):
        labelled_numpy("1.26.4")
    with pytest.raises(InputError, match=r"runs numpy \(none\)"):
        labelled_numpy(None)


def test_a_save_refuses_an_env_whose_numpy_is_not_the_one_asked_for(monkeypatch, torch):
    import numpy

    from harness.runtime.env import fingerprint

    monkeypatch.setenv(EXPECT_NUMPY, numpy.__version__)
    assert fingerprint("cpu").label.endswith(f"-numpy-{numpy.__version__}")
    monkeypatch.setenv(EXPECT_NUMPY, "1.24.4")
    monkeypatch.setattr(numpy, "__version__", "1.26.4")  # a numpy-1.26 env asked to be 1.24
    with pytest.raises(InputError, match="runs numpy 1.26.4 but numpy 1.24.4 was asked for"):
        fingerprint("cpu")


def test_a_load_refuses_an_env_whose_numpy_is_not_the_one_asked_for_before_any_worker(monkeypatch, tmp_path):
    from importlib.metadata import version

    from harness.runtime.runner.load import load_phase

    pytest.importorskip("numpy")
    have = version("numpy")
    wrong = "1.24.4" if have != "1.24.4" else "1.26.4"
    monkeypatch.setenv(EXPECT_NUMPY, wrong)
    (tmp_path / "artifacts").mkdir()
    with pytest.raises(InputError, match=f"runs numpy {re.escape(have)} but numpy {re.escape(wrong)} was asked for"):
        load_phase(tmp_path / "artifacts", tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()


def test_the_reproduce_command_of_a_numpy_label_names_a_session_that_exists():
    from harness.report.repro import repro_commands

    target = "torch-2.4.1-py3.11-cuda-numpy-1.24.4"
    nox_cmd, python = repro_commands(target, "s|c|f|o")
    assert nox_cmd.startswith(f'nox -s "load({target})" -- --numpy 1.24.4 --cell ') and " --device cuda " in python
    assert "--numpy" not in repro_commands("torch-2.4.1-py3.11-cpu", "s|c|f|o")[0]  # no axis, as before
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_")}
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--json", "--", "--numpy", "1.24.4", "--device", "cuda"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"load({target})" in {s["session"] for s in json.loads(done.stdout)}


# -- refactors: load_as, migrate, rename_class ------------------------------------

V1, V2, MIG = "harness.examples:tagger_v1", "harness.examples:tagger_v2", "harness.examples:migrate_tagger"


def test_the_refactor_matrix_loads_the_example_into_its_refactor_in_both_directions():
    m = parse_overrides(Matrix.from_pyproject(REPO_PYPROJECT), ["--matrix", "refactor"])
    assert m.user_cases == (V1,) and m.load_as == (f"{V1}={V2}",) and m.migrate == (f"{V1}={MIG}",)
    plan = m.plan(have=lambda v: True)
    assert [e.torch for e in plan.save] == ["2.4.1", "2.15.0"] == [e.torch for e in plan.load]
    # the default matrix names no refactor
    default = Matrix.from_pyproject(REPO_PYPROJECT)
    assert default.load_as == default.migrate == default.rename_class == ()


def test_refactor_overrides_replace_the_configured_pairs():
    m = parse_overrides(Matrix.from_pyproject(REPO_PYPROJECT), ["--matrix", "refactor"])
    m2 = parse_overrides(m, ["--user-case", "pkg.m:old", "--user-case", V1, "--load-as", "pkg.m:old=pkg.m:new",
                             "--load-as", f"{V1}={V2}", "--migrate", "pkg.m:old=pkg.mig:up",
                             "--rename-class", "pkg.m.Old=pkg.m.New"])
    assert m2.load_as == ("pkg.m:old=pkg.m:new", f"{V1}={V2}") and m2.migrate == ("pkg.m:old=pkg.mig:up",)
    assert m2.rename_class == ("pkg.m.Old=pkg.m.New",)
    # a list not given keeps the configured one
    assert parse_overrides(m, ["--rename-class", "pkg.m.Old=pkg.m.New"]).migrate == (f"{V1}={MIG}",)
    said = []
    parse_overrides(m, ["--migrate", f"{V1}=pkg.mig:up"], warn=said.append)
    assert not said


@pytest.mark.parametrize(("args", "words"), [
    (["--user-case", V1, "--load-as", V1], f"load_as '{V1}' is not OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"),
    (["--user-case", V1, "--load-as", f"{V1}=harness/examples.py"], "is not OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"),
    (["--user-case", V1, "--load-as", f"{V1}={V2}", "--load-as", f"{V1}={MIG}"], f"load_as names {V1} twice"),
    (["--user-case", V1, "--migrate", f"{V1}={MIG}"], f"migrate {V1}=... needs load_as {V1}=NEW_MODULE:FACTORY too"),
    (["--load-as", f"{V1}={V2}"], f"load_as {V1}=... names a factory user_cases does not save (user_cases: none)"),
    (["--rename-class", "Tagger=pkg.Tagger"], "rename_class 'Tagger=pkg.Tagger' is not old.module.Class=new.module.Class"),
])
def test_bad_refactor_pairs_are_one_line(args, words):
    with pytest.raises(InputError) as e:
        parse_overrides(Matrix(), args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_refactor_keys_in_pyproject_must_be_lists(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text(f'[tool.torch-roundtrip]\nuser_cases = ["{V1}"]\nload_as = "{V1}={V2}"\n')
    with pytest.raises(InputError, match="load_as must be a list of strings"):
        Matrix.from_pyproject(p)
    p.write_text(f'[tool.torch-roundtrip]\n[tool.torch-roundtrip.matrix.r]\nmigrate = ["{V1}={MIG}"]\n')
    with pytest.raises(InputError, match=f"matrix.r: migrate {V1}=... needs load_as"):
        Matrix.from_pyproject(p)


def _noxfile(argv: list, monkeypatch):
    """The noxfile as `nox ARGV` reads it, imported here (its sessions are plain functions)."""
    import importlib.util

    nox = pytest.importorskip("nox", reason="the noxfile needs nox (in the test extra)")
    monkeypatch.setattr(sys, "argv", ["nox", *argv])
    nox.registry.reset()  # each import registers its sessions anew
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Session:
    """What a session function calls on nox's Session: installs are dropped, runs recorded."""

    posargs: list = []

    def __init__(self) -> None:
        self.runs: list = []

    def install(self, *args) -> None:
        pass

    def create_tmp(self) -> str:
        return "/nonexistent"

    def chdir(self, path) -> None:
        pass

    def run(self, *args, **kwargs) -> None:
        self.runs.append(list(args))


def test_nox_sessions_pass_the_refactor_pairs_on(monkeypatch):
    nox = _noxfile(["-s", "roundtrip", "--", "--matrix", "refactor", "--rename-class", "pkg.m.Old=pkg.m.New"], monkeypatch)
    save, load = _Session(), _Session()
    nox.save(save, env="torch-2.4.1-py3.11-cpu")
    nox.load(load, env="torch-2.15.0-py3.11-cpu")
    assert save.runs[0][3] == "save" and "--user-case" in save.runs[0]
    assert save.runs[0][save.runs[0].index("--user-case") + 1] == V1
    args = load.runs[0]
    assert args[3] == "load"
    pairs = [(args[i], args[i + 1]) for i in range(len(args) - 1) if args[i] in ("--load-as", "--migrate", "--rename-class")]
    assert pairs == [("--load-as", f"{V1}={V2}"), ("--migrate", f"{V1}={MIG}"), ("--rename-class", "pkg.m.Old=pkg.m.New")]
    # without a refactor, load gets none of the flags
    plain = _Session()
    _noxfile(["-s", "roundtrip"], monkeypatch).load(plain, env="torch-2.15.0-py3.11-cpu")
    assert not {"--load-as", "--migrate", "--rename-class"} & set(plain.runs[0])


def test_nox_refuses_a_migration_without_its_load_as_with_one_line_and_exit_2():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_")}
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--", "--user-case", V1, "--migrate", f"{V1}={MIG}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "matrix error" in lines[0] and "needs load_as" in lines[0], lines


def test_a_named_matrix_may_refactor_the_user_cases_of_the_table_it_extends(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text(f'[tool.torch-roundtrip]\nuser_cases = ["{V1}"]\n[tool.torch-roundtrip.matrix.r]\nload_as = ["{V1}={V2}"]\n')
    m = Matrix.from_pyproject(p).select("r")
    assert m.user_cases == (V1,) and m.load_as == (f"{V1}={V2}",)
    p.write_text(f'[tool.torch-roundtrip]\nuser_cases = ["pkg.m:other"]\n[tool.torch-roundtrip.matrix.r]\nload_as = ["{V1}={V2}"]\n')
    with pytest.raises(InputError, match=r"matrix.r: load_as harness.examples:tagger_v1=\.\.\. names a factory user_cases does not save \(user_cases: pkg.m:other\)"):
        Matrix.from_pyproject(p)
