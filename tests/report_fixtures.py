"""Miniature result folders for the report tests: fake envs, no torch needed.

`line` builds one result line the way `load` writes it; `write_results`
writes a folder (``<target>.jsonl`` + ``<target>.env.json``); `miniature`
writes a small run whose every count is known (see MINIATURE_COUNTS);
`history` writes a run of five torch releases with golden sources, whose
release map is known (see HISTORY_VERDICTS); `synthetic` writes a large,
realistic one for the performance check.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Optional

DATA = Path(__file__).resolve().parent / "data" / "report"
REAL = DATA / "real"
XSD = DATA / "junit-10.xsd"

A = "torch-2.4.1-py3.11-cpu"
B = "torch-2.15.0-py3.11-cpu"
AE = "torch-2.4.1-py3.11-cuda-emulated"

SD = {"apply": "none", "map_location": "none", "mmap": False, "weights_only": "default"}

#: Expectations the miniature is judged by (not the shipped file, which may change).
EXPECTATIONS = '''
[[expectation]]
id = "weights-only-default-refuses-pickled-module"
reason = "torch 2.6 made weights_only=True the default"
link = "https://pytorch.org/docs/stable/notes/serialization.html#weights-only"
format = "full_model"
target_torch = ">=2.6"
load = { weights_only = "default" }
diagnosis = "weights_only_refused"

[[expectation]]
id = "cuda-storages-need-map-location"
reason = "a CPU-only host cannot restore CUDA storages without map_location"
source_device = ["cuda", "cuda-emulated"]
target_device = "cpu"
load = { map_location = "none" }
diagnosis = "cuda_storage_on_cpu_host"
'''


def fingerprint(label: str, **over: Any) -> dict:
    bare = label.removeprefix("golden-")  # a golden source's fingerprint is that of the env that saved it
    torch, python, device = bare.split("-", 1)[1].split("-py")[0], bare.split("-py")[1].split("-")[0], bare.split("-", 3)[3]
    fp = {
        "label": label, "torch": torch + "+cpu", "torch_git": "0123456789abcdef" + torch, "cuda": None, "cuda_devices": [],
        "python": python + ".7", "numpy": "2.1.0", "platform": "Linux-x86_64-test", "machine": "x86_64", "device": device,
        "harness": "0.1.0",
    }
    fp.update(over)
    return fp


def line(source: str, target: str, case: str, fmt: str, outcome: str, load: Optional[dict] = None, **over: Any) -> dict:
    d = {
        "schema": 1, "harness": "0.1.0", "source": source, "target": target, "case": case, "format": fmt,
        "load": dict(SD if load is None else load), "outcome": outcome, "expected": False, "expectation": None,
        "detail": "exact" if outcome == "pass" else f"{outcome} detail", "diagnosis": None, "error": None,
        "differences": [], "notes": [], "forward": None, "seconds": 0.01, "artifact": "a" * 16,
        "origin": "curated", "tags": [],
    }
    d.update(over)
    return d


def spec(name: str, origin: str = "curated") -> dict:
    return {"schema": 1, "name": name, "origin": origin, "seed": 3, "model": {"kind": "sequential", "children": [{"kind": "linear", "name": "fc", "in_features": 2, "out_features": 2}]}}


def write_results(
    folder: Path, lines: list, *, sidecar: bool = True, envs: Optional[dict] = None, cases: Optional[dict] = None,
) -> Path:
    """Write `lines` as a result folder, one jsonl (and sidecar) per target."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_target: dict = {}
    for d in lines:
        by_target.setdefault(d["target"], []).append(d)
    envs = envs or {}
    for target, rows in by_target.items():
        (folder / f"{target}.jsonl").write_text("".join(json.dumps(d, sort_keys=True) + "\n" for d in rows))
        if sidecar:
            sources = sorted({d["source"] for d in rows})
            names = sorted({d["case"] for d in rows})
            data = {
                "schema": 1,
                "target": envs.get(target, fingerprint(target)),
                "sources": {s: envs.get(s, fingerprint(s)) for s in sources},
                "cases": {n: (cases or {}).get(n, spec(n, "generated" if n.startswith("gen_") else "curated")) for n in names},
            }
            (folder / f"{target}.env.json").write_text(json.dumps(data, sort_keys=True, indent=1))
    return folder


