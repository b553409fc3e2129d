"""``check``'s code verdict: every pickle of a file is scanned, and globals are classified allowlist first.

Payloads here are bytes written by hand (or by pickling a ``__reduce__``)
and are only ever read by the scanner under test; if one ran, it would
create a marker file, which each test checks is absent.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness.check.global_kinds import CODE, DATA, SAFE, classify
from harness.check.pickle_scan import PickleScanError, scan, scan_all
from harness.check.torchscript_code import escapes
from tests.hostile_files import crafted_zip, legacy_stream

UNTRUSTED = "do not load this file unless you trust it: "


def _payload(marker: Path, protocol: int = 2) -> bytes:
    """``posix.system('touch MARKER')`` as a pickle of `protocol`, written opcode by opcode."""
    command = f"touch {marker}".encode()
    if protocol == 0:
        return b"cposix\nsystem\n(V" + command + b"\ntR."
    return b"\x80\x02cposix\nsystem\nX" + len(command).to_bytes(4, "little") + command + b"\x85R."


def _check(path: Path):
    from harness.check.checker import check_file

    return check_file(path, cuda=False)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a payload ran"


# -- the scanner ---------------------------------------------------------------


def test_scan_all_reads_every_pickle_of_a_stream(marker):
    data = pickle.dumps({"a": 1}, protocol=2) + _payload(marker)
    found, error = scan_all(io.BytesIO(data))
    assert error is None and len(found) == 2
    assert found[0].globals == [] and found[1].globals == ["posix.system"]
    assert found[1].start == len(pickle.dumps({"a": 1}, protocol=2))
    (call,) = found[1].calls
    assert call.text == f"posix.system('touch {marker}')" and call.root == "posix.system"


def test_a_malformed_pickle_keeps_what_it_named_before_the_error(marker):
    data = _payload(marker)[:-1] + b"h\x09."  # then a memo reference never stored
    with pytest.raises(PickleScanError) as caught:
        scan(data)
    facts = caught.value.facts
    assert facts is not None and facts.globals == ["posix.system"] and facts.calls


def test_global_offsets_point_at_the_naming_opcode(marker):
    data = pickle.dumps([1, 2, 3], protocol=2)[:-1] + b"0" + _payload(marker)[2:]  # POP, then the payload
    facts = scan(data)
    (use,) = facts.uses
    assert data[use.offset:use.offset + 1] == b"c"


# -- classification ------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "kind", "known"),
    [
        ("torch._utils", "_rebuild_tensor_v2", SAFE, False),
        ("collections", "OrderedDict", SAFE, False),
        ("torch", "FloatStorage", SAFE, False),
        ("numpy.core.multiarray", "_reconstruct", DATA, False),
        ("numpy._core.multiarray", "scalar", DATA, False),
        ("numpy.dtypes", "Float64DType", DATA, False),
        ("argparse", "Namespace", DATA, False),
        ("torch.nn.modules.linear", "Linear", DATA, False),
        ("posix", "system", CODE, True),
        ("builtins", "eval.__call__", CODE, True),  # an attribute chain
        ("pathlib", "os.system", CODE, True),
        ("pkgutil", "resolve_name", CODE, True),
        ("pydoc", "locate", CODE, True),
        ("uuid", "_get_command_stdout", CODE, True),
        ("_io", "FileIO", CODE, True),
        ("logging.config", "listen", CODE, True),
        ("torch.storage", "_load_from_bytes", CODE, True),
        ("numpy.testing._private.utils", "runstring", CODE, True),
        ("mymodels", "Net", CODE, False),  # unknown: code until shown otherwise
        ("torch.nn.modules.linear", "Linear.__init__", CODE, False),
        ("collections", "namedtuple", CODE, False),
    ],
)
def test_classify_is_allowlist_first(module, name, kind, known):
    found = classify(module, name)
    assert (found.kind, found.known_gadget) == (kind, known)


# -- files -----------------------------------------------------------------------


def _flags(report, name: str) -> None:
    assert report.summary.startswith(UNTRUSTED), report.summary
    assert name in report.code_globals
    assert report.findings and report.runs_code


def test_protocol_0_plain_pickle_is_scanned_not_called_text(tmp_path, marker):
    path = tmp_path / "model.pkl"
    path.write_bytes(_payload(marker, protocol=0))
    report = _check(path)
    assert "plain pickle (protocol 0)" in report.why
    _flags(report, "posix.system")
    assert report.code[0]["call"] == f"posix.system('touch {marker}')"


def test_benign_protocol_0_pickle_is_data(tmp_path):
    path = tmp_path / "config.pkl"
    path.write_bytes(pickle.dumps({"lr": 0.1, "layers": [1, 2]}, protocol=0))
    report = _check(path)
    assert "plain pickle (protocol 0)" in report.why
    assert report.code_globals == [] and not report.summary.startswith(UNTRUSTED)


def test_second_pickle_after_a_benign_one(tmp_path, marker):
    path = tmp_path / "two.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2) + _payload(marker))
    report = _check(path)
    _flags(report, "posix.system")
    assert report.code[0]["where"].startswith("pickle 2 of the stream")


def test_payload_before_a_broken_opcode(tmp_path, marker):
    path = tmp_path / "broken.pkl"
    path.write_bytes(_payload(marker)[:-1] + b"h\x09.")
    report = _check(path)
    _flags(report, "posix.system")
    assert "(before the error)" in report.code[0]["where"]


def test_payload_in_the_system_info_of_a_legacy_file(tmp_path, marker):
    good = legacy_stream({}, [])
    magic, version, info = scan_all(io.BytesIO(good))[0][:3]  # where the header pickles lie
    path = tmp_path / "legacy.pt"
    path.write_bytes(good[:info.start] + _payload(marker) + good[info.end:])
    report = _check(path)
    assert report.format == "torch_legacy"
    _flags(report, "posix.system")
    assert report.code[0]["where"] == "the system info"


def test_pickle_appended_after_legacy_storage_data(tmp_path, marker):
    path = tmp_path / "legacy_tail.pt"
    path.write_bytes(legacy_stream({}, []) + _payload(marker))
    report = _check(path)
    _flags(report, "posix.system")
    assert report.code[0]["where"].startswith("a pickle after the storage data")


def test_any_pkl_record_of_a_zip(tmp_path, marker):
    data = crafted_zip({}, {})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("archive/extra/optimizer.pkl", _payload(marker))
    path = tmp_path / "extra.pt"
    path.write_bytes(out.getvalue())
    report = _check(path)
    assert report.format == "torch_zip"
    _flags(report, "posix.system")
    assert report.code[0]["where"] == "archive/extra/optimizer.pkl"


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _tar_checkpoint(obj_pickle: bytes) -> bytes:
    """torch's pre-0.4 layout (serialization.legacy_load): one float storage, no tensors, the object."""
    import torch

    storages = (
        pickle.dumps(1, protocol=2) + pickle.dumps(("0", "cpu", torch.FloatStorage), protocol=2)
        + (2).to_bytes(8, "little") + b"\0" * 8 + pickle.dumps([], protocol=2)
    )
    return _tar({
        "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        "storages": storages, "tensors": pickle.dumps(0, protocol=2), "pickle": obj_pickle,
    })


