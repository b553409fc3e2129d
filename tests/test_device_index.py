"""Device indexes: a case saved from cuda:1, its tag, and every map_location that names an index.

A spec's ``device_index`` puts a CUDA save on that GPU and makes a
cuda-emulated save tag its storages ``cuda:1``. On this (CPU) host the
files are loaded with the dict forms; the one-GPU host's refusal is
produced by torch's own check with the GPU count it reads patched to one,
so its real message is diagnosed. What needs a real GPU runs in
scripts/gpu-check.sh and in the test at the end, skipped without one.
"""

from __future__ import annotations

import io
import zipfile

import pytest

torch = pytest.importorskip("torch")

from harness import __version__  # noqa: E402
from harness.runtime import emulation  # noqa: E402
from harness.runtime.diagnose import diagnose  # noqa: E402
from harness.runtime.emulation import cuda_tag, emulate_cuda, file_has_tag  # noqa: E402
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.errors import SpecError, Unsupported  # noqa: E402
from harness.runtime.expect import Expectations  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import (  # noqa: E402
    INDEX_MAP_LOCATIONS,
    MAP_LOCATIONS,
    LoadOptions,
    device_index_sweep,
    map_location_value,
    torch_load_sweep,
)
from harness.runtime.manifest import Manifest  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.cell import CaseContext, run_cell  # noqa: E402
from harness.runtime.runner.save import build_device, save_case  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402

FORMAT_NAMES = ("state_dict", "state_dict_legacy", "full_model", "checkpoint")
CPU_TARGET = "torch-2.15.0-py3.11-cpu"
ONE_GPU_TARGET = "torch-2.15.0-py3.11-cuda"


@pytest.fixture(scope="module")
def expectations():
    return Expectations.load()


@pytest.fixture(scope="module")
def emulated(tmp_path_factory, curated_specs):
    """cuda_index1 (cuda:1) and simple_net (cuda:0), saved cuda-emulated in the pickle formats."""
    root = tmp_path_factory.mktemp("device-index")
    fp = fingerprint("cuda-emulated")
    out = {}
    for name in ("cuda_index1", "simple_net"):
        for m in save_case(curated_specs[name], root / name, fp, [FORMATS[f] for f in FORMAT_NAMES], "cuda-emulated"):
            out[(name, m.format)] = (Manifest.from_dict(m.to_dict()), root / name)
    return out, fp, curated_specs


