"""Save in one process, load in another: the product's own flow, via the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import read_results, run_cli

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("twoproc")
    for device in ("cpu", "cuda-emulated"):
        done = run_cli("save", "--out", str(root / "A"), "--device", device, cwd=root)
        assert done.returncode == 0, done.stderr
    done = run_cli("load", "--artifacts", str(root / "A"), "--results", str(root / "R"), cwd=root)
    return root, done, read_results(root / "R")


def test_zero_mismatch_zero_crash_and_every_failure_explained(run):
    _, done, rows = run
    assert rows
    bad = [r for r in rows if r["outcome"] in ("mismatch", "crash", "timeout") or (r["outcome"] == "error" and not r["expected"])]
    assert not bad, json.dumps(bad[:3], indent=1)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cells (" in done.stderr


def test_every_curated_case_and_format_passes_or_skips_with_a_reason(run, curated_specs):
    _, _, rows = run
    cpu = [r for r in rows if r["source"].endswith("-cpu")]
    by_pair: dict = {}
    for r in cpu:
        by_pair.setdefault((r["case"], r["format"]), set()).add(r["outcome"])
        if r["outcome"] == "skip":
            assert r["detail"], r
    for case in curated_specs:
        for fmt in ("state_dict", "state_dict_legacy", "full_model", "torchscript", "exported", "safetensors", "checkpoint"):
            outcomes = by_pair[(case, fmt)]
            assert outcomes & {"pass", "skip"}, (case, fmt, outcomes)


def test_result_lines_carry_the_contract_fields(run):
    _, _, rows = run
    for field in ("schema", "source", "target", "case", "format", "load", "outcome", "expected", "detail", "diagnosis", "seconds"):
        assert all(field in r for r in rows), field


def test_cuda_emulated_files_need_map_location(run):
    _, _, rows = run
    # the file as it is, by path: source forms (a stream, a truncated copy, ...) fail for their own reasons
    emulated = [r for r in rows if r["source"].endswith("-cuda-emulated") and r["format"] == "state_dict"
                and r["load"].get("apply") == "none" and "source" not in r["load"]]
    no_map = [r for r in emulated if r["load"]["map_location"] == "none"]
    # cuda_index1 is tagged cuda:1, which {"cuda:0": "cpu"} does not name (test_device_index covers it)
    to_cpu = [r for r in emulated if r["load"]["map_location"] in ("cpu", "device:cpu", "dict:cuda:0->cpu")
              and not (r["case"] == "cuda_index1" and r["load"]["map_location"] == "dict:cuda:0->cpu")]
    assert no_map and to_cpu
    for r in no_map:
        assert r["outcome"] == "error" and r["expected"], r
        assert "Attempting to deserialize object on a CUDA device" in r["error"]["message"]
        assert r["diagnosis"]["code"] == "cuda_storage_on_cpu_host"
        assert 'map_location="cpu"' in r["diagnosis"]["fix"]
    for r in to_cpu:
        assert r["outcome"] == "pass", r


def test_emulated_storages_really_carry_the_cuda_tag(run):
    root, _, _ = run
    from harness.runtime.emulation import file_has_tag

    label = next(p.name for p in (root / "A").iterdir() if p.name.endswith("-cuda-emulated"))
    assert file_has_tag(root / "A" / label / "simple_net" / "state_dict" / "model.pt")
    cpu_label = label.replace("-cuda-emulated", "-cpu")
    assert not file_has_tag(root / "A" / cpu_label / "simple_net" / "state_dict" / "model.pt")


def test_second_run_reuses_artifacts_and_cells(run):
    root, _, rows = run
    again = run_cli("save", "--out", str(root / "A"), cwd=root)
    assert again.returncode == 0 and " 0 saved" in again.stderr
    load = run_cli("load", "--artifacts", str(root / "A"), "--results", str(root / "R"), cwd=root)
    assert load.returncode == 0
    assert "0 cells" in load.stderr and f"{len(rows)} already recorded" in load.stderr
    assert len(read_results(root / "R")) == len(rows)  # nothing recorded twice
