"""Training checkpoints as people write them: the complete weights_only fix, proven, and resume-then-step.

A checkpoint holding numpy objects, a Namespace, a dataclass, an Enum, a
path and a loss module beside its state dicts is refused by weights_only
one global at a time. The harness finds every global (by loading under a
growing allowlist), offers them in one fix, and proves the fix by loading
exactly with it. Each test here also damages the thing it checks (a dropped
global, a wrong global, an array loaded as a tensor, an optimizer state of
the wrong dtype, a step that drifted) to show it can fail.
"""

from __future__ import annotations

import argparse
import copy
import pickle

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from harness import __version__  # noqa: E402
from harness.check.checker import check_file  # noqa: E402
from harness.runtime.allowlist import (  # noqa: E402
    AllowlistRefused,
    fix_text,
    load_allowing,
    refused_global,
    resolve_global,
    torch_allowlist_api,
)
from harness.runtime.checkpoint_extras import EXTRA_KINDS, build_extras  # noqa: E402
from harness.runtime.compare import Comparison, Difference, compare  # noqa: E402
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.errors import SpecError  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import LoadOptions  # noqa: E402
from harness.runtime.manifest import Manifest, Reference, Snapshot, flatten, record_view  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.cell import CaseContext, run_cell, step_drift  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402

try:
    torch_allowlist_api()
    HAS_ALLOWLIST = True
except Exception:  # noqa: BLE001 - an old torch: the allowlist tests are skips
    HAS_ALLOWLIST = False
needs_allowlist = pytest.mark.skipif(not HAS_ALLOWLIST, reason="this torch has no torch.serialization.add_safe_globals")

FIXED = LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none", safe_globals="needed")
FIXED_STEP = LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="step", safe_globals="needed")
DEFAULT = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none")
UNSAFE = LoadOptions(map_location="cpu", weights_only="false", mmap=False, apply="none")
STEP = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="step")
RESUME = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="resume")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, curated_specs):
    """training_checkpoint and simple_net saved in the checkpoint format, for real."""
    root = tmp_path_factory.mktemp("training")
    fp = fingerprint("cpu")
    out = {}
    for name in ("training_checkpoint", "simple_net"):
        (m,) = save_case(curated_specs[name], root / name, fp, [FORMATS["checkpoint"]], "cpu")
        assert m.status == "saved", m.reason
        out[name] = (Manifest.from_dict(m.to_dict()), root / name)
    return out, fp, curated_specs


