"""A fleet run (``check DIR --out OUT``): one line per file as it goes, resumed, crashes as findings, shards merged.

The workers are real (forked from a fork server); the fleets are small. The
1000-file fleet, killed and resumed, is tests/test_fleet_e2e.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from harness.check.fleet import KILL_AFTER_ENV, FleetOptions, run_fleet
from harness.check.fleet_record import FLEET_FILE, latest, read_lines
from harness.check.walk import FleetFile
from harness.check.worker import FAULT_ENV
from tests.hostile_files import write_corpus


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A small fleet: real state dicts in folders, and the hostile corpus (payloads write markers)."""
    import torch

    root = tmp_path_factory.mktemp("fleet") / "ckpts"
    for i in range(6):
        folder = root / f"run{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.full((3, 2), float(i)), "b": torch.arange(i + 1)}, folder / f"model-{i}.pt")
    write_corpus(root / "odd")
    return root


@pytest.fixture(scope="module")
def server():
    """One fork server for the module's runs: each run would otherwise import torch afresh (seconds)."""
    from harness.check.worker import PRELOAD
    from harness.runtime.forkserver import ForkServer

    with ForkServer(PRELOAD) as s:
        yield s


def _names(lines):
    return sorted(line.file for line in lines)


def _walked(root):
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _run(server, root, out, **kw):
    return run_fleet(_options(root, out, **kw), server)


def _options(root, out, **kw):
    kw.setdefault("workers", 2)
    kw.setdefault("progress", False)
    return FleetOptions(paths=(str(root),), out=out, **kw)


def test_every_file_gets_one_line_and_bad_files_are_findings(fleet, tmp_path, server):
    out = tmp_path / "out"
    run = _run(server, fleet, out)
    lines = read_lines(out / FLEET_FILE, strict=True)
    assert _names(lines) == _walked(fleet) == _names(run.own)
    assert run.checked == len(lines) and run.reused == 0 and run.label.startswith("torch-")
    by_name = {os.path.basename(line.file): line for line in lines}
    assert by_name["model-3.pt"].verdict == "loads" and not by_name["model-3.pt"].findings
    assert by_name["model-3.pt"].report["format"] == "torch_zip" and by_name["model-3.pt"].report["tensors_total"] == 2
    assert by_name["empty.pt"].verdict == "not_checked" and by_name["empty.pt"].findings
    assert by_name["payload_zip.pt"].report["code_globals"]
    assert not list(fleet.rglob("*.ran")), "a payload ran: nothing may unpickle a fleet's files without --trust"
    assert (out / "index.html").is_file() and (out / "summary.md").is_file()
    line = by_name["model-0.pt"]
    st = os.stat(line.file)
    assert (line.size, line.mtime_ns, line.trust) == (st.st_size, st.st_mtime_ns, False)


def test_a_second_run_reuses_unchanged_files_and_rechecks_changed_ones(fleet, tmp_path, server):
    import torch

    root = tmp_path / "copy"
    root.mkdir()
    for i in range(4):
        torch.save({"w": torch.ones(i + 1)}, root / f"m{i}.pt")
    out = tmp_path / "out"
    _run(server, root, out)
    again = _run(server, root, out)
    assert (again.checked, again.reused) == (0, 4)
    torch.save({"w": torch.zeros(9)}, root / "m1.pt")  # changed: another size
    (root / "m2.pt").unlink()  # gone: its line goes too
    (root / "m9.pt").write_bytes(b"new")
    third = _run(server, root, out)
    assert (third.checked, third.reused, third.dropped) == (2, 2, 1)
    lines = read_lines(out / FLEET_FILE, strict=True)
    assert _names(lines) == sorted(str(root / n) for n in ("m0.pt", "m1.pt", "m3.pt", "m9.pt"))
    assert next(x for x in lines if x.file.endswith("m1.pt")).report["tensors"][0]["shape"] == [9]
    # --trust changes what is tried: every file is checked again, its trusted loads in children a worker forks.
    trusted = _run(server, root, out, trust=True)
    assert trusted.checked == 4
    for line in trusted.own:
        if line.report["format"] == "torch_zip":
            children = [a for a in line.report["attempts"] if a["where"] == "child"]
            assert children and all(a["status"] == "loaded" for a in children), line.report["attempts"]


def test_a_torn_last_line_is_checked_again(tmp_path, server):
    import torch

    root = tmp_path / "r"
    root.mkdir()
    for i in range(3):
        torch.save({"w": torch.ones(2)}, root / f"m{i}.pt")
    out = tmp_path / "out"
    _run(server, root, out)
    text = (out / FLEET_FILE).read_text()
    (out / FLEET_FILE).write_text(text[: len(text) - 40])  # killed mid-write
    run = _run(server, root, out)
    assert (run.checked, run.reused) == (1, 2)
    assert len(read_lines(out / FLEET_FILE, strict=True)) == 3


def test_a_file_that_kills_its_worker_is_a_finding_and_the_run_goes_on(fleet, tmp_path, monkeypatch, server):
    monkeypatch.setenv(FAULT_ENV, "crash@model-1.pt crash@model-4.pt")
    out = tmp_path / "out"
    run = _run(server, fleet / "run1", out)
    by_name = {os.path.basename(x.file): x for x in run.own}
    assert sorted(by_name) == ["model-1.pt", "model-4.pt"]
    for name in ("model-1.pt", "model-4.pt"):
        line = by_name[name]
        assert line.verdict == "crashed" and line.findings
        assert "SIGABRT" in line.report["summary"] and line.report["diagnosis"]["code"] == "check_crash"
    assert run.restarts == 2


