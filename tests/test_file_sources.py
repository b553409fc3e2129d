"""How the file reaches torch.load: every source form, its outcome, the fixes applied, and damage caught.

Each form of `LoadOptions.source` is loaded in-process through the real
state_dict formats: the faithful ones (a Path, an open file, BytesIO, a
non-ASCII path, and the two fixes the diagnoses offer) pass bit for bit;
the ones torch refuses (an unseekable stream, a gzip file, mmap of an open
file) fail expected, with a diagnosis whose fix the harness applies in
another cell. Then a form is damaged so it hands the loader another file,
and the cell must not pass.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import io
import os
import pathlib

import pytest

torch = pytest.importorskip("torch")

from harness.runtime import file_sources  # noqa: E402
from harness.runtime.diagnose import diagnose  # noqa: E402
from harness.runtime.errors import InputError  # noqa: E402
from harness.runtime.expect import Expectations  # noqa: E402
from harness.runtime.file_sources import (  # noqa: E402
    NONASCII_NAME,
    SourceMismatch,
    Unseekable,
    opened,
    served_bytes,
)
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import MMAP_SOURCES, SOURCES, LoadOptions, source_sweep  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.inprocess import roundtrip  # noqa: E402

#: The forms that hand torch.load the saved bytes themselves: each must load exactly.
FAITHFUL = ("pathlib", "file", "bytesio", "stream-buffered", "nonascii", "gzip-decompressed")
#: The forms torch refuses, and the diagnosis each gets.
REFUSED = {"stream": "stream_not_seekable", "gzip": "gzip_compressed"}
#: Not the checkpoint at all: the codes of helper A's rules (diagnose.py).
SUBSTITUTES = {"lfs-pointer": "git_lfs_pointer", "html-page": "html_not_checkpoint", "truncated": "corrupt_file"}
FORMAT_NAMES = ("state_dict", "state_dict_legacy")


@pytest.fixture(scope="module")
def expectations():
    return Expectations.load()


@pytest.fixture(scope="module")
def source_cells(curated_specs, expectations):
    """Every source cell of simple_net in both state_dict formats, saved and loaded in this process."""
    results = roundtrip(
        curated_specs["simple_net"], [FORMATS[f] for f in FORMAT_NAMES],
        options=lambda fmt, opt: opt.source is not None, expectations=expectations,
    )
    return {(r.format, r.load["source"], bool(r.load.get("mmap"))): r for r in results}


@pytest.fixture
def saved_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.tensor([-0.0, float("nan")])}, str(path))
    return path


def test_sources_and_the_sweep_name_the_same_forms():
    assert set(file_sources._FORMS) == set(SOURCES)
    plain = [o for o in source_sweep(mmap=False)]
    assert [o.source for o in plain] == list(SOURCES)
    assert all(o.map_location == "cpu" and o.weights_only == "default" and o.apply == "none" and o.mmap is False for o in plain)
    mapped = [o for o in source_sweep(mmap=True) if o.mmap]
    assert [o.source for o in mapped] == list(MMAP_SOURCES)
    # The default, a str path, keeps its cell keys: no source field in the id.
    assert "source" not in LoadOptions(map_location="cpu").id
    assert "source=bytesio" in plain[2].id


def test_the_state_dict_formats_sweep_each_source_once():
    for name in FORMAT_NAMES:
        sources = [o for o in FORMATS[name].variants(cuda=False) if o.source is not None]
        mmap = sorted(o.source for o in sources if o.mmap)
        assert sorted(o.source for o in sources if not o.mmap) == sorted(SOURCES)
        # The legacy format cannot be memory-mapped at all: no mmap source cells there.
        assert mmap == (sorted(MMAP_SOURCES) if name == "state_dict" else [])
    for name in set(FORMATS) - set(FORMAT_NAMES):
        assert not any(getattr(o, "source", None) for o in FORMATS[name].variants(cuda=True)), name


@pytest.mark.parametrize("source", FAITHFUL)
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_faithful_sources_load_exactly(source_cells, fmt, source):
    r = source_cells[(fmt, source, False)]
    assert r.outcome == Outcome.PASS, r.detail
    assert r.detail == "exact"


@pytest.mark.parametrize("source", ["pathlib", "nonascii"])
def test_mmap_of_a_real_path_loads_exactly(source_cells, source):
    r = source_cells[("state_dict", source, True)]
    if r.outcome == Outcome.SKIP:  # a torch without mmap: a skip that says so
        assert "mmap" in r.detail
        return
    assert r.outcome == Outcome.PASS, r.detail


def test_mmap_of_an_open_file_is_refused_and_diagnosed(source_cells):
    # What torch does with mmap=True and a file object, recorded as it is.
    r = source_cells[("state_dict", "file", True)]
    assert r.outcome == Outcome.ERROR
    assert r.error["type"] == "ValueError" and "file path" in r.error["message"]
    assert r.diagnosis["code"] == "mmap_needs_path"
    assert "torch.load(path, mmap=True)" in r.diagnosis["fix"]
    assert r.expected and r.expectation == "mmap-needs-a-path"
    # ... and the fix it names, the same file by its path, maps exactly.
    assert source_cells[("state_dict", "pathlib", True)].outcome == Outcome.PASS


@pytest.mark.parametrize("source", sorted(REFUSED))
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_refused_sources_are_expected_and_their_fix_is_exact(source_cells, fmt, source):
    r = source_cells[(fmt, source, False)]
    assert r.outcome == Outcome.ERROR
    assert r.diagnosis and r.diagnosis["code"] == REFUSED[source]
    assert r.expected, r.detail
    fixed = source_cells[(fmt, f"{'gzip-decompressed' if source == 'gzip' else 'stream-buffered'}", False)]
    assert fixed.outcome == Outcome.PASS and fixed.detail == "exact"


def test_gzip_fix_is_what_the_harness_applies(source_cells):
    fix = source_cells[("state_dict", "gzip", False)].diagnosis["fix"]
    assert "gzip.open" in fix and "io.BytesIO" in fix
    fix = source_cells[("state_dict", "stream", False)].diagnosis["fix"]
    assert "io.BytesIO(stream.read())" in fix


@pytest.mark.parametrize("source", sorted(SUBSTITUTES))
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_substitutes_fail_and_are_diagnosed(source_cells, fmt, source):
    r = source_cells[(fmt, source, False)]
    assert r.outcome == Outcome.ERROR, r.detail
    code = (r.diagnosis or {}).get("code")
    assert code == SUBSTITUTES[source], f"{fmt} {source}: {r.detail} -> {code}"
    assert r.expected


# -- the diagnoses, from the messages torch really gives ---------------------

@pytest.mark.parametrize("weights_only", [True, False])
def test_gzip_diagnosis_from_real_messages(saved_file, tmp_path, weights_only):
    gz = tmp_path / "model.pt.gz"
    gz.write_bytes(gzip.compress(saved_file.read_bytes()))
    # torch 2.15: "invalid load key, '\x1f'." (pickle), or, with weights_only,
    # "... WeightsUnpickler error: \n\nUnsupported operand 31 ..."
    with pytest.raises(Exception) as info:
        torch.load(str(gz), weights_only=weights_only)
    found = diagnose(type(info.value).__name__, str(info.value), "state_dict", {"weights_only": str(weights_only).lower()})
    assert found is not None and found.code == "gzip_compressed"
    assert "decompress" in found.fix


def test_unseekable_and_mmap_diagnoses_from_real_messages(saved_file):
    with open(saved_file, "rb") as f, pytest.raises(Exception) as info:
        torch.load(Unseekable(f))
    assert diagnose(type(info.value).__name__, str(info.value), "state_dict").code == "stream_not_seekable"
    if "mmap" not in inspect.signature(torch.load).parameters:
        pytest.skip("this torch has no mmap parameter")
    with open(saved_file, "rb") as f, pytest.raises(ValueError) as info:
        torch.load(f, mmap=True)
    assert diagnose("ValueError", str(info.value), "state_dict").code == "mmap_needs_path"


@pytest.mark.parametrize(("message", "gzip_file"), [
    ("invalid load key, '\\x1f'.", True),
    ("WeightsUnpickler error: \n\nUnsupported operand 31\n\nCheck the documentation", True),
    ("invalid load key, 'v'.", False),
    ("WeightsUnpickler error: Unsupported operand 118", False),
    ("WeightsUnpickler error: Unsupported operand 310", False),
])
def test_gzip_rule_reads_only_the_gzip_magic(message, gzip_file):
    found = diagnose("UnpicklingError", message, "state_dict")
    assert ((found is not None and found.code == "gzip_compressed") == gzip_file), found


# -- what `opened` makes and cleans up ---------------------------------------

@pytest.mark.parametrize("source", sorted(SOURCES))
def test_opened_serves_what_the_form_names_and_cleans_up(saved_file, source):
    data = saved_file.read_bytes()
    with opened(saved_file, source) as obj:
        seen = served_bytes(obj)
        if isinstance(obj, str):
            scratch = pathlib.Path(obj).parent
            assert scratch != saved_file.parent  # a copy, never the saved file itself
        else:
            scratch = None
        kept = obj
    if source in FAITHFUL or source == "stream":
        assert seen == data
    if source == "pathlib":
        assert isinstance(kept, pathlib.Path)
    if source == "nonascii":
        assert pathlib.Path(kept).name == NONASCII_NAME and not kept.isascii()
    if source == "gzip":
        assert seen[:2] == b"\x1f\x8b" and gzip.decompress(seen) == data
    if source == "truncated":
        assert seen == data[: len(data) // 2]
    if source == "lfs-pointer":
        assert seen.decode() == (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"
        )
    if source == "html-page":
        assert seen.startswith(b"<!DOCTYPE html>")
    # Temporary files are gone and what was opened is closed.
    if scratch is not None:
        assert not scratch.exists()
    if source in ("file", "stream"):
        assert kept.closed if source == "file" else kept.inner.closed
    assert saved_file.read_bytes() == data  # the saved file is never touched


def test_opened_without_a_source_is_the_str_path(saved_file):
    with opened(saved_file, None) as obj:
        assert obj == str(saved_file)


def test_unknown_source_is_an_input_error(saved_file):
    with pytest.raises(InputError, match="source='zip' is not one of pathlib"), opened(saved_file, "zip"):
        pass


def test_served_bytes_does_not_move_an_open_file(saved_file):
    with open(saved_file, "rb") as f:
        f.seek(3)
        assert served_bytes(f) == saved_file.read_bytes()[3:]
        assert f.tell() == 3


def test_unseekable_reads_but_cannot_seek_or_tell():
    s = Unseekable(io.BytesIO(b"abcdef"))
    assert s.read(2) == b"ab" and s.read() == b"cdef"
    assert not s.seekable()
    for call in (lambda: s.seek(0), s.tell):
        with pytest.raises(io.UnsupportedOperation):
            call()


# -- damage: a form that hands the loader another file is caught ------------

def _damaged(monkeypatch, source, make):
    form = file_sources._FORMS[source]
    monkeypatch.setitem(file_sources._FORMS, source, dataclasses.replace(form, make=make))


def _other_bytes(path):
    state = torch.load(str(path), map_location="cpu")
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


DAMAGES = {
    "truncated serves the whole file": ("truncated", lambda p, s, st: str(p)),
    "bytesio holds other bytes": ("bytesio", lambda p, s, st: io.BytesIO(_other_bytes(p))),
    "stream can seek": ("stream", lambda p, s, st: io.BytesIO(p.read_bytes())),
    "nonascii is the plain path": ("nonascii", lambda p, s, st: str(p)),
    "gzip is not compressed": ("gzip", lambda p, s, st: str(p)),
    "lfs pointer names another digest": (
        "lfs-pointer", lambda p, s, st: file_sources._copy(p, s, p.name, file_sources.lfs_pointer(b"other").encode()),
    ),
    "gzip-decompressed serves the gzip bytes": (
        "gzip-decompressed", lambda p, s, st: io.BytesIO(gzip.compress(p.read_bytes())),
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_source_serving_another_file_is_refused(monkeypatch, saved_file, damage):
    source, make = DAMAGES[damage]
    _damaged(monkeypatch, source, make)
    with pytest.raises(SourceMismatch, match=f"source={source}"), opened(saved_file, source):
        pass


@pytest.mark.parametrize("damage", ["truncated serves the whole file", "bytesio holds other bytes"])
def test_a_damaged_source_cell_is_a_regression_not_a_pass(monkeypatch, curated_specs, expectations, damage):
    source, make = DAMAGES[damage]
    _damaged(monkeypatch, source, make)
    results = roundtrip(curated_specs["simple_net"], [FORMATS["state_dict"]], expectations=expectations,
                        options=lambda fmt, opt: opt.source == source and not opt.mmap)
    (r,) = results
    assert r.outcome == Outcome.ERROR and r.error["type"] == "SourceMismatch"
    assert r.diagnosis is None and r.regression


def test_the_comparison_catches_other_bytes_even_past_the_source_check(monkeypatch, curated_specs, expectations):
    # Without the source check, a BytesIO of another state dict still fails:
    # its tensors differ from the saved ones, bit for bit.
    import contextlib

    from harness.runtime.formats import state_dict as state_dict_module

    @contextlib.contextmanager
    def other(path, source):
        yield io.BytesIO(_other_bytes(path))

    monkeypatch.setattr(state_dict_module, "opened", other)
    (r,) = roundtrip(curated_specs["simple_net"], [FORMATS["state_dict"]], expectations=expectations,
                     options=lambda fmt, opt: opt.source == "bytesio")
    assert r.outcome == Outcome.MISMATCH


def test_nonascii_is_a_skip_where_the_file_system_cannot_name_it(monkeypatch, saved_file):
    from harness.runtime.errors import Unsupported

    def refuse(name):
        raise UnicodeEncodeError("ascii", str(name), 0, 1, "cannot encode")

    monkeypatch.setattr(os, "fsencode", refuse)
    with pytest.raises(Unsupported, match="cannot name"), opened(saved_file, "nonascii"):
        pass


# -- old torch ---------------------------------------------------------------

@pytest.mark.parametrize("path_class", ["PosixPath", "WindowsPath"])
def test_a_pathlib_path_refused_by_old_torch_is_diagnosed_and_expected(expectations, path_class):
    # torch 1.4.0 (Python 3.8), torch.load(pathlib.Path("model.pt")) of a zip-format file:
    message = f"'{path_class}' object has no attribute 'tell'"
    found = diagnose("AttributeError", message, "state_dict", {"source": "pathlib"})
    assert found is not None and found.code == "pathlib_not_accepted"
    assert "torch.load(str(path))" in found.fix
    r = CellResult(source="torch-2.15.0-py3.11-cpu", target="torch-1.4.0-py3.8-cpu", case="simple_net", format="state_dict",
                   load=source_sweep(mmap=False)[0].to_dict(), outcome=Outcome.ERROR, diagnosis=found.to_dict())
    assert expectations.apply(r).expected
    assert not expectations.apply(r.with_(target="torch-1.13.1-py3.10-cpu")).expected
    # Another object's missing attribute is no pathlib problem.
    assert diagnose("AttributeError", "'NoneType' object has no attribute 'tell'", "state_dict") is None


@pytest.mark.parametrize(("source", "mmap", "code", "neighbour"), [
    ("gzip", False, "gzip_compressed", "gzip-decompressed"),
    ("stream", False, "stream_not_seekable", "stream-buffered"),
    ("file", True, "mmap_needs_path", "pathlib"),
    ("lfs-pointer", False, "git_lfs_pointer", "bytesio"),
    ("html-page", False, "html_not_checkpoint", "file"),
    ("truncated", False, "corrupt_file", "nonascii"),
])
def test_source_expectations_cover_their_form_only(expectations, source, mmap, code, neighbour):
    load = LoadOptions(map_location="cpu", weights_only="default", mmap=mmap, apply="none", source=source).to_dict()
    r = CellResult(source="torch-2.15.0-py3.11-cpu", target="torch-2.15.0-py3.11-cpu", case="simple_net", format="state_dict",
                   load=load, outcome=Outcome.ERROR, diagnosis={"code": code, "summary": "", "fix": ""})
    assert expectations.apply(r).expected
    # The fix applied (or a faithful form) failing the same way would be a regression.
    assert not expectations.apply(r.with_(load={**load, "source": neighbour})).expected
    assert not expectations.apply(r.with_(diagnosis=None)).expected


@pytest.mark.parametrize(("target", "source", "expected"), [
    ("torch-1.4.0-py3.8-cpu", "truncated", True),  # measured: torch 1.4 aborts on some cuts of a legacy file
    ("torch-2.15.0-py3.11-cpu", "truncated", False),  # a newer torch that aborts would be a torch bug to report
    ("torch-1.4.0-py3.8-cpu", None, False),  # an abort on the whole file is never the cut
])
def test_a_reader_that_aborts_on_a_cut_file(target, source, expected):
    message = "the worker process died (SIGABRT); stderr: terminate called after throwing an instance of 'c10::Error' |   what():  owning_ptr == NullType::singleton()"
    load = {"map_location": "cpu", "weights_only": "default", "mmap": False, "apply": "none", **({"source": source} if source else {})}
    found = diagnose("crash", message, "state_dict_legacy", load)
    cell = CellResult(source="torch-2.15.0-py3.11-cpu", target=target, case="transformer_encoder", format="state_dict_legacy",
                      load=load, outcome=Outcome.CRASH, detail=message, diagnosis=found.to_dict() if found else None)
    assert Expectations.load().apply(cell).expected is expected
