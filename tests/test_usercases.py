"""User cases: people's own models, with the same exact checks as curated ones."""

from __future__ import annotations

import json

import pytest
from conftest import read_results, run_cli

pytest.importorskip("torch")

MYMODELS = '''
import torch

class Scaler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)
        self.register_buffer("gain", torch.full((3,), 2.0))

    def forward(self, x):
        return self.fc(x) * self.gain

def make():
    return Scaler(), torch.ones(2, 3)
'''


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    empty = root / "empty.json"
    empty.write_text('{"cases": []}')
    for ref in ("harness.examples:tagger", "harness.examples:tagger_without_inputs"):
        done = run_cli("save", "--out", str(root / "A"), "--user-case", ref, "--cases", str(empty), cwd=root)
        assert done.returncode == 0, done.stderr
    done = run_cli("load", "--artifacts", str(root / "A"), "--results", str(root / "R"), "--case", "user-harness.examples.tagger", cwd=root)
    done2 = run_cli("load", "--artifacts", str(root / "A"), "--results", str(root / "R"), "--case", "user-harness.examples.tagger_without_inputs", cwd=root)
    return root, (done, done2), read_results(root / "R")


def test_user_model_round_trips_exactly(tagger_run):
    _, (done, _), rows = tagger_run
    mine = [r for r in rows if r["case"] == "user-harness.examples.tagger"]
    assert mine and all(r["origin"] == "user" for r in mine)
    bad = [r for r in mine if r["outcome"] in ("mismatch", "crash", "timeout") or (r["outcome"] == "error" and not r["expected"])]
    assert not bad, json.dumps(bad[:2], indent=1)
    strict = [r for r in mine if r["format"] == "state_dict" and r["load"].get("apply") == "strict"]
    assert strict and all(r["outcome"] == "pass" and r["forward"]["status"] == "exact" for r in strict)
    full = [r for r in mine if r["format"] == "full_model" and r["load"].get("weights_only") == "false"]
    assert full and all(r["outcome"] == "pass" for r in full)  # the user's class imports here
    assert done.returncode == 0, done.stderr


def test_user_model_ties_and_buffers_are_checked(tagger_run):
    root, _, _ = tagger_run
    label = next(p.name for p in (root / "A").iterdir())
    manifest = json.loads((root / "A" / label / "user-harness.examples.tagger" / "state_dict" / "manifest.json").read_text())
    module = {r["name"]: r for r in manifest["views"]["module"]["tensors"]}
    assert module["embed.weight"]["alias"] == module["out.weight"]["alias"] == "embed.weight"
    assert module["position"]["role"] == "buffer_np" and module["temperature"]["role"] == "buffer"
    assert manifest["views"]["module"]["ties"] == [["embed.weight", "out.weight"]]


def test_without_inputs_forward_and_export_are_reasoned_skips(tagger_run):
    _, _, rows = tagger_run
    mine = [r for r in rows if r["case"] == "user-harness.examples.tagger_without_inputs"]
    exported = [r for r in mine if r["format"] == "exported"]
    assert exported and exported[0]["outcome"] == "skip" and "example inputs" in exported[0]["detail"]
    strict = [r for r in mine if r["format"] == "state_dict" and r["load"].get("apply") == "strict"]
    assert strict and all(r["outcome"] == "pass" for r in strict)
    assert all(r["forward"]["status"] == "skip" and "example inputs" in r["forward"]["detail"] for r in strict)


def test_factory_missing_in_the_loading_env_says_so(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mymodels.py").write_text(MYMODELS)
    env = {"PYTHONPATH": str(tmp_path / "pkg")}
    (tmp_path / "empty.json").write_text('{"cases": []}')
    done = run_cli("save", "--out", str(tmp_path / "A"), "--user-case", "mymodels:make", "--cases", str(tmp_path / "empty.json"),
                   "--formats", "state_dict,full_model", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_cli("load", "--artifacts", str(tmp_path / "A"), "--results", str(tmp_path / "R"), "--case", "user-mymodels.make", cwd=tmp_path)
    rows = read_results(tmp_path / "R")
    strict = [r for r in rows if r["format"] == "state_dict" and r["load"].get("apply") == "strict"]
    assert strict and all(r["outcome"] == "error" and not r["expected"] for r in strict)
    assert strict[0]["diagnosis"]["code"] == "user_case_not_importable"
    assert "mymodels:make" in strict[0]["detail"] and "cannot import it in this env" in strict[0]["detail"]
    pickled = [r for r in rows if r["format"] == "full_model" and r["load"].get("weights_only") == "false"]
    assert pickled and all(r["diagnosis"]["code"] == "class_not_importable" for r in pickled)
    raw = [r for r in rows if r["format"] == "state_dict" and r["load"].get("apply") == "none"]
    # the file itself needs no user code (source forms such as a stream fail for their own, expected, reasons)
    assert raw and all(r["outcome"] == "pass" or (r["expected"] and "source" in r["load"]) for r in raw)
    assert done.returncode == 1


@pytest.mark.parametrize(("ref", "words"), [
    ("nomodule", "is not MODULE:FUNCTION"),
    ("harness.examples:nothing", "cannot import it in this env"),
    ("no_such_package_xyz:make", "No module named"),
])
def test_bad_user_case_refs(tmp_path, ref, words):
    done = run_cli("save", "--out", str(tmp_path / "A"), "--user-case", ref)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_hugging_face_model(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "empty.json").write_text('{"cases": []}')
    done = run_cli("save", "--out", str(tmp_path / "A"), "--user-case", "harness.examples:hf_tiny_gpt2", "--cases", str(tmp_path / "empty.json"),
                   "--formats", "state_dict,safetensors,checkpoint", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_cli("load", "--artifacts", str(tmp_path / "A"), "--results", str(tmp_path / "R"), cwd=tmp_path)
    rows = read_results(tmp_path / "R")
    assert rows and not [r for r in rows if r["outcome"] == "mismatch" or (r["outcome"] == "error" and not r["expected"])]
    strict = [r for r in rows if r["load"].get("apply") == "strict"]
    assert strict and all(r["outcome"] == "pass" and r["forward"]["status"] == "exact" for r in strict)
