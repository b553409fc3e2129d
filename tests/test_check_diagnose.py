"""The diagnosis rules that ``check`` added, on the messages torch and safetensors really print."""

from __future__ import annotations

import pytest

from harness.runtime.diagnose import diagnose

# Verbatim (abridged where marked) from torch 2.4.1 and 2.15.0 and safetensors 0.8.
CASES = [
    ("UnpicklingError",
     "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it can "
     "result in arbitrary code execution. Do it only if you got the file from a trusted source.\n Please file an issue with "
     "the following so that we can make `weights_only=True` compatible with your use case: WeightsUnpickler error: "
     "Unsupported operand 149\n\nCheck the documentation of torch.load to learn more",
     "pickle_protocol_unsupported", "pickle_protocol"),
    ("UnpicklingError",
     "Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument [...]\n\n\n"
     "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\nCheck the documentation",
     "pickle_runs_code", "do not allowlist posix.system"),
    ("UnpicklingError",
     "Weights only load failed. This file can still be loaded, to do so you have two options \n\t(1) Re-running [...]\n\t"
     "WeightsUnpickler error: Unsupported global: GLOBAL posix.system was not an allowed global by default. Please use "
     "`torch.serialization.add_safe_globals([system])` to allowlist this global if you trust this class/function.",
     "pickle_runs_code", "do not allowlist posix.system"),
    ("RuntimeError",
     "record size (16 bytes) does not match expected size (4398046511104 bytes = 4398046511104 elements * 1 bytes/element) for dtype Byte",
     "storage_size_mismatch", "re-copy"),
    ("SafetensorError", "Error while deserializing header: incomplete metadata, file not fully covered", "safetensors_corrupt", "re-copy"),
    ("SafetensorError", "Error while deserializing header: invalid header length", "safetensors_corrupt", "re-copy"),
]


@pytest.mark.parametrize(("etype", "message", "code", "fix"), CASES, ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_rule(etype, message, code, fix):
    found = diagnose(etype, message, "state_dict", {"weights_only": "true"})
    assert found is not None and found.code == code
    assert fix in found.fix


def test_an_unknown_class_is_still_weights_only_refused():
    """The code rule leaves ordinary refusals to the weights_only rule (and its add_safe_globals fix)."""
    message = ("Weights only load failed. [...] WeightsUnpickler error: Unsupported global: GLOBAL "
               "harness.runtime.casemodel.CaseModel was not an allowed global by default.")
    found = diagnose("UnpicklingError", message, "full_model", {"weights_only": "true"})
    assert found is not None and found.code == "weights_only_refused"


def test_a_protocol_2_operand_is_not_a_protocol_problem():
    found = diagnose("UnpicklingError", "Weights only load failed. WeightsUnpickler error: Unsupported operand 99", "", {})
    assert found is None or found.code != "pickle_protocol_unsupported"


def test_truncated_safetensors_through_check(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    torch = pytest.importorskip("torch")
    from harness.check.checker import check_file

    whole = tmp_path / "whole.safetensors"
    st.save_file({"w": torch.ones(8)}, str(whole))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:-5])
    report = check_file(cut, cuda=False)
    assert report.format == "safetensors"
    assert any("lie outside" in p for p in report.problems)
    (attempt,) = report.attempts
    assert attempt.status == "failed" and attempt.where == "harness"
    assert attempt.diagnosis["code"] == "safetensors_corrupt"
    assert report.verdict == "does_not_load"
