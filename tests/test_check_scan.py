"""The static pickle scanner on pickles built to defeat scanners: it must finish, and never run them."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from harness.check.pickle_scan import PickleScanError, scan
from harness.runtime.unsafe_globals import runs_code


class _Command:
    def __reduce__(self):
        return (os.system, ("exit 3",))


def test_stack_global_names_are_found():
    """Protocol 4 names globals with STACK_GLOBAL, which torch's own scanner rejects."""
    data = pickle.dumps({"x": _Command()}, protocol=4)
    facts = scan(data)
    assert facts.protocol == 4
    assert any(runs_code(g) for g in facts.globals), facts.globals
    assert facts.computed_globals == 0


def test_computed_global_names_are_counted():
    # STACK_GLOBAL on a value built at load time (a string from a call): the scanner cannot name it
    data = b"\x80\x04" + b"\x8c\x08builtins\x94\x8c\x03str\x93)R\x8c\x06system\x93."
    facts = scan(data)
    assert facts.computed_globals == 1
    assert "builtins.str" in facts.globals


def test_python2_names_are_mapped_as_the_unpickler_maps_them():
    facts = scan(b"\x80\x02c__builtin__\nset\n)R.")
    assert facts.globals == ["builtins.set"]


def test_memo_cycles_and_exponential_sharing_finish():
    looped: list = []
    looped.append(looped)
    assert scan(pickle.dumps(looped, protocol=2)).tensors == []
    shared: list = ["leaf"]
    for _ in range(80):  # 2**80 paths through a few hundred bytes
        shared = [shared, shared]
    data = pickle.dumps(shared, protocol=2)
    assert len(data) < 2000
    start = time.monotonic()
    facts = scan(data, walk_budget=100_000)
    assert time.monotonic() - start < 30
    assert facts.truncated


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80\x02", b"\x80\x02]q\x00(K\x01", b"\x80\x02h\x05.", b"\x80\x02t.", b"\x80\x02X\xff\xff\xff\x7fabc", b"not a pickle"],
    ids=["empty", "proto-only", "no-stop", "unknown-memo", "tuple-without-mark", "short-string", "text"],
)
def test_malformed_pickles_raise_scan_error(data):
    with pytest.raises(PickleScanError, match="malformed pickle"):
        scan(data)


def test_runs_code():
    assert runs_code("posix.system") and runs_code("os.system") and runs_code("builtins.eval")
    assert runs_code("subprocess.Popen") and runs_code("runpy._run_code")
    assert not runs_code("builtins.set") and not runs_code("torch.nn.modules.linear.Linear")
    assert not runs_code("collections.OrderedDict")


@pytest.mark.parametrize(
    "body",
    [
        b"]" * 100_000 + b"a" * 99_999,  # lists in lists
        b"}X\x01\x00\x00\x00k" * 100_000 + b"N" + b"s" * 100_000,  # dicts in dicts
        b"(" * 100_000 + b")" + b"t" * 100_000,  # tuples in tuples
    ],
    ids=["lists", "dicts", "tuples"],
)
def test_deep_nesting_does_not_exhaust_the_stack(body):
    facts = scan(b"\x80\x02" + body + b".")
    assert facts.root is not None
    assert facts.tensors == []


def test_check_survives_a_deep_pickle(torch, tmp_path):
    """Through the whole command: the scanner, torch's weights_only unpickler, the report."""
    from harness.check.checker import check_file
    from tests.hostile_files import crafted_zip

    path = tmp_path / "deep.pt"
    path.write_bytes(crafted_zip(None, {}, pkl=b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b"."))
    report = check_file(path, cuda=False)
    assert report.format == "torch_zip"
    assert report.content == "list of 1"
    assert report.tensors == []
