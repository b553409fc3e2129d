"""``check`` runs one load per group of load options that torch answers alike, and that is honest.

The sweep has ~20 torch.load options per file; `check_file` groups them by
what decides the result (weights_only, where the load runs, mmap, and the
device each storage tag lands on) and runs one load per group. These tests
hold the shared plan to the truth: on files of every tag pattern (cpu,
cuda-emulated, cuda:1, mixed, a device this host lacks, no storages at
all), legacy and zip, state dicts, checkpoints and refused full models,
running every option alone (``share=False``) gives the same status, detail,
error and diagnosis per option, and the same verdict. The damage tests show
that comparison failing when the grouping is wrong. Also: the loads that do
run are few, the allowlist probe is paid only by refused files, and what a
load returned is described from shapes alone (an mmap load stays lazy).
"""

from __future__ import annotations

import contextlib
import inspect
import json

import pytest

from harness.check import checker

pytestmark = pytest.mark.usefixtures("torch")


@contextlib.contextmanager
def _tagging(torch, tag_of):
    """Within the block, torch.save tags a storage with ``tag_of(storage)`` (None: torch's own tag)."""
    import torch.serialization as ser

    def tagger(obj):
        return tag_of(obj)

    def never_restore(obj, location):
        return None

    ser.register_package(-1, tagger, never_restore)
    try:
        yield
    finally:
        ser._package_registry[:] = [e for e in ser._package_registry if e[1] is not tagger]


def _save(torch, obj, path, *, legacy=False):
    kw = {}
    if "_use_new_zipfile_serialization" in inspect.signature(torch.save).parameters:
        kw["_use_new_zipfile_serialization"] = not legacy
    elif not legacy:
        pytest.skip("this torch cannot write a zip archive")
    torch.save(obj, str(path), **kw)
    return path