def cell(saved, case, options, directory=None):
    table, fp, specs = saved
    manifest, case_dir = table[case]
    base = CellResult(source=fp.label, target=fp.label, case=case, format="checkpoint", load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    ctx = CaseContext(specs[case].to_dict(), "cpu")
    return run_cell(base, manifest, FORMATS["checkpoint"], options, directory or case_dir / "checkpoint",
                    case_dir / "reference.bin", ctx, fp.compute_key)


def ckpt_path(saved, case="training_checkpoint"):
    return saved[0][case][1] / "checkpoint" / "checkpoint.pt"


def exec_fix(text):
    """Run a fix line as a user would, in a namespace that has torch."""
    exec(text, {"torch": torch})  # noqa: S102 - the harness's own fix text, never a file's content


@pytest.fixture
def clean_allowlist():
    """Each test starts and ends with torch's allowlist as it was."""
    add, get, clear = torch_allowlist_api()
    before = list(get())
    yield
    clear()
    if before:
        add(before)


# -- the objects -------------------------------------------------------------


def test_extras_are_built_the_same_every_time_and_spelled_by_content():
    a, b = build_extras(list(EXTRA_KINDS), 3), build_extras(list(EXTRA_KINDS), 3)
    assert set(a) == {k for keys in EXTRA_KINDS.values() for k in keys}
    sa, sb = flatten(a), flatten(b)
    assert sa.values == sb.values
    assert sa.tensors["val_history"][1] == "ndarray"
    # numpy prints scalars differently in 1.x and 2.x: the spelling is the bits, not the repr.
    assert sa.values["best_loss"] == f"numpy.float64:{np.float64(a['best_loss']).tobytes().hex()}"
    assert sa.values["args.$type"] == "argparse.Namespace"


def test_extras_damage_is_caught():
    extras = build_extras(list(EXTRA_KINDS), 3)
    view = record_view(flatten(extras))
    assert compare(view, flatten(copy.deepcopy(extras))).ok
    for key, damaged in [
        ("val_history", torch.from_numpy(extras["val_history"])),  # an array that came back a tensor
        ("best_loss", np.float64(np.nextafter(extras["best_loss"], 1.0))),  # one ulp off
        ("args", argparse.Namespace(**dict(vars(extras["args"]), epochs=99))),
        ("seen_classes", {0, 3}),
        ("git_sha", extras["git_sha"][:-1] + b"\x00"),
    ]:
        other = dict(extras, **{key: damaged})
        result = compare(view, flatten(other))
        assert not result.ok, key
        assert any(d.tensor.startswith(key) for d in result.differences), (key, result.differences)


def test_spec_checks_the_extras():
    base = {"name": "x", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}}
    assert Spec.from_dict(dict(base, checkpoint_extras=["numpy_scalar", "set"]))
    with pytest.raises(SpecError, match=r"checkpoint_extras\[0\]"):
        Spec.from_dict(dict(base, checkpoint_extras=["pickle_bomb"]))
    with pytest.raises(SpecError, match="at most once"):
        Spec.from_dict(dict(base, checkpoint_extras=["set", "set"]))


# -- the allowlist -------------------------------------------------------------


@pytest.mark.parametrize(("message", "name"), [
    # torch 2.15
    ("WeightsUnpickler error: Unsupported global: GLOBAL numpy._core.multiarray.scalar was not an allowed global by default.", "numpy._core.multiarray.scalar"),
    ("Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, but got <class 'numpy.dtypes.Float64DType'>", "numpy.dtypes.Float64DType"),
    # numpy 1's dtype classes have no import path
    ("types allowlisted via `add_safe_globals`, but got <class 'numpy.dtype[float64]'>", "numpy.dtype[float64]"),
    # torch 2.4 cannot build allowlisted classes at all: no name, so no allowlist fixes it
    ("Can only build Tensor, parameter or OrderedDict objects, but got <class 'numpy.dtypes.Float64DType'>", None),
    ("Weights only load failed. Unsupported operand 149", None),
])
def test_refused_global_reads_torchs_messages(message, name):
    assert refused_global(message) == name


def test_code_globals_are_never_resolved(monkeypatch):
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda name: imported.append(name))
    for name in ("os.system", "builtins.eval", "subprocess.Popen", "torch.load"):
        with pytest.raises(AllowlistRefused):
            resolve_global(name)
    assert imported == []


def test_fix_text_spells_numpy_both_ways():
    text = fix_text(["numpy._core.multiarray.scalar", "numpy.dtype", "argparse.Namespace"])
    assert '(np_core.multiarray.scalar, "numpy.core.multiarray.scalar")' in text
    assert '(np_core.multiarray.scalar, "numpy._core.multiarray.scalar")' in text
    assert text.startswith("import argparse, numpy; ")
    assert text.count("add_safe_globals") == 1


@needs_allowlist
def test_the_fix_names_every_global_and_works(saved, clean_allowlist):
    path = str(ckpt_path(saved))
    expected = flatten(torch.load(path, weights_only=False))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    obj, needed = load_allowing(lambda: torch.load(path, weights_only=True))
    assert len(needed) >= 10, needed  # numpy, Namespace, dataclass, Enum, path, loss module ...
    assert {"argparse.Namespace", "torch.nn.modules.loss.CrossEntropyLoss"} <= set(needed)
    assert compare(record_view(expected), flatten(obj)).ok
    # load_allowing leaves torch's allowlist as it found it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    exec_fix(fix_text(needed))  # what a user types
    assert compare(record_view(expected), flatten(torch.load(path, weights_only=True))).ok