def miniature_lines() -> list:
    """A small run with every category, judged by EXPECTATIONS.

    Some lines carry a stale ``expected`` flag on purpose: the report must
    re-judge them (two are reclassified).
    """
    wo = {"code": "weights_only_refused", "summary": "torch.load refused to unpickle objects", "fix": "torch.load(f, weights_only=False) if you trust the file"}
    cuda = {"code": "cuda_storage_on_cpu_host", "summary": "the file holds CUDA storages", "fix": 'torch.load(f, map_location="cpu")'}
    return [
        # target B
        line(A, B, "simple_net", "state_dict", "pass"),
        line(A, B, "simple_net", "state_dict", "pass", {**SD, "mmap": True}),
        # stale flag: recorded as a regression, but an expectation documents it -> expected
        line(A, B, "simple_net", "full_model", "error", detail="UnpicklingError: Weights only load failed", diagnosis=wo,
             error={"type": "UnpicklingError", "module": "_pickle", "message": "Weights only load failed"}),
        line(A, B, "tied_lm", "state_dict", "mismatch", detail="fc.weight[0, 1]: bits 0x3f80 -> 0x3f81",
             differences=[{"tensor": "fc.weight", "aspect": "bits", "expected": "0x3f80", "actual": "0x3f81", "index": [0, 1]}]),
        line(AE, B, "simple_net", "state_dict", "error", expected=True, expectation="cuda-storages-need-map-location",
             detail="RuntimeError: Attempting to deserialize object on a CUDA device", diagnosis=cuda,
             error={"type": "RuntimeError", "module": "builtins", "message": "Attempting to deserialize object on a CUDA device"}),
        line(AE, B, "simple_net", "state_dict", "pass", {**SD, "map_location": "cpu"}),
        line(B, B, "simple_net", "exported", "crash", {}, detail="the worker process died: exit code -11"),
        line(B, B, "gen_7", "state_dict", "error", origin="generated", detail="RuntimeError: boom | with a pipe",
             error={"type": "RuntimeError", "module": "builtins", "message": "boom | with a pipe"}),
        line(A, B, "simple_net", "torchscript", "skip", {"map_location": "none"}, detail="not saved in torch-2.4.1-py3.11-cpu: no"),
        # target A
        line(B, A, "simple_net", "exported", "error", {}, detail="KeyError: \"There is no item named 'version' in the archive\"",
             error={"type": "KeyError", "module": "builtins", "message": "\"There is no item named 'version' in the archive\""}),
        line(A, A, "simple_net", "state_dict", "pass", forward={"status": "drift", "max_abs_diff": 2.4e-07, "outputs_differing": 1, "same_kernels": False}),
        # stale flag: recorded as expected, but no expectation covers a timeout -> regression
        line(B, A, "simple_net", "state_dict", "timeout", expected=True, expectation="gone-expectation", detail="no result within --timeout 120s"),
    ]


#: category counts of the miniature, per (source, target)
MINIATURE_COUNTS = {
    (A, B): {"pass": 2, "skip": 1, "expected": 1, "regression": 0, "mismatch": 1, "worst": "mismatch"},
    (AE, B): {"pass": 1, "skip": 0, "expected": 1, "regression": 0, "mismatch": 0, "worst": "pass"},
    (B, B): {"pass": 0, "skip": 0, "expected": 0, "regression": 2, "mismatch": 0, "worst": "crash"},
    (B, A): {"pass": 0, "skip": 0, "expected": 0, "regression": 2, "mismatch": 0, "worst": "timeout"},
    (A, A): {"pass": 1, "skip": 0, "expected": 0, "regression": 0, "mismatch": 0, "worst": "pass"},
}


#: The releases of the `history` run, in release order (1.13.1 after 1.8.1: numbers, not strings).
HISTORY_RELEASES = ("1.4.0", "1.8.1", "1.13.1", "2.4.1", "2.15.0")
_HISTORY_PYTHON = {"1.4.0": "3.8", "1.8.1": "3.8", "1.13.1": "3.10", "2.4.1": "3.11", "2.15.0": "3.12"}


def history_label(release: str, device: str = "cpu", *, golden: bool = False, python: Optional[str] = None) -> str:
    """The env label of `release` in the `history` run (a golden corpus source with `golden`)."""
    return ("golden-" if golden else "") + f"torch-{release}-py{python or _HISTORY_PYTHON[release]}-{device}"


