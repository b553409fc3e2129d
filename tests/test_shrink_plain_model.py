"""harness.shrink.plain_model: a spec as plain torch code that builds the harness's model, bit for bit.

Every curated case and a seeded set of generated specs are saved in this
process, written as plain torch code from the artifact, and the code is run
with the harness unimportable. Its ``build_model()`` must hold every tensor
of the harness's ``build(spec, "init")`` model (names, dtypes, shapes,
strides, storage offsets, requires_grad, bytes, which tensors share
storage), ``make_inputs()`` the recorded inputs, and its forward the
harness model's outputs bit for bit (same process, same kernels);
``new_model()`` must equal the harness's poisoned ``build(spec, "empty")``.
Damaged code (a flipped bit, a dropped tie, another dtype, a lost layout)
must be caught by the same comparison.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import ctypes
import json
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from harness.runtime.builder import POISON_BYTE, build  # noqa: E402
from harness.runtime.casemodel import forget_moved  # noqa: E402
from harness.runtime.digest import contiguous_cpu, raw_bytes  # noqa: E402
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.errors import Unsupported  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.forward import saved_inputs  # noqa: E402
from harness.runtime.manifest import Manifest  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402
from harness.runtime.storage import storage_span  # noqa: E402
from harness.shrink.plain_model import POISON, PlainUnsupported, plain_model  # noqa: E402

#: What the plain code may import: torch and the standard library's smallest corner.
ALLOWED_IMPORTS = {"torch", "numpy", "math", "struct", "base64", "os", "sys", "importlib"}
#: Generated specs: how many and from which seed (harness.strategies.generate_specs).
GENERATED, SEED = 20, 5
#: Formats whose views hold the module's tensors: each another view to read (module, resume, program).
FORMAT_NAMES = ("state_dict", "checkpoint")
EXTRA_FORMATS = {"buffers": ("exported", "torchscript"), "tied_lm": ("exported",), "dtype_float8": ("exported",)}


# -- running the code without the harness -------------------------------------


class _Blocked:
    """A meta-path finder that refuses the harness: the plain code must not need it."""

    def find_spec(self, name, path=None, target=None):
        if name == "harness" or name.startswith("harness."):
            raise ImportError(f"the plain code imported {name}")
        return None


@contextlib.contextmanager
def no_harness():
    held = {k: v for k, v in sys.modules.items() if k == "harness" or k.startswith("harness.")}
    for k in held:
        del sys.modules[k]
    finder = _Blocked()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(held)


def imported_modules(code: str) -> set:
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
    return found


def run_code(code: str, where: Path, module_files=None) -> dict:
    """Exec `code` as a file in `where` (its module files written beside it), the harness unimportable."""
    # roundtrip_moved: a moved class's own module file, which the code writes beside itself
    allowed = ALLOWED_IMPORTS | {"roundtrip_moved"}
    assert imported_modules(code) <= allowed, imported_modules(code) - allowed
    for rel, text in (module_files or {}).items():
        assert imported_modules(text) <= ALLOWED_IMPORTS, (rel, imported_modules(text) - ALLOWED_IMPORTS)
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ns = {"__name__": "plain_case", "__file__": str(where / "plain.py")}
    forget_moved()  # a harness build registers its own roundtrip_moved modules, which would shadow the files
    forget_moved_files()  # and another test's files would shadow these
    with no_harness():
        exec(compile(code, "plain.py", "exec"), ns)
    return ns


def call(ns: dict, name: str):
    with no_harness():
        return ns[name]()


def forget_moved_files() -> None:
    """Take the roundtrip_moved modules that plain code imported from files out of sys.modules."""
    for name in [n for n, m in sys.modules.items() if n.split(".")[0] == "roundtrip_moved" and getattr(m, "__file__", None)]:
        del sys.modules[name]


@pytest.fixture
def moved_modules(monkeypatch):
    """The file-based roundtrip_moved modules a class_path case imports are forgotten afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    forget_moved_files()


# -- the comparison ------------------------------------------------------------


def tensors(model) -> dict:
    """State-dict tensors (tied ones under each name), then non-persistent buffers."""
    out = dict(model.state_dict(keep_vars=True))
    for name, t in model.named_buffers():
        out.setdefault(name, t)
    return out


