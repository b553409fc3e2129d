"""`bench` runs end to end on a tiny size and writes every figure (no timing is asserted)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_bench_quick_writes_every_key(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    done = run_cli("bench", "--quick", "--gib", "0.02", "--out", str(out), "--work", str(tmp_path / "w"), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    from harness.bench import TARGETS

    assert set(data["figures"]) >= set(TARGETS) - {"env_ready_cached_s"}
    assert set(data["targets"]) == set(TARGETS) and set(data["met"]) == set(TARGETS)
    assert data["machine"]["torch"] and data["raw"]["bare_load_seconds"]
    assert set(data["figures"]["peak_rss_ratio"]) == {"no_mmap", "mmap"}
    for key in TARGETS:
        assert key in done.stdout


def test_bench_rejects_a_bad_size(tmp_path):
    done = run_cli("bench", "--gib", "0", "--out", str(tmp_path / "b.json"))
    assert done.returncode == 2 and "--gib" in done.stderr and "Traceback" not in done.stderr
