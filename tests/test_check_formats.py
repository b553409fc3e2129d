"""``check`` on real files of every format, written here with this env's torch.

Each test states what check must report (format, tensors, device tags, key
prefixes, unsafe globals, which loads work) for a file whose truth the test
knows because it wrote it. Expectations that depend on torch (its default
weights_only, mmap) are asked of torch, never of its version.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path

import pytest

from tests.hostile_files import run_check

NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]
SHAPES = {"0.weight": [3, 4], "0.bias": [3], "2.weight": [2, 3], "2.bias": [2]}


def _model(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


@pytest.fixture(scope="module")
def files(torch, tmp_path_factory):
    """One file per format (and a few variants), made with this torch; name -> path."""
    from harness.runtime.emulation import emulate_cuda

    root = tmp_path_factory.mktemp("formats")
    model = _model(torch)
    state = model.state_dict()
    out = {}

    def save(name, obj, **kw):
        out[name] = root / name
        torch.save(obj, str(out[name]), **kw)

    save("state_dict.pt", state)
    save("state_dict_legacy.pt", state, _use_new_zipfile_serialization=False)
    save("full_model.pt", model)
    save("full_model_protocol4.pt", model, pickle_protocol=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    save("checkpoint.pt", {"model": state, "optimizer": optimizer.state_dict(), "step": 3})
    save("compiled_prefix.pt", {f"_orig_mod.{k}": v for k, v in state.items()})
    save("checkpoint_module_prefix.pt", {"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": optimizer.state_dict()})
    with emulate_cuda():
        save("cuda_state_dict.pt", state)
        save("cuda_state_dict_legacy.pt", state, _use_new_zipfile_serialization=False)
    out["torchscript.ts"] = root / "torchscript.ts"
    torch.jit.save(torch.jit.script(model), str(out["torchscript.ts"]))
    if hasattr(getattr(torch, "export", None), "save"):
        out["exported.pt2"] = root / "exported.pt2"
        torch.export.save(torch.export.export(model, (torch.randn(1, 4),)), str(out["exported.pt2"]))
    try:
        import safetensors.torch
    except ImportError:
        pass
    else:
        out["model.safetensors"] = root / "model.safetensors"
        safetensors.torch.save_file(dict(state), str(out["model.safetensors"]))
    return out


def _check(path, **kw):
    from harness.check.checker import check_file

    return check_file(path, cuda=False, **kw)


def _by_status(report) -> dict:
    out: dict = {}
    for a in report.attempts:
        out.setdefault(a.status, []).append(a)
    return out


def _tensors(report) -> dict:
    return {t["name"]: t for t in report.tensors}


def _has_mmap(torch) -> bool:
    return "mmap" in inspect.signature(torch.load).parameters


@pytest.mark.parametrize(
    ("name", "fmt", "harness_format", "content"),
    [
        ("state_dict.pt", "torch_zip", "state_dict", "state_dict"),
        ("state_dict_legacy.pt", "torch_legacy", "state_dict_legacy", "state_dict"),
        ("full_model.pt", "torch_zip", "full_model", "module torch.nn.modules.container.Sequential"),
        ("checkpoint.pt", "torch_zip", "checkpoint", "checkpoint"),
        ("torchscript.ts", "torchscript", "torchscript", "TorchScript module"),
        ("exported.pt2", "exported", "exported", "ExportedProgram"),
        ("model.safetensors", "safetensors", "safetensors", "tensors"),
    ],
)
def test_format_and_tensors(files, name, fmt, harness_format, content):
    if name not in files:
        pytest.skip(f"this env cannot write {name}")
    report = _check(files[name])
    assert report.format == fmt, report.why
    assert report.harness_format == harness_format
    assert report.content.startswith(content)
    tensors = _tensors(report)
    prefix = "model." if name == "checkpoint.pt" else ""
    for n in NAMES:
        t = tensors.get(prefix + n)
        assert t is not None, f"{prefix + n} missing from {sorted(tensors)}"
        assert t["dtype"] == "float32"
        assert t["shape"] == SHAPES[n]
        if fmt == "safetensors":
            assert t["device"] is None  # the format has no device tags
        else:
            assert t["device"] == "cpu"
    if fmt != "safetensors":
        assert report.device_tags.get("cpu", 0) >= 4
    assert report.prefixes == []
    assert not report.problems, report.problems


def test_checkpoint_lists_optimizer_state(files):
    tensors = _tensors(_check(files["checkpoint.pt"]))
    momentum = [n for n in tensors if n.startswith("optimizer.state.") and n.endswith("momentum_buffer")]
    assert len(momentum) == 4, sorted(tensors)


def test_state_dict_loads_every_way(files, torch):
    report = _check(files["state_dict.pt"])
    statuses = _by_status(report)
    assert report.verdict == "loads", report.summary
    assert not report.findings
    assert len(statuses["loaded"]) >= 5  # every map_location at least
    assert all(a.where == "harness" for a in statuses["loaded"])
    # weights_only=False is a full unpickle: never in the harness process without --trust
    assert {a.options["weights_only"] for a in statuses["not_tried"]} >= {"false"}
    assert all("needs --trust" in a.detail for a in statuses["not_tried"])


def test_legacy_state_dict_fails_only_with_mmap(files, torch):
    if not _has_mmap(torch):
        pytest.skip("torch.load has no mmap in this torch")
    report = _check(files["state_dict_legacy.pt"])
    failed = _by_status(report)["failed"]
    assert failed and all(a.options["mmap"] is True for a in failed)
    assert {a.diagnosis["code"] for a in failed} == {"mmap_legacy_format"}
    assert report.verdict == "loads_some_ways"


def test_cuda_tagged_file(files, torch):
    report = _check(files["cuda_state_dict.pt"])
    assert report.device_tags == {"cuda:0": 4}
    assert {t["device"] for t in report.tensors} == {"cuda:0"}
    if torch.cuda.is_available():
        return  # the tag is real here: every map_location works
    statuses = _by_status(report)
    failed = statuses["failed"]
    assert {a.options["map_location"] for a in failed} == {"none"}
    assert {a.diagnosis["code"] for a in failed} == {"cuda_storage_on_cpu_host"}
    assert "map_location" in failed[0].diagnosis["fix"]
    assert {a.options["map_location"] for a in statuses["loaded"]} == {"cpu", "device:cpu", "dict:cuda:0->cpu", "callable"}
    assert report.verdict == "loads_some_ways"
    assert "cuda_storage_on_cpu_host" in report.summary


def test_cuda_tagged_legacy_file(files):
    report = _check(files["cuda_state_dict_legacy.pt"])
    assert report.format == "torch_legacy"
    assert report.device_tags == {"cuda:0": 4}


def test_compile_prefix(files):
    (found,) = _check(files["compiled_prefix.pt"]).prefixes
    assert found["prefix"] == "_orig_mod." and found["count"] == 4 and found["total"] == 4
    assert "torch.compile" in found["meaning"]
    assert "consume_prefix_in_state_dict_if_present" in found["fix"]


def test_dataparallel_prefix_inside_checkpoint(files):
    report = _check(files["checkpoint_module_prefix.pt"])
    assert report.content == "checkpoint"
    (found,) = report.prefixes
    assert found["prefix"] == "module." and found["count"] == 4 and found["total"] == 4
    assert "DataParallel" in found["meaning"]


def test_full_model_unsafe_globals_and_refusal(files, torch):
    report = _check(files["full_model.pt"])
    expected = {"torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Linear", "torch.nn.modules.activation.ReLU"}
    assert expected <= set(report.unsafe_globals)
    assert "torch._utils._rebuild_tensor_v2" in report.globals
    assert "torch._utils._rebuild_tensor_v2" not in report.unsafe_globals
    assert report.code_globals == []
    statuses = _by_status(report)
    assert "loaded" not in statuses
    assert {a.diagnosis["code"] for a in statuses["failed"]} == {"weights_only_refused"}
    assert all(a.options["weights_only"] != "false" for a in statuses["failed"])
    assert report.verdict == "does_not_load"


def test_full_model_loads_with_trust_in_a_child(files):
    report = _check(files["full_model.pt"], trust=True, timeout=120)
    loaded = _by_status(report)["loaded"]
    assert loaded and all(a.where == "child" and a.options["weights_only"] in ("false", "default") for a in loaded)
    assert "Sequential (nn.Module)" in loaded[0].detail
    assert report.verdict == "loads_some_ways"


def test_scan_finds_the_globals_torch_finds(files, torch):
    """The pickletools fallback and torch's own static scan agree on a full-model pickle."""
    from harness.check.checker import weights_only_allowlist
    from harness.check.pickle_scan import scan

    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:
        pytest.skip("this torch has no get_unsafe_globals_in_checkpoint to compare with")
    path = files["full_model.pt"]
    with zipfile.ZipFile(path) as z:
        (pkl,) = [n for n in z.namelist() if n.endswith("/data.pkl")]
        facts = scan(z.read(pkl))
    theirs = sorted(finder(str(path)))
    assert "torch.nn.modules.linear.Linear" in theirs
    assert sorted(set(facts.globals) - weights_only_allowlist()) == theirs


