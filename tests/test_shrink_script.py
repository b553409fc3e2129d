"""The plain-torch reproduction (`harness.shrink.script`): save.py, load.py and README.md.

Cases are saved for real in this process (`save_case`), the reproduction is
written from the artifact, and the two scripts run in fresh interpreters
where the harness cannot be imported (``sys.modules["harness"] = None``), as
they will where someone pastes them from an upstream issue: every save.py
in one interpreter, then every load.py in another (a torch import costs
seconds; two envs never share a process either).

A round trip in one env must exit 0; a load that comes back damaged (a
``sitecustomize.py`` that flips one bit of what torch.load returns) must
exit 1 naming the tensor and the first differing element; a load that
raises must exit 1 with the exception; what plain torch cannot express is
refused with the reason, and nothing is written.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import LoadOptions  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402
from harness.runtime.spec import Spec  # noqa: E402
from harness.shrink.script import ReproUnsupported, write_repro  # noqa: E402

pytestmark = pytest.mark.slow

# Runs each (folder, script) in turn in one interpreter, with the harness unimportable.
DRIVER = r'''
import contextlib, io, json, os, runpy, sys
sys.modules["harness"] = None  # a reproduction must run where the harness is not installed
jobs, report = json.loads(sys.argv[1]), sys.argv[2]
results = []
for folder, script in jobs:
    os.chdir(folder)
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # a script that crashes: report it, go on with the others
            code = "crash: %s: %s" % (type(e).__name__, e)
    results.append({"code": code, "out": out.getvalue()})
with open(report, "w") as f:
    json.dump(results, f)
'''

# A spec with tied parameters, a float16 extra buffer, a non-persistent int64 buffer and a training step.
TIED_HALF = {
    "name": "tied_half", "origin": "generated", "seed": 5, "batch": 2,
    "model": {"kind": "sequential", "children": [
        {"name": "emb", "kind": "embedding", "num_embeddings": 6, "embedding_dim": 4},
        {"name": "head", "kind": "linear", "in_features": 4, "out_features": 6, "bias": False},
    ]},
    "ties": [{"from": "emb.weight", "to": "head.weight"}],
    "tensors": [{"name": "h16", "shape": [4], "dtype": "float16"},
                {"name": "idx", "shape": [2], "dtype": "int64", "persistent": False}],
    "train": {"optimizer": "adam", "lr": 0.01, "steps": 1, "loss": "square_mean"},
}
# A class that moved: a whole-model pickle names a module only the save side has.
MOVED = {
    "name": "moved", "origin": "generated", "seed": 36,
    "model": {"kind": "sequential", "children": [{"name": "fc", "kind": "linear", "in_features": 4, "out_features": 3}]},
    "class_path": "roundtrip_moved.v1.models:Classifier",
}

USER_MODULE = '''
import torch
import torch.nn as nn


class Tiny(nn.Module):
    """A linear layer tied to a head, a float16 buffer and a non-persistent buffer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.fc.weight
        self.register_buffer("h16", torch.arange(6, dtype=torch.float16).reshape(2, 3) / 3)
        self.register_buffer("scale", torch.full((4,), 0.5), persistent=False)

    def forward(self, x):
        return self.head(self.fc(x) * self.scale) + self.h16.float().sum()


def make():
    return Tiny(), torch.randn(2, 4)