def history_sources(release: str) -> list:
    """The source envs of one release: live CPU, a golden source (on another Python for 1.4.0), emulated CUDA for two."""
    out = [history_label(release), history_label(release, golden=True, python="3.7" if release == "1.4.0" else None)]
    if release in ("1.8.1", "2.4.1"):
        out.append(history_label(release, "cuda-emulated"))
    return out


def history_lines() -> list:
    """Every source env of HISTORY_RELEASES loaded on the CPU env of every release, judged by EXPECTATIONS.

    state_dict: passes; an emulated CUDA source also fails, as documented,
    without map_location (known issues), and the golden 1.13.1 file loads
    different in 1.8.1 (corrupts). full_model: refused by the weights_only
    default from 2.6 (known incompatible), and an undocumented error from
    2.15.0 to 1.4.0 (regression). torchscript: 1.4.0 did not save it (n/a).
    """
    wo = {"code": "weights_only_refused", "summary": "torch.load refused to unpickle objects", "fix": "torch.load(f, weights_only=False) if you trust the file"}
    cuda = {"code": "cuda_storage_on_cpu_host", "summary": "the file holds CUDA storages", "fix": 'torch.load(f, map_location="cpu")'}
    out = []
    for sr in HISTORY_RELEASES:
        for source in history_sources(sr):
            for tr in HISTORY_RELEASES:
                target = history_label(tr)
                if source.endswith("cuda-emulated"):
                    out.append(line(source, target, "simple_net", "state_dict", "error", diagnosis=cuda, expected=True,
                                    expectation="cuda-storages-need-map-location",
                                    detail="RuntimeError: Attempting to deserialize object on a CUDA device"))
                    out.append(line(source, target, "simple_net", "state_dict", "pass", {**SD, "map_location": "cpu"}))
                elif (sr, tr) == ("1.13.1", "1.8.1") and source.startswith("golden-"):
                    out.append(line(source, target, "simple_net", "state_dict", "mismatch", detail="fc.weight[0]: bits 0x3f80 -> 0x3f81"))
                else:
                    out.append(line(source, target, "simple_net", "state_dict", "pass"))
                if tr == "2.15.0":
                    out.append(line(source, target, "simple_net", "full_model", "error", diagnosis=wo, expected=True,
                                    expectation="weights-only-default-refuses-pickled-module", detail="UnpicklingError: Weights only load failed"))
                elif (sr, tr) == ("2.15.0", "1.4.0"):
                    out.append(line(source, target, "simple_net", "full_model", "error", detail="AttributeError: Can't get attribute"))
                else:
                    out.append(line(source, target, "simple_net", "full_model", "pass"))
                if sr == "1.4.0":
                    out.append(line(source, target, "simple_net", "torchscript", "skip", detail=f"not saved in {source}: no"))
                else:
                    out.append(line(source, target, "simple_net", "torchscript", "pass"))
    return out


def history_verdict(fmt: str, source: str, target: str) -> str:
    """The verdict of one release pair of the `history` run, by the rules `history_lines` follows."""
    if fmt == "state_dict":
        if (source, target) == ("1.13.1", "1.8.1"):
            return "corrupts"
        return "known issues" if source in ("1.8.1", "2.4.1") else "safe"
    if fmt == "full_model":
        if target == "2.15.0":
            return "known incompatible"
        return "regression" if (source, target) == ("2.15.0", "1.4.0") else "safe"
    return "n/a" if source == "1.4.0" else "safe"


#: (format, source release, target release) -> verdict of the `history` run
HISTORY_VERDICTS = {
    (f, s, t): history_verdict(f, s, t)
    for f in ("state_dict", "full_model", "torchscript") for s in HISTORY_RELEASES for t in HISTORY_RELEASES
}


def history(folder: Path) -> Path:
    """Write the `history` run into `folder`."""
    return write_results(folder, history_lines())


def write_expectations(folder: Path) -> Path:
    path = Path(folder) / "expectations.toml"
    path.write_text(EXPECTATIONS)
    return path


def miniature(folder: Path) -> Path:
    """Write the miniature run into `folder`."""
    return write_results(folder, miniature_lines())


def copy_real(folder: Path) -> Path:
    """The committed sample of real results, copied into `folder`."""
    shutil.copytree(REAL, folder)
    return Path(folder)


