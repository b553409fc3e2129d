"""A failure planted in the load env, shrunk across two envs, reproduced by plain torch.

The load env's torch has a bug planted on purpose (`harness.shrink.plant`):
it flips a bit of a float16 tensor of at least four elements, but only
when the loaded object also holds an int64 tensor. The case starts large
(layers, widths, dtypes, extras, a planted special value, a layout, load
options); the shrink must end at a spec holding just those two features,
and the plain-torch scripts it writes must show the failure in the two envs
where the harness is not installed, and not without the bug.

The source env is a venv with torch but without the harness
(`plain_torch_python`); the harness's workers run in it from this checkout
(PYTHONPATH), the scripts run in it bare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runtime.load_options import LoadOptions
from harness.runtime.spec import Spec
from harness.shrink import ShrinkRequest, shrink_cell
from harness.shrink.envs import EnvPair
from harness.shrink.plant import planted_python
from harness.shrink.record import ShrinkRecord

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: Plain values of every load option the start cell sweeps away.
START = {"apply": "none", "map_location": "callable", "mmap": True, "weights_only": "true"}
PLAIN = {"apply": "none", "map_location": "none", "mmap": False, "weights_only": "default"}


def _big_spec(name: str) -> dict:
    return {
        "name": name, "seed": 5, "batch": 3, "description": "two features hidden among many", "tags": ["planted"],
        "model": {"kind": "sequential", "children": [
            {"kind": "linear", "in_features": 8, "out_features": 6, "name": "fc1", "dtype": "float64"},
            {"kind": "activation", "fn": "gelu", "name": "act"},
            {"kind": "linear", "in_features": 6, "out_features": 6, "name": "fc2", "dtype": "float64"},
            {"kind": "layer_norm", "normalized_shape": 6, "name": "ln", "dtype": "float64"},
        ]},
        "tensors": [
            {"name": "scale", "at": "fc2", "shape": [3, 4], "dtype": "float16"},
            {"name": "small", "shape": [2], "dtype": "float16"},
            {"name": "count", "shape": [3], "dtype": "int64"},
            {"name": "extra", "at": "ln", "shape": [5], "dtype": "float32", "fill": "ones"},
        ],
        "plant": [{"at": "fc1.weight"}],
        "layout": [{"at": "fc1.weight", "kind": "transposed"}],
    }


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(env or {})
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def planted(plain_torch_python, tmp_path_factory):
    """A results folder whose cells failed through the planted bug: (results, source python, target python, work)."""
    work = tmp_path_factory.mktemp("planted")
    target = planted_python(plain_torch_python, work / "plant")
    cases = work / "cases.json"
    cases.write_text(json.dumps({"cases": [_big_spec("planted_big")]}))
    harness = {"PYTHONPATH": str(REPO)}
    save = _run([plain_torch_python, "-m", "harness", "save", "--cases", cases, "--out", work / "art", "--formats", "state_dict", "-q"], work, harness)
    assert save.returncode == 0, save.stderr
    load = _run([target, "-m", "harness", "load", "--artifacts", work / "art", "--results", work / "res", "--format", "state_dict", "-q"],
                work, harness)
    assert load.returncode == 1, load.stderr  # mismatches: the plant fired
    return work / "res", plain_torch_python, target, work


def _key(source: str, case: str, options: dict) -> str:
    return f"{source}|{case}|state_dict|{LoadOptions.from_dict(options).id}"


def _source(results: Path) -> str:
    return json.loads(next(results.glob("*.jsonl")).read_text().splitlines()[0])["source"]


def _saved_tensors(out: Path) -> list:
    manifest = json.loads(next((out / "artifact").glob("*/*/state_dict/manifest.json")).read_text())
    return manifest["views"]["file"]["tensors"]


def test_shrink_ends_at_the_two_features_and_plain_torch_reproduces_it(planted):
    results, source_python, target_python, work = planted
    key = _key(_source(results), "planted_big", START)
    out = work / "shrunk"
    done = _run([sys.executable, "-m", "harness", "shrink", "--results", results, "--cell", key, "--out", out,
                 "--source-python", source_python, "--target-python", target_python, "--max-seconds", "300"], work,
                {"TORCH_ROUNDTRIP_PLAIN": "1"})
    assert done.returncode == 0, done.stderr
    record = ShrinkRecord.from_dict(json.loads((out / "shrink.json").read_text()))
    assert record.status == "done", record
    assert record.signature["text"] == "mismatch: bits of a buffer float16"
    assert record.steps >= 20 and record.steps_per_second > 0 and record.accepted >= 10
    assert record.load == PLAIN, "every load option was irrelevant to the bug"
    assert record.observed["outcome"] == "mismatch"

    # Just the two features: one float16 tensor of exactly four elements, one int64 tensor, nothing else saved.
    tensors = _saved_tensors(out)
    assert sorted(t["dtype"] for t in tensors) == ["float16", "int64"], tensors
    half = next(t for t in tensors if t["dtype"] == "float16")
    assert half["shape"] in ([4], [1, 4], [4, 1], [2, 2])
    spec = Spec.from_dict(json.loads((out / "spec.json").read_text()))
    assert len(spec.leaves()) == 1 and not spec.data.get("plant") and not spec.data.get("layout")
    assert record.final["tensors"] == 2 and record.initial["tensors"] > 8

    # The plain-torch scripts: no harness in them, and none importable where they run.
    for name in ("save.py", "load.py"):
        assert "harness" not in (out / name).read_text().replace("torch-roundtrip", "").split("import", 1)[-1].split("\n")[0]
    repro = work / "repro"
    repro.mkdir()
    for name in ("save.py", "load.py"):
        (repro / name).write_text((out / name).read_text())
    assert _run([source_python, "-c", "import harness"], repro).returncode != 0
    saved = _run([source_python, "save.py"], repro)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    seen = _run([target_python, "load.py"], repro)
    assert seen.returncode == 1, seen.stdout + seen.stderr
    assert "scale" in seen.stdout + seen.stderr
    clean = _run([source_python, "load.py"], repro)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    readme = (out / "README.md").read_text()
    assert "python save.py" in readme and "python load.py" in readme and "2.15" in readme

    # The spec replays in one env with the harness (no bug there: it passes).
    replay = _run([sys.executable, "-m", "harness", "replay", out / "spec.json", "--formats", "state_dict"], work)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_same_cell_and_seed_shrink_the_same_way_and_max_steps_bounds_it(planted):
    results, source_python, target_python, work = planted
    key = _key(_source(results), "planted_big", START)
    runs = []
    for n in (1, 2):
        request = ShrinkRequest(results=results, key=key, source_python=source_python, target_python=target_python,
                                out=work / f"bounded{n}", max_steps=15)
        runs.append(shrink_cell(request, progress=False))
    assert [r.status for r in runs] == ["step_limit", "step_limit"]
    assert runs[0].steps == 15 and runs[0].history == runs[1].history
    assert (work / "bounded1" / "spec.json").read_text() == (work / "bounded2" / "spec.json").read_text()


def test_an_interrupted_shrink_keeps_the_best_case_so_far(planted, cli, monkeypatch):
    """Ctrl-C at step 12 (as the terminal delivers it: KeyboardInterrupt): exit 130, the best case of steps 1-11 written."""
    results, source_python, target_python, work = planted
    key = _key(_source(results), "planted_big", START)
    out = work / "interrupted"
    real_run = EnvPair.run
    steps = []

    def run(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 12:
            raise KeyboardInterrupt
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(EnvPair, "run", run)
    done = cli("shrink", "--results", str(results), "--cell", key, "--out", str(out),
               "--source-python", source_python, "--target-python", target_python, "-q")
    assert done.returncode == 130, done.stderr
    record = ShrinkRecord.from_dict(json.loads((out / "shrink.json").read_text()))
    assert record.status == "interrupted" and record.steps == 12
    assert record.accepted >= 3 and all(h["step"] < 12 for h in record.history)
    Spec.from_dict(json.loads((out / "spec.json").read_text()))  # the best case so far is a whole spec
    assert record.final and record.final != record.initial and record.observed["outcome"] == "mismatch"
    assert record.repro.get("load") == "load.py" and (out / "load.py").exists()
    assert not (out / ".steps").exists()


def test_a_user_case_is_not_shrunk_but_still_reproduced(tmp_path, cli):
    """A factory is opaque: the shrink says so, runs the cell once, and writes a reproduction that calls the factory."""
    art, res = tmp_path / "art", tmp_path / "res"
    assert cli("save", "--out", str(art), "--cases", str(_empty_corpus(tmp_path)), "--user-case", "harness.examples:tagger",
               "--formats", "full_model", "-q").returncode == 0
    assert cli("load", "--artifacts", str(art), "--results", str(res), "--format", "full_model", "-q").returncode in (0, 1)
    lines = [json.loads(line) for p in res.glob("*.jsonl") for line in p.read_text().splitlines()]
    failing = next(r for r in lines if r["outcome"] == "error" and r["load"].get("weights_only") == "true")
    key = f"{failing['source']}|{failing['case']}|full_model|{LoadOptions.from_dict(failing['load']).id}"
    done = cli("shrink", "--results", str(res), "--cell", key, "--out", str(tmp_path / "out"), "-q")
    assert done.returncode == 0, done.stderr
    record = ShrinkRecord.from_dict(json.loads((tmp_path / "out" / "shrink.json").read_text()))
    assert record.status == "opaque" and "harness.examples:tagger" in record.opaque
    assert record.steps == 1
    assert "not shrunk" in done.stderr
    assert (tmp_path / "out" / "spec.json").exists()
    assert "harness.examples" in (tmp_path / "out" / "save.py").read_text() or "problem" in record.repro


def _empty_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "none.json"
    path.write_text(json.dumps({"cases": []}))
    return path
