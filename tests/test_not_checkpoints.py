"""Files that are not checkpoints, and the wrong loader (issue 12, points 7 and 8).

A Git LFS pointer, an HTML page, an empty or truncated file: torch's real
messages (this torch's, produced here; older releases' quoted verbatim) get
a diagnosis naming what the file is and the fix, and ``check`` says the same
from the bytes alone, before any load. A TorchScript archive given to
torch.load, a torch.save file given to torch.jit.load, a safetensors file
given to torch.load: the wrong-loader cells end as this torch behaves (an
error diagnosed ``wrong_loader`` and expected, or a dispatched load compared
bit for bit), and the loader the fix names loads the same artifact exactly.
Damage tests show each new check can fail.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from harness import __version__  # noqa: E402
from harness.check.checker import check_file, exit_status, render_text  # noqa: E402
from harness.runtime.diagnose import diagnose  # noqa: E402
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.expect import Expectations  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.formats.safetensors import DISPATCHED as ST_DISPATCHED  # noqa: E402
from harness.runtime.formats.safetensors import load_tensors_into  # noqa: E402
from harness.runtime.formats.torchscript import DISPATCHED as TS_DISPATCHED  # noqa: E402
from harness.runtime.load_options import LoadOptions  # noqa: E402
from harness.runtime.manifest import Manifest  # noqa: E402
from harness.runtime.messages import clean  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.cell import CaseContext, run_cell  # noqa: E402
from harness.runtime.runner.inprocess import roundtrip  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402

LOADER_FORMATS = ("torchscript", "full_model", "safetensors")


def _state() -> dict:
    g = torch.Generator().manual_seed(3)
    return {"weight": torch.randn(4, 3, generator=g), "bias": torch.randn(4, generator=g)}


def _bits(state: dict) -> dict:
    return {k: (v.dtype, tuple(v.shape), v.contiguous().view(-1).view(torch.uint8).tolist()) for k, v in state.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real files of each kind, and what stands in for them."""
    d = tmp_path_factory.mktemp("not_checkpoints")
    state = _state()
    out = {"state": state}

    def put(name: str, data: bytes) -> Path:
        (d / name).write_bytes(data)
        out[name] = d / name
        return d / name

    buf = io.BytesIO()
    torch.save(state, buf)
    real = put("model.pt", buf.getvalue())
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    legacy = put("legacy.pt", buf.getvalue())
    module = torch.nn.Linear(3, 4)
    torch.save(module, str(d / "full.pt"))
    out["full.pt"] = d / "full.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(d / "scripted.pt"))
    out["scripted.pt"] = d / "scripted.pt"
    data = real.read_bytes()
    put("lfs.pt", f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode())
    put("page.pt", b"<!DOCTYPE html>\n<html><head><title>Sign in - Model Hub</title></head><body>Log in to download</body></html>\n")
    put("error.xml", b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>denied</Message></Error>")
    put("notfound.pt", b"404: Not Found")
    put("empty.pt", b"")
    put("zip_cut.pt", data[: len(data) // 2])
    legacy_data = legacy.read_bytes()
    put("legacy_cut_data.pt", legacy_data[:-10])
    put("legacy_cut_pickle.pt", legacy_data[:150])
    try:
        import safetensors.torch as st
    except ImportError:
        return out
    st.save_file(state, str(d / "model.safetensors"))
    out["model.safetensors"] = d / "model.safetensors"
    sdata = out["model.safetensors"].read_bytes()
    put("model.st", sdata)  # no .safetensors suffix: no torch hands it on to safetensors
    put("st_cut_data.safetensors", sdata[:-4])
    put("st_cut_header.safetensors", sdata[:40])
    return out


#: Files some releases load through the wrong loader: torch.load hands a
#: TorchScript archive on to torch.jit.load (and refuses to with
#: weights_only=True only from torch 2.6).
DISPATCHED = {"scripted.pt"}


def raised(fn, name: str = ""):
    """(type name, cleaned message, warning texts) of what `fn` raises, as a cell records them."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            fn()
        except Exception as e:
            return type(e).__name__, clean(str(e)), tuple(str(w.message) for w in seen)
    if name in DISPATCHED:
        pytest.skip(f"this torch loads {name} through the wrong loader (it dispatches)")
    raise AssertionError("the load did not fail")


def _torch_load(**kw):
    return lambda path: torch.load(str(path), map_location="cpu", **kw)


def _jit_load(path):
    return torch.jit.load(str(path), map_location="cpu")


# -- diagnoses from the messages this torch really gives ----------------------

REAL = [
    # (file, load, harness format, cell load options, code, words in the fix)
    ("lfs.pt", _torch_load(), "state_dict", {"weights_only": "default"}, "git_lfs_pointer", "git lfs pull"),
    ("lfs.pt", _torch_load(weights_only=False), "state_dict", {"weights_only": "false"}, "git_lfs_pointer", "git lfs pull"),
    ("page.pt", _torch_load(), "state_dict", {"weights_only": "default"}, "html_not_checkpoint", "download the file again"),
    ("page.pt", _torch_load(weights_only=False), "state_dict", {"weights_only": "false"}, "html_not_checkpoint", "direct"),
    ("error.xml", _torch_load(weights_only=True), "state_dict", {"weights_only": "true"}, "html_not_checkpoint", "credentials"),
    ("empty.pt", _torch_load(weights_only=True), "state_dict", {"weights_only": "true"}, "corrupt_file", "size and checksum"),
    ("empty.pt", _torch_load(weights_only=False), "state_dict", {"weights_only": "false"}, "corrupt_file", "re-download"),
    ("zip_cut.pt", _torch_load(), "state_dict", {"weights_only": "default"}, "corrupt_file", "re-download"),
    ("legacy_cut_data.pt", _torch_load(weights_only=False), "state_dict_legacy", {"weights_only": "false"}, "corrupt_file", "re-download"),
    ("legacy_cut_data.pt", _torch_load(weights_only=True), "state_dict_legacy", {"weights_only": "true"}, "corrupt_file", "re-download"),
    ("legacy_cut_pickle.pt", _torch_load(weights_only=True), "state_dict_legacy", {"weights_only": "true"}, "corrupt_file", "re-download"),
    ("legacy_cut_pickle.pt", _torch_load(weights_only=False), "state_dict_legacy", {"weights_only": "false"}, "corrupt_file", "re-download"),
    # the wrong loader, as the matrix's cells call it and as a user would
    ("scripted.pt", _torch_load(), "torchscript", {"loader": "torch.load", "weights_only": "default"}, "wrong_loader", "torch.jit.load("),
    ("full.pt", _jit_load, "full_model", {"loader": "torch.jit.load"}, "wrong_loader", "torch.load(f, weights_only=False)"),
    ("model.pt", _jit_load, "", {}, "wrong_loader", "torch.load(f)"),
    ("legacy.pt", _jit_load, "full_model", {"loader": "torch.jit.load"}, "wrong_loader", "torch.load("),
    ("model.st", _torch_load(weights_only=False), "safetensors", {"loader": "torch.load"}, "wrong_loader", "safetensors.torch.load_file(f)"),
    ("model.st", _torch_load(weights_only=True), "safetensors", {"loader": "torch.load"}, "wrong_loader", "safetensors.torch.load_model"),
]


@pytest.mark.parametrize(("name", "load", "fmt", "options", "code", "fix"), REAL, ids=[f"{r[0]}-{r[4]}-{i}" for i, r in enumerate(REAL)])
def test_this_torch_messages(files, name, load, fmt, options, code, fix):
    if name not in files:
        pytest.skip("safetensors is not installed here")
    etype, message, warned = raised(lambda: load(files[name]), name)
    found = diagnose(etype, message, fmt, options, warned)
    assert found is not None and found.code == code, (etype, message, found)
    assert fix in found.fix


def test_truncated_legacy_names_the_missing_bytes(files):
    etype, message, _ = raised(lambda: torch.load(str(files["legacy_cut_data.pt"]), weights_only=False))
    assert "10 bytes short" in diagnose(etype, message, "state_dict_legacy", {}).summary


def test_wrong_loader_names_the_file_and_the_loader(files):
    etype, message, warned = raised(lambda: _jit_load(files["full.pt"]))
    found = diagnose(etype, message, "full_model", {"loader": "torch.jit.load"}, warned)
    assert "torch.save file (a pickled nn.Module)" in found.summary and "constants.pkl" in found.summary
    etype, message, warned = raised(lambda: torch.load(str(files["scripted.pt"]), weights_only=True), "scripted.pt")
    found = diagnose(etype, message, "torchscript", {"loader": "torch.load"}, warned)
    assert "TorchScript archive" in found.summary and found.fix.startswith("torch.jit.load")


# -- messages of older releases (verbatim, measured in their own venvs) -------

OLD = [
    # torch 1.4.0: torch.load unpickles a TorchScript archive (no dispatch yet)
    ("ModuleNotFoundError", "No module named '__torch__'", "torchscript", {"loader": "torch.load"}, "wrong_loader", "torch.jit.load"),
    # torch 1.8.1: torch.jit.load on a torch.save zip
    ("RuntimeError", "[enforce fail at inline_container.cc:222] . file not found: archive/constants.pkl", "", {}, "wrong_loader", "torch.load"),
    # torch 1.4.0: torch.jit.load on a legacy-format pickled module
    ("RuntimeError", "istream reader failed: reading file. (validate at /pytorch/caffe2/serialize/istream_adapter.cc:37)",
     "full_model", {"loader": "torch.jit.load"}, "wrong_loader", "torch.load"),
    # torch 2.4.1 and 1.13.1: torch.load on a safetensors file (its header length's first byte)
    ("UnpicklingError", "invalid load key, 'x'.", "safetensors", {"loader": "torch.load"}, "wrong_loader", "safetensors.torch.load_file"),
    ("UnpicklingError", "unpickling stack underflow", "safetensors", {"loader": "torch.load"}, "wrong_loader", "safetensors.torch.load_file"),
    # torch 1.13.1 with weights_only=True, on an LFS pointer and an HTML page
    ("UnpicklingError", "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it "
     "can result in arbitrary code execution.Do it only if you get the file from a trusted source. WeightsUnpickler error: "
     "Unsupported operand 118", "state_dict", {"weights_only": "true"}, "git_lfs_pointer", "git lfs pull"),
    ("UnpicklingError", "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it "
     "can result in arbitrary code execution.Do it only if you get the file from a trusted source. WeightsUnpickler error: "
     "Unsupported operand 60", "state_dict", {"weights_only": "true"}, "html_not_checkpoint", "download the file again"),
    # torch 2.4.1 wraps a cut legacy file's EOF in a weights_only failure: not a refusal
    ("UnpicklingError", "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it "
     "can result in arbitrary code execution. Do it only if you got the file from a trusted source.\n Please file an issue with the "
     "following so that we can make `weights_only=True` compatible with your use case: WeightsUnpickler error: unexpected EOF, "
     "expected 10 more bytes. The file might be corrupted.", "state_dict_legacy", {"weights_only": "true"}, "corrupt_file", "re-download"),
    # torch 1.4.0 on an empty file, and on a cut zip (it falls back to the legacy reader)
    ("TypeError", "ord() expected a character, but string of length 0 found", "state_dict", {}, "corrupt_file", "re-download"),
    ("EOFError", "Ran out of input", "state_dict", {}, "corrupt_file", "re-download"),
    # torch 1.8.1: the zip reader's enforce prefix
    ("RuntimeError", "[enforce fail at inline_container.cc:145] . PytorchStreamReader failed reading zip archive: failed finding "
     "central directory", "state_dict", {}, "corrupt_file", "re-download"),
    # torch 2.15.0, weights_only=True, the curated cases' legacy files cut in half (conv_family, dtype_int16)
    ("error", "unpack requires a buffer of 4 bytes", "state_dict_legacy", {}, "corrupt_file", "re-download"),
    ("IndexError", "index out of range", "state_dict_legacy", {}, "corrupt_file", "re-download"),
    # torch 2.15.0 on the first half of recurrent's zip, and on special_values' legacy file cut inside a global's name:
    # opaque alone, the cut where the cell says it loads a truncated copy
    ("OSError", "[Errno 22] Invalid argument", "state_dict", {"source": "truncated"}, "corrupt_file", "re-download"),
    ("UnpicklingError", "Weights only load failed. [...] Unsupported global: GLOBAL torch.ComplexFloatStor was not an allowed global "
     "by default.", "state_dict_legacy", {"source": "truncated", "weights_only": "default"}, "corrupt_file", "re-download"),
]


@pytest.mark.parametrize(("etype", "message", "fmt", "options", "code", "fix"), OLD, ids=[f"{r[4]}-{i}" for i, r in enumerate(OLD)])
def test_older_release_messages(etype, message, fmt, options, code, fix):
    found = diagnose(etype, message, fmt, options)
    assert found is not None and found.code == code, found
    assert fix in found.fix


def test_the_pointer_names_the_real_file_when_the_message_carries_it():
    oid = "ab" * 32
    found = diagnose("UnpicklingError", f"invalid load key, 'v'. (read: version https://git-lfs.github.com/spec/v1 oid sha256:{oid} size 1466)", "", {})
    assert found.code == "git_lfs_pointer" and oid in found.summary and "1466 bytes" in found.summary


# -- check: the bytes alone, before any load -------------------------------------

CHECKED = [
    # (file, sniffed format, diagnosis code, words in the summary)
    ("lfs.pt", "unknown", "git_lfs_pointer", "Git LFS pointer"),
    ("page.pt", "unknown", "html_not_checkpoint", "titled 'Sign in - Model Hub'"),
    ("error.xml", "unknown", "html_not_checkpoint", "error code 'AccessDenied'"),
    ("notfound.pt", "unknown", "html_not_checkpoint", "a text file"),
    ("empty.pt", "unknown", "corrupt_file", "the file is empty (0 bytes)"),
    ("zip_cut.pt", "torch_zip", "corrupt_file", "the zip archive is truncated"),
    ("legacy_cut_data.pt", "torch_legacy", "corrupt_file", "10 bytes are missing"),
    ("legacy_cut_pickle.pt", "torch_legacy", "corrupt_file", "ends inside the object pickle"),
    ("st_cut_data.safetensors", "safetensors", "corrupt_file", "4 bytes are missing"),
    ("st_cut_header.safetensors", "safetensors", "corrupt_file", "truncated inside its header: at least"),
]


@pytest.mark.parametrize(("name", "fmt", "code", "words"), CHECKED, ids=[c[0] for c in CHECKED])
def test_check_names_the_file(files, name, fmt, code, words):
    if name not in files:
        pytest.skip("safetensors is not installed here")
    report = check_file(files[name], cuda=False)
    assert report.format == fmt, report.why
    assert report.diagnosis is not None and report.diagnosis["code"] == code, report.diagnosis
    assert words in report.summary and "fix: " in report.summary and "\n" not in report.summary
    assert report.diagnosis["fix"] in report.summary
    assert report.findings and exit_status([report]) == 1
    text = render_text([report], trust=False)
    assert f"diagnosis {code}: " in text and "\nfix: " in text
    assert "Traceback" not in text and "invalid load key" not in text


def test_check_names_the_real_file_behind_the_pointer(files):
    report = check_file(files["lfs.pt"], cuda=False)
    data = files["model.pt"].read_bytes()
    assert f"{len(data)} bytes" in report.summary and hashlib.sha256(data).hexdigest() in report.summary
    assert "git lfs pull" in report.diagnosis["fix"]


def test_check_counts_what_a_cut_legacy_file_lacks(files, tmp_path):
    data = files["legacy.pt"].read_bytes()
    for cut in (1, 7, 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:-cut])
        report = check_file(path, cuda=False)
        assert f"{cut} byte{'s are' if cut > 1 else ' is'} missing" in report.diagnosis["summary"]


@pytest.mark.parametrize(("name", "loader", "avoid"), [
    ("scripted.pt", 'torch.jit.load(f, map_location="cpu")', "not torch.load"),
    ("model.pt", "torch.load(f)", "not torch.jit.load"),
    ("legacy.pt", "torch.load(f)", "not torch.jit.load"),
    ("full.pt", "torch.load(f, weights_only=False)", "not torch.jit.load"),
    ("model.safetensors", "safetensors.torch.load_file(f)", "not torch.load"),
])
def test_check_says_which_loader(files, name, loader, avoid):
    if name not in files:
        pytest.skip("safetensors is not installed here")
    report = check_file(files[name], cuda=False)
    assert report.loader.startswith(loader) and avoid in report.loader
    assert f"load with: {report.loader}" in render_text([report], trust=False)
    assert report.diagnosis is None  # a real file: no "not a checkpoint" finding


# -- the fix for what stands in for a file: the real file, which loads exactly --


def test_the_real_file_loads_exactly_where_its_stand_ins_fail(files):
    for name in ("model.pt", "legacy.pt"):
        assert _bits(torch.load(str(files[name]), map_location="cpu", weights_only=True)) == _bits(files["state"])
    for name in ("lfs.pt", "page.pt", "zip_cut.pt", "legacy_cut_data.pt", "empty.pt"):
        etype, message, warned = raised(lambda name=name: torch.load(str(files[name]), map_location="cpu"))
        assert diagnose(etype, message, "state_dict", {}, warned) is not None, (name, message)


def test_source_cells_are_diagnosed_and_their_real_file_is_exact(curated_specs):
    """The matrix's stand-in cells (the `source` load option) carry these codes; the same load of the real file passes."""
    from harness.runtime.load_options import SOURCES

    forms = {"lfs-pointer": "git_lfs_pointer", "html-page": "html_not_checkpoint", "truncated": "corrupt_file"}
    missing = sorted(set(forms) - set(SOURCES))
    if missing:
        pytest.skip(f"this tree's LoadOptions.source lacks {missing}")

    def pick(fmt: str, opt: LoadOptions) -> bool:
        return opt.apply == "none" and opt.map_location == "cpu" and opt.weights_only == "default" and not opt.mmap and opt.source in (None, *forms)

    results = roundtrip(curated_specs["simple_net"], [FORMATS["state_dict"], FORMATS["state_dict_legacy"]],
                        options=pick, expectations=Expectations.load())
    for fmt in ("state_dict", "state_dict_legacy"):
        cells = {r.load.get("source"): r for r in results if r.format == fmt}
        assert cells[None].outcome == Outcome.PASS, cells[None].detail
        for form, code in forms.items():
            r = cells[form]
            assert r.outcome == Outcome.ERROR and r.expected and r.diagnosis["code"] == code, (fmt, form, r.detail, r.diagnosis)


# -- the wrong-loader cells ----------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, curated_specs):
    """simple_net saved in the three formats that sweep a wrong loader: (manifests and dirs, fingerprint, spec)."""
    root = tmp_path_factory.mktemp("wrong_loader")
    fp = fingerprint("cpu")
    spec = curated_specs["simple_net"]
    table = {}
    for m in save_case(spec, root, fp, [FORMATS[f] for f in LOADER_FORMATS], "cpu"):
        table[m.format] = (Manifest.from_dict(m.to_dict()), m.status)
    return table, root, fp, spec


def cell(saved, fmt_name: str, options: LoadOptions, directory: Path | None = None) -> CellResult:
    table, root, fp, spec = saved
    manifest, status = table[fmt_name]
    if status != "saved":
        pytest.skip(f"{fmt_name} was not saved here: {manifest.reason}")
    base = CellResult(source=fp.label, target=fp.label, case=spec.name, format=fmt_name, load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    result = run_cell(base, manifest, FORMATS[fmt_name], options, directory or root / fmt_name, root / "reference.bin",
                      CaseContext(spec.to_dict(), "cpu"), fp.compute_key)
    return Expectations.load().apply(result)


def wrong(fmt_name: str) -> LoadOptions:
    (found,) = [o for o in FORMATS[fmt_name].variants(False) if o.loader is not None]
    return found


#: For each format, the loader its wrong-loader cell's fix names, and the format's own cell that applies it.
FIXES = {
    "torchscript": ("torch.jit.load(", LoadOptions(map_location="cpu")),
    "full_model": ("torch.load(f, weights_only=False)", LoadOptions(map_location="cpu", weights_only="false", mmap=False, apply="none")),
    "safetensors": ("safetensors.torch.load_file(f)", LoadOptions(apply="model", device="cpu")),
}


def test_each_format_sweeps_one_wrong_loader():
    for name, spelled in (("torchscript", "loader=torch.load;map_location=cpu;weights_only=default"),
                          ("full_model", "loader=torch.jit.load;map_location=cpu"),
                          ("safetensors", "apply=model;loader=torch.load;map_location=cpu;weights_only=default")):
        assert wrong(name).id == spelled
        assert [o for o in FORMATS[name].variants(True) if o.loader] == [wrong(name)]  # the same on a GPU host: one cell
    for name in FORMATS:
        if name not in LOADER_FORMATS:
            assert not [o for o in FORMATS[name].variants(True) if o.loader], name


@pytest.mark.parametrize("fmt_name", LOADER_FORMATS)
def test_wrong_loader_cell_ends_as_this_torch_behaves(saved, fmt_name):
    r = cell(saved, fmt_name, wrong(fmt_name))
    if r.outcome == Outcome.PASS:  # this torch handed the file on to the right loader: compared, exact, and said
        assert r.detail == "exact"
        assert {"torchscript": TS_DISPATCHED, "safetensors": ST_DISPATCHED}[fmt_name] in r.notes
    else:
        assert r.outcome == Outcome.ERROR, r.detail
        assert r.diagnosis is not None and r.diagnosis["code"] == "wrong_loader", r.diagnosis
        assert r.expected, "a wrong-loader failure is documented in cases/expectations.toml"
        fix, own = FIXES[fmt_name]
        assert fix in r.diagnosis["fix"]
        # The fix applied by the harness: the named loader on the same artifact, exact.
        applied = cell(saved, fmt_name, own)
        assert applied.outcome == Outcome.PASS and applied.detail == "exact", applied.detail


def test_this_torch_refuses_torchscript_in_torch_load_with_its_default(saved):
    """Where torch.load's weights_only defaults to True (2.6+), the torchscript cell fails; its fix is exact."""
    from harness.check.loads import default_weights_only

    if default_weights_only() is not True:
        pytest.skip("torch.load's default weights_only is not True in this torch")
    r = cell(saved, "torchscript", wrong("torchscript"))
    assert r.outcome == Outcome.ERROR and r.expected and r.expectation == "torch-load-refuses-torchscript-under-weights-only"


def test_torch_load_dispatch_is_compared(saved):
    """torch.load(weights_only=False) on a TorchScript archive dispatches: the module is compared like any load."""
    r = cell(saved, "torchscript", LoadOptions(map_location="cpu", weights_only="false", loader="torch.load"))
    assert r.outcome == Outcome.PASS and r.detail == "exact" and TS_DISPATCHED in r.notes, r.detail


def test_safetensors_fix_applied_where_torch_load_fails(files):
    """torch.load cannot read a safetensors file it does not hand on; the loader the diagnosis names reads it exactly."""
    if "model.st" not in files:
        pytest.skip("safetensors is not installed here")
    import safetensors.torch as st

    etype, message, warned = raised(lambda: torch.load(str(files["model.st"]), weights_only=False))
    found = diagnose(etype, message, "safetensors", {"loader": "torch.load"}, warned)
    assert found.code == "wrong_loader" and "safetensors.torch.load_file(f)" in found.fix
    assert _bits(st.load_file(str(files["model.st"]))) == _bits(files["state"])


# -- damage: each new check can fail --------------------------------------------------


def test_an_html_page_is_not_an_lfs_pointer(files):
    assert diagnose("UnpicklingError", "invalid load key, '<'.", "state_dict", {}).code == "html_not_checkpoint"
    assert check_file(files["page.pt"], cuda=False).diagnosis["code"] == "html_not_checkpoint"
    assert check_file(files["lfs.pt"], cuda=False).diagnosis["code"] == "git_lfs_pointer"


def test_other_bytes_are_neither_pointer_nor_page(tmp_path):
    for key in ("x", "\\x1f", "P"):
        found = diagnose("UnpicklingError", f"invalid load key, '{key}'.", "state_dict", {})
        assert found is None or found.code not in ("git_lfs_pointer", "html_not_checkpoint"), found
    notes = tmp_path / "notes.pt"
    notes.write_bytes(b"version 2 of the weights, see the wiki\n")  # starts like a pointer, is not one
    report = check_file(notes, cuda=False)
    assert report.diagnosis["code"] == "html_not_checkpoint" and "Git LFS" not in report.summary


@pytest.mark.parametrize("name", ["model.pt", "legacy.pt", "full.pt", "scripted.pt", "model.safetensors"])
def test_a_real_checkpoint_gets_no_such_finding(files, name):
    if name not in files:
        pytest.skip("safetensors is not installed here")
    report = check_file(files[name], cuda=False)
    assert report.diagnosis is None and "truncated" not in report.summary, report.summary


def test_a_damaged_zip_is_not_called_truncated(files, tmp_path):
    data = bytearray(files["model.pt"].read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at:at + 2] = b"XX"  # the directory's first entry loses its signature; its end record stays whole
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(data))
    report = check_file(path, cuda=False)
    assert report.problems and report.diagnosis is None, report.summary
    path.write_bytes(bytes(data[:-1]))  # one byte less: the directory's end record is cut
    assert check_file(path, cuda=False).diagnosis["code"] == "corrupt_file"


def test_crafted_safetensors_offsets_are_not_a_truncation(tmp_path):
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[40,48]}}'
    path = tmp_path / "gap.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    report = check_file(path, cuda=False)
    assert report.problems and report.diagnosis is None, report.summary


@pytest.mark.parametrize(("etype", "message", "fmt", "load", "code"), [
    # the same opaque failures, with no truncated copy in the cell: not called a cut
    ("OSError", "[Errno 22] Invalid argument", "state_dict", {}, None),
    ("UnpicklingError", "Weights only load failed. [...] Unsupported global: GLOBAL torch.ComplexFloatStor was not an allowed global "
     "by default.", "state_dict_legacy", {"weights_only": "default"}, "weights_only_refused"),
    ("IndexError", "list index out of range", "state_dict", {}, None),
    # torch.load hands the archive on to torch.jit.load, which fails for its own reason: not the wrong loader
    ("RuntimeError", "Unknown builtin op: aten::scaled_dot_product_attention.", "torchscript", {"loader": "torch.load"}, "torchscript_from_newer_torch"),
    # torch.load handed the file on to safetensors, which found it damaged
    ("SafetensorError", "Error while deserializing header: incomplete metadata, file not fully covered", "safetensors", {"loader": "torch.load"}, "safetensors_corrupt"),
    # the format's own loader on a cut file: corrupt, not the wrong loader
    ("RuntimeError", "PytorchStreamReader failed reading zip archive: failed finding central directory", "full_model", {}, "corrupt_file"),
    ("RuntimeError", "PytorchStreamReader failed reading zip archive: failed finding central directory", "torchscript", {}, "corrupt_file"),
    # a refusal is still a refusal
    ("UnpicklingError", "Weights only load failed. WeightsUnpickler error: Unsupported global: GLOBAL harness.runtime.casemodel.CaseModel "
     "was not an allowed global by default.", "full_model", {"weights_only": "true"}, "weights_only_refused"),
])
def test_neighbouring_failures_keep_their_own_diagnosis(etype, message, fmt, load, code):
    found = diagnose(etype, message, fmt, load)
    assert (found.code if found else None) == code, found


def test_load_tensors_into_is_strict():
    model = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 4, bias=False))
    model[1].weight = model[0].weight  # tied, as save_model keeps one of them
    state = {"0.weight": torch.ones(4, 3)}
    load_tensors_into(model, state)
    assert torch.equal(model[1].weight, torch.ones(4, 3))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_tensors_into(model, {**state, "2.weight": torch.ones(1)})
    untied = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    with pytest.raises(RuntimeError, match="Missing key.*'1.bias'"):
        load_tensors_into(untied, {k: v for k, v in untied.state_dict().items() if k != "1.bias"})


