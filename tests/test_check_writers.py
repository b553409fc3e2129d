"""Which releases wrote a file (`harness.check.writers`): never a range that misses the truth.

Every golden file's range must hold the release that wrote it (and the zip
formats must say something); each rule is tested on an archive that has
exactly the records the rule reads, so a rule that named the wrong release
fails here. The archives are real ones saved by this torch with records
dropped, added or renamed, as an older (or a forging) writer would leave them.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest

from tests.fleet_corpus import golden_model_files

LEGACY = "torch < 1.6, or any later release with _use_new_zipfile_serialization=False"


def _release(text: Optional[str]) -> Optional[tuple]:
    return tuple(int(n) for n in text.split(".")) if text else None


def _holds(writer: dict, release: str) -> bool:
    """Whether `release` (``2.0.1``) lies in the writer's range; bounds name minor releases unless exact."""
    full = _release(release)
    first, last = _release(writer["first"]), _release(writer["last"])
    return (first is None or full[: len(first)] >= first) and (last is None or full[: len(last)] <= last)


def _sniff(path):
    from harness.check.sniff import sniff

    return sniff(Path(path))


@pytest.fixture(scope="module")
def golden_writers(golden_unpacked):
    """(release, format folder, relative path) -> (sniffed format, writer) for every golden model file."""
    out = {}
    for path in golden_model_files(golden_unpacked):
        label, _case, fmt = path.relative_to(golden_unpacked).parts[:3]
        release = label.split("torch-", 1)[1].split("-", 1)[0]
        sniffed = _sniff(path)
        out[(release, fmt, path.relative_to(golden_unpacked).as_posix())] = (sniffed.format, sniffed.writer)
    return out


def test_every_golden_file_is_given_a_range_that_holds_its_release(golden_writers):
    assert len(golden_writers) > 900
    wrong, silent = [], []
    for (release, _fmt, rel), (sniffed_format, writer) in golden_writers.items():
        told = writer is not None and writer["releases"] != "any torch release"
        if sniffed_format in ("torch_zip", "torchscript", "exported", "torch_legacy") and not told:
            silent.append(rel)
            continue
        if writer is not None and not _holds(writer, release):
            wrong.append(f"{rel}: {writer['releases']} ({writer['evidence']})")
    assert not wrong, "\n".join(wrong[:10])
    assert not silent, silent[:10]


@pytest.mark.parametrize(
    ("release", "fmt", "expected"),
    [
        ("1.4.0", "state_dict", {LEGACY}),  # torch.save's default before 1.6
        ("1.4.0", "torchscript", {"torch <= 1.4"}),
        ("1.8.1", "state_dict", {"torch 1.6 - 2.0"}),  # folder "archive", no byteorder
        ("1.8.1", "torchscript", {"torch 1.6 - 2.0"}),
        ("1.13.1", "state_dict", {"torch 1.9 - 2.0"}),  # a folder named after the file
        ("2.0.1", "state_dict", {"torch 1.9 - 2.0"}),  # never ">= 2.1": no byteorder record
        ("2.0.1", "torchscript", {"torch 2.0"}),  # traced inputs, no byteorder
        ("2.4.1", "state_dict", {"torch 2.1 - 2.7"}),  # byteorder, no .format_version
        ("2.4.1", "exported", {"torch 2.4"}),  # schema 5.3
        ("2.8.0", "state_dict", {"torch >= 2.7"}),
        ("2.8.0", "checkpoint", {"torch >= 2.7"}),
        ("2.8.0", "exported", {"torch 2.8.0"}),  # the program names its release
        ("2.15.0", "state_dict", {"torch >= 2.7"}),
        ("2.15.0", "state_dict_legacy", {LEGACY}),
    ],
)
def test_golden_ranges(golden_writers, release, fmt, expected):
    found = Counter(w["releases"] for (r, f, _), (_, w) in golden_writers.items() if r == release and f == fmt and w)
    assert found, f"no golden {fmt} file of {release}"
    assert set(found) == expected, found


def test_golden_safetensors_tell_no_release(golden_writers):
    writers = [w for (_, fmt, _), (_, w) in golden_writers.items() if fmt == "safetensors"]
    assert writers and all(w is None for w in writers)


# -- each rule on an archive holding exactly its records ---------------------------


