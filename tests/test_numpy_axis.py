"""numpy as a matrix axis: numpy 2's pickles under numpy 1, diagnosed, expected, and the fix's logic proven.

What torch.load really did was measured once in real envs (torch 2.4.1 with
numpy 1.24.4, 1.26.4 and 2.0.2; torch 2.15.0 with numpy 2.4.6) and kept in
``tests/data/numpy/messages.json``, with the numpy-1 files themselves.
These tests check the diagnosis and the expectation against those real
messages, and prove the fix's logic in this process: an unpickler that
resolves ``numpy._core`` as numpy 1.24 and as numpy 1.26 do reproduces every
recorded outcome, and under the 1.26 one a numpy-2 checkpoint loads bit for
bit. The cross-env proof is the ``numpy`` named matrix run (README).
"""

from __future__ import annotations

import io
import json
import pickle
import types
import warnings
from typing import Optional

import pytest
from conftest import REPO

from harness.runtime.diagnose import Diagnosis, diagnose
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations
from harness.runtime.results import CellResult, Outcome

DATA = REPO / "tests" / "data" / "numpy"
RECORDED = json.loads((DATA / "messages.json").read_text())
SHIM = RECORDED["numpy_1_26_4_core_modules"]
SEED, KINDS = 3, ["numpy_scalar", "numpy_array"]  # what record.py saved
RAW = {"map_location": "cpu", "weights_only": "false", "mmap": False, "apply": "none"}


def _failures(table: str) -> list[dict]:
    return [e for e in RECORDED[table] if e["etype"]]


# -- the diagnosis, from the real messages ---------------------------------------


@pytest.mark.parametrize("entry", _failures("loads") + _failures("allowlist_resolve"),
                         ids=lambda e: f"{e.get('file') or e['global']}@numpy{e['numpy']}")
def test_numpy2_pickles_under_numpy1_are_diagnosed_with_the_numpy_that_reads_them(entry):
    found = diagnose(entry["etype"], entry["message"], "checkpoint", RAW)
    assert found is not None and found.code == "numpy_too_old", entry
    assert "re-save the file under numpy 1.x" in found.fix
    if "numeric" in entry["message"]:
        # numpy 1.26's numpy._core shim has no numeric: only numpy 2 reads it
        assert 'pip install "numpy>=2"' in found.fix and "1.26.1" not in found.fix
    else:
        assert 'pip install "numpy>=1.26.1"' in found.fix


def test_every_numpy2_failure_recorded_is_in_a_numpy_without_numpy_core_or_its_shim():
    # The facts the rule and the expectation rest on: only numpy-2 files
    # fail, only under numpy 1, and under 1.26.4 only for a module its shim lacks.
    for e in _failures("loads"):
        assert e["file"].startswith("numpy2-") and e["numpy"].startswith("1.")
        if e["numpy"] == "1.26.4":
            assert e["message"] == "No module named 'numpy._core.numeric'" and "numeric" not in SHIM
    assert {e["file"] for e in RECORDED["loads"] if e["etype"] is None and e["numpy"] == "1.26.4"} >= {"numpy2-protocol2.pt"}


# -- the reverse direction: numpy 1's files under numpy 2 --------------------------

#: What the reverse direction says, where it says anything: the weights_only
#: refusal of numpy.core names (an allowlist is its fix, not numpy's version),
#: the DeprecationWarning a protocol-5 file raises while it loads, and the
#: message a numpy without numpy.core (none exists yet) would give.
REVERSE = [("UnpicklingError", e["message"]) for e in RECORDED["weights_only_refusals"]] + [
    ("DeprecationWarning", w) for e in RECORDED["loads"] for w in e["warnings"]
] + [("ModuleNotFoundError", "No module named 'numpy.core'"), ("AttributeError", "module 'numpy' has no attribute 'core'")]


def upgrade_advice_for_the_reverse(diagnose_fn) -> list[str]:
    """The reverse-direction messages `diagnose_fn` answers with "upgrade numpy": each one is wrong advice."""
    wrong = []
    for etype, message in REVERSE:
        found = diagnose_fn(etype, message, "checkpoint", RAW)
        if found is not None and (found.code == "numpy_too_old" or "upgrade numpy" in found.fix):
            wrong.append(message[:80])
    return wrong


def test_the_reverse_direction_is_never_told_to_upgrade_numpy():
    assert len(REVERSE) >= 4
    assert upgrade_advice_for_the_reverse(diagnose) == []
    refusal = diagnose("UnpicklingError", RECORDED["weights_only_refusals"][0]["message"], "checkpoint", {"weights_only": "true"})
    assert refusal is not None and refusal.code == "weights_only_refused"


def test_damage_a_rule_that_says_upgrade_for_any_numpy_core_message_is_caught():
    def loose(etype, message, fmt, load):  # a rule keyed on "numpy" and "core" alone
        if "numpy" in message and "core" in message:
            return Diagnosis("numpy_too_old", "numpy too old", 'upgrade numpy (pip install "numpy>=1.26.1")')
        return diagnose(etype, message, fmt, load)

    assert upgrade_advice_for_the_reverse(loose)


def test_the_reverse_direction_loads_exactly_and_warns_only_for_protocol_5(torch):
    np = pytest.importorskip("numpy")
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"numpy {np.__version__}: the reverse direction needs numpy 2 here")
    from harness.runtime.checkpoint_extras import build_extras

    want = build_extras(KINDS, SEED)
    for protocol, warns in ((2, False), (5, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = torch.load(DATA / f"numpy1-protocol{protocol}.pt", weights_only=False)  # our own recorded file
        _assert_exact(got, want)
        texts = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning) and "numpy.core" in str(w.message)]
        # A warning is a note on a pass (the cell records what a load warned), never a failure.
        assert bool(texts) == warns, texts