'''

ENVS = {
    side: {"label": fingerprint("cpu").label, "python": sys.executable, "torch": torch.__version__,
           "fingerprint": fingerprint("cpu").to_dict()}
    for side in ("source", "target")
}
SIGNATURE = {"outcome": "mismatch", "aspect": "bits", "tensor_kind": "buffer float16", "text": "mismatch: bits of a buffer float16"}
FORWARD = {"outcome": "mismatch", "aspect": "forward", "text": "mismatch: forward"}
OBSERVED = {"outcome": "mismatch", "detail": "h16[1]: bits 0x3c00 -> 0x3c01",
            "differences": [{"tensor": "h16", "aspect": "bits", "expected": "0x3c00 (1.0)", "actual": "0x3c01 (1.0009765625)", "index": [1]}]}

RAW = LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none")
STRICT = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict")


def run_scripts(jobs, tmp_path, *, extra_path=(), sitecustomize=None):
    """Run [(folder, script), ...] in one fresh interpreter without the harness; [{"code", "out"}, ...]."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    paths = [str(p) for p in extra_path]
    if sitecustomize is not None:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(sitecustomize)
        paths.insert(0, str(site))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([[str(f), s] for f, s in jobs]), str(report)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text())


def save_then_load(folders, tmp_path, **kw):
    """save.py in each folder (one interpreter), then load.py in each (another): [(save result, load result), ...]."""
    saved = run_scripts([(f, "save.py") for f in folders], tmp_path, extra_path=kw.get("extra_path", ()))
    loaded = run_scripts([(f, "load.py") for f in folders], tmp_path, **kw)
    return list(zip(saved, loaded))


def harness_imports(path):
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        found += [n for n in names if n.split(".")[0] == "harness"]
    return found


def saved_cases(root, specs, device="cpu"):
    """Each spec saved here in the formats named beside it: name -> (spec, case folder)."""
    out = {}
    for spec, formats in specs:
        case_dir = root / device / spec.name
        for m in save_case(spec, case_dir, fingerprint(device), [FORMATS[f] for f in formats], device):
            assert m.status == "saved", (spec.name, m.format, m.reason)
        out[spec.name if device == "cpu" else f"{spec.name}@{device}"] = (spec, case_dir)
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory, curated_specs):
    return saved_cases(tmp_path_factory.mktemp("cases"), [
        (Spec.from_dict(TIED_HALF), list(FORMATS)),
        (Spec.from_dict(MOVED), ["state_dict", "full_model"]),
        (curated_specs["training_checkpoint"], ["checkpoint"]),
        (curated_specs["compiled_prefix"], ["state_dict"]),
        (curated_specs["sparse_buffer"], ["state_dict"]),
        (curated_specs["special_values"], ["state_dict_legacy"]),
    ]) | saved_cases(tmp_path_factory.mktemp("emulated"), [(Spec.from_dict(TIED_HALF), ["state_dict"])], "cuda-emulated")


def repro(out, case, fmt, options, signature=SIGNATURE):
    spec, case_dir = case
    out.mkdir(parents=True)
    files = write_repro(out, spec=spec, fmt=fmt, load=options.to_dict(), artifact=case_dir / fmt, envs=ENVS,
                        observed=OBSERVED, signature=signature, key=f"src|{spec.name}|{fmt}|{options.id}",
                        command="python -m harness shrink --cell KEY")
    assert files == {"save": "save.py", "load": "load.py", "readme": "README.md"}
    return out


# Every format at its plainest options, and the common load options; each must round-trip in this env.
CELLS = [
    ("tied_half", "state_dict", RAW, SIGNATURE),
    ("tied_half", "state_dict", STRICT, SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="dict:cuda:0->cpu", weights_only="false", mmap=True, apply="strict"), SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="callable", weights_only="default", mmap=False, apply="assign"), SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=True, apply="none", source="pathlib"), SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source="stream-buffered"), SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=True, apply="none", source="nonascii"), SIGNATURE),
    ("tied_half", "state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source="bytesio"), SIGNATURE),
    ("tied_half", "state_dict_legacy", LoadOptions(map_location="device:cpu", weights_only="default", mmap=False, apply="strict"), SIGNATURE),
    ("tied_half", "state_dict_legacy", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source="gzip-decompressed"), SIGNATURE),
    ("tied_half", "full_model", LoadOptions(map_location="none", weights_only="false", mmap=False, apply="none"), FORWARD),
    ("tied_half", "torchscript", LoadOptions(map_location="cpu"), FORWARD),
    ("tied_half", "exported", LoadOptions(), FORWARD),
    ("tied_half", "safetensors", LoadOptions(apply="model", device="cpu"), SIGNATURE),
    ("tied_half", "checkpoint", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none"), SIGNATURE),
    ("tied_half", "checkpoint", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="resume"), SIGNATURE),
    ("training_checkpoint", "checkpoint", LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none", safe_globals="needed"), SIGNATURE),
    ("training_checkpoint", "checkpoint", LoadOptions(map_location="cpu", weights_only="false", mmap=False, apply="resume"), SIGNATURE),
    ("compiled_prefix", "state_dict", RAW, SIGNATURE),
    ("sparse_buffer", "state_dict", STRICT, SIGNATURE),
    ("special_values", "state_dict_legacy", RAW, SIGNATURE),
    ("moved", "state_dict", STRICT, SIGNATURE),
]


def test_every_format_and_common_option_round_trips_in_one_env(cases, tmp_path):
    folders = [repro(tmp_path / f"{i}-{case}-{fmt}", cases[case], fmt, options, signature)
               for i, (case, fmt, options, signature) in enumerate(CELLS)]
    loaded_out = []
    for folder, (saved, loaded) in zip(folders, save_then_load(folders, tmp_path)):
        assert saved["code"] == 0, (folder.name, saved["out"])
        assert loaded["code"] == 0, (folder.name, loaded["out"])
        assert "OK:" in loaded["out"] and "tensors bit-identical" in loaded["out"], loaded["out"]
        loaded_out.append(loaded["out"])
        for script in ("save.py", "load.py"):
            assert harness_imports(folder / script) == [], (folder.name, script)
    text = [(f / "load.py").read_text() for f in folders]
    # The options are spelled out as a user types them.
    assert 'kw["map_location"] = {"cuda:0": "cpu"}' in text[2] and 'kw["mmap"] = True' in text[2]
    assert "lambda storage, loc: storage" in text[3] and "assign=True" in text[3]
    assert "mod\\u00e8le-\\u6a21\\u578b.pt" in text[6]
    safetensors = next(i for i, cell in enumerate(CELLS) if cell[1] == "safetensors")
    assert "safetensors.torch.load_model" in text[safetensors]
    # The weights_only fix, applied: every global the file needs is allowlisted, and said.
    fixed = next(i for i, cell in enumerate(CELLS) if cell[2].safe_globals)
    assert "add_safe_globals" in text[fixed]
    assert "weights_only=True loads it once these" in loaded_out[fixed] and "__main__.TrainConfig" in loaded_out[fixed]
    saved_with = (folders[fixed] / "save.py").read_text()
    assert "class TrainConfig" in saved_with and "numpy.float64(" in saved_with


def test_a_moved_class_is_importable_only_while_saving(cases, tmp_path):
    folder = repro(tmp_path / "moved", cases["moved"], "full_model", LoadOptions(map_location="cpu", weights_only="false", mmap=False, apply="none"))
    [(saved, loaded)] = save_then_load([folder], tmp_path)
    assert saved["code"] == 0, saved["out"]
    assert not (folder / "roundtrip_moved").exists()  # written for the save, removed after it
    assert loaded["code"] == 1 and "FAIL: the load raised ModuleNotFoundError: No module named 'roundtrip_moved'" in loaded["out"], loaded["out"]


# Flips the lowest bit of element 1 of the tensor ``h16`` in whatever torch.load returns: a torch that corrupts
# a tensor on load, planted in load.py's interpreter only.
FLIP_H16 = '''
import functools
import torch