def cell(emulated, case, fmt_name, map_location, target=CPU_TARGET):
    table, fp, specs = emulated
    manifest, case_dir = table[(case, fmt_name)]
    assert manifest.status == "saved", manifest.reason
    # A pickled module needs weights_only=False (the default refuses it since torch 2.6).
    weights_only = "false" if fmt_name == "full_model" else "default"
    options = LoadOptions(map_location=map_location, weights_only=weights_only, mmap=False, apply="none")
    base = CellResult(source=fp.label, target=target, case=case, format=fmt_name, load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    ctx = CaseContext(specs[case].to_dict(), "cpu")
    return run_cell(base, manifest, FORMATS[fmt_name], options, case_dir / fmt_name, case_dir / "reference.bin", ctx, fp.compute_key)


# -- the spec ----------------------------------------------------------------

def test_device_index_defaults_to_zero_without_changing_the_spec(curated_specs):
    spec = curated_specs["simple_net"]
    assert spec.device_index == 0
    assert "device_index" not in spec.to_dict()  # old specs keep their digests
    assert curated_specs["cuda_index1"].device_index == 1


@pytest.mark.parametrize("bad", [-1, 16, "1", True, 1.5])
def test_device_index_is_validated(curated_specs, bad):
    data = {**curated_specs["simple_net"].to_dict(), "device_index": bad}
    with pytest.raises(SpecError, match="device_index"):
        Spec.from_dict(data)


def test_a_user_case_may_name_a_device_index():
    spec = Spec.from_dict({"name": "u", "factory": "mypkg.models:make", "device_index": 1})
    assert spec.device_index == 1


# -- the save ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_emulated_cuda_index1_files_are_tagged_cuda_1(emulated, fmt):
    table = emulated[0]
    manifest, case_dir = table[("cuda_index1", fmt)]
    assert manifest.status == "saved" and manifest.emulated
    path = case_dir / fmt / manifest.files[0]
    assert file_has_tag(path, 1) and not file_has_tag(path, 0)
    manifest0, case_dir0 = table[("simple_net", fmt)]
    path0 = case_dir0 / fmt / manifest0.files[0]
    assert file_has_tag(path0, 0) and not file_has_tag(path0, 1)


def test_file_has_tag_reads_whole_indexes_also_inside_archives(tmp_path):
    flat = tmp_path / "flat.bin"
    flat.write_bytes(b"\x80\x02X\x07\x00\x00\x00cuda:10q\x00.")
    assert file_has_tag(flat, 10) and not file_has_tag(flat, 1) and not file_has_tag(flat, 0)
    nested = tmp_path / "nested.zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("data.pkl", b"X\x06\x00\x00\x00cuda:1q\x01.")
    with zipfile.ZipFile(nested, "w") as z:
        z.writestr("inner.pt", inner.getvalue())
    assert file_has_tag(nested, 1) and not file_has_tag(nested, 0)
    assert cuda_tag(1) == "cuda:1"


def test_emulation_tags_what_it_is_asked_and_cleans_up(tmp_path):
    import torch.serialization as ser

    before = list(ser._package_registry)
    with emulate_cuda(True, 3):
        torch.save({"t": torch.ones(2)}, str(tmp_path / "x.pt"))
    assert ser._package_registry == before
    assert file_has_tag(tmp_path / "x.pt", 3) and not file_has_tag(tmp_path / "x.pt", 0)


def test_a_save_that_ignores_the_index_is_refused(monkeypatch, tmp_path, curated_specs):
    # Damage: emulation that always tags cuda:0. The save must not pass the
    # file off as a cuda:1 save.
    real = emulation.emulate_cuda
    monkeypatch.setattr(emulation, "emulate_cuda", lambda active=True, index=0: real(active, 0))
    manifests = save_case(curated_specs["cuda_index1"], tmp_path / "c", fingerprint("cuda-emulated"),
                          [FORMATS["state_dict"]], "cuda-emulated")
    (m,) = manifests
    assert m.status == "unsupported"
    assert "wrote no cuda:1 storage tag" in m.reason


def test_a_real_cuda_save_needs_the_gpu_it_names(monkeypatch, tmp_path, curated_specs):
    spec = curated_specs["cuda_index1"]
    assert build_device(spec, "cpu") == build_device(spec, "cuda-emulated") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert build_device(spec, "cuda") == "cuda:1"
    assert build_device(curated_specs["simple_net"], "cuda") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(Unsupported, match=r"cuda:1 .*device_count\(\) is 1"):
        build_device(spec, "cuda")
    # A host with fewer GPUs records every format as unsupported, with the reason: a skip.
    manifests = save_case(spec, tmp_path / "c", fingerprint("cpu"), [FORMATS["state_dict"]], "cuda")
    assert [m.status for m in manifests] == ["unsupported"]
    assert "device_count() is 1" in manifests[0].reason


# -- the sweep ---------------------------------------------------------------

def test_index_map_locations_are_swept_narrowly():
    assert set(INDEX_MAP_LOCATIONS) <= set(MAP_LOCATIONS)
    assert [o.map_location for o in device_index_sweep(cuda=False)] == ["dict:cuda:1->cpu"]
    assert [o.map_location for o in device_index_sweep(cuda=True)] == list(INDEX_MAP_LOCATIONS)
    assert not {o.map_location for o in torch_load_sweep(cuda=True)} & set(INDEX_MAP_LOCATIONS)
    for cuda in (False, True):
        swept = {o.map_location for o in FORMATS["state_dict"].variants(cuda)}
        assert {o.map_location for o in device_index_sweep(cuda)} <= swept
        assert not {o.map_location for o in FORMATS["state_dict_legacy"].variants(cuda)} & set(INDEX_MAP_LOCATIONS)


def test_map_location_values():
    assert map_location_value("cuda:0") == "cuda:0"
    assert map_location_value("device:cuda:0") == torch.device("cuda", 0)
    assert map_location_value("dict:cuda:1->cuda:0") == {"cuda:1": "cuda:0"}
    assert map_location_value("dict:cuda:1->cpu") == {"cuda:1": "cpu"}


# -- loading on this CPU host ------------------------------------------------

@pytest.mark.parametrize("fmt", ["state_dict", "state_dict_legacy", "full_model", "checkpoint"])
def test_cuda1_file_maps_to_cpu_with_its_own_dict(emulated, fmt):
    r = cell(emulated, "cuda_index1", fmt, "dict:cuda:1->cpu")
    assert r.outcome == Outcome.PASS, r.detail


@pytest.mark.parametrize("map_location", ["none", "dict:cuda:0->cpu", "dict:cuda:1->cuda:0"])
def test_cuda1_file_unmapped_on_a_cpu_host_is_the_cpu_case(emulated, expectations, map_location):
    r = cell(emulated, "cuda_index1", "state_dict", map_location)
    assert r.outcome == Outcome.ERROR
    assert "is_available() is False" in r.error["message"]
    assert r.diagnosis["code"] == "cuda_storage_on_cpu_host"
    assert 'map_location="cpu"' in r.diagnosis["fix"]
    if map_location.startswith("dict:"):
        assert "names each device" in r.diagnosis["fix"]
    if map_location != "dict:cuda:1->cuda:0":  # the CUDA target is never swept on a CPU host
        assert expectations.apply(r).expected


def test_a_dict_for_another_index_leaves_cuda0_storages_on_cuda0(emulated, expectations):
    r = expectations.apply(cell(emulated, "simple_net", "state_dict", "dict:cuda:1->cpu"))
    assert r.outcome == Outcome.ERROR and r.diagnosis["code"] == "cuda_storage_on_cpu_host"
    assert r.expected and r.expectation == "map-location-dict-names-another-device"
    assert cell(emulated, "simple_net", "state_dict", "dict:cuda:0->cpu").outcome == Outcome.PASS


# -- a one-GPU host: torch's own check, with the GPU count patched -----------

@pytest.fixture
def one_gpu(monkeypatch):
    """torch.cuda says one GPU: torch.load's device check runs for real, before any CUDA call."""
    if torch.cuda.is_available():
        pytest.skip("a real GPU host: the one-GPU check runs for real in scripts/gpu-check.sh")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("fmt", ["state_dict", "state_dict_legacy", "full_model"])
def test_cuda1_file_on_a_one_gpu_host_is_diagnosed(one_gpu, emulated, expectations, fmt):
    r = expectations.apply(cell(emulated, "cuda_index1", fmt, "none", target=ONE_GPU_TARGET))
    assert r.outcome == Outcome.ERROR
    assert "deserialize object on CUDA device 1 but torch.cuda.device_count() is 1" in r.error["message"]
    assert r.diagnosis["code"] == "cuda_index_out_of_range"
    assert '{"cuda:1": "cuda:0"}' in r.diagnosis["fix"]
    assert r.expected and r.expectation == "cuda-index-missing-on-host"
    # Not expected where the target has no GPU at all: that is the CPU case.
    assert not expectations.apply(r.with_(target=CPU_TARGET, expected=False, expectation=None)).expected


@pytest.mark.parametrize(("message", "code"), [
    # torch 2.15 torch/serialization.py _validate_device, and torch 1.4's validate_cuda_device: the same words
    ("Attempting to deserialize object on CUDA device 1 but torch.cuda.device_count() is 1. Please use torch.load "
     "with map_location to map your storages to an existing device.", "cuda_index_out_of_range"),
    ("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False. If you are running "
     "on a CPU-only machine, please use torch.load with map_location=torch.device('cpu') to map your storages to the CPU.",
     "cuda_storage_on_cpu_host"),
])
def test_cuda_diagnoses_from_torch_messages(message, code):
    found = diagnose("RuntimeError", message, "state_dict", {"map_location": "none"})
    assert found is not None and found.code == code
    if code == "cuda_index_out_of_range":
        assert "cuda:1" in found.summary and "1 GPU" in found.summary
        assert found.fix.startswith('torch.load(f, map_location={"cuda:1": "cuda:0"})')
        exported = diagnose("RuntimeError", message, "exported", {})
        assert "no map_location" in exported.fix


def test_index_rule_reads_the_index_from_the_message():
    found = diagnose("RuntimeError", "Attempting to deserialize object on CUDA device 3 but torch.cuda.device_count() is 2.", "state_dict")
    assert '{"cuda:3": "cuda:0"}' in found.fix and "2 GPU" in found.summary


# -- on a real GPU (skipped here; scripts/gpu-check.sh runs the matrix there) --

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("map_location", ["dict:cuda:1->cuda:0", "cuda:0", "device:cuda:0"])
def test_the_fix_maps_a_cuda1_file_exactly_on_a_gpu(emulated, map_location):
    r = cell(emulated, "cuda_index1", "state_dict", map_location, target=ONE_GPU_TARGET)
    assert r.outcome == Outcome.PASS, r.detail