def _assert_exact(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert type(got[key]) is type(value), key
        assert got[key].dtype == value.dtype and got[key].tobytes() == value.tobytes(), key


# -- the fix's logic: numpy 1.24 and 1.26 as unpicklers, checked against the record --


def numpy_core_as(shim: Optional[list[str]]) -> types.ModuleType:
    """A pickle module whose Unpickler resolves ``numpy._core`` as an older numpy does.

    ``None``: no numpy._core at all (numpy before 1.26.1). A list: the
    numpy._core modules numpy 1.26's shim has; any other is missing.
    """

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "numpy._core" or module.startswith("numpy._core."):
                if shim is None:
                    raise ModuleNotFoundError("No module named 'numpy._core'")
                sub = module.split(".")[2:3]
                if sub and sub[0] not in shim:
                    raise ModuleNotFoundError(f"No module named '{module}'")
            return super().find_class(module, name)

    mod = types.ModuleType("numpy_core_as")
    mod.Unpickler = Unpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()  # type: ignore[attr-defined]
    return mod


NUMPY_1_24, NUMPY_1_26 = numpy_core_as(None), numpy_core_as(SHIM)


@pytest.fixture(scope="module")
def numpy2_files(torch):
    np = pytest.importorskip("numpy")
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"numpy {np.__version__}: saving numpy-2 pickles needs numpy 2")
    from harness.runtime.checkpoint_extras import build_extras

    want = build_extras(KINDS, SEED)
    files = {}
    for protocol in (2, 5):
        buf = io.BytesIO()
        torch.save({"model": {"w": torch.arange(4.0)}, **want}, buf, pickle_protocol=protocol)
        files[f"numpy2-protocol{protocol}.pt"] = buf.getvalue()
    return files, want


def _outcome(torch, data: bytes, numpy_as: types.ModuleType):
    try:
        return torch.load(io.BytesIO(data), weights_only=False, pickle_module=numpy_as), None
    except ModuleNotFoundError as e:
        return None, str(e)


def test_the_emulated_numpys_fail_exactly_where_the_real_ones_did(torch, numpy2_files):
    files, _ = numpy2_files
    for numpy_as, version in ((NUMPY_1_24, "1.24.4"), (NUMPY_1_26, "1.26.4")):
        for name, data in files.items():
            real = next(e for e in RECORDED["loads"] if e["file"] == name and e["numpy"] == version)
            _, message = _outcome(torch, data, numpy_as)
            assert message == real["message"], (name, version)


def test_the_fix_upgrading_to_numpy_1_26_loads_the_numpy2_checkpoint_exactly(torch, numpy2_files):
    files, want = numpy2_files
    data = files["numpy2-protocol2.pt"]  # torch.save's default protocol
    _, message = _outcome(torch, data, NUMPY_1_24)
    found = diagnose("ModuleNotFoundError", message, "checkpoint", RAW)
    assert found is not None and found.code == "numpy_too_old" and "1.26.1" in found.fix
    loaded, message = _outcome(torch, data, NUMPY_1_26)  # the fix applied
    assert message is None
    _assert_exact(loaded, want)
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))


def test_damage_a_shim_without_multiarray_does_not_load_it(torch, numpy2_files):
    # The proof can fail: a numpy._core shim lacking the module numpy 2's
    # array and scalar pickles name does not read the file.
    files, _ = numpy2_files
    _, message = _outcome(torch, files["numpy2-protocol2.pt"], numpy_core_as([m for m in SHIM if m != "multiarray"]))
    assert message == "No module named 'numpy._core.multiarray'"


# -- the expectation ---------------------------------------------------------------


def _cell(source: str, target: str, code: str = "numpy_too_old") -> CellResult:
    return CellResult(source=source, target=target, case="training_checkpoint", format="checkpoint", load=RAW,
                      outcome=Outcome.ERROR, diagnosis={"code": code})


def test_numpy2_to_numpy_1_24_is_expected_and_its_neighbours_are_not():
    shipped = Expectations.load()
    cell = _cell("torch-2.15.0-py3.11-cpu-numpy-2.0.2", "torch-2.4.1-py3.11-cpu-numpy-1.24.4")
    assert shipped.apply(cell).expectation == "numpy2-pickle-needs-numpy-1.26.1"
    assert shipped.apply(cell.with_(source="torch-2.4.1-py3.11-cpu-numpy-2.0.2")).expected  # same torch, numpy 2 -> 1
    for neighbour in (
        cell.with_(target="torch-2.4.1-py3.11-cpu-numpy-1.26.4"),  # the fix: would be a regression
        cell.with_(source="torch-2.4.1-py3.11-cpu-numpy-1.26.4"),  # a numpy-1 file: no numpy._core in it
        cell.with_(target="torch-2.4.1-py3.11-cpu"),  # numpy unknown: no axis, no match
        cell.with_(diagnosis={"code": "class_not_importable"}),
    ):
        assert not shipped.apply(neighbour).expected, neighbour


def test_numpy_match_keys_are_checked_when_read(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text('[[expectation]]\nid = "x"\nreason = "r"\ntarget_numpy = ">>1.26"\n')
    with pytest.raises(InputError, match="target_numpy"):
        Expectations.load(p)
