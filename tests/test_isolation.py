"""One cell's failure is one cell: crashes, hangs and a killed phase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import read_results, run_cli

pytest.importorskip("torch")

OPTS = "apply=none;map_location=cpu;mmap=0;weights_only=true"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("iso")
    done = run_cli("save", "--out", str(root / "A"), "--formats", "state_dict,full_model", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def variants(fmt):
    """How many cells one artifact of `fmt` has on this CPU host."""
    from harness.runtime.formats import FORMATS

    return len(FORMATS[fmt].variants(False))


def by_key(rows):
    return {(r["source"], r["case"], r["format"], tuple(sorted(r["load"].items()))): r for r in rows}


def test_a_crashing_load_is_one_crash_cell(artifacts, tmp_path):
    env = {"TORCH_ROUNDTRIP_FAULT": f"crash@simple_net/state_dict/{OPTS} exit@tied_lm/state_dict/{OPTS}"}
    done = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(tmp_path / "R"), env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # crashes are regressions
    rows = read_results(tmp_path / "R")
    crashes = [r for r in rows if r["outcome"] == "crash"]
    assert sorted(r["case"] for r in crashes) == ["simple_net", "tied_lm"]
    assert all(r["load"]["weights_only"] == "true" and r["load"]["map_location"] == "cpu" for r in crashes)
    details = {r["case"]: r["detail"] for r in crashes}
    assert "SIGABRT" in details["simple_net"] and "exited with status 3" in details["tied_lm"]
    # the abort's reason survives, the stack frames after it do not
    assert "what():  injected fault" in details["simple_net"] and "frame #" not in details["simple_net"]
    # The run carried on: every other cell of those artifacts is there and passes or is expected.
    assert len(rows) == len(by_key(rows))
    others = [r for r in rows if r["case"] == "simple_net" and r["format"] == "state_dict" and r["outcome"] != "crash"]
    assert len(others) == variants("state_dict") - 1
    assert all(r["outcome"] == "pass" or (r["expected"] and "source" in r["load"]) for r in others), others
    assert "CRASH" in done.stderr


def test_a_hanging_load_is_one_timeout_cell(artifacts, tmp_path):
    env = {"TORCH_ROUNDTRIP_FAULT": "hang@buffers/full_model/apply=none;map_location=none;mmap=0;weights_only=false"}
    start = time.monotonic()
    done = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(tmp_path / "R"),
                   "--case", "buffers", "--timeout", "3", env=env, cwd=tmp_path)
    assert time.monotonic() - start < 120
    rows = read_results(tmp_path / "R")
    timeouts = [r for r in rows if r["outcome"] == "timeout"]
    assert len(timeouts) == 1 and "--timeout 3s" in timeouts[0]["detail"]
    assert timeouts[0]["format"] == "full_model"
    assert len(rows) == variants("state_dict") + variants("full_model")  # every cell of the case recorded once
    assert done.returncode == 1


def test_killed_load_resumes_to_the_same_results(artifacts, tmp_path):
    whole = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    expected = by_key(read_results(tmp_path / "whole"))

    results = tmp_path / "killed"
    env = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "load", "--artifacts", str(artifacts / "A"),
                             "--results", str(results)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    target = len(expected) // 3
    while time.monotonic() < deadline:
        files = list(results.glob("*.jsonl"))
        if files and files[0].read_bytes().count(b"\n") >= target:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker, mid-write
    proc.wait()
    partial = read_results(results)
    assert 0 < len(partial) < len(expected), "kill the phase part-way"

    again = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    rows = read_results(results)
    assert len(rows) == len(expected)  # every cell exactly once
    got = by_key(rows)
    assert set(got) == set(expected)
    assert {k: r["outcome"] for k, r in got.items()} == {k: r["outcome"] for k, r in expected.items()}


def test_concurrent_loads_of_one_target_refuse(artifacts, tmp_path):
    import fcntl

    results = tmp_path / "R"
    results.mkdir()
    label = next(p.name for p in (artifacts / "A").iterdir() if p.is_dir())
    with open(results / f".{label}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(results), cwd=tmp_path)
    assert done.returncode == 2
    assert "another load is writing" in done.stderr and "Traceback" not in done.stderr


def test_killed_save_resumes_without_half_written_artifacts(tmp_path, curated_specs):
    out = tmp_path / "A"
    env = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "save", "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*/*/*/manifest.json"))) < 20:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*/*/*/manifest.json")))
    every = len(curated_specs) * 7  # cases x formats
    assert 0 < done_before < every, "kill the save part-way"
    # Nothing half-written sits under a final name: every artifact dir has its manifest and files.
    for manifest in out.glob("*/*/*/manifest.json"):
        m = json.loads(manifest.read_text())
        assert all((manifest.parent / f).is_file() for f in m["files"]), manifest
    again = run_cli("save", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    manifests = list(out.glob("*/*/*/manifest.json"))
    assert len(manifests) == every
    assert not list(out.glob("*/*/.tmp-save"))  # no leftovers of the killed run
    load = run_cli("load", "--artifacts", str(out), "--results", str(tmp_path / "R"), cwd=tmp_path)
    assert load.returncode == 0, load.stderr


def test_a_crash_cell_is_diagnosed_from_the_aborts_reason(tmp_path):
    # torch 1.8.1 aborts the process on TorchScript archives from 1.13 on; the
    # injected crash prints the same kind of C++ reason before its frames.
    save = run_cli("save", "--out", str(tmp_path / "A"), "--formats", "torchscript", cwd=tmp_path)
    assert save.returncode == 0, save.stderr
    env = {"TORCH_ROUNDTRIP_FAULT": "crash@simple_net/torchscript/map_location=cpu"}
    run_cli("load", "--artifacts", str(tmp_path / "A"), "--results", str(tmp_path / "R"), "--case", "simple_net",
            env=env, cwd=tmp_path)
    crashes = [r for r in read_results(tmp_path / "R") if r["outcome"] == "crash"]
    assert len(crashes) == 1
    assert crashes[0]["diagnosis"]["code"] == "torchscript_from_newer_torch"
    assert not crashes[0]["expected"]  # same torch on both sides: no expectation covers it


def test_a_torch_that_aborts_every_fifth_load_costs_cells_not_the_phase(artifacts, tmp_path):
    # The planted abort (harness.shrink.plant, abort:5) counts loads per worker process: the fork
    # server imported the planted torch once, and every worker forked from it counts from zero.
    from harness.shrink.plant import ENV_VAR, planted_python

    planted_python(sys.executable, tmp_path / "plant", mode="abort:5")
    env = {ENV_VAR: "abort:5", "PYTHONPATH": str(tmp_path / "plant")}
    done = run_cli("load", "--artifacts", str(artifacts / "A"), "--results", str(tmp_path / "R"), "--case", "simple_net",
                   env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # crashes are regressions
    rows = read_results(tmp_path / "R")
    assert len(rows) == len(by_key(rows)) == variants("state_dict") + variants("full_model")  # every cell, once
    crashes = [r for r in rows if r["outcome"] == "crash"]
    assert 2 <= len(crashes) < len(rows) // 3
    assert all("killed by SIGABRT" in r["detail"] and "planted abort on torch.load call 5 of process" in r["detail"]
               for r in crashes), crashes[0]["detail"]


@pytest.mark.parametrize("mode", ["0", "2", "abort", "abort:0", "abort:x", "abort:-1", "crash:5"])
def test_the_plant_refuses_a_mode_it_does_not_have(mode, tmp_path, monkeypatch):
    from harness.shrink import plant

    with pytest.raises(ValueError, match="the plant's modes are 1"):
        plant.planted_python(sys.executable, tmp_path / "p", mode=mode)
    monkeypatch.setenv(plant.ENV_VAR, mode)
    with pytest.raises(ValueError, match=f"{plant.ENV_VAR}="):
        plant.install()  # a plant that silently did nothing would make a test measure the wrong torch
    assert plant.parse_mode("abort:7") == 7 and plant.parse_mode("1") is None