def test_check_falls_back_to_its_scan(files, torch, monkeypatch):
    with_torch = _check(files["full_model.pt"])
    monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint", raising=False)
    without = _check(files["full_model.pt"])
    assert without.globals_source.startswith("the harness's pickle scan")
    assert without.unsafe_globals == with_torch.unsafe_globals


def test_protocol4_pickle(files, torch):
    """torch's static scan and weights_only unpickler stop at protocol 4; the harness's scan does not."""
    report = _check(files["full_model_protocol4.pt"])
    assert "torch.nn.modules.linear.Linear" in report.unsafe_globals
    assert report.globals_source.startswith("the harness's pickle scan")
    failed = _by_status(report)["failed"]
    assert {a.diagnosis["code"] for a in failed} == {"pickle_protocol_unsupported"}


def test_torchscript_and_export_need_trust(files):
    for name, loader in (("torchscript.ts", "torch.jit.load"), ("exported.pt2", "torch.export.load")):
        if name not in files:
            continue
        report = _check(files[name])
        assert {a.loader for a in report.attempts} == {loader}
        assert all(a.status == "not_tried" and "needs --trust" in a.detail for a in report.attempts)
        assert report.verdict == "not_checked" and report.findings


@pytest.mark.slow
def test_torchscript_and_export_load_with_trust(files):
    for name in ("torchscript.ts", "exported.pt2"):
        if name not in files:
            continue
        report = _check(files[name], trust=True, timeout=300)
        assert report.attempts and all(a.status == "loaded" and a.where == "child" for a in report.attempts), report.summary
        assert report.verdict == "loads"


