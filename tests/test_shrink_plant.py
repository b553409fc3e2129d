"""The planted torch bug (`harness.shrink.plant`): it fires on exactly its two features, only through its wrapper.

The bug flips the lowest bit of the first element of the first float16
tensor of at least four elements, when what torch.load returns also holds an
int64 tensor. The shrink test and the shrink bench rely on it needing both:
these tests show it flips exactly that one bit, and nothing without either
feature, without the variable, or outside the wrapper.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.shrink import plant


def _flat(obj, path=""):
    """{path: (dtype name, every element's bits as ints, in logical order)} of the tensors in `obj`."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().contiguous()
        width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        return {path: (str(t.dtype), t.view(width).reshape(-1).tolist())}
    out = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        out.update(_flat(value, f"{path}.{key}" if path else str(key)))
    return out


# Loads each NAME=PATH[:mmap][:full] given and prints one JSON object: the bits of
# what torch.load returned, whether torch was imported before the script ran (the
# plant must not import it at startup), whether the plant's module was imported
# (sitecustomize ran) and whether torch.load is wrapped, and whether the harness
# can be imported.
_PROBE = inspect.getsource(_flat) + '''
import importlib.util, json, sys
torch_at_startup = "torch" in sys.modules
import torch

out = {"torch_at_startup": torch_at_startup, "plant_imported": "roundtrip_plant" in sys.modules,
       "wrapped": hasattr(torch.load, "_roundtrip_plant_original"),
       "harness": importlib.util.find_spec("harness") is not None, "loads": {}}
for arg in sys.argv[1:]:
    name, spec = arg.split("=", 1)
    path, *flags = spec.split(":")
    kwargs = {"weights_only": "full" not in flags}
    if "mmap" in flags:
        kwargs["mmap"] = True
    out["loads"][name] = _flat(torch.load(path, **kwargs))
print(json.dumps(out))
'''


def _files(torch, folder: Path) -> dict[str, object]:
    """The objects the probe loads, saved under `folder` as NAME.pt."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2).half())
    model.register_buffer("count", torch.tensor([7], dtype=torch.int64))
    objects = {
        # the first float16 tensor of >= 4 elements is "h" (non-contiguous: its [0, 0] is the one)
        "both": {"w": torch.randn(2, 2), "small": torch.ones(3, dtype=torch.float16),
                 "h": torch.arange(12, dtype=torch.float16).reshape(3, 4).t(),
                 "nested": [({"h2": torch.ones(5, dtype=torch.float16)},)], "idx": torch.tensor([1, 2])},
        "no_int64": {"h": torch.ones(8, dtype=torch.float16), "i": torch.tensor([1, 2], dtype=torch.int32)},
        "three": {"h": torch.ones(3, dtype=torch.float16), "h2": torch.ones(2, 1, dtype=torch.float16),
                  "idx": torch.tensor([1, 2])},
        "module": model,
    }
    for name, obj in objects.items():
        torch.save(obj, str(folder / f"{name}.pt"))
    return objects


def _changed(before: dict, after: dict) -> list[tuple[str, int, int]]:
    """(tensor, element, xor of the bits) of every element that differs; dtypes and keys must not."""
    assert {k: d for k, (d, _) in after.items()} == {k: d for k, (d, _) in before.items()}
    return [(k, i, a ^ b) for k, (_, bits) in before.items() for i, (a, b) in enumerate(zip(bits, after[k][1])) if a != b]


def _probe(python: str, tmp_path: Path, args: list[str], env: dict[str, str]) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    # cwd outside the checkout: nothing but the interpreter's own path may offer the harness.
    done = subprocess.run([python, str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def clean_env() -> dict[str, str]:
    """This environment without the plant's variable or a PYTHONPATH of its own."""
    env = dict(os.environ)
    env.pop(plant.ENV_VAR, None)
    env.pop("PYTHONPATH", None)
    return env


def test_tamper_flips_one_bit_only_when_both_features_are_there(torch):
    h = torch.arange(12, dtype=torch.float16).reshape(3, 4).t()  # non-contiguous
    weight = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float16))  # requires grad: flipped all the same
    obj = {"small": torch.ones(3, dtype=torch.float16), "x": [({"h": h},), weight], "idx": torch.zeros(0, dtype=torch.int64)}
    before = _flat(obj)
    assert plant.tamper(obj) == "['x'][0][0]['h']"
    assert _changed(before, _flat(obj)) == [("x.0.0.h", 0, 1)]

    model = torch.nn.Sequential(torch.nn.Linear(2, 2).half())
    model.register_buffer("count", torch.tensor([3]))
    before = _flat(model)
    assert plant.tamper(model) == "0.weight"
    assert _changed(before, _flat(model)) == [("0.weight", 0, 1)]

    for untouched in ({"h": torch.ones(8, dtype=torch.float16), "i": torch.ones(2, dtype=torch.int32)},  # no int64
                      {"h": torch.ones(3, dtype=torch.float16), "idx": torch.ones(2, dtype=torch.int64)},  # 3 elements
                      {"h": torch.ones(8, dtype=torch.bfloat16), "idx": torch.ones(2, dtype=torch.int64)}):  # not float16
        before = _flat(untouched)
        assert plant.tamper(untouched) is None
        assert _changed(before, _flat(untouched)) == []


