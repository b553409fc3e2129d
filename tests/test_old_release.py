"""The runtime under torch 1.4 on Python 3.8: feature detection, both directions.

The oldest release the harness supports is installed into a throwaway venv
(uv's cache makes that seconds after the first time; the first download is
about 750 MB). Its save phase must finish with what it cannot build or save
as skips with reasons; its load phase must judge files from this suite's
torch and its own; and this suite's torch must load what it saved. Every
failure on the way must be diagnosed and expected: an undiagnosed one is a
gap in the harness, and a mismatch is a defect of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_results, torch_venv

pytestmark = pytest.mark.slow

OLD_TORCH = "1.4.0"
OLD_PYTHON = "3.8"
OLD_LABEL = f"torch-{OLD_TORCH}-py{OLD_PYTHON}-cpu"


@pytest.fixture(scope="module")
def old_python(tmp_path_factory) -> str:
    """The Python of a fresh venv holding torch 1.4.0 and what the runtime needs."""
    return torch_venv(tmp_path_factory, "old", OLD_PYTHON, OLD_TORCH)


def _phase(python: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_ROUNDTRIP_DEBUG")}
    env["TORCH_ROUNDTRIP_PLAIN"] = "1"
    # cwd outside the checkout: `import harness` is the installed copy
    return subprocess.run([python, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def roundtrip(old_python, tmp_path_factory, torch):
    """Both envs save the curated cases; both load everything."""
    work = tmp_path_factory.mktemp("rt")
    corpus, art, res = work / "cases.json", work / "artifacts", work / "results"
    here = sys.executable
    for python, args in (
        (here, ["cases", "--out", str(corpus)]),
        (old_python, ["save", "--out", str(art), "--cases", str(corpus), "--device", "cpu", "--expect-torch", OLD_TORCH]),
        (here, ["save", "--out", str(art), "--cases", str(corpus), "--device", "cpu"]),
        (old_python, ["load", "--artifacts", str(art), "--results", str(res), "--device", "cpu", "--expect-torch", OLD_TORCH]),
        (here, ["load", "--artifacts", str(art), "--results", str(res), "--device", "cpu"]),
    ):
        done = _phase(python, *args, cwd=work)
        assert done.returncode in (0, 1), f"{python} {args[0]}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return art, read_results(res)


def _manifests(art: Path, label: str) -> dict[tuple[str, str], dict]:
    out = {}
    for path in (art / label).glob("*/*/manifest.json"):
        m = json.loads(path.read_text())
        out[(m["case"], m["format"])] = m
    return out


def test_the_old_env_is_really_torch_1_4(roundtrip):
    art, _ = roundtrip
    fp = json.loads((art / OLD_LABEL / "env.json").read_text())
    assert fp["torch"].startswith(OLD_TORCH) and fp["python"].startswith(OLD_PYTHON)


def test_what_torch_1_4_cannot_build_or_save_is_a_skip_with_its_reason(roundtrip):
    art, _ = roundtrip
    manifests = _manifests(art, OLD_LABEL)
    reasons = {m["reason"] for m in manifests.values() if m["status"] == "unsupported"}
    for words in ("register_buffer has no persistent=", "no torch.nn.utils.parametrizations",
                  "no torch.channels_last_3d", "has no batch_first=", "torch.export", "does not work with this torch"):
        assert any(words in r for r in reasons), f"no skip says {words!r}: {sorted(reasons)}"
    saved = {case for (case, fmt), m in manifests.items() if m["status"] == "saved" and fmt == "state_dict_legacy"}
    assert {"simple_net", "cnn_batchnorm", "tied_lm", "conv_family", "compiled_prefix"} <= saved, sorted(saved)
    # What torch 1.4 itself cannot save (TorchScript of a sparse buffer) is
    # reported as a failed save, never a crashed phase.
    failed = [(k, m["reason"]) for k, m in manifests.items() if m["status"] == "failed"]
    assert all("could not save it" in why for _, why in failed), failed


def test_both_directions_have_cells_and_every_failure_is_diagnosed_and_expected(roundtrip):
    _, rows = roundtrip
    old = f"torch-{OLD_TORCH}"
    pairs = {(r["source"].split("-py")[0], r["target"].split("-py")[0]) for r in rows if r["outcome"] == "pass"}
    assert any(s == old and t != old for s, t in pairs), f"nothing saved by {old} loads in the new torch: {pairs}"
    assert any(t == old and s != old for s, t in pairs), f"nothing saved by the new torch loads in {old}: {pairs}"
    mismatches = [(r["source"], r["target"], r["case"], r["format"], r["detail"]) for r in rows if r["outcome"] == "mismatch"]
    assert not mismatches, mismatches[:5]
    bad = [(r["source"], r["target"], r["case"], r["format"], r["detail"][:160])
           for r in rows if r["outcome"] in ("error", "crash", "timeout") and not r["expected"]]
    assert not bad, bad[:8]


def test_a_zip_file_from_a_newer_torch_is_named_as_such_in_1_4(roundtrip):
    _, rows = roundtrip
    newer = [r for r in rows if r["target"] == OLD_LABEL and r["format"] == "state_dict" and r["outcome"] == "error"
             and not r["source"].startswith(f"torch-{OLD_TORCH}") and "source" not in r["load"]]  # the file itself, by path
    assert newer, "no newer zip file was loaded in 1.4"
    assert {r["diagnosis"]["code"] for r in newer} == {"file_from_newer_torch"}
    assert all("_use_new_zipfile_serialization=False" in r["diagnosis"]["fix"] for r in newer)
    # ...and the fix it names works: the legacy format of the same cases loads there
    legacy = [r for r in rows if r["target"] == OLD_LABEL and r["format"] == "state_dict_legacy"
              and r["source"] == newer[0]["source"] and r["case"] == "simple_net" and "source" not in r["load"]]
    assert {r["outcome"] for r in legacy} == {"pass", "skip"}  # skips: options torch 1.4 lacks (weights_only)


def test_old_torchscript_buffers_are_compared_and_their_loss_is_noted(roundtrip):
    _, rows = roundtrip
    cells = [r for r in rows if r["source"] == OLD_LABEL and r["target"] != OLD_LABEL
             and r["case"] == "cnn_batchnorm" and r["format"] == "torchscript" and "loader" not in r["load"]]
    assert cells and all(r["outcome"] == "pass" for r in cells), [r["detail"] for r in cells]
    assert all(any("torchscript_buffers_as_attributes" in n for n in r["notes"]) for r in cells)
