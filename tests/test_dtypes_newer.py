"""Dtypes newer than the oldest release (issue 12, point 5).

float8 (e4m3fn, e5m2 and their fnuz variants), uint16/32/64, complex32, and
complex128 and int16, which no other curated case holds: specs ask for them,
the builder writes their values as exact bit patterns, a torch without one
skips the case where it is built, compare names their bits, old releases'
real refusals are diagnosed (messages recorded in tests/data/dtypes/), and
the fix the diagnosis offers (keep the bits in a dtype every release has)
loads exactly. One slow test replays the fix and the builder in another
torch: ``TORCH_ROUNDTRIP_OLD_TORCH_PYTHON=/path/to/venv/bin/python``.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickletools
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import Damaging  # noqa: E402

from harness import __version__  # noqa: E402
from harness.runtime.builder import build  # noqa: E402
from harness.runtime.compare import hex_value  # noqa: E402
from harness.runtime.diagnose import diagnose  # noqa: E402
from harness.runtime.digest import contiguous_cpu, raw_bytes  # noqa: E402
from harness.runtime.dtypes import (  # noqa: E402
    BIT_BUILT_DTYPES,
    FLOAT8_DTYPES,
    FLOAT_DTYPES,
    SPEC_DTYPES,
    UINT_DTYPES,
    edge_bits,
    float8_value,
    int_view_dtype,
    one_bits,
    portable,
    portable_recipe,
    special_bits,
    to_dtype,
)
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.errors import SpecError, Unsupported  # noqa: E402
from harness.runtime.expect import Expectations  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import LoadOptions  # noqa: E402
from harness.runtime.manifest import Manifest  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.cell import CaseContext, run_cell  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MESSAGES = json.loads((REPO / "tests" / "data" / "dtypes" / "messages.json").read_text())["loads"]
NEW = FLOAT8_DTYPES + UINT_DTYPES + ("complex32", "complex128")
CASES = ("dtype_float8", "dtype_float8_fnuz", "dtype_uint", "dtype_complex32", "dtype_complex128", "dtype_int16")
RAW = LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none")
STRICT = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict")


def _spec(tensors, **kw):
    data = {"name": "t", "model": {"kind": "module_dict", "children": [{"name": "fc", "kind": "linear", "in_features": 2, "out_features": 2}]},
            "tensors": tensors}
    data.update(kw)
    return Spec.from_dict(data)


def _bytes(t) -> bytes:
    return bytes(raw_bytes(contiguous_cpu(t)))


def _tensors(spec):
    model = build(spec).model
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


# -- specs and the dtype tables ------------------------------------------------


@pytest.mark.parametrize("dtype", NEW + ("int16",))
def test_specs_ask_for_every_newer_dtype_on_extra_tensors(dtype):
    spec = _spec([{"name": "x", "shape": [3], "dtype": dtype}, {"name": "p", "kind": "parameter", "shape": [2], "dtype": dtype,
                  "requires_grad": dtype in FLOAT_DTYPES}])
    assert spec.data["tensors"][0]["dtype"] == dtype


def test_spec_validation_of_newer_dtypes():
    with pytest.raises(SpecError, match=r"tensors\[0\]\.dtype: 'float8' is not one of .*float8_e4m3fn"):
        _spec([{"name": "x", "shape": [3], "dtype": "float8"}])
    # uint64 is an integer: a parameter of it cannot require grad (the default)
    with pytest.raises(SpecError, match=r"tensors\[0\]\.requires_grad: only floating point parameters can require grad, not uint64"):
        _spec([{"name": "x", "kind": "parameter", "shape": [3], "dtype": "uint64"}])
    # float8 and complex32 are floating point: a parameter of them may train
    _spec([{"name": "x", "kind": "parameter", "shape": [3], "dtype": "float8_e5m2"}])
    _spec([{"name": "y", "kind": "parameter", "shape": [3], "dtype": "complex32"}])


def test_curated_newer_dtype_cases_say_what_they_hold(curated_specs):
    for name in CASES:
        spec = curated_specs[name]
        held = {t.get("dtype", "float32") for t in spec.data["tensors"]}
        assert spec.data["description"] and held - {"float32"}, name
        # a non-persistent buffer is built by the loading env: a strict load
        # compares its bits with the saving env's, release against release
        # (int16 keeps to what torch 1.4 has, which is no such buffer)
        assert name == "dtype_int16" or any(not t.get("persistent", True) for t in spec.data["tensors"]), name
    held = {t.get("dtype") for n in CASES for t in curated_specs[n].data["tensors"]}
    assert set(NEW) | {"int16"} <= held


def test_dtype_tables_agree_with_torch():
    assert set(FLOAT_DTYPES) <= set(SPEC_DTYPES) and set(BIT_BUILT_DTYPES) <= set(SPEC_DTYPES)
    for name in FLOAT_DTYPES + UINT_DTYPES:
        dtype, view = to_dtype(name), to_dtype(int_view_dtype(name))
        component = dtype.itemsize // 2 if dtype.is_complex else dtype.itemsize
        assert view.itemsize == component and not view.is_floating_point, name
        # a dtype that "can require grad", as FLOAT_DTYPES promises
        if name in FLOAT_DTYPES:
            torch.zeros(1, dtype=dtype).requires_grad_()
    for name in FLOAT_DTYPES:
        bits = special_bits(name)
        limit = 1 << (8 * to_dtype(int_view_dtype(name)).itemsize - 1)
        assert bits and all(-limit <= b < limit for b in bits), name


def test_float8_values_decode_as_torch_reads_them():
    raw = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    for name in FLOAT8_DTYPES:
        values = raw.view(to_dtype(name)).float().tolist()
        for byte, want in enumerate(values):
            got = float8_value(byte, name)
            if math.isnan(want):
                assert math.isnan(got), (name, byte)
            else:
                assert got == want and math.copysign(1, got) == math.copysign(1, want), (name, hex(byte), got, want)


def test_float8_special_patterns_are_what_each_dtype_has():
    def values(name):
        return [float8_value(b & 0xFF, name) for b in special_bits(name)]

    e5m2 = values("float8_e5m2")
    assert math.inf in e5m2 and -math.inf in e5m2 and sum(map(math.isnan, e5m2)) == 4 and "-0.0" in map(str, e5m2)
    e4m3fn = values("float8_e4m3fn")
    assert not any(map(math.isinf, e4m3fn)) and 448.0 in e4m3fn and "-0.0" in map(str, e4m3fn)
    for name in ("float8_e4m3fnuz", "float8_e5m2fnuz"):  # one NaN (0x80), no inf, no -0
        v = values(name)
        assert sum(map(math.isnan, v)) == 1 and not any(map(math.isinf, v)) and "-0.0" not in map(str, v)
    for name in FLOAT8_DTYPES + UINT_DTYPES:
        assert torch.ones(1, dtype=to_dtype(name)).view(to_dtype(int_view_dtype(name))).item() == one_bits(name)
    for name, edges in _EDGES.items():  # the builder starts a float8 fill with exactly these
        assert [b & 0xFF for b in edge_bits(name)] == edges


@pytest.mark.parametrize(("data", "dtype", "want"), [
    (b"\x7f", "float8_e4m3fn", "0x7f (nan)"), (b"\x7e", "float8_e4m3fn", "0x7e (448.0)"),
    (b"\x7c", "float8_e5m2", "0x7c (inf)"), (b"\x80", "float8_e5m2", "0x80 (-0.0)"),
    (b"\x80", "float8_e4m3fnuz", "0x80 (nan)"), (b"\x7f", "float8_e5m2fnuz", "0x7f (57344.0)"),
    (b"\xff\xff", "uint16", "0xffff (65535)"), (b"\x00\x00\x00\x80", "uint32", "0x80000000 (2147483648)"),
    (struct.pack("<Q", 2**64 - 1), "uint64", "0xffffffffffffffff (18446744073709551615)"),
    (struct.pack("<ee", 1.0, -2.0), "complex32", "0xc0003c00 ((1-2j))"),
    (struct.pack("<dd", 0.5, 0.0), "complex128", "0x00000000000000003fe0000000000000 ((0.5+0j))"),
    (b"\x00\x80", "int16", "0x8000 (-32768)"),
])
def test_hex_value_names_newer_dtypes(data, dtype, want):
    assert hex_value(data, dtype) == want


# -- the builder: exact bits, a skip where a dtype is missing -------------------

_SPREAD = {16: 31, 32: 2_000_003, 64: 9_007_199_254_740_881}
_EDGES = {  # the first bytes of a float8 formula fill, spelled out
    "float8_e4m3fn": [0x7F, 0xFF, 0x7E, 0xFE, 0x80, 0x01, 0x07, 0x81],
    "float8_e5m2": [0x7E, 0x7F, 0xFE, 0x7D, 0x7C, 0xFC, 0x80, 0x01, 0x03, 0x81],
    "float8_e4m3fnuz": [0x80, 0x7F, 0xFF, 0x01, 0x07, 0x81],
    "float8_e5m2fnuz": [0x80, 0x7F, 0xFF, 0x01, 0x03, 0x81],
}
_ONE = {"float8_e4m3fn": 0x38, "float8_e5m2": 0x3C, "float8_e4m3fnuz": 0x40, "float8_e5m2fnuz": 0x40}


def _k(n, seed):
    return [(i * 7919 + seed * 104729) % 2003 - 1001 for i in range(n)]


def _expected(dtype, fill, n, seed) -> bytes:
    """The bytes the builder must write, computed here in plain Python."""
    if dtype in FLOAT8_DTYPES:
        if fill != "formula":
            return bytes([_ONE[dtype] if fill == "ones" else 0] * n)
        return bytes((_EDGES[dtype] + [(k + 1024) % 256 for k in _k(n, seed)][len(_EDGES[dtype]):])[:n])
    if dtype in UINT_DTYPES:
        width = int(dtype[4:])
        if fill != "formula":
            values = [1 if fill == "ones" else 0] * n
        else:
            edges = [0, 1, 2**width - 1, 2 ** (width - 1), 2 ** (width - 1) - 1]
            values = (edges + [(k * _SPREAD[width]) % 2**width for k in _k(n, seed)][len(edges):])[:n]
        return struct.pack(f"<{n}{ {16: 'H', 32: 'I', 64: 'Q'}[width]}", *values)
    assert dtype == "complex32"
    if fill != "formula":
        return struct.pack(f"<{2 * n}e", *[1.0 if fill == "ones" else 0.0, 0.0] * n)
    imag = [(i * 104729 + seed) % 997 - 498 for i in range(n)]
    return b"".join(struct.pack("<ee", k / 64, j / 32) for k, j in zip(_k(n, seed), imag))


@pytest.mark.parametrize("case", ["dtype_float8", "dtype_float8_fnuz", "dtype_uint", "dtype_complex32"])
def test_the_builder_writes_exact_bit_patterns_and_the_same_every_time(curated_specs, case):
    spec = curated_specs[case]
    first, second = _tensors(spec), _tensors(spec)
    planted = {p["at"] for p in spec.data.get("plant", [])}
    for index, t in enumerate(spec.data["tensors"]):
        name = f"{t['at']}.{t['name']}" if t.get("at") else t["name"]
        got = _bytes(first[name])
        assert got == _bytes(second[name]), name
        n = math.prod(t["shape"])
        want = _expected(t["dtype"], t.get("fill", "formula"), n, spec.seed + index)
        if name in planted:  # complex32: its float16 parts' special values come first
            specials = struct.pack("<10H", *[b & 0xFFFF for b in special_bits("complex32")])
            want = specials + want[len(specials):]
        assert got == want, (name, got.hex(), want.hex())


def test_a_dtype_this_torch_lacks_is_a_skip_where_the_spec_is_built(curated_specs, monkeypatch, tmp_path):
    monkeypatch.delattr(torch, "float8_e4m3fnuz")
    spec = curated_specs["dtype_float8_fnuz"]
    with pytest.raises(Unsupported, match="torch has no float8_e4m3fnuz in this env"):
        build(spec)
    manifests = save_case(spec, tmp_path / spec.name, fingerprint("cpu"), [FORMATS["state_dict"], FORMATS["safetensors"]], "cpu")
    assert {(m.status, m.reason) for m in manifests} == {("unsupported", "this env cannot build the case: torch has no float8_e4m3fnuz in this env")}


def test_a_sparse_tensor_of_a_dtype_without_coalesce_is_a_skip():
    spec = _spec([{"name": "s", "shape": [2, 3], "dtype": "uint16", "layout": "sparse_coo"}])
    with pytest.raises(Unsupported, match="cannot build a sparse COO uint16 tensor"):
        build(spec)


def test_safetensors_skips_a_dtype_its_format_cannot_hold(curated_specs, tmp_path):
    fp, fmt = fingerprint("cpu"), [FORMATS["safetensors"]]
    (c32,) = save_case(curated_specs["dtype_complex32"], tmp_path / "c32", fp, fmt, "cpu")
    assert c32.status == "unsupported" and c32.reason.startswith("safetensors ") and "cannot hold complex32 tensors" in c32.reason
    (f8,) = save_case(curated_specs["dtype_float8"], tmp_path / "f8", fp, fmt, "cpu")  # the probe passes what it holds
    assert f8.status == "saved", f8.reason


# -- compare: damage to a newer dtype is caught ---------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, curated_specs):
    root = tmp_path_factory.mktemp("newer-dtypes")
    fp = fingerprint("cpu")
    out = {}
    for name in ("dtype_float8", "dtype_uint", "dtype_complex32"):
        case_dir = root / name
        for m in save_case(curated_specs[name], case_dir, fp, [FORMATS["state_dict"]], "cpu"):
            out[(name, m.format)] = (Manifest.from_dict(m.to_dict()), case_dir)
    return out, fp, curated_specs


def _cell(saved, case, options, damage=None, fmt_name="state_dict"):
    table, fp, specs = saved
    manifest, case_dir = table[(case, fmt_name)]
    fmt = FORMATS[fmt_name] if damage is None else Damaging(FORMATS[fmt_name], damage)
    base = CellResult(source=fp.label, target=fp.label, case=case, format=fmt_name, load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    return run_cell(base, manifest, fmt, options, case_dir / fmt_name, case_dir / "reference.bin",
                    CaseContext(specs[case].to_dict(), "cpu"), fp.compute_key)


def _only(result):
    assert result.outcome == Outcome.MISMATCH, result.detail
    assert len(result.differences) == 1, result.differences
    return result.differences[0]


def _poke(name, index, view, value):
    def damage(loaded):
        loaded.snapshot.tensors[name][0].view(-1).view(view)[index] = value
        return loaded
    return damage


def _retype(name, how):
    def damage(loaded):
        t, role = loaded.snapshot.tensors[name]
        loaded.snapshot.tensors[name] = (how(t), role)
        return loaded
    return damage


@pytest.mark.parametrize("case", ["dtype_float8", "dtype_uint", "dtype_complex32"])
@pytest.mark.parametrize("options", [RAW, STRICT], ids=["raw", "strict"])
def test_undamaged_newer_dtype_cells_pass(saved, case, options):
    result = _cell(saved, case, options)
    assert result.outcome == Outcome.PASS, result.detail


@pytest.mark.parametrize(("case", "damage", "want"), [
    # the lowest bit of e4m3fn's smallest subnormal (element 5)
    ("dtype_float8", _poke("e4m3fn", 5, torch.uint8, 0x00), ("e4m3fn", [5], "0x01 (0.001953125)", "0x00 (0.0)")),
    # a NaN payload of e5m2 made the quiet NaN: still "a NaN"
    ("dtype_float8", _poke("e5m2", 1, torch.uint8, 0x7E), ("e5m2", [0, 1], "0x7f (nan)", "0x7e (nan)")),
    # e4m3fn's -0 made +0
    ("dtype_float8", _poke("e4m3fn", 4, torch.uint8, 0x00), ("e4m3fn", [4], "0x80 (-0.0)", "0x00 (0.0)")),
    # uint64's top bit lost (2**63 is above every int64)
    ("dtype_uint", _poke("u64", 3, torch.int64, 0), ("u64", [3], "0x8000000000000000 (9223372036854775808)", "0x0000000000000000 (0)")),
    # a complex32 NaN payload (the imaginary part of element 0) made the quiet NaN
    ("dtype_complex32", _poke("c32_special", 1, torch.int16, 0x7E00),
     ("c32_special", [0], "0x7e017e00 ((nan+nanj))", "0x7e007e00 ((nan+nanj))")),
])
def test_a_changed_bit_in_a_newer_dtype_is_a_mismatch_naming_both_values(saved, case, damage, want):
    d = _only(_cell(saved, case, RAW, damage))
    assert (d["tensor"], d["index"], d["expected"], d["actual"]) == want and d["aspect"] == "bits"


@pytest.mark.parametrize(("case", "tensor", "how", "dtypes"), [
    ("dtype_uint", "u64", lambda t: t.view(torch.int64), ("uint64", "int64")),  # same bits, another dtype
    ("dtype_complex32", "c32", lambda t: t.to(torch.complex64), ("complex32", "complex64")),
    ("dtype_float8", "e4m3fn", lambda t: t.view(torch.uint8), ("float8_e4m3fn", "uint8")),
])
def test_a_newer_dtype_loaded_as_another_is_a_mismatch(saved, case, tensor, how, dtypes):
    d = _only(_cell(saved, case, RAW, _retype(tensor, how)))
    assert (d["tensor"], d["aspect"], d["expected"], d["actual"]) == (tensor, "dtype", *dtypes)


def test_the_legacy_format_cannot_hold_these_dtypes_so_its_save_is_a_skip(curated_specs, tmp_path):
    # torch writes the file without complaint; no release reads it back
    legacy = io.BytesIO()
    torch.save({"x": torch.zeros(2, dtype=torch.float8_e4m3fn)}, legacy, _use_new_zipfile_serialization=False)
    legacy.seek(0)
    with pytest.raises(AttributeError) as raised:
        torch.load(legacy, weights_only=False)
    found = diagnose("AttributeError", str(raised.value), "state_dict_legacy", {})
    assert found.code == "legacy_format_lost_dtype" and "_use_new_zipfile_serialization" in found.fix
    # so the harness does not write it: the save is a skip that says why
    fp, fmt = fingerprint("cpu"), [FORMATS["state_dict_legacy"]]
    (f8,) = save_case(curated_specs["dtype_float8"], tmp_path / "f8", fp, fmt, "cpu")
    assert f8.status == "unsupported" and "legacy format cannot hold float8_e4m3fn tensors" in f8.reason and "UntypedStorage" in f8.reason
    (i16,) = save_case(curated_specs["dtype_int16"], tmp_path / "i16", fp, fmt, "cpu")  # the probe passes what it holds
    assert i16.status == "saved", i16.reason


# -- diagnoses of real old releases' messages -----------------------------------


def _id(entry):
    return f"{entry['source']}>{entry['target']}-{entry['case']}-{entry['format']}-{entry['etype']}"


@pytest.mark.parametrize("entry", MESSAGES, ids=_id)
def test_real_refusals_of_newer_dtypes_are_diagnosed(entry):
    found = diagnose(entry["etype"], entry["message"], entry["format"], entry["load"])
    assert found is not None and found.code == entry["code"], found
    if found.code == "dtype_missing_here":
        named = [d for d in NEW + ("bfloat16", "complex64") if d in entry["message"] or d.replace("float8_", "Float8_") in entry["message"]
                 or {"uint16": "UInt16", "complex128": "ComplexDouble", "complex32": "ComplexHalf"}.get(d, "?") in entry["message"]]
        if named:  # the message names the dtype: so do the summary and the fix
            dtype = max(named, key=len)
            assert dtype in found.summary and dtype in found.fix and portable_recipe(dtype) in found.fix, found
        else:  # torch._utils._rebuild_tensor_v3: the families it stands for, and the release that has it
            assert "_rebuild_tensor_v3" in found.summary and "float8" in found.summary and "torch 2.2 or newer" in found.fix


def test_every_loading_release_and_newer_dtype_family_has_a_recorded_message():
    by_target = {e["target"] for e in MESSAGES}
    assert {"1.4.0", "1.8.1", "1.13.1", "2.0.1", "2.4.1"} <= by_target
    text = "\n".join(e["message"] for e in MESSAGES)
    for words in ("_rebuild_tensor_v3", "UInt16Storage", "Float8_e4m3fnuzStorage", "Unsupported class torch.uint16",
                  "GLOBAL torch.uint16", "Unsupported class torch.float8_e4m3fnuz", "Can't get attribute 'uint16'",
                  "UntypedStorage' has no attribute 'dtype'", "ComplexDoubleStorage"):
        assert words in text, words


@pytest.mark.parametrize(("etype", "message", "fmt", "load", "code"), [
    # not a dtype: torch's own class, and an allowlist refusal of a class
    ("AttributeError", "Can't get attribute 'NonDynamicallyQuantizableLinear' on <module 'torch.nn.modules.linear' from '/x/torch/nn/modules/linear.py'>",
     "full_model", {}, "torch_class_missing"),
    ("UnpicklingError", "Weights only load failed. WeightsUnpickler error: Unsupported global: GLOBAL harness.runtime.casemodel.CaseModel was not an "
     "allowed global by default.", "full_model", {"weights_only": "true"}, "weights_only_refused"),
    # an integer parameter is fine with assign=True unless torch says otherwise, and the message only matters with assign
    ("RuntimeError", "Only Tensors of floating point and complex dtype can require gradients", "state_dict", {"apply": "strict"}, None),
    # torch 2.15's weights_only unpickler reading past the end of a legacy file cut inside its pickle
    ("IndexError", "index out of range", "state_dict_legacy", {"source": "truncated", "weights_only": "true"}, "corrupt_file"),
])
def test_the_dtype_rules_leave_other_failures_to_theirs(etype, message, fmt, load, code):
    found = diagnose(etype, message, fmt, load)
    assert (found.code if found else None) == code


@pytest.mark.parametrize(("kw", "expected"), [
    ({"diagnosis": {"code": "dtype_missing_here"}}, True),  # 2.15 -> 2.0.1
    ({"diagnosis": {"code": "dtype_missing_here"}, "source": "torch-2.0.1-py3.11-cpu"}, False),  # same release: not documented
    ({"diagnosis": {"code": "assign_integer_parameter"}, "target": "torch-2.2.2-py3.11-cpu", "load": {"apply": "assign"}}, True),
    ({"diagnosis": {"code": "assign_integer_parameter"}, "target": "torch-2.4.1-py3.11-cpu", "load": {"apply": "assign"}}, False),
])
def test_newer_dtype_expectations_match_only_what_they_document(kw, expected):
    base = dict(source="torch-2.15.0-py3.11-cpu", target="torch-2.0.1-py3.11-cpu", case="dtype_uint", format="state_dict",
                load={"map_location": "cpu", "weights_only": "true", "mmap": False, "apply": "none"}, outcome=Outcome.ERROR)
    base.update(kw)
    assert Expectations.load().apply(CellResult(**base)).expected is expected


# -- the fix: keep the bits in a dtype every release has ------------------------

#: Storage classes torch 1.4 has, and the rebuild function it has.
_CLASSIC = {f"torch.{n}Storage" for n in ("Byte", "Char", "Short", "Int", "Long", "Half", "Float", "Double", "Bool")}
_CLASSIC |= {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "collections.OrderedDict"}


def _globals(pickle_bytes: bytes, pickles: int = 1) -> set[str]:
    """Every global the first `pickles` pickles of a stream name, read with pickletools (nothing is unpickled).

    A legacy torch.save file is five pickles (magic, protocol, system info,
    the object, the storage keys), then the storages' raw bytes.
    """
    names, strings = set(), []
    stream = io.BytesIO(pickle_bytes)
    for _ in range(pickles):
        for op, arg, _ in pickletools.genops(stream):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
            elif op.name == "GLOBAL":
                names.add(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                names.add(f"{strings[-2]}.{strings[-1]}")
    return names


def _portable_state(curated_specs):
    state = {}
    for case in ("dtype_float8", "dtype_float8_fnuz", "dtype_uint", "dtype_complex32"):
        for key, t in build(curated_specs[case]).model.state_dict().items():
            if t.dtype in (torch.float32,):
                continue
            state[f"{case}.{key}"] = t
    return state


def test_the_fix_keeps_every_bit_in_dtypes_every_release_has(curated_specs, tmp_path):
    state = _portable_state(curated_specs)
    fixed = {k: portable(t) for k, t in state.items()}
    for key, t in state.items():
        assert _bytes(fixed[key]) == _bytes(t), key
        assert fixed[key].dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.float16), key
        back = torch.view_as_complex(fixed[key]) if t.is_complex() else fixed[key].view(t.dtype)
        assert back.dtype == t.dtype and _bytes(back) == _bytes(t), key
    legacy, zipped = io.BytesIO(), tmp_path / "fixed.pt"
    torch.save(fixed, legacy, _use_new_zipfile_serialization=False)
    torch.save(fixed, zipped)
    with zipfile.ZipFile(zipped) as z:
        data_pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    for names in (_globals(legacy.getvalue(), pickles=5), _globals(data_pkl)):
        assert names <= _CLASSIC, names - _CLASSIC  # no _rebuild_tensor_v3, no float8 or uint storage, no dtype global
    # ...while the unconverted file needs what old releases lack
    raw = io.BytesIO()
    torch.save(state, raw)
    with zipfile.ZipFile(raw) as z:
        assert "torch._utils._rebuild_tensor_v3" in _globals(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
    for blob in (legacy.getvalue(), zipped.read_bytes()):
        loaded = torch.load(io.BytesIO(blob), weights_only=True)
        assert {k: _bytes(v) for k, v in loaded.items()} == {k: _bytes(v) for k, v in fixed.items()}


_OLD_SCRIPT = r"""
import hashlib, json, sys, torch
sys.path.insert(0, sys.argv[1])
from harness.runtime.builder import build
from harness.runtime.cases import curated
from harness.runtime.digest import contiguous_cpu, raw_bytes
from harness.runtime.errors import Unsupported
def digest(t):
    return hashlib.sha256(bytes(raw_bytes(contiguous_cpu(t)))).hexdigest()
