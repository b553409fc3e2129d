"""A user's refactor across two torch releases: ``save --user-case`` old code, ``load --load-as --migrate`` new code.

harness.examples' TaggerV1 is saved under torch 2.4.1 and under this suite's
torch, and each env loads both envs' files into TaggerV2 (its refactor: qkv
split, weight_norm parametrized, a buffer made non-persistent, head renamed,
a gate added), so both directions are covered. Loading without a migration
must say what no longer fits (``model_code_changed``, with the proposed
remap on the line); the harness's remap and the example's migration must
load exactly; a moved class mapped with ``--rename-class`` must load
exactly; and migrations broken in one place (a key dropped, a square
weight transposed, one element changed) must be mismatches naming that
tensor and its first differing element.

The two-env tests are slow (about two minutes); the example's own checks
at the end run in this process. The torch 2.4.1 env is a throwaway venv built the way tests/test_old_release.py
builds its own (uv's cache makes that seconds after the first time), or the
interpreter ``TORCH_ROUNDTRIP_OTHER_PYTHON`` names (torch 2.4.1 with this
checkout installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_results, torch_venv

OTHER_TORCH = "2.4.1"
OTHER_PYTHON = "3.11"
OTHER = f"torch-{OTHER_TORCH}-py{OTHER_PYTHON}-cpu"
V1, V2, MIG = "harness.examples:tagger_v1", "harness.examples:tagger_v2", "harness.examples:migrate_tagger"
CASE = "user-harness.examples.tagger_v1"
FORMATS = "state_dict,safetensors,full_model"
#: TaggerV1's class, moved (re-exported) to a module of the user's
MOVED = "harness.examples.TaggerV1=tagger_moved.TaggerV1"

#: Modules of the user's, on PYTHONPATH in both envs: where TaggerV1 moved to,
#: and migrations broken in one place each.
_USER_MODULES = {
    "tagger_moved.py": "from harness.examples import TaggerV1  # noqa: F401\n",
    "broken_migrations.py": '''
from harness.examples import migrate_tagger


def drop_key(obj):
    out = migrate_tagger(obj)
    del out["k.bias"]
    return out


def transpose_square(obj):
    out = migrate_tagger(obj)
    out["q.weight"] = out["q.weight"].t().contiguous()
    return out


def change_element(obj):
    out = migrate_tagger(obj)
    weight = out["classifier.weight"].clone()
    weight[1, 2] += 1
    out["classifier.weight"] = weight
    return out
''',
}
#: broken migration -> the tensor it breaks
BROKEN = {"drop_key": "k.bias", "transpose_square": "q.weight", "change_element": "classifier.weight"}


@pytest.fixture(scope="module")
def other_python(tmp_path_factory) -> str:
    """The Python of an env holding torch 2.4.1 and this checkout."""
    given = os.environ.get("TORCH_ROUNDTRIP_OTHER_PYTHON")
    if given:
        return given
    return torch_venv(tmp_path_factory, "other", OTHER_PYTHON, OTHER_TORCH)


def _phase(python: str, *args: str, work: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_ROUNDTRIP_DEBUG")}
    env["TORCH_ROUNDTRIP_PLAIN"] = "1"
    env["PYTHONPATH"] = str(work / "user")  # the user's modules; cwd outside the checkout: `import harness` is the installed copy
    done = subprocess.run([python, "-m", "harness", *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), f"{python} {args[0]}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def work(other_python, tmp_path_factory, torch):
    """Both envs save TaggerV1; both load everything into TaggerV2 with the example's migration."""
    work = tmp_path_factory.mktemp("refactor")
    (work / "user").mkdir()
    for name, text in _USER_MODULES.items():
        (work / "user" / name).write_text(text)
    (work / "none.json").write_text('{"cases": []}')  # the user case alone
    here = sys.executable
    for python, expect in ((other_python, ["--expect-torch", OTHER_TORCH]), (here, [])):
        _phase(python, "save", "--out", "A", "--cases", "none.json", "--user-case", V1, "--formats", FORMATS,
               "--device", "cpu", "-q", *expect, work=work)
    for python, expect in ((other_python, ["--expect-torch", OTHER_TORCH]), (here, [])):
        _phase(python, "load", "--artifacts", "A", "--results", "R", "--load-as", f"{V1}={V2}", "--migrate", f"{V1}={MIG}",
               "--rename-class", MOVED, "-q", *expect, work=work)
    return work