@pytest.fixture(scope="module")
def saved(torch, tmp_path_factory):
    """Files this torch writes: name -> bytes."""
    import warnings

    root = tmp_path_factory.mktemp("writers")
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)}
    out = {}
    torch.save(state, root / "model.pt")
    out["state_dict"] = (root / "model.pt").read_bytes()
    legacy = io.BytesIO()
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    out["legacy"] = legacy.getvalue()
    small = torch.nn.Linear(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation
        torch.jit.script(small).save(str(root / "scripted.ts"))
        torch.jit.trace(small, torch.ones(1, 3)).save(str(root / "traced.ts"))
    out["scripted"] = (root / "scripted.ts").read_bytes()
    out["traced"] = (root / "traced.ts").read_bytes()
    return out


_OPTIONAL = ("byteorder", ".data/serialization_id", ".format_version", ".storage_alignment", "version", ".data/version")


def _rezip(data: bytes, *, folder: Optional[str] = None, drop: tuple = _OPTIONAL, put: Optional[dict] = None) -> bytes:
    """`data`'s archive with records (names below its folder) dropped, then `put` ones written, the folder renamed."""
    put = dict(put or {})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        names = zin.namelist()
        old = names[0].split("/", 1)[0]
        new = folder or old
        for name in names:
            base = name.split("/", 1)[1]
            if base in drop and base not in put:
                continue
            body = put.pop(base) if base in put else zin.read(name)
            zout.writestr(f"{new}/{base}", body)
        for base, body in put.items():
            zout.writestr(f"{new}/{base}", body)
    return out.getvalue()


def _writer(tmp_path, data: bytes, name: str = "file.pt") -> Optional[dict]:
    path = tmp_path / name
    path.write_bytes(data)
    return _sniff(path).writer


@pytest.mark.parametrize(
    ("folder", "put", "releases"),
    [
        ("archive", {"version": b"3\n"}, "torch 1.6 - 2.0"),
        ("model", {"version": b"3\n"}, "torch 1.9 - 2.0"),  # 1.6 - 1.8 name every folder "archive"
        ("archive", {"version": b"3\n", "byteorder": b"little"}, "torch 2.1 - 2.7"),
        ("archive", {"version": b"3\n", ".data/serialization_id": b"0" * 40}, "torch 2.1 - 2.7"),
        ("archive", {"version": b"3\n", "byteorder": b"little", ".format_version": b"1", ".storage_alignment": b"64"}, "torch >= 2.7"),
        ("sd_path", {"version": b"2\n"}, "torch 1.5"),
        ("sd_path", {"version": b"1\n"}, "torch <= 1.4"),
        ("archive", {"version": b"7\n"}, "torch 1.6 - 2.0"),
    ],
)
def test_torch_save_rules(saved, tmp_path, folder, put, releases):
    writer = _writer(tmp_path, _rezip(saved["state_dict"], folder=folder, put=put))
    assert writer is not None and writer["releases"] == releases, writer


def test_a_missing_record_newer_records_contradict_is_evidence_not_a_bound(saved, tmp_path):
    # .format_version says >= 2.7; the byteorder every release since 2.1 writes is gone: rewritten.
    writer = _writer(tmp_path, _rezip(saved["state_dict"], put={"version": b"3\n", ".format_version": b"1"}))
    assert writer["releases"] == "torch >= 2.7"
    assert any("rewritten" in e and "byteorder" in e for e in writer["evidence"]), writer["evidence"]


def test_records_no_release_writes_together(saved, tmp_path):
    writer = _writer(tmp_path, _rezip(saved["state_dict"], put={"version": b"1\n", "byteorder": b"little"}))
    assert writer["releases"].startswith("no torch release") and writer["first"] is None and writer["last"] is None


def test_an_archive_without_a_version_record_tells_nothing(saved, tmp_path):
    assert _writer(tmp_path, _rezip(saved["state_dict"])) is None


def test_this_torch_is_inside_its_own_ranges(saved, torch, tmp_path):
    release = torch.__version__.split("+")[0]
    for name, data in saved.items():
        writer = _writer(tmp_path, data, name)
        assert writer is not None and _holds(writer, release), (name, writer)


@pytest.mark.parametrize(
    ("name", "drop", "put", "releases"),
    [
        ("traced", _OPTIONAL, {"version": b"3\n"}, "torch 2.0"),  # traced inputs (2.0 on), no byteorder (2.0 at most)
        ("scripted", _OPTIONAL, {"version": b"3\n"}, "torch 1.6 - 2.0"),
        ("scripted", _OPTIONAL, {"version": b"4\n"}, "torch 1.6 - 2.0"),  # a newer operator version: still 1.6 on
        ("scripted", _OPTIONAL, {"version": b"2\n"}, "torch 1.5"),
        ("scripted", (), {}, "torch >= 2.1"),
        ("traced", (), {}, "torch >= 2.1"),
    ],
)
def test_torchscript_rules(saved, tmp_path, name, drop, put, releases):
    writer = _writer(tmp_path, _rezip(saved[name], drop=drop, put=put), name + ".ts")
    assert writer is not None and writer["releases"] == releases, writer


def test_a_torchscript_folder_says_nothing(saved, tmp_path):
    # TorchScript names its folder after the file in every release: not the torch.save rule.
    writer = _writer(tmp_path, _rezip(saved["scripted"], folder="model", put={"version": b"3\n"}), "m.ts")
    assert writer["releases"] == "torch 1.6 - 2.0"


@pytest.mark.parametrize(
    ("schema", "first", "last"),
    [
        ((1, 0), (2, 1), (2, 1)),
        ((2, 0), (2, 2), (2, 2)),
        ((5, 1), (2, 3), (2, 3)),
        ((5, 2), (2, 3), (2, 4)),  # between two releases checked: either
        ((8, 5), (2, 6), (2, 8)),
        ((9, 0), (2, 15), None),  # newer than any checked
        ((0, 5), None, (2, 1)),
    ],
)
def test_export_schema_versions(schema, first, last):
    from harness.check.writers import schema_range

    assert schema_range(schema) == (first, last)


def _exported_with(data: bytes, change) -> bytes:
    """The exported archive with its program JSON changed by `change(dict)`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = zin.read(info)
            if "/models/" in f"/{info.filename}" and info.filename.endswith(".json") or info.filename == "serialized_exported_program.json":
                program = json.loads(body)
                change(program)
                body = json.dumps(program).encode()
            zout.writestr(info.filename, body)
    return out.getvalue()


def test_exported_names_its_release(golden_unpacked, tmp_path):
    # torch.export takes seconds: the golden 2.15.0 package stands in for one saved now.
    data = (golden_unpacked / "golden-torch-2.15.0-py3.11-cpu/simple_net/exported/model.pt2").read_bytes()
    assert _writer(tmp_path, data, "e.pt2")["releases"] == "torch 2.15.0"
    named = _writer(tmp_path, _exported_with(data, lambda p: p.update(torch_version="2.15.7+cpu")), "n.pt2")
    assert named["releases"] == "torch 2.15.7"
    # A pt2 package is 2.7 or later, of schema 8.20 2.15: a release before that in its JSON is no writer of it.
    forged = _writer(tmp_path, _exported_with(data, lambda p: p.update(torch_version="2.2.0")), "f.pt2")
    assert forged["releases"] == "torch 2.15" and any("is not one that writes" in e for e in forged["evidence"])
    unnamed = _writer(tmp_path, _exported_with(data, lambda p: p.pop("torch_version", None)), "u.pt2")
    assert unnamed["releases"] == "torch 2.15", unnamed
    older = (golden_unpacked / "golden-torch-2.4.1-py3.11-cpu/simple_net/exported/model.pt2").read_bytes()
    flat = _writer(tmp_path, _exported_with(older, lambda p: p.update(schema_version={"major": 5, "minor": 2})), "o.pt2")
    assert flat["releases"] == "torch 2.3 - 2.4", flat


def test_legacy_and_tar(saved, tmp_path):
    assert _writer(tmp_path, saved["legacy"], "legacy.pt")["releases"] == LEGACY
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, body in (("sys_info", pickle.dumps({}, protocol=2)), ("pickle", pickle.dumps({}, protocol=2)),
                           ("storages", pickle.dumps(0, protocol=2)), ("tensors", pickle.dumps(0, protocol=2))):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    writer = _writer(tmp_path, tar.getvalue(), "old.tar")
    assert writer["releases"] == "torch < 0.4"


def test_files_torch_did_not_write_tell_no_release(torch, tmp_path):
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(3))
    assert _sniff(tmp_path / "a.npy").writer is None
    assert _writer(tmp_path, pickle.dumps({"w": [1, 2]}, protocol=2), "plain.pkl") is None
    assert _writer(tmp_path, b"PK\x03\x04 not really", "bad.zip") is None
    try:
        from safetensors.torch import save_file
    except ImportError:
        return
    save_file({"w": torch.ones(2)}, str(tmp_path / "m.safetensors"))
    assert _sniff(tmp_path / "m.safetensors").writer is None


def test_reports_carry_the_writer(saved, tmp_path):
    from harness.check.checker import check_file, render_text
    from harness.check.findings import FileReport

    path = tmp_path / "m.pt"
    path.write_bytes(_rezip(saved["state_dict"], folder="archive", put={"version": b"3\n"}))
    report = check_file(path, cuda=False)
    assert report.writer == _sniff(path).writer and report.writer["releases"] == "torch 1.6 - 2.0"
    assert FileReport.from_dict(json.loads(json.dumps(report.to_dict()))).writer == report.writer
    assert "written by: torch 1.6 - 2.0 (record version is 3" in render_text([report], trust=False)