def test_a_file_that_hangs_its_worker_times_out(fleet, tmp_path, monkeypatch, server):
    monkeypatch.setenv(FAULT_ENV, "hang@model-0.pt")
    run = _run(server, fleet / "run0", tmp_path / "out", timeout=0.5)
    by_name = {os.path.basename(x.file): x for x in run.own}
    assert by_name["model-0.pt"].verdict == "crashed" and by_name["model-0.pt"].report["diagnosis"]["code"] == "check_timeout"
    assert by_name["model-3.pt"].verdict == "loads"


def test_a_file_that_vanishes_before_its_check_is_a_finding(tmp_path, monkeypatch, server):
    import harness.check.fleet as fleet_module

    real = tmp_path / "r" / "m.pt"
    real.parent.mkdir()
    real.write_bytes(b"PK")
    gone = FleetFile(str(tmp_path / "r" / "gone.pt"), str(tmp_path / "r"), str(tmp_path / "r" / "gone.pt"))
    monkeypatch.setattr(fleet_module, "walk", lambda *a, **k: iter([gone, FleetFile(str(real), str(tmp_path / "r"), str(real))]))
    run = _run(server, tmp_path / "r", tmp_path / "out")
    by_name = {os.path.basename(x.file): x for x in run.own}
    assert by_name["gone.pt"].report["diagnosis"]["code"] == "file_vanished" and by_name["gone.pt"].findings
    assert by_name["m.pt"].verdict == "not_checked"


def test_shards_merge_into_the_whole_fleet(fleet, tmp_path, cli, server):
    whole = _run(server, fleet, tmp_path / "whole")
    parts = [tmp_path / f"shard{i}" for i in (1, 2, 3)]
    for i, out in enumerate(parts, 1):
        _run(server, fleet, out, shard=(i, 3))
    sizes = [len(read_lines(p / FLEET_FILE)) for p in parts]
    assert sum(sizes) == len(whole.own) and all(sizes)
    done = cli("merge", *map(str, parts), "--out", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    merged = read_lines(tmp_path / "merged" / FLEET_FILE, strict=True)
    assert _names(merged) == _names(whole.own)
    assert [x.verdict for x in latest(merged)] == [x.verdict for x in latest(whole.own)]
    assert (tmp_path / "merged" / "index.html").is_file()
    # A result folder and a fleet folder do not merge.
    (tmp_path / "results").mkdir()
    bad = cli("merge", str(parts[0]), str(tmp_path / "results"), "--out", str(tmp_path / "m2"))
    assert bad.returncode == 2 and "not both" in bad.stderr


def test_envs_merge_into_one_grid(fleet, tmp_path, cli, server):
    for label in ("torch-2.4.1-py3.11-cpu", "torch-2.15.0-py3.11-cpu"):
        _run(server, fleet / "run2", tmp_path / label, label=label)
    done = cli("merge", str(tmp_path / "torch-2.4.1-py3.11-cpu"), str(tmp_path / "torch-2.15.0-py3.11-cpu"), "--out", str(tmp_path / "grid"))
    assert done.returncode == 0, done.stderr
    lines = read_lines(tmp_path / "grid" / FLEET_FILE, strict=True)
    assert sorted({x.env for x in lines}) == ["torch-2.15.0-py3.11-cpu", "torch-2.4.1-py3.11-cpu"]
    assert len(lines) == 2 * len({x.file for x in lines})


def test_the_cli_runs_a_fleet_and_exits_1_on_findings(fleet, tmp_path, cli):
    done = cli("check", str(fleet / "run0"), "--out", str(tmp_path / "ok"), "-q")
    assert done.returncode == 0, done.stderr
    assert "2 files in torch-" in done.stderr and "0 with findings" in done.stderr
    done = cli("check", str(fleet / "odd"), "--out", str(tmp_path / "bad"), "--exclude", "payload_*", "-q")
    assert done.returncode == 1
    files = {os.path.basename(x.file) for x in read_lines(tmp_path / "bad" / FLEET_FILE)}
    assert "empty.pt" in files and not any(f.startswith("payload_") for f in files)


@pytest.mark.parametrize(("args", "message"), [
    (["{d}"], "give --out FOLDER"),
    (["{d}", "--out", "{t}/o", "--json"], "--json prints one document"),
    (["{d}", "--out", "{t}/o", "--workers", "0"], "--workers=0 must be >= 1"),
    (["{d}", "--out", "{t}/o", "--shard", "3/2"], "--shard '3/2'"),
    (["{d}", "--out", "{t}/o", "--include", "/abs"], "relative to the folder"),
    (["{t}/nope", "--out", "{t}/o"], "no such file or folder"),
    (["{d}", "--out", "{f}"], "is a file"),
])
def test_fleet_usage_errors_are_one_line(fleet, tmp_path, cli, args, message):
    (tmp_path / "afile").write_text("x")
    argv = [a.format(d=fleet / "run0", t=tmp_path, f=tmp_path / "afile") for a in args]
    done = cli("check", *argv)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_killed_part_way_then_resumed_reports_every_file_once(fleet, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, KILL_AFTER_ENV: "5", "TORCH_ROUNDTRIP_PLAIN": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "harness", "check", str(fleet), "--out", str(out), "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert 5 <= len(read_lines(out / FLEET_FILE)) < len(_walked(fleet))
    done = run_cli("check", str(fleet), "--out", str(out), "--workers", "2")
    assert done.returncode == 1, done.stderr
    lines = read_lines(out / FLEET_FILE, strict=True)
    assert _names(lines) == _walked(fleet)
    assert len((out / FLEET_FILE).read_text().splitlines()) == len(lines)
    reused = re.search(r"reused (\d+) unchanged", done.stderr)
    assert reused and int(reused.group(1)) >= 5, done.stderr
