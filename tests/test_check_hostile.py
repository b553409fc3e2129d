"""Hostile and broken input: one clear line, exit status 1 or 2, nothing run, nothing written.

The corpus comes from `tests.hostile_files` at test time. Payload pickles
write a marker file holding the pid of the process that unpickled them:
without --trust the marker must never appear; with --trust it may appear,
and must name a child process, never the harness process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.hostile_files import hang_and_crash, run_check, write_corpus

CORPUS_NAMES = [
    "empty.pt", "random.bin", "notes.txt", "truncated_zip.pt", "truncated_legacy_pickle.pt",
    "truncated_legacy_data.pt", "not_torch.zip", "missing_data_pkl.pt", "missing_storage.pt",
    "payload_zip.pt", "payload_legacy.pt", "payload_protocol4.pt", "payload_plain.pkl",
    "absurd_zip.pt", "absurd_legacy.pt", "tensor_past_storage.pt", "zip_bomb.pt", "duplicate_records.pt",
    "tar_polyglot.pt",
]
PAYLOADS = ["payload_zip.pt", "payload_legacy.pt", "payload_protocol4.pt", "payload_plain.pkl"]


@pytest.fixture(scope="module")
def corpus(torch, tmp_path_factory):
    made = write_corpus(tmp_path_factory.mktemp("hostile"))
    assert sorted(made) == sorted(CORPUS_NAMES), "the corpus and this test disagree on its files"
    return made


@pytest.fixture(autouse=True)
def _no_markers(corpus):
    for h in corpus.values():
        if h.marker is not None and h.marker.exists():
            h.marker.unlink()
    yield


def _snapshot(directory: Path) -> dict:
    return {p.name: p.stat().st_size for p in directory.iterdir()}


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_check_survives(corpus, name):
    """In-process API: a report with the expected format and finding, and no payload run."""
    from harness.check.checker import check_file

    h = corpus[name]
    before = _snapshot(h.path.parent)
    report = check_file(h.path, cuda=False)
    assert report.findings
    assert h.message in report.summary, report.summary
    assert "\n" not in report.summary
    if h.format:
        assert report.format == h.format, report.why
    assert h.marker is None or not h.marker.exists(), "the payload ran in the harness process"
    assert _snapshot(h.path.parent) == before, "check wrote a file"
    for a in report.attempts:  # nothing but weights_only and safetensors ran here
        if a.where == "harness":
            assert a.loader in ("torch.load", "safetensors.torch.load_file")
            assert a.options.get("weights_only") in (None, "true", "default")
    json.dumps(report.to_dict())  # the report is plain data


@pytest.mark.parametrize("name", PAYLOADS)
def test_payload_is_named(corpus, name):
    from harness.check.checker import check_file

    report = check_file(corpus[name].path, cuda=False)
    assert "posix.system" in report.code_globals or "nt.system" in report.code_globals
    assert report.summary.startswith("do not load this file unless you trust it: "), report.summary
    (entry,) = report.code
    assert entry["kind"] == "known gadget" and entry["offset"] > 0
    assert entry["call"].startswith(entry["global"] + "('echo $PPID > "), entry["call"]
    assert report.findings and report.runs_code


def test_inconsistent_files_never_reach_torch_here(corpus):
    """Declared sizes that the bytes do not back are caught before torch allocates them."""
    from harness.check.checker import check_file

    for name in ("absurd_zip.pt", "absurd_legacy.pt", "tensor_past_storage.pt", "missing_storage.pt", "duplicate_records.pt",
                 "zip_bomb.pt", "tar_polyglot.pt"):
        report = check_file(corpus[name].path, cuda=False)
        assert report.problems, name
        assert report.attempts and all(a.where is None for a in report.attempts), name
        assert all(a.status == "not_tried" for a in report.attempts), name


def test_tar_polyglot_is_a_tar(corpus):
    """torch.load would take its tar path: the corpus file really is both."""
    import pickle
    import tarfile

    path = corpus["tar_polyglot.pt"].path
    assert tarfile.is_tarfile(str(path))
    with open(path, "rb") as fh:
        assert pickle.load(fh) == 0x1950A86A20F9469CFC6C


def test_torch_reader_must_agree(torch, tmp_path, monkeypatch):
    """An archive whose records torch's reader sees differently (a TorchScript one) is not loaded here."""
    from harness.check.checker import check_file

    path = tmp_path / "sd.pt"
    torch.save({"w": torch.ones(2)}, str(path))
    assert check_file(path, cuda=False).verdict == "loads"

    real = torch._C.PyTorchFileReader

    class Disagrees:
        def __init__(self, name):
            self.records = real(name).get_all_records() + ["constants.pkl"]

        def get_all_records(self):
            return self.records

    monkeypatch.setattr(torch._C, "PyTorchFileReader", Disagrees)
    report = check_file(path, cuda=False)
    assert any("sees a TorchScript archive" in p for p in report.problems)
    assert all(a.where is None for a in report.attempts)