def tensor_bytes(t) -> bytes:
    dense = contiguous_cpu(t)  # held while its bytes are copied: raw_bytes is a view of its memory
    return bytes(raw_bytes(dense))


def describe(t, persistent: bool) -> dict:
    d = {
        "class": "Parameter" if isinstance(t, torch.nn.Parameter) else "tensor", "persistent": persistent,
        "dtype": str(t.dtype), "shape": list(t.shape), "layout": str(t.layout), "requires_grad": t.requires_grad,
    }
    if t.is_sparse:
        d.update(coalesced=t.is_coalesced(), indices=tensor_bytes(t._indices()), values=tensor_bytes(t._values()))
    else:
        ptr, nbytes = storage_span(t)
        d.update(stride=list(t.stride()), offset=t.storage_offset(), bytes=tensor_bytes(t), storage=ctypes.string_at(ptr, nbytes))
    return d


def sharing(named: dict) -> list:
    """Groups of names whose tensors share storage (what ties and aliases are)."""
    groups: dict = {}
    for name, t in named.items():
        if not t.is_sparse and storage_span(t)[1]:
            groups.setdefault(storage_span(t)[0], []).append(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def differences(ours, theirs) -> list:
    """What differs between two models' tensors; [] when they are the same bit for bit."""
    a, b = tensors(ours), tensors(theirs)
    if list(a) != list(b):
        return [f"names: {list(a)} != {list(b)}"]
    sa, sb = set(ours.state_dict()), set(theirs.state_dict())
    out = []
    for name in a:
        da, db = describe(a[name], name in sa), describe(b[name], name in sb)
        out.extend(f"{name}.{k}: {da[k]!r:.80} != {db[k]!r:.80}" for k in da if da[k] != db.get(k))
    if sharing(a) != sharing(b):
        out.append(f"shared storage: {sharing(a)} != {sharing(b)}")
    if ours.training != theirs.training:
        out.append(f"training: {ours.training} != {theirs.training}")
    return out


def outputs_differ(ours, theirs) -> list:
    out = []
    if len(ours) != len(theirs):
        return [f"{len(ours)} outputs != {len(theirs)}"]
    for i, (x, y) in enumerate(zip(ours, theirs)):
        if (x.dtype, list(x.shape)) != (y.dtype, list(y.shape)) or tensor_bytes(x) != tensor_bytes(y):
            out.append(f"output {i}: {x.dtype} {list(x.shape)} != {y.dtype} {list(y.shape)} or other bytes")
    return out


def run_forward(model, inputs) -> list:
    with torch.no_grad():
        result = model(*inputs)
    return [t.detach() for t in (result if isinstance(result, tuple) else (result,))]


# -- saving the cases ------------------------------------------------------------


def harness_build(spec: Spec, mode: str):
    try:
        return build(spec, mode)
    except Unsupported as e:
        pytest.skip(f"this torch cannot build {spec.name}: {e}")


def save(spec: Spec, root: Path, formats) -> dict:
    """Save `spec` in `formats` here; format -> its manifest."""
    manifests = save_case(spec, root / spec.name, fingerprint("cpu"), [FORMATS[f] for f in formats], "cpu")
    return {m.format: Manifest.from_dict(m.to_dict()) for m in manifests}


def check_saved(spec: Spec, root: Path, tmp_path: Path, formats) -> None:
    """Each saved format's plain code builds the harness's model, inputs and outputs exactly."""
    theirs = harness_build(spec, "init")
    manifests = save(spec, root, formats)
    checked = 0
    for fmt, manifest in manifests.items():
        if manifest.status != "saved":
            continue
        artifact = root / spec.name / fmt
        plain = plain_model(spec, artifact)
        recorded = (manifest.forward or {}).get("status") == "ok"
        if recorded:
            assert plain.notes == [], plain.notes
        else:  # the source env could not run its forward, so no inputs were recorded: the note says so
            assert len(plain.notes) == 1 and "recorded no forward inputs" in plain.notes[0], plain.notes
        where = tmp_path / fmt
        where.mkdir()
        ns = run_code(plain.code, where, plain.module_files)
        ours = call(ns, "build_model")
        assert type(ours).__name__ == plain.class_name
        assert differences(ours, theirs.model) == [], fmt
        inputs = call(ns, "make_inputs")
        assert outputs_differ(list(inputs), list(theirs.inputs)) == []
        if recorded:
            saved = saved_inputs(manifest.forward, root / spec.name / "reference.bin", "cpu")
            assert outputs_differ(list(inputs), list(saved)) == []
            with no_harness():
                mine = run_forward(ours, inputs)
            assert outputs_differ(mine, run_forward(theirs.model, theirs.inputs)) == [], fmt
        checked += 1
    if not checked:
        reasons = "; ".join(f"{m.format}: {m.reason}" for m in manifests.values())
        pytest.skip(f"no format saved {spec.name} here: {reasons}")


def check_fresh(spec: Spec, tmp_path: Path) -> None:
    """new_model() (code written without an artifact) is the harness's poisoned empty model."""
    theirs = harness_build(spec, "empty")
    plain = plain_model(spec, None)
    assert plain.notes == []
    assert "def build_model" not in plain.code and "def make_inputs" not in plain.code
    where = tmp_path / "fresh"
    where.mkdir(parents=True, exist_ok=True)
    ours = call(run_code(plain.code, where, plain.module_files), "new_model")
    assert differences(ours, theirs.model) == []


def curated_names() -> list:
    from harness.runtime.cases import curated

    return [s.name for s in curated()]


def generated_specs() -> list:
    hypothesis_strategies = pytest.importorskip("harness.strategies")
    return hypothesis_strategies.generate_specs(GENERATED, SEED)


# -- tests ------------------------------------------------------------------------------


def test_the_poison_is_the_builders():
    assert POISON == POISON_BYTE


@pytest.mark.parametrize("name", curated_names())
def test_curated_case_builds_bit_for_bit(name, curated_specs, tmp_path, moved_modules):
    spec = curated_specs[name]
    check_saved(spec, tmp_path / "artifacts", tmp_path, FORMAT_NAMES + EXTRA_FORMATS.get(name, ()))
    check_fresh(spec, tmp_path)
    if spec.refactored:  # the model a load into the refactored code builds
        check_fresh(spec.load_side(), tmp_path / "fresh")


def test_generated_specs_build_bit_for_bit(tmp_path):
    specs = generated_specs()
    built = 0
    for spec in specs:
        where = tmp_path / spec.name
        where.mkdir()
        try:
            check_saved(spec, where / "artifacts", where, ("state_dict",))
            check_fresh(spec, where)
        except pytest.skip.Exception:
            continue  # this torch cannot build that one: a reasoned skip, as in a save
        built += 1
    assert built >= GENERATED * 3 // 4, f"only {built} of {GENERATED} generated specs were built here"


@pytest.mark.parametrize("seed", [0, 2**46 + 12345])
def test_extra_tensors_hold_the_builders_fill_in_every_dtype(seed, tmp_path):
    from harness.runtime.dtypes import SPEC_DTYPES

    # The builder's fills, recomputed in plain Python: every dtype, every fill, dense and sparse
    # (a seed this large takes the builder's int64 arithmetic near its top).
    extras = [{"name": f"{dtype}_{fill}", "shape": [2, 3], "dtype": dtype, "fill": fill}
              for dtype in SPEC_DTYPES for fill in ("formula", "zeros", "ones")]
    extras += [{"name": f"sparse_{dtype}", "shape": [3, 4], "dtype": dtype, "layout": "sparse_coo"} for dtype in ("float32", "float64", "int64")]
    spec = Spec.from_dict({"name": "fills", "seed": seed, "tensors": extras,
                           "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}})
    theirs = tensors(harness_build(spec, "init").model)
    ns = run_code(plain_model(spec, None).code, tmp_path)
    with no_harness():
        ours = tensors(ns["Model"]())  # freshly built, not poisoned: the fills themselves
    for t in extras:
        assert describe(ours[t["name"]], True) == describe(theirs[t["name"]], True), t["name"]


def test_inputs_a_forward_could_not_record_are_drawn_as_the_harness_draws_them(tmp_path):
    # torch has no complex leaky_relu: the save records no forward, so no inputs
    spec = Spec.from_dict({"name": "no_forward", "seed": 3, "model": {"kind": "sequential", "children": [
        {"kind": "linear", "in_features": 3, "out_features": 2, "dtype": "complex64"},
        {"kind": "activation", "fn": "leaky_relu"},
    ]}})
    check_saved(spec, tmp_path / "artifacts", tmp_path, ("state_dict",))
    notes = plain_model(spec, tmp_path / "artifacts" / spec.name / "state_dict").notes
    assert notes and "leaky_relu" in notes[0] and "draws them as the harness does" in notes[0], notes


def test_the_code_reads_as_plain_torch(curated_specs, tmp_path):
    spec = curated_specs["mixed_dtypes"]
    save(spec, tmp_path, ("state_dict",))
    code = plain_model(spec, tmp_path / spec.name / "state_dict").code
    assert "harness" not in code.replace("torch-roundtrip", "")
    assert re.search(r"^        self\.\w+ = nn\.Linear\(\d+, \d+(, bias=False)?\)(\.to\(torch\.\w+\))?$", code, re.M), code
    assert imported_modules(code) <= {"torch", "base64", "numpy"}  # numpy: only where torch has no frombuffer
    compile(code, "plain.py", "exec")


# -- damage: the comparison catches each kind of change to the code -----------------


def _flip_first_literal(code: str) -> str:
    """The code with one bit of the first saved tensor's first byte flipped."""
    match = re.search(r'saved\["[^"]+"\] = _tensor\(\(?\s*"([A-Za-z0-9+/=]+)"', code)
    assert match, "no saved tensor literal found"
    data = bytearray(base64.b64decode(match.group(1) + "=" * (-len(match.group(1)) % 4)))
    data[0] ^= 0x01
    flipped = base64.b64encode(bytes(data)).decode()[: len(match.group(1))]
    return code[: match.start(1)] + flipped + code[match.end(1):]


def test_a_flipped_bit_in_a_literal_is_caught(curated_specs, tmp_path):
    spec = curated_specs["simple_net"]
    save(spec, tmp_path, ("state_dict",))
    code = plain_model(spec, tmp_path / spec.name / "state_dict").code
    theirs = harness_build(spec, "init").model
    assert differences(call(run_code(code, tmp_path), "build_model"), theirs) == []
    found = differences(call(run_code(_flip_first_literal(code), tmp_path), "build_model"), theirs)
    assert any(".bytes:" in d for d in found), found


def test_a_dropped_tie_is_caught(curated_specs, tmp_path):
    spec = curated_specs["tied_lm"]
    save(spec, tmp_path, ("state_dict",))
    code = plain_model(spec, tmp_path / spec.name / "state_dict").code
    untied = re.sub(r"^ +self\.head\.weight = self\.embed\.weight.*\n", "", code, flags=re.M)
    assert untied != code
    found = differences(call(run_code(untied, tmp_path), "build_model"), harness_build(spec, "init").model)
    assert any(d.startswith("shared storage:") for d in found), found


def test_another_dtype_is_caught(curated_specs, tmp_path):
    spec = curated_specs["mixed_dtypes"]
    code = plain_model(spec, None).code
    changed = code.replace(".to(torch.float16)", ".to(torch.bfloat16)", 1)
    assert changed != code
    found = differences(call(run_code(changed, tmp_path), "new_model"), harness_build(spec, "empty").model)
    assert any(".dtype:" in d for d in found), found
    # With an artifact, the saved float16 bytes no longer fit: build_model says which tensor.
    save(spec, tmp_path, ("state_dict",))
    saved_code = plain_model(spec, tmp_path / spec.name / "state_dict").code
    with pytest.raises(RuntimeError, match=r"saved as torch\.float16 .* the model built torch\.bfloat16"):
        call(run_code(saved_code.replace(".to(torch.float16)", ".to(torch.bfloat16)", 1), tmp_path), "build_model")


def test_a_lost_layout_is_caught(curated_specs, tmp_path):
    spec = curated_specs["layouts"]
    code = plain_model(spec, None).code
    flat = re.sub(r"^ +self\.fc2\.weight = .*# storage offset 3\n", "", code, flags=re.M)
    assert flat != code
    found = differences(call(run_code(flat, tmp_path), "new_model"), harness_build(spec, "empty").model)
    assert any(d.startswith("fc2.weight.offset:") for d in found), found


def test_new_model_is_poisoned_but_keeps_non_persistent_buffers(curated_specs, tmp_path):
    spec = curated_specs["buffers"]
    ours = call(run_code(plain_model(spec, None).code, tmp_path), "new_model")
    persistent = set(ours.state_dict())
    for name, t in tensors(ours).items():
        data = describe(t, name in persistent)["storage"]
        if name in persistent:
            assert data == bytes([POISON]) * len(data), name
        else:
            assert data != bytes([POISON]) * len(data), name


# -- what cannot be written, and why ------------------------------------------------------


def test_a_user_case_is_refused_with_its_reason():
    spec = Spec.from_dict({"name": "mine", "factory": "mypkg.models:make"})
    with pytest.raises(PlainUnsupported, match=r"a user case builds its model with its factory mypkg\.models:make"):
        plain_model(spec, None)


def test_an_artifact_that_was_not_saved_is_refused(curated_specs, tmp_path):
    spec = curated_specs["sparse_buffer"]
    manifests = save(spec, tmp_path, ("safetensors",))
    assert manifests["safetensors"].status != "saved"
    with pytest.raises(PlainUnsupported, match=r"the safetensors artifact at .* was not saved"):
        plain_model(spec, tmp_path / spec.name / "safetensors")
    with pytest.raises(PlainUnsupported, match=r"no artifact at .*: manifest\.json is missing"):
        plain_model(spec, tmp_path / spec.name / "nowhere")


def test_another_case_s_artifact_is_refused(curated_specs, tmp_path):
    save(curated_specs["simple_net"], tmp_path, ("state_dict",))
    with pytest.raises(PlainUnsupported, match=r"holds case 'simple_net' with spec digest \w+, not this spec's"):
        plain_model(curated_specs["tied_lm"], tmp_path / "simple_net" / "state_dict")


def test_damaged_reference_bytes_are_refused_not_written(curated_specs, tmp_path):
    spec = curated_specs["simple_net"]
    save(spec, tmp_path, ("state_dict",))
    reference = tmp_path / spec.name / "reference.bin"
    data = bytearray(reference.read_bytes())
    data[0] ^= 0x80
    reference.write_bytes(bytes(data))
    with pytest.raises(PlainUnsupported, match=r"the bytes of input input0 in .*reference\.bin do not match its digest"):
        plain_model(spec, tmp_path / spec.name / "state_dict")


def test_a_missing_non_persistent_buffer_in_an_exported_view_is_named(curated_specs, tmp_path):
    spec = curated_specs["buffers"]
    save(spec, tmp_path, ("exported",))
    path = tmp_path / spec.name / "exported" / "manifest.json"
    manifest = json.loads(path.read_text())
    program = manifest["views"]["program"]
    program["tensors"] = [r for r in program["tensors"] if r["name"] != "$constant.scale"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(PlainUnsupported, match=r"no value for the non-persistent buffer scale"):
        plain_model(spec, tmp_path / spec.name / "exported")


def test_a_moved_class_lives_in_its_module_file(curated_specs, tmp_path, moved_modules):
    spec = curated_specs["refactor_class_moved"]
    save(spec, tmp_path / "artifacts", ("state_dict",))
    plain = plain_model(spec, tmp_path / "artifacts" / spec.name / "state_dict")
    assert plain.class_name == "Classifier"
    assert set(plain.module_files) == {
        "roundtrip_moved/__init__.py", "roundtrip_moved/v1/__init__.py", "roundtrip_moved/v1/models.py",
    }
    # The save side (module file beside the code): the class a pickle names roundtrip_moved.v1.models.Classifier.
    saved_side = tmp_path / "save"
    saved_side.mkdir()
    model = call(run_code(plain.code, saved_side, plain.module_files), "build_model")
    assert (type(model).__module__, type(model).__qualname__) == ("roundtrip_moved.v1.models", "Classifier")
    # Without the file (a process that never had the module), the code's own class.
    bare = tmp_path / "bare"
    bare.mkdir()
    model = call(run_code(plain.code, bare), "new_model")
    assert (type(model).__module__, type(model).__qualname__) == ("plain_case", "Classifier")