@needs_allowlist
@pytest.mark.parametrize("damage", ["drop", "swap"])
def test_an_incomplete_or_wrong_fix_fails(saved, clean_allowlist, damage):
    path = str(ckpt_path(saved))
    _, needed = load_allowing(lambda: torch.load(path, weights_only=True))
    broken = needed[:-1] if damage == "drop" else [*needed[:-1], "collections.Counter"]
    exec_fix(fix_text(broken))
    with pytest.raises(pickle.UnpicklingError, match=needed[-1].rpartition(".")[2]):
        torch.load(path, weights_only=True)


# -- the cells -------------------------------------------------------------


@needs_allowlist
def test_refusal_diagnosis_names_every_global_and_the_fixed_cell_is_exact(saved):
    fixed = cell(saved, "training_checkpoint", FIXED)
    assert fixed.outcome == Outcome.PASS, fixed.detail
    (note,) = [n for n in fixed.notes if "globals are allowlisted" in n]
    refused = cell(saved, "training_checkpoint", LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none"))
    assert refused.outcome == Outcome.ERROR
    assert refused.diagnosis["code"] == "weights_only_refused"
    # the fix is the one the proving cell applied, every global of it
    assert fix_text([]) not in refused.diagnosis["fix"]
    assert note.split(": ", 1)[1] in refused.diagnosis["fix"]


def test_unsafe_load_of_extras_is_exact_and_array_stays_an_array(saved):
    result = cell(saved, "training_checkpoint", UNSAFE)
    assert result.outcome == Outcome.PASS, result.detail


@needs_allowlist
def test_check_gives_one_complete_fix(tmp_path):
    """The issue's own example: model, optimizer, epoch, numpy loss and array, Namespace."""
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 4, "loss": np.float64(0.5),
                "metrics": np.arange(3.0), "args": argparse.Namespace(lr=0.1)}, path)
    report = check_file(path)
    fixes = {a.diagnosis["fix"] for a in report.attempts if a.diagnosis and a.diagnosis["code"] == "weights_only_refused"}
    if not fixes:
        pytest.skip("this torch's weights_only loads the file or check could not try it")
    (fix,) = fixes
    for name in ("argparse.Namespace", "numpy.ndarray", "numpy.dtype", "np_core.multiarray.scalar", "np_core.multiarray._reconstruct"):
        assert name in fix, name


# -- resume, then step -----------------------------------------------------------


@pytest.mark.parametrize("options", [STEP, RESUME])
def test_resume_then_step_is_exact_with_the_same_kernels(saved, options):
    result = cell(saved, "simple_net", options)
    assert result.outcome == Outcome.PASS, result.detail


@needs_allowlist
def test_step_after_the_allowlist_fix(saved):
    result = cell(saved, "training_checkpoint", FIXED_STEP)
    assert result.outcome == Outcome.PASS, result.detail


def test_optimizer_state_restored_in_the_wrong_dtype_is_caught(saved, monkeypatch):
    """A torch whose load_state_dict left Adam's moments in float64 (they must follow the parameters' dtype)."""
    real = torch.optim.Optimizer.load_state_dict

    def leaves_float64(self, state_dict):
        real(self, state_dict)
        for state in self.state.values():
            state["exp_avg"] = state["exp_avg"].double()

    assert cell(saved, "simple_net", STEP).outcome == Outcome.PASS
    monkeypatch.setattr(torch.optim.Optimizer, "load_state_dict", leaves_float64)
    resumed = cell(saved, "simple_net", RESUME)
    assert resumed.outcome == Outcome.MISMATCH, resumed.detail
    aspects = {(d["tensor"].split(".")[0], d["aspect"]) for d in resumed.differences}
    assert ("optimizer", "dtype") in aspects, resumed.differences
    # the step cannot even run with it (Adam's fused lerp refuses mixed dtypes): never a pass
    stepped = cell(saved, "simple_net", STEP)
    assert stepped.outcome in (Outcome.MISMATCH, Outcome.ERROR), stepped.detail


