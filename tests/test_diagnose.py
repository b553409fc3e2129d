"""Diagnoses recognise the real messages torch gives, and name the fix."""

from __future__ import annotations

import pytest

from harness.runtime.diagnose import diagnose

WEIGHTS_ONLY = (
    "Weights only load failed. This file can still be loaded, to do so you have two options, do those steps only if "
    "you trust the source of the checkpoint. \n\t(1) In PyTorch 2.6, we changed the default value of the `weights_only` "
    "argument in `torch.load` from `False` to `True`. ...\n\t(2) Alternatively, to load with `weights_only=True` please "
    "check the recommended steps in the following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL "
    "harness.runtime.casemodel.CaseModel was not an allowed global by default."
)
CUDA = ("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False. If you are running on a "
        "CPU-only machine, please use torch.load with map_location=torch.device('cpu') to map your storages to the CPU.")
OLD_TORCH_CUDA = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
                  "but it can result in arbitrary code execution. Do it only if you got the file from a trusted source.\n "
                  "Please file an issue with the following so that we can make `weights_only=True` compatible with your use "
                  "case: WeightsUnpickler error: " + CUDA)
KMAX = ("version_ <= kMaxSupportedFileFormatVersion INTERNAL ASSERT FAILED at /pytorch/caffe2/serialize/inline_container.cc:132, "
        "please report a bug to PyTorch. Attempted to read a PyTorch file with version 3, but the maximum supported version "
        "for reading is 2. Your PyTorch installation may be too old.")
OLD_WEIGHTS_ONLY = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, "
                    "but it can result in arbitrary code execution.Do it only if you get the file from a trusted source. "
                    "WeightsUnpickler error: Unsupported operand ")
PREFIX = ('Error(s) in loading state_dict for CaseModel:\n\tMissing key(s) in state_dict: "fc1.weight", "fc1.bias". \n\t'
          'Unexpected key(s) in state_dict: "_orig_mod.fc1.weight", "_orig_mod.fc1.bias". ')


@pytest.mark.parametrize(("etype", "message", "fmt", "load", "code", "fix_words"), [
    ("UnpicklingError", WEIGHTS_ONLY, "full_model", {"weights_only": "default"}, "weights_only_refused", "state_dict"),
    ("UnpicklingError", WEIGHTS_ONLY, "checkpoint", {"weights_only": "true"}, "weights_only_refused", "add_safe_globals([harness.runtime.casemodel.CaseModel])"),
    ("RuntimeError", CUDA, "state_dict", {}, "cuda_storage_on_cpu_host", 'map_location="cpu"'),
    # torch < 2.5 wraps the CUDA error in a weights_only one: the CUDA cause wins
    ("UnpicklingError", OLD_TORCH_CUDA, "state_dict", {"weights_only": "true"}, "cuda_storage_on_cpu_host", "map_location"),
    ("RuntimeError", PREFIX, "state_dict", {"apply": "strict"}, "key_prefix_orig_mod", 'consume_prefix_in_state_dict_if_present(state_dict, "_orig_mod.")'),
    ("RuntimeError", PREFIX.replace("_orig_mod.", "module."), "state_dict", {"apply": "strict"}, "key_prefix_module", "model.module.state_dict()"),
    ("RuntimeError", "mmap can only be used with files saved with `torch.save(_use_new_zipfile_serialization=True), please "
     "torch.save your checkpoint with this option in order to use mmap.", "state_dict_legacy", {"mmap": True}, "mmap_legacy_format", "mmap=False"),
    ("KeyError", "\"There is no item named 'version' in the archive\"", "exported", {}, "export_archive_from_newer_torch", "newer one"),
    ("RuntimeError", "Serialized version ['5', '3'] does not match our current schema version (8, 20).", "exported", {}, "export_schema_mismatch", "export the model again"),
    ("ModuleNotFoundError", "No module named 'mymodels'", "full_model", {}, "class_not_importable", "importable"),
    ("FactoryUnavailable", "user case mymodels:make: cannot import it in this env", "state_dict", {}, "user_case_not_importable", "install"),
    ("RuntimeError", "PytorchStreamReader failed reading zip archive: failed finding central directory", "state_dict", {}, "corrupt_file", "re-copy"),
    # Releases far apart: the messages torch 1.4 and 1.13 give (measured in the history matrix)
    ("RuntimeError", KMAX, "state_dict", {}, "file_from_newer_torch", "_use_new_zipfile_serialization=False"),
    ("RuntimeError", KMAX, "torchscript", {}, "file_from_newer_torch", "oldest torch"),
    ("RuntimeError", "[enforce fail at inline_container.cc:197] . file not found: model/version", "torchscript", {},
     "file_from_newer_torch", "upgrade this torch"),
    ("AttributeError", "Can't get attribute 'ComplexFloatStorage' on <module 'torch' from '/x/torch/__init__.py'>",
     "state_dict_legacy", {}, "dtype_missing_here", "view_as_real"),
    ("AttributeError", "module 'torch' has no attribute 'uint16'", "state_dict", {}, "dtype_missing_here", "uint16"),
    ("ValueError", "too many values to unpack (expected 3)", "state_dict", {}, "sparse_from_newer_torch", "2.1"),
    ("RuntimeError", "size is inconsistent with indices: for dim 0, size is 5 but found index 94656004457006",
     "state_dict", {}, "sparse_indices_corrupt", "1.7"),
    ("RuntimeError", "found negative index -8328691271314601382 for dim 0", "checkpoint", {}, "sparse_indices_corrupt", "1.7"),
    ("UnpicklingError", OLD_WEIGHTS_ONLY + "71", "checkpoint", {"weights_only": "true"}, "weights_only_opcode_unknown", "upgrade"),
    ("RuntimeError", "Unknown builtin op: aten::scaled_dot_product_attention.\nHere are some suggestions: ...", "torchscript", {},
     "torchscript_from_newer_torch", "oldest torch"),
    ("RuntimeError", "Unknown type name 'torch._utils._rebuild_sparse_tensor':", "torchscript", {},
     "torchscript_from_newer_torch", "oldest torch"),
    # torch 1.8 aborts: the worker's crash detail keeps the C++ reason, not the stack frames
    ("crash", "killed by SIGABRT; stderr: terminate called after throwing an instance of 'c10::Error' | what():  isTuple() "
     "INTERNAL ASSERT FAILED at \"/pytorch/aten/src/ATen/core/ivalue_inl.h\":1101, please report a bug to PyTorch. Expected "
     "Tuple but got String | Exception raised from toTuple at /pytorch/aten/src/ATen/core/ivalue_inl.h:1101",
     "torchscript", {}, "torchscript_from_newer_torch", "upgrade this torch"),
    ("AttributeError", "Can't get attribute 'NonDynamicallyQuantizableLinear' on <module 'torch.nn.modules.linear' from "
     "'/x/torch/nn/modules/linear.py'>", "full_model", {}, "torch_class_missing", "state_dict"),
    # Files that are not checkpoints (torch 2.4.1, weights_only=False; more in tests/test_not_checkpoints.py)
    ("UnpicklingError", "invalid load key, 'v'.", "state_dict", {}, "git_lfs_pointer", "git lfs pull"),
    ("UnpicklingError", "invalid load key, '<'.", "state_dict", {}, "html_not_checkpoint", "download the file again"),
    ("RuntimeError", "unexpected EOF, expected 10 more bytes. The file might be corrupted.", "state_dict_legacy", {}, "corrupt_file", "re-download"),
    # The wrong loader (torch 2.15.0: a TorchScript archive to torch.load, a torch.save zip to torch.jit.load)
    ("RuntimeError", "Cannot use ``weights_only=True`` with TorchScript archives passed to ``torch.load``. In PyTorch 2.6, we changed "
     "the default value of the `weights_only` argument in `torch.load` from `False` to `True`.", "torchscript",
     {"loader": "torch.load"}, "wrong_loader", "torch.jit.load"),
    ("RuntimeError", "PytorchStreamReader failed locating file constants.pkl: file not found. This is an internal miniz error.",
     "full_model", {"loader": "torch.jit.load"}, "wrong_loader", "torch.load"),
])
def test_known_failures(etype, message, fmt, load, code, fix_words):
    d = diagnose(etype, message, fmt, load)
    assert d is not None and d.code == code
    assert fix_words in d.fix