def _state(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return model, model.state_dict()


class _OnDevice:
    """Pickles as a tensor rebuilt by ``_rebuild_device_tensor_from_cpu_tensor``, which reads map_location itself."""

    def __init__(self, torch, tensor):
        self.torch, self.tensor = torch, tensor

    def __reduce__(self):
        return (self.torch._utils._rebuild_device_tensor_from_cpu_tensor, (self.tensor, self.torch.float32, "cpu", False))


@pytest.fixture(scope="module")
def files(torch, tmp_path_factory):
    """Files of every tag pattern, zip and legacy; name -> path."""
    root = tmp_path_factory.mktemp("shared")
    model, state = _state(torch)
    first = {state["0.weight"].data_ptr(), state["0.bias"].data_ptr()}
    patterns = {
        "cpu": lambda s: None,
        "cuda0": lambda s: "cuda:0",
        "cuda1": lambda s: "cuda:1",
        "mixed": lambda s: "cuda:0" if s.data_ptr() in first else None,  # the first layer on the GPU, the rest on the CPU
        "mps": lambda s: "mps",  # a device this host lacks, and no dict form names
    }
    out = {}
    for name, tag_of in patterns.items():
        with _tagging(torch, tag_of):
            out[f"{name}.pt"] = _save(torch, state, root / f"{name}.pt")
            out[f"{name}_legacy.pt"] = _save(torch, state, root / f"{name}_legacy.pt", legacy=True)
    # an SGD optimizer's state dict, as torch.optim writes it (importing torch.optim costs seconds)
    optimizer = {"state": {i: {"momentum_buffer": torch.randn(*p.shape)} for i, p in enumerate(model.parameters())},
                 "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1, 2, 3]}]}
    with _tagging(torch, patterns["mixed"]):
        out["checkpoint_mixed.pt"] = _save(torch, {"model": state, "optimizer": optimizer, "step": 3}, root / "checkpoint_mixed.pt")
    out["full_model.pt"] = _save(torch, model, root / "full_model.pt")
    out["full_model_legacy.pt"] = _save(torch, model, root / "full_model_legacy.pt", legacy=True)
    out["empty.pt"] = _save(torch, {}, root / "empty.pt")
    out["zip.safetensors"] = _save(torch, state, root / "zip.safetensors")  # a torch.save file under a safetensors name
    if hasattr(torch._utils, "_rebuild_device_tensor_from_cpu_tensor"):
        out["device_rebuild.pt"] = _save(torch, {"w": _OnDevice(torch, torch.ones(3))}, root / "device_rebuild.pt")
    return out


def _results(report) -> dict:
    """Per option: everything a load said (not its time, not which load stood for it)."""
    return {a.label: (a.status, a.where, a.detail, a.error, a.diagnosis) for a in report.attempts}


def _differences(path, **kw) -> list:
    """Where the shared plan and every option run alone disagree: [(label, shared, alone)], verdicts too."""
    shared = checker.check_file(path, share=True, **kw)
    alone = checker.check_file(path, share=False, **kw)
    assert all(a.same_as is None for a in alone.attempts)
    mine, theirs = _results(shared), _results(alone)
    assert list(mine) == list(theirs)
    out = [(label, mine[label], theirs[label]) for label in mine if mine[label] != theirs[label]]
    if (shared.verdict, shared.summary) != (alone.verdict, alone.summary):
        out.append(("verdict", (shared.verdict, shared.summary), (alone.verdict, alone.summary)))
    return out


def _ran(report) -> list:
    return [a for a in report.attempts if a.where and a.same_as is None]


def _consistent(files, name):
    """`name`, or its legacy twin where this torch's zip archive is not one check reads (torch 1.4's own)."""
    from harness.check.sniff import sniff

    return files[name] if not sniff(files[name]).problems else files[name.replace(".pt", "_legacy.pt")]


def _loads_here(torch):
    """check loads in its own process only with weights_only=True, which torch < 1.13 lacks."""
    if "weights_only" not in inspect.signature(torch.load).parameters:
        pytest.skip("this torch.load has no weights_only: check runs no load in its own process")


PATTERNS = ["cpu", "cuda0", "cuda1", "mixed", "mps"]
NAMES = [f"{p}{suffix}.pt" for p in PATTERNS for suffix in ("", "_legacy")] + [
    "checkpoint_mixed.pt", "full_model.pt", "full_model_legacy.pt", "empty.pt", "zip.safetensors", "device_rebuild.pt",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_shared_plan_says_what_every_load_alone_says(files, name):
    if name not in files:
        pytest.skip(f"this torch cannot write {name}")
    # cuda=True sweeps map_location="cuda" too (a failure on a CPU-only host, and one more landing)
    assert _differences(files[name], cuda=True) == []


def test_shared_attempts_name_the_load_that_ran(files):
    report = checker.check_file(_consistent(files, "cpu.pt"), cuda=False)
    ran = {a.label: a for a in _ran(report)}
    copies = [a for a in report.attempts if a.same_as]
    assert copies and len(ran) + len(copies) == sum(1 for a in report.attempts if a.where)
    for a in copies:
        lead = ran[a.same_as]
        assert (a.status, a.where, a.detail, a.seconds) == (lead.status, lead.where, lead.detail, 0.0)
        assert a.options["mmap"] == lead.options["mmap"]
    again = checker.FileReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    ways = len(report.attempts)
    assert f"loads ({ways} ways; {len(ran)} load{'s' if len(ran) != 1 else ''} ran, the others share their results)" in checker.render_text([report], trust=False)


def test_a_cpu_file_costs_one_load_per_mmap(files, monkeypatch):
    """20 weights_only loads in this process become one per mmap value: a file's bytes read once per distinct load."""
    calls = []
    real = checker.try_load

    def counting(path, loader, options, **kw):
        calls.append(options)
        return real(path, loader, options, **kw)

    monkeypatch.setattr(checker, "try_load", counting)
    path = _consistent(files, "cpu.pt")
    checker.check_file(path, cuda=False)
    assert sorted(o.mmap for o in calls) == [False, True]
    calls.clear()
    alone = checker.check_file(path, cuda=False, share=False)
    assert len(calls) == len(_ran(alone)) == sum(1 for a in alone.attempts if a.where == "harness") >= 10


def test_tags_decide_which_forms_share(files, torch):
    """On a cuda:0 file map_location none stands apart; cpu, device:cpu, the dict and the callable share."""
    _loads_here(torch)
    if torch.cuda.is_available():
        pytest.skip("with a GPU none lands on it and loads")
    report = checker.check_file(_consistent(files, "cuda0.pt"), cuda=False)
    groups: dict = {}
    for a in report.attempts:
        if a.where == "harness" and a.options["mmap"] is False:
            groups.setdefault(a.same_as or a.label, set()).add(a.options["map_location"])
    assert sorted(map(sorted, groups.values())) == [["callable", "cpu", "device:cpu", "dict:cuda:0->cpu"], ["none"]]
    mixed = checker.check_file(_consistent(files, "cuda1.pt"), cuda=False)  # {"cuda:0": "cpu"} leaves cuda:1 where it was
    dict_form = [a for a in mixed.attempts if a.options["map_location"] == "dict:cuda:0->cpu" and a.where == "harness" and not a.options["mmap"]]
    assert dict_form and all(a.status == "failed" for a in dict_form)


def test_an_incomplete_tag_listing_shares_only_the_same_call(files, monkeypatch):
    """A walk cut short may have missed a tag: only weights_only default and true (one call here) share."""
    real = checker.sniff

    def cut_short(path):
        found = real(path)
        found.truncated = True
        return found

    monkeypatch.setattr(checker, "sniff", cut_short)
    report = checker.check_file(files["mixed.pt"], cuda=False)
    by_label = {a.label: a for a in report.attempts}
    copies = [a for a in report.attempts if a.same_as]
    if checker.default_weights_only() is True:  # else only weights_only=true runs here: nothing to share
        assert copies
    for a in copies:
        lead = by_label[a.same_as]
        assert {k: v for k, v in a.options.items() if k != "weights_only"} == {k: v for k, v in lead.options.items() if k != "weights_only"}
    assert _differences(files["mixed.pt"], cuda=False) == []


# -- damage: the comparison fails when the grouping is wrong ---------------------


def test_damage_a_wrong_landing_is_caught(files, monkeypatch, torch):
    _loads_here(torch)
    if torch.cuda.is_available():
        pytest.skip("with a GPU every form loads the cuda:0 file: a wrong landing shows nothing")
    path = _consistent(files, "cuda0.pt")
    assert _differences(path, cuda=False) == []
    real = checker._landing
    monkeypatch.setattr(checker, "_landing", lambda form, tag: "cpu" if form in (None, "none") else real(form, tag))
    wrong = _differences(path, cuda=False)
    assert wrong, "map_location=none and cpu share a load on a cuda:0 file: the comparison must show it"


def test_damage_a_rebuild_that_reads_map_location_is_caught(files, monkeypatch):
    if "device_rebuild.pt" not in files:
        pytest.skip("this torch has no _rebuild_device_tensor_from_cpu_tensor")
    path = files["device_rebuild.pt"]
    alone = checker.check_file(path, cuda=False, share=False)
    callable_form = {a.status for a in alone.attempts if a.options.get("map_location") == "callable" and a.where}
    if callable_form == {"loaded"}:
        pytest.skip("this torch's device rebuild takes a callable map_location: nothing to tell apart")
    monkeypatch.setattr(checker, "_STORAGE_REBUILDS", checker._STORAGE_REBUILDS | {"torch._utils._rebuild_device_tensor_from_cpu_tensor"})
    assert _differences(path, cuda=False), "sharing across a rebuild that reads map_location must show"


def test_damage_a_safetensors_name_is_caught(files, monkeypatch, torch):
    _loads_here(torch)
    path = files["zip.safetensors"]
    alone = checker.check_file(path, cuda=False, share=False)
    forms = {a.options["map_location"]: a.detail for a in alone.attempts if a.where == "harness" and a.options["weights_only"] == "true" and not a.options["mmap"]}
    if forms["cpu"] == forms["callable"]:
        pytest.skip("this torch.load does not hand a .safetensors path to safetensors")
    monkeypatch.setattr(checker, "_tags_complete", lambda sniffed: sniffed.format in ("torch_zip", "torch_legacy") and not sniffed.problems)
    assert _differences(path, cuda=False), "sharing across torch.load's safetensors dispatch must show"


# -- trusted loads in the child --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["full_model.pt", "mixed.pt"])
def test_the_child_shares_as_the_harness_does(files, monkeypatch, name):
    """With --trust, full unpickles run in a child: fewer of them, saying the same."""
    sent = []
    real = checker.run_in_child

    def counting(path, attempts, timeout, server=None):
        sent.append(len(attempts))
        return real(path, attempts, timeout, server)

    monkeypatch.setattr(checker, "run_in_child", counting)
    assert _differences(_consistent(files, name), cuda=False, trust=True, timeout=120) == []
    shared, alone = sent
    assert 0 < shared < alone


# -- what a load costs besides its bytes ---------------------------------------------


def test_describing_a_load_reads_no_tensor_values(torch):
    """An mmap load stays lazy: describe_loaded reads shapes; meta tensors have no values to read."""
    from harness.check.child import describe_loaded

    try:
        module = torch.nn.Linear(3, 2, device="meta")
    except (TypeError, RuntimeError):
        pytest.skip("this torch cannot make meta tensors")
    meta = {"w": torch.empty(4, 3, device="meta"), "nested": [torch.empty(2, device="meta")]}
    assert describe_loaded(meta) == "dict of 2 entries, 2 tensors"
    assert describe_loaded(module) == "Linear (nn.Module) with 2 state tensors"
    assert describe_loaded(torch.empty(5, device="meta")) == "a tensor of shape [5]"


def test_the_allowlist_probe_is_paid_only_by_refused_files(files, monkeypatch, torch):
    import harness.runtime.allowlist as allowlist

    _loads_here(torch)

    probed = []
    real = allowlist.load_allowing

    def spy(attempt, admit):
        probed.append(True)
        return real(attempt, admit)

    monkeypatch.setattr(allowlist, "load_allowing", spy)
    loaded = checker.check_file(_consistent(files, "mixed.pt"), cuda=False)
    assert loaded.verdict == "loads_some_ways", loaded.summary
    assert probed == []
    refused = checker.check_file(files["full_model.pt"], cuda=False)
    if not any(a.diagnosis and a.diagnosis["code"] == "weights_only_refused" for a in refused.attempts):
        pytest.skip("this torch does not refuse a full model with weights_only")
    assert probed == [True]
