"""Bad input gets one clear line and exit status 2, never a traceback.

Most cases run the CLI in this process (the `cli` fixture); one runs it as
a user does, in a new process, to show that nothing else reaches stderr.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


def one_line_error(done, *words):
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_missing_artifacts_dir(cli, tmp_path):
    pytest.importorskip("torch")
    done = cli("load", "--artifacts", str(tmp_path / "nope"), "--results", str(tmp_path / "R"))
    one_line_error(done, "--artifacts", "does not exist", "save --out")


def test_artifacts_is_a_file(cli, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "f").write_text("x")
    done = cli("load", "--artifacts", str(tmp_path / "f"), "--results", str(tmp_path / "R"))
    one_line_error(done, "is not a directory")


def test_bad_spec_names_case_and_field(cli, tmp_path):
    pytest.importorskip("torch")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cases": [{"name": "x", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2}]}}]}))
    done = cli("save", "--out", str(tmp_path / "A"), "--cases", str(cases))
    one_line_error(done, "case 'x'", "model.children[0].out_features", "required")


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", '{"cases": 3}'])
def test_unreadable_cases_file(cli, tmp_path, content):
    pytest.importorskip("torch")
    cases = tmp_path / "cases.json"
    cases.write_text(content)
    done = cli("save", "--out", str(tmp_path / "A"), "--cases", str(cases))
    one_line_error(done, "cases.json")


def test_cuda_without_a_gpu(cli, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    done = cli("save", "--out", str(tmp_path / "A"), "--device", "cuda")
    one_line_error(done, "--device=cuda", "torch.cuda.is_available() is False", "cuda-emulated")


def test_unknown_format(cli, tmp_path):
    pytest.importorskip("torch")
    done = cli("save", "--out", str(tmp_path / "A"), "--formats", "state_dict,onnx")
    one_line_error(done, "format='onnx'", "state_dict")


def test_usage_errors_are_one_line(cli):
    done = cli("load", "--artifacts")
    one_line_error(done, "--artifacts", "--help")
    done = cli("frobnicate")
    one_line_error(done, "invalid choice")
    done = cli("load", "--artifacts", "A", "--results", "R", "--timeout", "-1")
    one_line_error(done, "--timeout")


def test_wrong_torch_is_refused(cli, tmp_path):
    pytest.importorskip("torch")
    done = cli("save", "--out", str(tmp_path / "A"), "--expect-torch", "1.13.1")
    one_line_error(done, "torch 1.13.1 was asked for", "refusing")


def test_replay_reproduces_a_spec(cli, tmp_path):
    pytest.importorskip("torch")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "r", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}}))
    done = cli("replay", str(spec), "--formats", "state_dict,safetensors")
    assert done.returncode == 0, done.stderr
    assert "r state_dict [apply=strict;" in done.stdout and "pass" in done.stdout


def test_usage_errors_are_one_line_in_a_real_process(tmp_path):
    done = run_cli("load", "--artifacts", str(tmp_path / "nope"), "--results", str(tmp_path / "R"))
    one_line_error(done, "--artifacts", "does not exist")
    done = run_cli("frobnicate")
    one_line_error(done, "invalid choice")


# -- load's refactor flags: --load-as, --migrate, --rename-class -----------------

OLD, NEW, MIG = "harness.examples:tagger_v1", "harness.examples:tagger_v2", "harness.examples:migrate_tagger"


@pytest.mark.parametrize(("flags", "words"), [
    (["--load-as", OLD], ["--load-as", "expected OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"]),
    (["--load-as", f"{OLD}=not a factory"], ["--load-as", "expected OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"]),
    (["--load-as", f"{OLD}={NEW}", "--load-as", f"{OLD}={MIG}"], ["--load-as names", OLD, "twice"]),
    (["--load-as", f"{OLD}={NEW}", "--migrate", f"{OLD}=mig.py"], ["--migrate", "MIGRATION_MODULE:FUNCTION"]),
    (["--migrate", f"{OLD}={MIG}"], ["--migrate", OLD, f"needs --load-as {OLD}=NEW_MODULE:FACTORY"]),
    (["--rename-class", "Tagger=pkg.Tagger"], ["--rename-class", "old.module.Class=new.module.Class"]),
    (["--rename-class", "old.mod.Tagger"], ["--rename-class", "old.module.Class=new.module.Class"]),
])
def test_bad_refactor_flags_are_one_line_before_anything_loads(cli, tmp_path, monkeypatch, flags, words):
    import harness.runtime.runner.load as load

    monkeypatch.setattr(load, "load_phase", lambda *a, **k: pytest.fail("load_phase ran despite bad flags"))
    done = cli("load", "--artifacts", str(tmp_path / "A"), "--results", str(tmp_path / "R"), *flags)
    one_line_error(done, *words)


def test_refactor_flags_reach_the_load_phase_parsed(cli, tmp_path, monkeypatch):
    import harness.runtime.runner.load as load

    seen = {}

    def fake_phase(*args, **kwargs):
        seen.update(kwargs)
        return load.LoadSummary("here")

    monkeypatch.setattr(load, "load_phase", fake_phase)
    done = cli("load", "--artifacts", str(tmp_path / "A"), "--results", str(tmp_path / "R"),
               "--load-as", f"{OLD}={NEW}", "--migrate", f"{OLD}={MIG}", "--load-as", "a.b:c=a.b:d",
               "--rename-class", "old.mod.Tagger=new.mod.Tagger", "--rename-class", "x.A=y.B")
    assert done.returncode == 0, done.stderr
    r = seen["refactors"]
    assert dict(r.load_as) == {OLD: NEW, "a.b:c": "a.b:d"} and dict(r.migrate) == {OLD: MIG}
    assert dict(r.rename_class) == {"old.mod.Tagger": "new.mod.Tagger", "x.A": "y.B"}
    assert r.rename_option() == "old.mod.Tagger->new.mod.Tagger,x.A->y.B"


def test_load_help_lists_the_refactor_flags(cli):
    done = cli("load", "--help")
    assert done.returncode == 0
    for flag in ("--load-as OLD_MOD:FN=NEW_MOD:FN", "--migrate OLD_MOD:FN=MIG_MOD:FN", "--rename-class old.mod.Cls=new.mod.Cls"):
        assert flag in done.stdout, flag