def test_weights_only_names_the_globals_and_the_default():
    d = diagnose("UnpicklingError", WEIGHTS_ONLY, "full_model", {"weights_only": "default"})
    assert "harness.runtime.casemodel.CaseModel" in d.summary and "default" in d.summary


def test_warnings_are_read_too():
    # torch.export.load logs the real cause and raises a generic error
    d = diagnose("RuntimeError", "We ran into an error when deserializing the saved file.", "exported", {},
                 warnings=("log torch.export: Ran into the following error when deserializing: RuntimeError: " + CUDA,))
    assert d.code == "cuda_storage_on_cpu_host" and "torch.export.load has no map_location" in d.fix


def test_unknown_errors_get_no_diagnosis():
    assert diagnose("ValueError", "something else entirely", "state_dict", {}) is None


def test_terminal_codes_are_stripped_from_recorded_errors():
    from harness.runtime.messages import clean

    assert clean("two options, \x1b[1mdo those steps\x1b[0m only") == "two options, do those steps only"
    # every CSI sequence, not only colours: a cursor move or an erase too
    assert clean("\x1b[2K\x1b[1Gloading\x1b[?25l done ") == "loading done"
    assert clean("x" * 50, limit=10) == "x" * 10


def test_an_unknown_code_opcode_is_not_called_an_old_unpickler():
    # INST (0x69) builds an object by calling a class: "upgrade torch" would be the wrong advice.
    d = diagnose("UnpicklingError", OLD_WEIGHTS_ONLY + "105", "checkpoint", {"weights_only": "true"})
    assert d is None or d.code != "weights_only_opcode_unknown"


def test_a_missing_class_that_is_not_a_storage_stays_a_class():
    d = diagnose("AttributeError", "Can't get attribute 'MyNet' on <module '__main__'>", "full_model", {})
    assert d is not None and d.code == "class_not_importable"


def test_a_cuda_file_hidden_behind_torch_export_loads_fallback_is_named(torch, monkeypatch):
    # torch 2.8's torch.export.load swallows the PT2 reader's RuntimeError (a
    # CUDA storage on a CPU-only host) and then fails on the pre-2.8 layout.
    import warnings

    import torch.export.pt2_archive._package as package

    from harness.runtime.formats.exported import say_why_the_pt2_reader_failed

    def load_pt2(path):
        raise RuntimeError(CUDA)

    monkeypatch.setattr(package, "load_pt2", load_pt2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        say_why_the_pt2_reader_failed("model.pt2", KeyError("There is no item named 'version' in the archive"))
    texts = tuple(str(w.message) for w in seen)
    assert texts and "fell back" in texts[0]
    message = "\"There is no item named 'version' in the archive\""
    assert diagnose("KeyError", message, "exported", {}, texts).code == "cuda_storage_on_cpu_host"
    assert diagnose("KeyError", message, "exported", {}).code == "export_archive_from_newer_torch"