def test_a_moved_moment_is_caught_by_the_step(saved, tmp_path):
    """exp_avg of one parameter given to the other (same shapes, other values)."""
    src = ckpt_path(saved, "simple_net")
    ckpt = torch.load(src, weights_only=False)
    state = ckpt["optimizer"]["state"]
    state[0]["exp_avg"] = state[0]["exp_avg"] * 2
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    result = cell(saved, "simple_net", STEP, directory=tmp_path)
    assert result.outcome == Outcome.MISMATCH
    assert any(d["tensor"] == "model.fc1.weight" for d in result.differences), result.differences


def _stepped_pair():
    expected = Snapshot({"w": (torch.tensor([1.0, 2.0]), "parameter")})
    actual = Snapshot({"w": (torch.tensor([1.0, 2.0 + 2 ** -20]), "parameter")})
    return expected, actual


def _stepped_comparison(tmp_path):
    """(comparison, view, actual) of a step whose one value differs in its last bits."""
    expected, actual = _stepped_pair()
    reference = Reference(tmp_path / "reference.bin")
    view = record_view(expected, reference)
    reference.write()
    comparison = compare(view, actual, tmp_path / "reference.bin")
    assert not comparison.ok
    return comparison, view, actual


def test_step_drift_with_other_kernels_is_drift_with_its_size(tmp_path):
    comparison, view, actual = _stepped_comparison(tmp_path)
    drift = step_drift(comparison, view, actual, tmp_path / "reference.bin", same_kernels=False)
    assert comparison.ok
    assert drift == pytest.approx(2 ** -20)
    assert any("drift" in n for n in comparison.notes)


def test_step_drift_with_the_same_kernels_stays_a_mismatch(tmp_path):
    comparison, view, actual = _stepped_comparison(tmp_path)
    assert step_drift(comparison, view, actual, tmp_path / "reference.bin", same_kernels=True) is None
    assert not comparison.ok


def test_step_drift_never_hides_a_dtype_change(tmp_path):
    comparison = Comparison([Difference("w", "dtype", "float32", "float64")])
    view = record_view(Snapshot({"w": (torch.tensor([1.0]), "parameter")}))
    assert step_drift(comparison, view, Snapshot(), tmp_path / "none.bin", same_kernels=False) is None
    assert not comparison.ok


