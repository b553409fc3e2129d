"""Fuzz ``check`` with damaged copies of real checkpoints of every format.

Hypothesis mutates the bytes of files this torch wrote (bit flips, cuts,
insertions, boundary integers written over length fields) or, for zip
archives, only the pickle inside them; and it rewrites the *fields* of that
pickle (integers, strings, globals) so that it stays well formed and the
damage reaches torch's weights_only unpickler and rebuild functions instead
of stopping at the scanner. ``check`` runs
in-process through its Python API; every example must return a report,
quickly, with only safe loads run in this process. A SIGALRM per example
turns a hang into a failure instead of a stuck test run.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import pickletools
import signal
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.hostile_files import (  # noqa: E402
    BOUNDARY_INTS,
    FIELD_GLOBALS,
    FIELD_STRINGS,
    apply_edits,
    mutate_inner_pickle,
    rewrite_fields,
    rewrite_legacy_object,
)

EXAMPLE_TIMEOUT = 60  # seconds one example may take before it counts as a hang
_counter = itertools.count()


@pytest.fixture(scope="module")
def seeds(torch, tmp_path_factory):
    """Real files of every format: name -> bytes."""
    root = tmp_path_factory.mktemp("seeds")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = model.state_dict()
    out = {}

    def keep(name, write):
        path = root / name
        write(str(path))
        out[name] = path.read_bytes()

    keep("state_dict.pt", lambda p: torch.save(state, p))
    keep("legacy.pt", lambda p: torch.save(state, p, _use_new_zipfile_serialization=False))
    keep("full_model.pt", lambda p: torch.save(model, p))
    keep("checkpoint.pt", lambda p: torch.save({"model": state, "optimizer": torch.optim.Adam(model.parameters()).state_dict(), "step": 1}, p))
    keep("model.ts", lambda p: torch.jit.save(torch.jit.script(model), p))
    if hasattr(getattr(torch, "export", None), "save"):
        model.eval()
        keep("model.pt2", lambda p: torch.export.save(torch.export.export(model, (torch.randn(2, 3),)), p))
    with contextlib.suppress(ImportError):
        import safetensors.torch

        keep("model.safetensors", lambda p: safetensors.torch.save_file(dict(state), p))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("mutants")


_BOUNDARIES = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff" * 8]


@st.composite
def edits(draw):
    """One edit of a byte string, positions as fractions of its length."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite", "delete"]))
    where = draw(st.floats(0, 1))
    if kind == "flip":
        return (kind, where, draw(st.integers(0, 7)))
    if kind == "insert":
        return (kind, where, draw(st.binary(min_size=1, max_size=16)))
    if kind == "overwrite":
        return (kind, where, draw(st.sampled_from(_BOUNDARIES)))
    if kind == "delete":
        return (kind, where, draw(st.integers(1, 16)))
    return (kind, where, None)


@st.composite
def field_edits(draw):
    """One rewrite of a pickle field: (which field, as a fraction; the new value)."""
    kind = draw(st.sampled_from(["int", "string", "global"]))
    where = draw(st.floats(0, 1))
    value = {"int": st.sampled_from(BOUNDARY_INTS), "string": st.sampled_from(FIELD_STRINGS), "global": st.sampled_from(FIELD_GLOBALS)}[kind]
    return (kind, where, draw(value))


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"check did not return within {EXAMPLE_TIMEOUT}s")


def _check_mutant(path: Path) -> None:
    from harness.check.checker import FileReport, check_file

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(EXAMPLE_TIMEOUT)
    try:
        report = check_file(path, cuda=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(report, FileReport)
    assert report.summary and "\n" not in report.summary
    assert report.verdict in ("loads", "loads_some_ways", "does_not_load", "not_checked")
    for a in report.attempts:
        assert a.where != "child"  # no --trust: nothing may start a full load
        if a.where == "harness":
            assert a.loader in ("torch.load", "safetensors.torch.load_file")
            assert a.options.get("weights_only") != "false"
    json.dumps(report.to_dict())


def _fuzz(seeds, workdir, name, changes, inner):
    data = seeds[name]
    if changes and changes[0][0] in ("int", "string", "global"):
        if data[:2] == b"PK" and name != "model.pt2":
            mutant = mutate_inner_pickle(data, changes, fields=True)
        elif name == "legacy.pt":
            mutant = rewrite_legacy_object(data, changes)
        else:
            return  # no protocol-2 pickle of its own to rewrite
    elif inner and data[:2] == b"PK":
        mutant = mutate_inner_pickle(data, changes, suffix=".json" if name == "model.pt2" else "data.pkl")
    else:
        mutant = apply_edits(data, changes)
    path = workdir / f"{next(_counter)}_{name}"
    path.write_bytes(mutant)
    try:
        _check_mutant(path)
    finally:
        path.unlink()


SEED_NAMES = ["state_dict.pt", "legacy.pt", "full_model.pt", "checkpoint.pt", "model.ts", "model.pt2", "model.safetensors"]
_SETTINGS = dict(deadline=timedelta(seconds=EXAMPLE_TIMEOUT), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


_CHANGES = st.lists(edits(), min_size=1, max_size=4) | st.lists(field_edits(), min_size=1, max_size=4)


@settings(max_examples=80, **_SETTINGS)
@given(name=st.sampled_from(SEED_NAMES), changes=_CHANGES, inner=st.booleans())
def test_fuzz_check(seeds, workdir, name, changes, inner):
    if name not in seeds:
        return  # this env cannot write that format
    _fuzz(seeds, workdir, name, changes, inner)


@pytest.mark.slow
@settings(max_examples=1500, **_SETTINGS)
@given(name=st.sampled_from(SEED_NAMES), changes=_CHANGES, inner=st.booleans())
def test_fuzz_check_long(seeds, workdir, name, changes, inner):
    if name not in seeds:
        return
    _fuzz(seeds, workdir, name, changes, inner)


def test_mutations_change_the_bytes(seeds):
    """The fuzzer's edits really damage files (else the fuzz tests test nothing)."""
    data = seeds["state_dict.pt"]
    assert apply_edits(data, [("flip", 0.5, 3)]) != data
    assert len(apply_edits(data, [("cut", 0.5, None)])) == len(data) // 2
    assert mutate_inner_pickle(data, [("overwrite", 0.0, b"\xff\xff\xff\xff")]) != data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        (name,) = [n for n in z.namelist() if n.endswith("data.pkl")]
        pkl = z.read(name)
    rewritten = rewrite_fields(pkl, [("string", 0.0, "cuda:7"), ("int", 0.99, 2**40), ("global", 0.0, ("torch", "HalfStorage"))])
    assert rewritten != pkl
    list(pickletools.genops(rewritten))  # still a well-formed pickle
    assert b"cuda:7" in rewritten and b"HalfStorage" in rewritten