_load = torch.load


@functools.wraps(_load)
def load(*args, **kwargs):
    obj = _load(*args, **kwargs)
    if isinstance(obj, dict) and "h16" in obj:
        obj["h16"].view(-1).view(torch.int16)[1] ^= 1
    return obj


torch.load = load
'''


def test_a_gpu_save_is_tagged_as_one_without_a_gpu(cases, tmp_path):
    case = cases["tied_half@cuda-emulated"]
    unmapped = repro(tmp_path / "unmapped", case, "state_dict", LoadOptions(map_location="none", weights_only="default", mmap=False, apply="none"))
    mapped = repro(tmp_path / "mapped", case, "state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none"))
    assert "cuda:0" in (unmapped / "README.md").read_text()
    (save_unmapped, load_unmapped), (save_mapped, load_mapped) = save_then_load([unmapped, mapped], tmp_path)
    assert save_unmapped["code"] == 0 and save_mapped["code"] == 0, (save_unmapped, save_mapped)
    if not torch.cuda.is_available():
        assert "storages are tagged cuda:0" in save_unmapped["out"], save_unmapped["out"]
        # torch refuses a CUDA-tagged file on a CPU-only host unless the load maps it
        assert load_unmapped["code"] == 1 and "FAIL: the load raised RuntimeError" in load_unmapped["out"], load_unmapped["out"]
        assert "CUDA" in load_unmapped["out"], load_unmapped["out"]
    assert load_mapped["code"] == 0 and "OK:" in load_mapped["out"], load_mapped["out"]


def test_a_damaged_load_fails_naming_the_tensor_and_a_load_that_raises_fails_with_the_error(cases, tmp_path):
    case = cases["tied_half"]
    folders = [
        repro(tmp_path / "raw", case, "state_dict", RAW),
        repro(tmp_path / "strict", case, "state_dict", STRICT),
        repro(tmp_path / "refused", case, "full_model", LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none")),
        repro(tmp_path / "truncated", case, "state_dict",
              LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source="truncated")),
        repro(tmp_path / "mmap-file", case, "state_dict",
              LoadOptions(map_location="cpu", weights_only="default", mmap=True, apply="none", source="file")),
    ] + [
        # what stands in for a checkpoint by mistake: torch.load raises on each
        repro(tmp_path / source, case, "state_dict",
              LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", source=source))
        for source in ("gzip", "lfs-pointer", "html-page")
    ]
    results = save_then_load(folders, tmp_path, sitecustomize=FLIP_H16)
    assert [saved["code"] for saved, _ in results] == [0] * len(folders), results
    loaded = [r for _, r in results]
    assert [r["code"] for r in loaded] == [1] * len(folders), loaded
    # The flipped bit is named: the tensor, the first differing element, both values; nothing else differs.
    for result in loaded[:2]:
        assert "FAIL: 1 difference(s)" in result["out"], result["out"]
        assert "h16[1]: bits differ: saved 0x" in result["out"] and ", loaded 0x" in result["out"], result["out"]
    # weights_only=True refuses a pickled module; half a file is no zip; mmap needs a path: the exception is the failure.
    assert "FAIL: the load raised UnpicklingError" in loaded[2]["out"] and "weights_only" in loaded[2]["out"], loaded[2]["out"]
    assert "FAIL: the load raised" in loaded[3]["out"], loaded[3]["out"]
    assert "FAIL: the load raised" in loaded[4]["out"] and "mmap" in loaded[4]["out"], loaded[4]["out"]
    for result in loaded[5:]:
        assert "FAIL: the load raised" in result["out"], result["out"]


# Damages what torch.load returns, by the name of the folder load.py runs in: one kind of damage per check.
DAMAGE = '''
import functools
import os