_ERRORS = [
    ("UnpicklingError", "_pickle", "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code execution.", "weights_only_refused"),
    ("RuntimeError", "builtins", "Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False.", "cuda_storage_on_cpu_host"),
    ("RuntimeError", "builtins", "mmap can only be used with files saved with `torch.save(/tmp/rt/A/{src}/{case}/state_dict_legacy/model.legacy.pt, _use_new_zipfile_serialization=True)`", "mmap_legacy_format"),
    ("KeyError", "builtins", "\"There is no item named 'version' in the archive\"", None),
]
_FORMATS = ["state_dict", "state_dict_legacy", "full_model", "torchscript", "exported", "safetensors", "checkpoint"]
_MAPS = ["none", "cpu", "device:cpu", "dict:cuda:0->cpu", "callable"]


def synthetic_lines(n: int, *, seed: int = 0) -> list:
    """`n` distinct, realistic result lines: 8 source envs, 4 targets, 100 cases, every outcome."""
    rng = random.Random(seed)
    versions = ["2.1.2", "2.4.1", "2.6.0", "2.15.0"]
    envs = [f"torch-{v}-py3.11-{d}" for v in versions for d in ("cpu", "cuda-emulated")]
    targets = [e for e in envs if e.endswith("-cpu")]
    cases = [f"case_{i:03d}" if i % 5 else f"gen_{i:03d}" for i in range(100)]
    options = [
        {"apply": a, "map_location": m, "mmap": mm, "weights_only": w}
        for a in ("none", "strict", "assign") for m in _MAPS for mm in (False, True) for w in ("default", "true", "false")
    ]
    dims = (len(envs), len(targets), len(cases), len(_FORMATS), len(options))
    space = 1
    for d in dims:
        space *= d
    if n > space:
        msg = f"n={n} is more than the {space} distinct cells synthetic_lines can make"
        raise ValueError(msg)
    out = []
    for i, flat in enumerate(rng.sample(range(space), n)):
        idx = []
        for d in reversed(dims):
            flat, r = divmod(flat, d)
            idx.append(r)
        o, f, c, t, s = idx
        source, target, case, fmt, load = envs[s], targets[t], cases[c], _FORMATS[f], dict(options[o])
        roll = rng.random()
        kw: dict = {"origin": "generated" if case.startswith("gen_") else "curated", "seconds": rng.random() / 50}
        if roll < 0.62:
            outcome = "pass"
            if rng.random() < 0.2:
                kw["forward"] = {"status": "drift", "max_abs_diff": rng.choice([2.4e-07, 1.2e-07, 4.8e-07]), "outputs_differing": 1, "same_kernels": False}
            if rng.random() < 0.3:
                kw["notes"] = ["FutureWarning: You are using `torch.load` with `weights_only=False` (the current default value)"]
        elif roll < 0.70:
            outcome = "skip"
            kw["detail"] = f"not saved in {source}: the source env could not save it"
        elif roll < 0.995:
            outcome = rng.choice(["error"] * 8 + ["timeout", "crash"])
            etype, mod, msg, code = rng.choice(_ERRORS)
            msg = msg.format(src=source, case=case)
            kw["detail"] = f"{etype}: {msg}"[:300]
            kw["error"] = {"type": etype, "module": mod, "message": msg}
            if code:
                kw["diagnosis"] = {"code": code, "summary": f"{code} summary", "fix": f"{code} fix"}
        else:
            outcome = "mismatch"
            kw["detail"] = f"fc.weight[{i % 7}]: bits 0x3f80 -> 0x3f81"
            kw["differences"] = [{"tensor": "fc.weight", "aspect": "bits", "expected": "0x3f80", "actual": "0x3f81", "index": [i % 7]}]
        out.append(line(source, target, case, fmt, outcome, load, **kw))
    return out


def synthetic(folder: Path, n: int, *, seed: int = 0) -> Path:
    """Write `n` synthetic cells into `folder`."""
    return write_results(folder, synthetic_lines(n, seed=seed))