def _flip_stored_byte(archive: Path, record_suffix: str, out: Path) -> None:
    """`archive` with one byte flipped in the stored record whose name ends with `record_suffix`."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(record_suffix))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len] ^= 0x01
    out.write_bytes(bytes(data))


def test_a_dispatched_load_of_a_damaged_file_is_a_mismatch(saved, tmp_path):
    """The dispatched path compares bit for bit: one flipped byte in the file is caught."""
    table, root, fp, spec = saved
    damaged = tmp_path / "torchscript"
    shutil.copytree(root / "torchscript", damaged)
    _flip_stored_byte(root / "torchscript" / "model.ts", "data/0", damaged / "model.ts")
    options = LoadOptions(map_location="cpu", weights_only="false", loader="torch.load")
    assert cell(saved, "torchscript", options).outcome == Outcome.PASS
    assert cell(saved, "torchscript", options, damaged).outcome == Outcome.MISMATCH
    if table["safetensors"][1] != "saved":
        return
    st_dir = tmp_path / "safetensors"
    shutil.copytree(root / "safetensors", st_dir)
    data = bytearray((st_dir / "model.safetensors").read_bytes())
    data[-1] ^= 0x01
    (st_dir / "model.safetensors").write_bytes(bytes(data))
    r = cell(saved, "safetensors", wrong("safetensors"), st_dir)
    assert r.outcome in (Outcome.MISMATCH, Outcome.ERROR), r.detail  # dispatched: a mismatch; not handed on: the wrong loader
    assert r.outcome == Outcome.MISMATCH or r.diagnosis["code"] == "wrong_loader"


# -- the expectations: the cells they are for, and not their neighbours ----------------


def _result(fmt: str, target: str, load: dict, code: str = "wrong_loader", source: str = "torch-2.4.1-py3.11-cpu") -> CellResult:
    return CellResult(source=source, target=f"torch-{target}-py3.11-cpu", case="simple_net", format=fmt, load=load,
                      outcome=Outcome.ERROR, diagnosis={"code": code})


@pytest.mark.parametrize(("fmt", "target", "load", "expected"), [
    ("torchscript", "2.15.0", {"loader": "torch.load", "map_location": "cpu", "weights_only": "default"}, "torch-load-refuses-torchscript-under-weights-only"),
    ("torchscript", "1.4.0", {"loader": "torch.load", "map_location": "cpu", "weights_only": "default"}, "torch-load-before-torchscript-dispatch"),
    ("full_model", "2.15.0", {"loader": "torch.jit.load", "map_location": "cpu"}, "torch-jit-load-reads-only-torchscript"),
    ("full_model", "1.4.0", {"loader": "torch.jit.load", "map_location": "cpu"}, "torch-jit-load-reads-only-torchscript"),
    ("safetensors", "2.4.1", {"loader": "torch.load", "map_location": "cpu", "weights_only": "default", "apply": "model"}, "torch-load-cannot-unpickle-safetensors"),
    # neighbours: a release that dispatches, another load option, no loader option, another format
    ("torchscript", "2.4.1", {"loader": "torch.load", "map_location": "cpu", "weights_only": "default"}, None),
    ("torchscript", "2.15.0", {"loader": "torch.load", "map_location": "cpu", "weights_only": "false"}, None),
    ("torchscript", "2.15.0", {"map_location": "cpu"}, None),
    ("full_model", "2.15.0", {"map_location": "cpu", "weights_only": "default", "mmap": False, "apply": "none"}, None),
    ("state_dict", "2.15.0", {"loader": "torch.jit.load", "map_location": "cpu"}, None),
])
def test_wrong_loader_expectations(fmt, target, load, expected):
    r = Expectations.load().apply(_result(fmt, target, load))
    assert r.expectation == expected, r.expectation


def test_a_wrong_loader_cell_failing_otherwise_is_not_expected_as_one():
    r = Expectations.load().apply(_result("full_model", "2.15.0", {"loader": "torch.jit.load", "map_location": "cpu"}, code="corrupt_file"))
    assert r.expectation != "torch-jit-load-reads-only-torchscript"