def test_cli_one_line_per_file(corpus, tmp_path):
    """All of the corpus in one run: exit 1, one stderr line per file, no traceback, no writes."""
    paths = [str(corpus[n].path) for n in CORPUS_NAMES]
    before = _snapshot(corpus[CORPUS_NAMES[0]].path.parent)
    proc = run_check(*paths, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(paths), proc.stderr
    for name, line in zip(CORPUS_NAMES, lines):
        assert line.startswith(f"torch-roundtrip check: {corpus[name].path}: "), line
        assert corpus[name].message in line, line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not any(corpus[n].marker.exists() for n in PAYLOADS)
    assert _snapshot(corpus[CORPUS_NAMES[0]].path.parent) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_cli_each_file(corpus, name, tmp_path):
    proc = run_check(str(corpus[name].path), cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert corpus[name].message in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in line
    assert corpus[name].marker is None or not corpus[name].marker.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nope.pt", "nope.pt: no such file"),
        (lambda d: d, "checking a folder writes a fleet report: give --out FOLDER"),
    ],
    ids=["missing", "directory"],
)
def test_bad_paths_exit_2(tmp_path, make, message):
    target = make(tmp_path)
    proc = run_check(str(target), cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("torch-roundtrip check: error: ") and message in line
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_exit_2(tmp_path):
    locked = tmp_path / "locked.pt"
    locked.write_bytes(b"x")
    locked.chmod(0)
    proc = run_check(str(locked), cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "locked.pt: cannot read it" in line


def test_fifo_is_refused_without_blocking(tmp_path):
    from harness.check.checker import check_paths
    from harness.runtime.errors import InputError

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="pipe.pt is not a regular file"):
        check_paths([str(fifo)])


def _marker_pid(marker: Path) -> int:
    return int(marker.read_text().split()[0])


@pytest.mark.parametrize("name", ["payload_zip.pt", "payload_legacy.pt"])
def test_trust_runs_payload_only_in_a_child(corpus, name):
    """With --trust the full unpickle happens, in a child of the harness, and the report says where."""
    from harness.check.checker import check_file

    h = corpus[name]
    report = check_file(h.path, trust=True, timeout=120, cuda=False)
    assert h.marker.exists(), "the trusted load did not run at all"
    pid = _marker_pid(h.marker)
    assert pid != os.getpid(), "the payload ran in the harness process"
    trusted = [a for a in report.attempts if a.where == "child"]
    assert trusted and all(a.options["weights_only"] in ("false", "default") for a in trusted)
    # the object it unpickled: {"w": os.system(...)}, a dict without tensors
    assert any(a.status == "loaded" and a.detail == "dict of 1 entry, 0 tensors" for a in trusted)
    harness = [a for a in report.attempts if a.where == "harness"]
    assert harness and all(a.status == "failed" for a in harness)
    assert report.code_globals


@pytest.mark.slow
def test_trust_cli_says_child(corpus, tmp_path):
    h = corpus["payload_zip.pt"]
    proc = run_check("--trust", "--timeout", "120", str(h.path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "in a child process" in proc.stdout
    assert _marker_pid(h.marker) != proc.pid
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_trust_survives_hang_and_crash(torch, tmp_path):
    from harness.check.checker import check_file

    paths = hang_and_crash(tmp_path)
    start = time.monotonic()
    hang = check_file(paths["hang.pt"], trust=True, timeout=3, cuda=False)
    assert time.monotonic() - start < 60
    statuses = [a.status for a in hang.attempts if a.where == "child"]
    assert statuses[0] == "timeout" and set(statuses[1:]) == {"not_tried"}
    crash = check_file(paths["crash.pt"], trust=True, timeout=60, cuda=False)
    crashed = [a for a in crash.attempts if a.status == "crash"]
    assert crashed and "SIGABRT" in crashed[0].detail
    assert crash.verdict == "does_not_load"
    assert set(tmp_path.iterdir()) == set(paths.values())  # no core file, nothing else