def test_a_source_without_a_recorded_step_is_a_skip(saved):
    """Golden files saved before apply=step existed: nothing to compare with, so a skip, never an error."""
    table, fp, specs = saved
    manifest, case_dir = table["simple_net"]
    older = Manifest.from_dict(manifest.to_dict())
    del older.views["stepped"]
    base = CellResult(source=fp.label, target=fp.label, case="simple_net", format="checkpoint", load=STEP.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    result = run_cell(base, older, FORMATS["checkpoint"], STEP, case_dir / "checkpoint", case_dir / "reference.bin",
                      CaseContext(specs["simple_net"].to_dict(), "cpu"), fp.compute_key)
    assert result.outcome == Outcome.SKIP
    assert "no training step" in result.detail


# -- a path pickled by Python 3.13 -------------------------------------------------

# torch 2.15 on Python 3.11 loading a checkpoint with a pathlib.Path saved under Python 3.13:
PY313_UNSAFE = "No module named 'pathlib._local'; 'pathlib' is not a package"
PY313_REFUSED = (
    "Weights only load failed. WeightsUnpickler error: Unsupported global: GLOBAL pathlib._local.PosixPath was not an "
    "allowed global by default. Please use `torch.serialization.add_safe_globals([pathlib._local.PosixPath])`"
)


@pytest.mark.parametrize(("etype", "message"), [("ModuleNotFoundError", PY313_UNSAFE), ("UnpicklingError", PY313_REFUSED)])
def test_a_path_pickled_by_python_313(etype, message):
    import importlib.util
    import sys

    from harness.runtime.diagnose import diagnose

    found = diagnose(etype, message, "checkpoint", {"weights_only": "default"})
    here = "pathlib" in sys.modules and getattr(sys.modules["pathlib"], "__path__", None) is not None
    if etype == "UnpicklingError" and here and importlib.util.find_spec("pathlib._local"):
        # this Python has the module: an allowlist is the fix, not another Python
        assert found.code == "weights_only_refused"
    else:
        assert found.code == "pickled_by_newer_python"
        assert "3.13" in found.fix and "str(path)" in found.fix


def test_a_missing_module_that_is_not_pythons_is_not_called_newer_python():
    from harness.runtime.diagnose import diagnose

    found = diagnose("ModuleNotFoundError", "No module named 'mypkg.models'", "full_model", {})
    assert found is None or found.code != "pickled_by_newer_python"


def test_a_torch_without_allowlist_pairs_is_a_skip_with_the_reason(monkeypatch):
    """torch 2.4 + numpy 2 loading a numpy-1 file (recorded messages): no (global, name) pairs there."""
    import harness.runtime.allowlist as allowlist
    from harness.runtime.errors import Unsupported

    if not np.__version__.startswith("2"):
        pytest.skip("the renamed spelling needs numpy 2 here")
    added = []
    monkeypatch.setattr(allowlist, "torch_allowlist_api", lambda: (added.extend, lambda: [], added.clear))
    messages = iter([
        pickle.UnpicklingError("Weights only load failed. Unsupported global: GLOBAL numpy.core.multiarray.scalar was not an allowed global by default."),
        AttributeError("'tuple' object has no attribute '__module__'"),
    ])

    def load():
        raise next(messages)

    with pytest.raises(Unsupported, match=r"no \(global, name\) pairs"):
        load_allowing(load)


def test_a_model_no_step_can_train_records_why_and_its_step_cells_skip(tmp_path):
    """An optimizer over a parameter the forward never reaches: a real run has no step to take either."""
    from harness.runtime.runner.inprocess import roundtrip

    spec = Spec.from_dict({
        "name": "untrainable", "model": {"kind": "sequential", "children": [{"name": "act", "kind": "activation", "fn": "relu"}]},
        "tensors": [{"name": "unused", "kind": "parameter", "shape": [2]}],
    })
    results = roundtrip(spec, [FORMATS["checkpoint"]], options=lambda f, o: o.apply in ("step", "resume"))
    steps = [r for r in results if r.load.get("apply") == "step"]
    resumes = [r for r in results if r.load.get("apply") == "resume"]
    assert resumes and all(r.outcome == Outcome.PASS for r in resumes), [r.detail for r in resumes]
    assert steps and all(r.outcome == Outcome.SKIP and "could not take a training step" in r.detail for r in steps), [r.detail for r in steps]


@needs_allowlist
def test_an_artifacts_refused_cells_search_the_allowlist_once(saved, monkeypatch):
    import harness.runtime.allowlist as allowlist

    searches = []
    real = allowlist.load_allowing
    monkeypatch.setattr(allowlist, "load_allowing", lambda *a, **k: searches.append(1) or real(*a, **k))
    table, fp, specs = saved
    manifest, case_dir = table["training_checkpoint"]
    ctx = CaseContext(specs["training_checkpoint"].to_dict(), "cpu")
    fixes = set()
    for mmap in (False, False, True):
        options = LoadOptions(map_location="cpu", weights_only="true", mmap=mmap, apply="none")
        base = CellResult(source=fp.label, target=fp.label, case="training_checkpoint", format="checkpoint",
                          load=options.to_dict(), outcome=Outcome.SKIP, harness=__version__)
        result = run_cell(base, manifest, FORMATS["checkpoint"], options, case_dir / "checkpoint",
                          case_dir / "reference.bin", ctx, fp.compute_key)
        fixes.add(result.diagnosis["fix"])
    assert len(searches) == 2  # once per (map_location, mmap), not once per cell
    assert len(fixes) == 1