@pytest.fixture(scope="module")
def rows(work):
    return read_results(work / "R")


def _directions(cells: list) -> set:
    return {(r["source"].split("-py")[0], r["target"].split("-py")[0]) for r in cells}


@pytest.mark.slow
def test_both_envs_saved_and_loaded_in_both_directions(rows):
    user = [r for r in rows if r["case"] == CASE and r["load"].get("migrate")]
    assert {"torch-2.4.1", "torch-2.15.0"} <= {s for s, _ in _directions(user)}
    assert {("torch-2.4.1", "torch-2.15.0"), ("torch-2.15.0", "torch-2.4.1")} <= _directions(user)


@pytest.mark.slow
def test_loads_into_the_new_code_without_a_migration_say_what_no_longer_fits(rows):
    plain = [r for r in rows if r["case"] == CASE and r["load"].get("load_as") == V2 and not r["load"].get("migrate")
             and "source" not in r["load"] and r["load"].get("apply") in ("strict", "model")]
    assert plain and {r["format"] for r in plain} == {"state_dict", "safetensors"}
    assert len(_directions(plain)) == 4
    for r in plain:
        assert r["outcome"] == "error" and r["load_as"] == V2, (r["load"], r["detail"])
        assert r["diagnosis"]["code"] == "model_code_changed", r["diagnosis"]
        assert "head.weight -> classifier.weight" in r["diagnosis"]["fix"]
        entries = {(e["kind"], tuple(e["old"]), tuple(e["new"]), e.get("dim")) for e in r["remap"]["entries"]}
        assert {
            ("split", ("qkv.weight",), ("q.weight", "k.weight", "v.weight"), 0),
            ("split", ("qkv.bias",), ("q.bias", "k.bias", "v.bias"), 0),
            ("parametrization", ("proj.weight_g",), ("proj.parametrizations.weight.original0",), None),
            ("parametrization", ("proj.weight_v",), ("proj.parametrizations.weight.original1",), None),
            ("rename", ("head.weight",), ("classifier.weight",), None),
            ("rename", ("head.bias",), ("classifier.bias",), None),
            ("dropped", ("scale",), (), None),
            ("added", (), ("gate",), None),
        } == entries, r["remap"]
        assert r["remap"]["found_by"] == "names" and r["remap"]["same"] == 2  # embed.weight, proj.bias


@pytest.mark.slow
def test_the_example_migration_loads_exactly_in_both_directions(rows):
    cells = [r for r in rows if r["case"] == CASE and r["load"].get("migrate") == MIG]
    assert {r["format"] for r in cells} == {"state_dict", "safetensors"}
    assert len(_directions(cells)) == 4
    assert not [r for r in rows if r["case"] == CASE and r["load"].get("migrate") == "remap"], "--migrate replaces the remap cell"
    for r in cells:
        assert r["outcome"] == "pass" and r["detail"].startswith("exact"), (r["source"], r["target"], r["detail"], r["differences"])
        # the user's migration put every saved byte where the remap says: that confirms the remap
        assert r["load_as"] == V2 and r["remap"]["found_by"] == "digests"
        # other code computes the outputs: exact or drift, never judged
        assert r["forward"]["status"] in ("exact", "drift"), r["forward"]