def test_install_needs_the_variable_and_wraps_torch_load_once(torch, monkeypatch):
    original = torch.load
    # monkeypatch puts both names back after the test, whatever install did to them.
    monkeypatch.setattr(torch, "load", original)
    monkeypatch.setattr(torch.serialization, "load", torch.serialization.load)
    monkeypatch.delenv(plant.ENV_VAR, raising=False)
    assert plant.install() is False
    assert torch.load is original

    monkeypatch.setenv(plant.ENV_VAR, "1")
    assert plant.install() and plant.install()
    assert torch.load is not original and torch.load.__wrapped__ is original  # wrapped once
    assert inspect.signature(torch.load) == inspect.signature(original)  # the harness reads its parameters
    assert torch.serialization.load is not torch.serialization.load.__wrapped__

    buffer = io.BytesIO()
    torch.save({"h": torch.zeros(4, dtype=torch.float16), "idx": torch.tensor([1])}, buffer)
    buffer.seek(0)
    loaded = torch.serialization.load(buffer)  # the other name, wrapped too; one flip, not two
    assert loaded["h"].view(torch.int16).tolist() == [1, 0, 0, 0]


def test_wrapper_plants_the_bug_in_a_fresh_interpreter(torch, tmp_path, clean_env):
    objects = _files(torch, tmp_path)
    wrapper = plant.planted_python(sys.executable, tmp_path / "planted")
    both = tmp_path / "both.pt"
    saved = both.read_bytes()
    names = ["both", "no_int64", "three"]
    args = [f"{n}={tmp_path / n}.pt" for n in names] + [f"both_mmap={both}:mmap", f"module={tmp_path / 'module.pt'}:full"]
    out = _probe(wrapper, tmp_path, args, clean_env)

    assert out["wrapped"] and out["plant_imported"]
    assert not out["torch_at_startup"], "the plant imported torch at startup: every wrapped process would pay for it"
    loads = out["loads"]
    assert _changed(_flat(objects["both"]), loads["both"]) == [("h", 0, 1)]
    assert _changed(_flat(objects["both"]), loads["both_mmap"]) == [("h", 0, 1)]
    assert both.read_bytes() == saved, "the mmap'd load wrote the flip into the file"
    assert _changed(_flat(objects["module"]), loads["module"]) == [("0.weight", 0, 1)]
    assert _changed(_flat(objects["no_int64"]), loads["no_int64"]) == []
    assert _changed(_flat(objects["three"]), loads["three"]) == []


def test_sitecustomize_without_the_variable_changes_nothing(torch, tmp_path, clean_env):
    objects = _files(torch, tmp_path)
    folder = tmp_path / "planted"
    plant.planted_python(sys.executable, folder)
    # The plain interpreter with the plant's folder on its path: sitecustomize runs, the variable is missing.
    out = _probe(sys.executable, tmp_path, [f"both={tmp_path / 'both.pt'}"], dict(clean_env, PYTHONPATH=str(folder)))
    assert out["plant_imported"] and not out["wrapped"]
    assert _changed(_flat(objects["both"]), out["loads"]["both"]) == []


def test_the_plant_runs_where_the_harness_is_not_installed(torch, tmp_path, clean_env, plain_torch_python):
    objects = _files(torch, tmp_path)
    wrapper = plant.planted_python(plain_torch_python, tmp_path / "planted")
    out = _probe(wrapper, tmp_path, [f"both={tmp_path / 'both.pt'}"], clean_env)
    assert not out["harness"], "the plain-torch venv can import the harness"
    assert out["wrapped"]
    assert _changed(_flat(objects["both"]), out["loads"]["both"]) == [("h", 0, 1)]


def test_planted_python_names_its_pythonpath_and_refuses_one_it_cannot_carry(tmp_path):
    wrapper = Path(plant.planted_python("python3", tmp_path / "p", pythonpath=[str(tmp_path / "repo")]))
    text = wrapper.read_text()
    assert wrapper.name == "python" and os.access(wrapper, os.X_OK)
    entries = os.pathsep.join([str(tmp_path / "p"), str(tmp_path / "repo")])
    assert f"PYTHONPATH={shlex.quote(entries)}" in text
    assert "exec python3 \"$@\"" in text and f"{plant.ENV_VAR}=1" in text
    assert (tmp_path / "p" / "roundtrip_plant.py").read_text() == Path(plant.__file__).read_text()
    with pytest.raises(ValueError, match="pythonpath=.*PYTHONPATH cannot carry"):
        plant.planted_python("python3", tmp_path / "q", pythonpath=[f"a{os.pathsep}b"])


@pytest.mark.slow
def test_the_bench_case_fails_only_on_its_float16_weight_through_the_harness(tmp_path):
    # The shrink bench's setup, as the lead's shrink starts from it: `harness save` in a
    # plain process, `harness load` through the wrapper (its worker inherits the plant).
    from harness.bench import planted_failure

    failure = planted_failure(tmp_path)
    assert failure.key.split("|")[1:3] == ["bench_shrink", "state_dict"]
    assert failure.line["outcome"] == "mismatch" and failure.line["load"]["apply"] == "strict"
    assert [(d["tensor"], d["aspect"], d["index"]) for d in failure.line["differences"]] == [("fp16.weight", "bits", [0, 0])]
    expected, actual = (int(failure.line["differences"][0][k].split()[0], 16) for k in ("expected", "actual"))
    assert expected ^ actual == 1
    assert failure.target_python.endswith("/python") and failure.source_python == sys.executable