def test_pre_0_4_tar_checkpoint(tmp_path, torch, marker):
    benign = tmp_path / "old.tar"
    benign.write_bytes(_tar_checkpoint(pickle.dumps({"epoch": 3}, protocol=2)))
    report = _check(benign)
    assert report.format == "torch_tar", report.why
    assert report.code_globals == [] and report.global_kinds == {"torch.FloatStorage": SAFE}
    hostile = tmp_path / "old_payload.tar"
    hostile.write_bytes(_tar_checkpoint(_payload(marker)))
    report = _check(hostile)
    _flags(report, "posix.system")
    assert report.code[0]["where"] == "tar member pickle"


@pytest.mark.slow
def test_pre_0_4_tar_layout_is_torchs(tmp_path, torch):
    """The crafted layout is what torch reads: --trust loads it in a child (benign bytes only)."""
    from harness.check.checker import check_file

    path = tmp_path / "old.tar"
    path.write_bytes(_tar_checkpoint(pickle.dumps({"epoch": 3}, protocol=2)))
    report = check_file(path, trust=True, cuda=False)
    (attempt,) = report.attempts
    assert attempt.where == "child" and attempt.status == "loaded", attempt


def test_a_user_class_in_a_full_model_pickle_is_unknown_code(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(crafted_zip(None, {}, pkl=b"\x80\x02cmymodels\nNet\n)\x81}b."))
    report = _check(path)
    _flags(report, "mymodels.Net")
    assert report.code[0]["kind"] == "unknown code"


# -- TorchScript -----------------------------------------------------------------


def test_escapes_in_torchscript_code():
    code = "class E(Module):\n  def forward(self, p: str) -> Tensor:\n    return torch.from_file(p, True, 4)\n"
    (found,) = escapes(code, "archive/code/__torch__.py")
    assert found.call == "torch.from_file" and found.where == "archive/code/__torch__.py:3"
    assert escapes("def f(x: Tensor) -> Tensor:\n  return torch.add(x, 1)\n", "c.py") == []
    assert [e.call for e in escapes("x = ops.aten.save(t, 'p'\n", "broken.py")] == ["ops.aten.save"]


def test_torchscript_archive_that_reads_a_file(tmp_path, torch):
    class Reader(torch.nn.Module):
        def forward(self, p: str) -> torch.Tensor:
            return torch.from_file(p, True, 4)

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    for cls, name in ((Reader, "reader.pt"), (Plain, "plain.pt")):
        torch.jit.save(torch.jit.script(cls()), str(tmp_path / name))
    report = _check(tmp_path / "reader.pt")
    assert report.format == "torchscript"
    assert report.summary.startswith(UNTRUSTED + "its TorchScript code calls torch.from_file"), report.summary
    assert report.runs_code and report.code_globals == []
    plain = _check(tmp_path / "plain.pt")
    assert not plain.runs_code and not plain.summary.startswith(UNTRUSTED)