@pytest.mark.slow
def test_without_a_migration_the_proposed_remap_is_applied_and_loads_exactly(work):
    results = work / "R-remap"
    _phase(sys.executable, "load", "--artifacts", "A", "--results", str(results), "--source", OTHER,
           "--load-as", f"{V1}={V2}", "-q", work=work)
    cells = [r for r in read_results(results) if r["case"] == CASE and r["load"].get("migrate")]
    assert {(r["format"], r["load"]["migrate"]) for r in cells} == {("state_dict", "remap"), ("safetensors", "remap")}
    for r in cells:
        assert r["outcome"] == "pass" and r["detail"].startswith("exact"), (r["detail"], r["differences"])
        # its bytes went where the remap itself put them: a fit, not a confirmation
        assert r["remap"]["found_by"] == "names"


@pytest.mark.slow
def test_a_moved_class_mapped_with_rename_class_loads_exactly(rows):
    cells = [r for r in rows if r["case"] == CASE and r["load"].get("rename_class")]
    assert cells and {r["format"] for r in cells} == {"full_model"}
    assert len(_directions(cells)) == 4
    for r in cells:
        assert r["load"]["rename_class"] == MOVED.replace("=", "->")
        assert r["outcome"] == "pass", (r["source"], r["target"], r["detail"])


@pytest.mark.slow
@pytest.mark.parametrize(("broken", "tensor"), sorted(BROKEN.items()))
def test_a_migration_broken_in_one_place_is_a_mismatch_naming_the_tensor(work, broken, tensor):
    results = work / f"R-{broken}"
    done = _phase(sys.executable, "load", "--artifacts", "A", "--results", str(results), "--source", OTHER,
                  "--format", "state_dict", "--load-as", f"{V1}={V2}", "--migrate", f"{V1}=broken_migrations:{broken}",
                  "-q", work=work)
    assert done.returncode == 1, done.stderr[-2000:]
    cells = [r for r in read_results(results) if r["load"].get("migrate") == f"broken_migrations:{broken}"]
    assert len(cells) == 1
    r = cells[0]
    assert r["outcome"] == "mismatch", (r["detail"], r.get("error"))
    named = [d for d in r["differences"] if d["tensor"] == tensor]
    assert named, r["differences"]
    assert any(d.get("index") is not None for d in named), named  # the first differing element
    assert tensor in r["detail"] and r["remap"]["found_by"] == "names"  # not confirmed by digests
    others = {d["tensor"] for d in r["differences"]} - {tensor}
    assert not others, others


# -- the example itself, in this process ---------------------------------------------


def test_the_example_migration_makes_v2_the_model_v1_was(torch):
    from harness.examples import migrate_tagger, tagger_v1, tagger_v2

    torch.manual_seed(0)
    old, tokens = tagger_v1()
    saved = old.state_dict()
    keys = list(saved)
    new, same_tokens = tagger_v2()
    migrated = migrate_tagger(saved)
    assert list(saved) == keys  # its input is left alone
    new.load_state_dict(migrated, strict=True)
    assert torch.equal(tokens, same_tokens)
    assert torch.equal(new.q.weight, saved["qkv.weight"][:8]) and torch.equal(new.v.bias, saved["qkv.bias"][16:])
    assert torch.equal(new.proj.parametrizations.weight.original1, saved["proj.weight_v"])
    assert torch.equal(new.classifier.weight, saved["head.weight"]) and torch.equal(new.scale, saved["scale"])
    old.eval()
    new.eval()
    with torch.no_grad():
        assert (old(tokens) - new(tokens)).abs().max() < 1e-5


def test_tagger_v2_says_why_where_torch_lacks_parametrized_weight_norm(torch, monkeypatch):
    from harness.examples import tagger_v1, tagger_v2

    monkeypatch.delattr(torch.nn.utils.parametrizations, "weight_norm")
    with pytest.raises(RuntimeError, match="needs torch.nn.utils.parametrizations.weight_norm, which torch .* lacks"):
        tagger_v2()
    tagger_v1()  # the old code needs only the legacy weight_norm