out = {"torch": torch.__version__, "files": {}, "built": {}}
for path in sys.argv[2:]:
    try:
        out["files"][path] = {k: [str(v.dtype), digest(v)] for k, v in torch.load(path).items()}
    except Exception as e:
        out["files"][path] = f"{type(e).__name__}: {e}"
for spec in curated():
    if spec.name.startswith("dtype_"):
        try:
            model = build(spec).model
        except Unsupported as e:
            out["built"][spec.name] = str(e)
            continue
        out["built"][spec.name] = {k: digest(v) for k, v in list(model.named_parameters()) + list(model.named_buffers())}
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TORCH_ROUNDTRIP_OLD_TORCH_PYTHON"), reason="set TORCH_ROUNDTRIP_OLD_TORCH_PYTHON to an older torch's python")
def test_an_older_torch_loads_the_fix_exactly_and_builds_the_same_bits(curated_specs, tmp_path):
    import hashlib

    fixed = {k: portable(t) for k, t in _portable_state(curated_specs).items()}
    paths = [tmp_path / "fixed-legacy.pt", tmp_path / "fixed-zip.pt"]
    torch.save(fixed, paths[0], _use_new_zipfile_serialization=False)
    torch.save(fixed, paths[1])
    done = subprocess.run([os.environ["TORCH_ROUNDTRIP_OLD_TORCH_PYTHON"], "-c", _OLD_SCRIPT, str(REPO), *map(str, paths)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    want = {k: [str(v.dtype), hashlib.sha256(_bytes(v)).hexdigest()] for k, v in fixed.items()}
    assert out["files"][str(paths[0])] == want, out["torch"]  # the legacy format: every release reads it
    got = out["files"][str(paths[1])]
    # torch 1.4 and 1.5 refuse any zip of a newer torch (file_from_newer_torch, another finding)
    assert got == want or "kMaxSupportedFileFormatVersion" in got, (out["torch"], got)
    # every dtype case the old torch can build holds the very bits this one builds
    built = 0
    for name, got in out["built"].items():
        if isinstance(got, str):  # a skip there (its reason), e.g. "torch has no uint16 in this env"
            continue
        spec = curated_specs[name]
        extras = {f"{t['at']}.{t['name']}" if t.get("at") else t["name"] for t in spec.data["tensors"]}
        model = build(spec).model  # its layers' weights come from each torch's own init and RNG: extras only
        here = {k: hashlib.sha256(_bytes(v)).hexdigest() for k, v in list(model.named_parameters()) + list(model.named_buffers())}
        assert {k: got[k] for k in extras} == {k: here[k] for k in extras}, (out["torch"], name)
        built += 1
    assert built >= 1