import torch

_load = torch.load


def damage(obj, how):
    if how == "dtype":
        obj["h16"] = obj["h16"].float()
    elif how == "shape":
        obj["h16"] = obj["h16"][:2].clone()
    elif how == "missing":
        del obj["h16"]
    elif how == "metadata":
        del obj._metadata
    elif how == "unexpected":
        obj["surplus"] = torch.zeros(1)
    elif how == "tie":
        obj["head.weight"] = obj["head.weight"].clone()
    elif how == "value":
        obj["step"] = obj["step"] + 1
    elif how == "layout":
        for key, value in list(obj.items()):
            if value.is_sparse:
                obj[key] = value.to_dense()
    elif how == "requires_grad":
        obj.emb.weight.requires_grad_(False)
    elif how == "role":
        value = obj._buffers.pop("h16")
        obj.h16 = torch.nn.Parameter(value, requires_grad=False)
    elif how == "forward":
        obj.register_forward_hook(lambda module, inputs, outputs: tuple(o + 1 for o in outputs))


@functools.wraps(_load)
def load(*args, **kwargs):
    obj = _load(*args, **kwargs)
    damage(obj, os.path.basename(os.getcwd()))
    return obj


torch.load = load
'''

FULL = LoadOptions(map_location="cpu", weights_only="false", mmap=False, apply="none")
DAMAGED = [
    # (damage, case, format, options, signature, what load.py must print)
    ("dtype", "tied_half", "state_dict", RAW, SIGNATURE, "h16: dtype float16 -> float32"),
    ("shape", "tied_half", "state_dict", RAW, SIGNATURE, "h16: shape [4] -> [2]"),
    ("missing", "tied_half", "state_dict", RAW, SIGNATURE, "h16: missing (saved, not loaded)"),
    ("unexpected", "tied_half", "state_dict", RAW, SIGNATURE, "surplus: unexpected (loaded, never saved)"),
    ("metadata", "tied_half", "state_dict", RAW, SIGNATURE, '$metadata: value {"": {"version": 1}'),
    ("tie", "tied_half", "state_dict", RAW, SIGNATURE, "emb.weight, head.weight: shared storage when saved, separate now (tie lost)"),
    ("value", "tied_half", "checkpoint", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none"),
     SIGNATURE, "step: value int:1 -> int:2"),
    ("layout", "sparse_buffer", "state_dict", RAW, SIGNATURE, ": layout sparse_coo -> strided"),
    ("requires_grad", "tied_half", "full_model", FULL, SIGNATURE, "emb.weight: requires_grad True -> False"),
    ("role", "tied_half", "full_model", FULL, SIGNATURE, "h16: role buffer -> parameter"),
    ("forward", "tied_half", "full_model", FULL, FORWARD, "output0[0, 0, 0]: bits differ: saved 0x"),
]


def test_every_check_of_load_py_fails_on_its_damage(cases, tmp_path):
    folders = [repro(tmp_path / how, cases[case], fmt, options, signature) for how, case, fmt, options, signature, _ in DAMAGED]
    # Undamaged, the same cells pass: the checks are not just always failing.
    for folder, (saved, loaded) in zip(folders, save_then_load(folders, tmp_path)):
        assert saved["code"] == 0 and loaded["code"] == 0, (folder.name, saved["out"], loaded["out"])
    for (how, *_, words), loaded in zip(DAMAGED, run_scripts([(f, "load.py") for f in folders], tmp_path, sitecustomize=DAMAGE)):
        assert loaded["code"] == 1 and "FAIL:" in loaded["out"], (how, loaded["out"])
        assert words in loaded["out"], (how, loaded["out"])


@pytest.fixture(scope="module")
def user_case(tmp_path_factory):
    """A user case (its factory in a module of its own) saved in every format here."""
    root = tmp_path_factory.mktemp("user-case")
    package = root / "pkg"
    package.mkdir()
    (package / "repro_tiny_models.py").write_text(USER_MODULE)
    sys.path.insert(0, str(package))
    try:
        spec = Spec.from_dict({"name": "user-tiny", "factory": "repro_tiny_models:make", "seed": 3, "origin": "user",
                               "train": {"optimizer": "adam", "lr": 0.01, "steps": 1, "loss": "square_mean"}})
        saved = saved_cases(root / "artifacts", [(spec, [fmt for fmt, _ in USER_CELLS])])
    finally:
        sys.path.remove(str(package))
    return saved[spec.name], package


USER_CELLS = [
    ("state_dict", STRICT),
    ("full_model", LoadOptions(map_location="none", weights_only="false", mmap=True, apply="none")),
    ("torchscript", LoadOptions(map_location="cpu")),
    ("safetensors", LoadOptions(map_location="cpu", weights_only="default", apply="model", loader="torch.load")),
    ("checkpoint", LoadOptions(map_location="none", weights_only="default", mmap=False, apply="resume")),
]


def test_a_user_case_imports_its_factory_and_round_trips(user_case, tmp_path):
    case, package = user_case
    folders = [repro(tmp_path / f"{i}-{fmt}", case, fmt, options, FORWARD) for i, (fmt, options) in enumerate(USER_CELLS)]
    for folder, (saved, loaded) in zip(folders, save_then_load(folders, tmp_path, extra_path=[package])):
        assert saved["code"] == 0, (folder.name, saved["out"])
        assert loaded["code"] == 0 and "OK:" in loaded["out"], (folder.name, loaded["out"])
    # The factory cannot be written out: it is imported (seeded as the harness seeds it), and the README says so.
    save_py = (folders[0] / "save.py").read_text()
    assert "from repro_tiny_models import make as make_user_model" in save_py and "torch.manual_seed(SEED)" in save_py
    readme = (folders[0] / "README.md").read_text()
    assert "user case" in readme and "repro_tiny_models:make" in readme and "cannot be written out" in readme


def test_a_reproduction_holds_only_the_helpers_its_case_runs(cases, tmp_path):
    """The helpers serve every format; a state_dict repro has none of torch.export's, a torch.export one has them."""
    plain = repro(tmp_path / "plain", cases["tied_half"], "state_dict", RAW)
    exported = repro(tmp_path / "exported", cases["tied_half"], "exported", LoadOptions(), FORWARD)
    assert "def program_tensors" not in (plain / "load.py").read_text()
    assert "def program_tensors" in (exported / "load.py").read_text()
    assert "def build_model" in (plain / "save.py").read_text()


def test_the_readme_is_an_upstream_issue(cases, tmp_path):
    folder = repro(tmp_path / "r", cases["tied_half"], "state_dict", STRICT)
    readme = (folder / "README.md").read_text()
    title = readme.splitlines()[0]
    assert title.startswith("# state_dict: mismatch: bits of a buffer float16") and f"torch {torch.__version__}" in title
    for words in ("## Environments", "## Reproduce", "python save.py", "python load.py", "## Expected", "## Observed",
                  "bit-identical", "- outcome: **mismatch**", "`h16[1]`: bits 0x3c00 (1.0) -> 0x3c01 (1.0009765625)",
                  "extra buffer `h16`: float16 [4]", "tied:", "python -m harness shrink --cell KEY",
                  "python -m harness replay spec.json", f"Python {ENVS['source']['fingerprint']['python']}"):
        assert words in readme, words


@pytest.mark.parametrize(("fmt", "options", "words"), [
    ("checkpoint", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="step"), "apply=step"),
    ("state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict", load_as="m:new"), "load_as"),
    ("state_dict", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict", migrate="remap"), "migrate"),
    ("full_model", LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="none", rename_class="a.B->c.D"), "rename_class"),
    ("exported", LoadOptions(map_location="cpu", source="bytesio"), "source=bytesio"),
    ("torchscript", LoadOptions(map_location="cpu", loader="safetensors.torch.load_file"), "loader="),
    ("state_dict", LoadOptions(map_location="cpu", weights_only="default", apply="none", safe_globals="needed"), "safe_globals"),
])
def test_what_plain_torch_cannot_express_is_refused_and_nothing_is_written(cases, tmp_path, fmt, options, words):
    spec, case_dir = cases["tied_half"]
    (tmp_path / "spec.json").write_text("{}")
    with pytest.raises(ReproUnsupported, match=words):
        write_repro(tmp_path, spec=spec, fmt=fmt, load=options.to_dict(), artifact=case_dir / fmt, envs=ENVS,
                    observed=OBSERVED, signature=SIGNATURE, key="k", command="c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]


def test_a_refactor_case_is_refused_where_the_load_builds_its_new_code(curated_specs, cases, tmp_path):
    spec = curated_specs["refactor_renamed"]
    _, case_dir = cases["tied_half"]  # never read: the refusal comes first
    with pytest.raises(ReproUnsupported, match="refactor"):
        write_repro(tmp_path, spec=spec, fmt="state_dict", load=STRICT.to_dict(), artifact=case_dir / "state_dict",
                    envs=ENVS, observed=OBSERVED, signature=SIGNATURE, key="k", command="c")
    assert list(tmp_path.iterdir()) == []


def test_what_the_plain_model_cannot_write_is_refused_with_its_reason(cases, tmp_path):
    spec, _ = cases["tied_half"]
    _, other = cases["moved"]  # an artifact of another spec: its values are not this model's
    with pytest.raises(ReproUnsupported, match="spec digest"):
        write_repro(tmp_path, spec=spec, fmt="state_dict", load=STRICT.to_dict(), artifact=other / "state_dict",
                    envs=ENVS, observed=OBSERVED, signature=SIGNATURE, key="k", command="c")
    with pytest.raises(ReproUnsupported, match="surplus"):
        write_repro(tmp_path, spec=spec, fmt="state_dict", load=dict(STRICT.to_dict(), surplus="x"),
                    artifact=other / "state_dict", envs=ENVS, observed=OBSERVED, signature=SIGNATURE, key="k", command="c")
    assert list(tmp_path.iterdir()) == []