def test_default_weights_only_is_asked_of_torch(torch, monkeypatch, files):
    """With the default forced to a full unpickle, check stops running default loads itself."""
    from harness.check.checker import default_weights_only

    if "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in inspect.getsource(torch.serialization):
        pytest.skip("this torch has no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert default_weights_only() is False
    report = _check(files["state_dict.pt"])
    defaults = [a for a in report.attempts if a.options["weights_only"] == "default"]
    assert defaults and all(a.status == "not_tried" for a in defaults)
    assert "default" in defaults[0].detail


def test_exit_status_and_json(files, tmp_path):
    good = [str(files["state_dict.pt"])] + ([str(files["model.safetensors"])] if "model.safetensors" in files else [])
    proc = run_check("--json", *good, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc["exit_status"] == 0 and doc["schema"] == 1
    assert [Path(f["path"]).name for f in doc["files"]] == [Path(g).name for g in good]
    assert all(f["verdict"] == "loads" for f in doc["files"])

    proc = run_check(*good, str(files["full_model.pt"]), cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert "full_model.pt: does not load any way tried here: weights_only_refused" in line
    assert "verdict: loads every way tried here" in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # check writes nothing


def test_report_round_trips_through_json(files):
    from harness.check.checker import FileReport

    report = _check(files["cuda_state_dict.pt"])
    again = FileReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