#: The remap of the `refactors` run's qkv case: one projection split in three, a
#: legacy weight_norm, a buffer made non-persistent, a parameter added.
REMAP_QKV = {
    "found_by": "names", "same": 2, "summary": "1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept",
    "entries": [
        {"kind": "split", "old": ["attn.qkv.weight"], "new": ["attn.q.weight", "attn.k.weight", "attn.v.weight"], "dim": 0,
         "detail": "float32[12, 4] cut into 3 x float32[4, 4]"},
        {"kind": "parametrization", "old": ["out.weight_g"], "new": ["out.parametrizations.weight.original0"], "detail": "legacy weight_norm"},
        {"kind": "parametrization", "old": ["out.weight_v"], "new": ["out.parametrizations.weight.original1"], "detail": "legacy weight_norm"},
        {"kind": "dropped", "old": ["norm.running_count"], "new": [], "detail": "a buffer made non-persistent"},
        {"kind": "added", "old": [], "new": ["out.scale"], "detail": "float32[4]: a parameter added"},
    ],
}
#: The remap of the `refactors` run's user case: one submodule renamed.
REMAP_USER = {
    "found_by": "digests", "same": 1, "summary": "1 renamed, 1 kept",
    "entries": [{"kind": "rename", "old": ["encoder.fc.weight"], "new": ["encoder.proj.weight"], "detail": "same bytes under another name"}],
}
#: The options of a load into the model (apply=strict), and of a migration by the harness's remap.
STRICT = {**SD, "apply": "strict"}
MIGRATE = {**STRICT, "migrate": "remap"}


def refactor_lines() -> list:
    """Three refactors across two env pairs (A -> B, B -> A), and one cell that is no refactor.

    - ``refactor_qkv`` into its variant: plain loads fail (``model_code_changed``),
      the proposed remap applied is exact from A to B and mismatches from B to A
      (one element of ``attn.k.weight``);
    - ``refactor_moved`` (a class moved): the whole-model pickle cannot be
      imported, ``rename_class`` loads it exactly;
    - ``user_net`` loaded as ``newpkg.models:make`` (``--load-as``), migrated by
      the user's ``newpkg.migrations:migrate``, exact in both pairs.
    """
    changed = {"code": "model_code_changed", "summary": "the checkpoint's keys do not fit the model",
               "fix": "apply the proposed remap: load --migrate OLD=MIG"}
    moved = {"code": "class_moved", "summary": "the pickle names a class that cannot be imported",
             "fix": "load the state dict instead, or load --rename-class roundtrip_moved.m:Net=harness.examples:Net"}
    digests = {**REMAP_QKV, "found_by": "digests"}
    rename = {**SD, "weights_only": "false", "rename_class": "roundtrip_moved.m.Net->harness.runtime.casemodel.CaseModel"}
    user_load = {**STRICT, "load_as": "newpkg.models:make"}
    out = []
    for source, target in ((A, B), (B, A)):
        out.append(line(source, target, "refactor_qkv", "state_dict", "error", STRICT, load_as="variant", remap=REMAP_QKV,
                        diagnosis=changed, detail="RuntimeError: Error(s) in loading state_dict: Missing key(s)"))
        out.append(line(source, target, "refactor_qkv", "checkpoint", "error", STRICT, load_as="variant", remap=REMAP_QKV,
                        diagnosis=changed, detail="RuntimeError: Error(s) in loading state_dict: Missing key(s)"))
        if (source, target) == (A, B):
            out.append(line(source, target, "refactor_qkv", "state_dict", "pass", MIGRATE, load_as="variant", remap=digests))
        else:
            out.append(line(source, target, "refactor_qkv", "state_dict", "mismatch", MIGRATE, load_as="variant", remap=digests,
                            detail="attn.k.weight[1, 2]: bits 0x3f800000 -> 0x3f800001",
                            differences=[{"tensor": "attn.k.weight", "aspect": "bits", "expected": "0x3f800000", "actual": "0x3f800001", "index": [1, 2]}]))
        out.append(line(source, target, "refactor_moved", "full_model", "error", {**SD, "weights_only": "false"}, load_as="variant",
                        diagnosis=moved, detail="ModuleNotFoundError: No module named 'roundtrip_moved'"))
        out.append(line(source, target, "refactor_moved", "full_model", "pass", rename, load_as="variant"))
        out.append(line(source, target, "user_net", "state_dict", "error", user_load, origin="user", load_as="newpkg.models:make",
                        remap={**REMAP_USER, "found_by": "names"}, diagnosis=changed, detail="RuntimeError: Missing key(s)"))
        out.append(line(source, target, "user_net", "state_dict", "pass", {**user_load, "migrate": "newpkg.migrations:migrate"},
                        origin="user", load_as="newpkg.models:make", remap=REMAP_USER))
        out.append(line(source, target, "simple_net", "state_dict", "pass"))
    return out


def refactors(folder: Path) -> Path:
    """Write the `refactors` run into `folder`."""
    return write_results(folder, refactor_lines())
