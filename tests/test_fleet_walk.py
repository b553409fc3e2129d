"""Which files a fleet covers: globs, symlinks kept in the tree, files never opened, shards."""

from __future__ import annotations

import os

import pytest

from harness.check.walk import glob_regex, in_shard, parse_shard, walk
from harness.runtime.errors import InputError


def _tree(root):
    for rel in ("a.pt", "b.txt", "sub/c.pt", "sub/deep/d.ckpt", "build/e.pt", ".git/objects/x", "sp ace/ü.pt"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def _files(paths, **kw):
    return {f.file: f.skip for f in walk([str(p) for p in paths], **kw)}


def test_walk_lists_every_file_below_the_root_by_its_fleet_name_and_skips_vcs(tmp_path):
    root = _tree(tmp_path / "fleet")
    found = _files([root])
    prefix = str(root) + "/"
    assert sorted(f[len(prefix):] for f in found) == ["a.pt", "b.txt", "build/e.pt", "sp ace/ü.pt", "sub/c.pt", "sub/deep/d.ckpt"]
    assert all(skip == "" for skip in found.values())


def test_walk_order_is_stable_and_names_are_relative_to_the_root_as_given(tmp_path, monkeypatch):
    _tree(tmp_path / "fleet")
    monkeypatch.chdir(tmp_path)
    first = [f.file for f in walk(["fleet/"])]
    assert first == [f.file for f in walk(["fleet"])]
    assert first[0] == "fleet/a.pt" and "fleet/sub/deep/d.ckpt" in first


def test_include_and_exclude_globs(tmp_path):
    root = _tree(tmp_path / "fleet")
    rel = lambda found: sorted(f[len(str(root)) + 1:] for f in found)  # noqa: E731
    assert rel(_files([root], include=["*.pt"])) == ["a.pt", "build/e.pt", "sp ace/ü.pt", "sub/c.pt"]
    assert rel(_files([root], include=["sub/**"])) == ["sub/c.pt", "sub/deep/d.ckpt"]
    assert rel(_files([root], include=["*.pt"], exclude=["build"])) == ["a.pt", "sp ace/ü.pt", "sub/c.pt"]
    assert rel(_files([root], exclude=["**/deep/*", "*.txt"])) == ["a.pt", "build/e.pt", "sp ace/ü.pt", "sub/c.pt"]
    # Naming a default-skipped folder in --include walks it.
    assert "x" in " ".join(_files([root], include=[".git/**"]))


def test_glob_rules():
    assert glob_regex("*.pt").match("a/b/c.pt") and not glob_regex("*.pt").match("a/b/c.pth")
    assert glob_regex("runs/*/x.pt").match("runs/1/x.pt") and not glob_regex("runs/*/x.pt").match("runs/1/2/x.pt")
    assert glob_regex("runs/**/x.pt").match("runs/1/2/x.pt") and glob_regex("runs/**/x.pt").match("runs/x.pt")
    assert glob_regex("m?.pt").match("m1.pt") and not glob_regex("m?.pt").match("m12.pt")
    assert glob_regex("m[0-9].pt").match("m5.pt") and glob_regex("m[!0-9].pt").match("mx.pt")
    for bad in ("", "/abs/*.pt", "m[0-9.pt"):
        with pytest.raises(InputError):
            glob_regex(bad)


def test_symlinks_never_lead_out_of_the_tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pt").write_bytes(b"x")
    root = tmp_path / "fleet"
    (root / "real").mkdir(parents=True)
    (root / "real" / "m.pt").write_bytes(b"x")
    os.symlink(outside / "secret.pt", root / "out.pt")
    os.symlink(outside, root / "outdir")
    os.symlink(root / "real" / "m.pt", root / "in.pt")
    os.symlink(root / "real", root / "indir")
    os.symlink(root / "nowhere.pt", root / "dangling.pt")
    os.mkfifo(root / "pipe.pt")
    found = {f[len(str(root)) + 1:]: skip for f, skip in _files([root]).items()}
    assert found["real/m.pt"] == "" and found["in.pt"] == ""
    assert "out of the tree" in found["out.pt"] and "out of the tree" in found["outdir"]
    assert found["dangling.pt"] == "a dangling symlink"
    assert "not a regular file" in found["pipe.pt"]
    assert "indir/m.pt" not in found and "outdir/secret.pt" not in found  # folder links are not descended
    assert not any("secret" in name for name in found)


def test_a_missing_path_is_one_error_naming_it(tmp_path):
    with pytest.raises(InputError, match="no such file or folder: .*nope"):
        list(walk([str(tmp_path / "nope")]))


def test_shards_split_a_fleet_disjointly_and_completely(tmp_path):
    names = [f"fleet/run{i}/model-{i}.pt" for i in range(300)]
    shards = [[n for n in names if in_shard(n, (i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(names)
    assert all(60 < len(s) < 140 for s in shards)  # spread, not all in one
    assert in_shard("fleet/a.pt", (1, 1))
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0", ""):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_a_file_given_directly_is_its_own_root(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    found = list(walk([str(tmp_path / "m.pt")]))
    assert [(f.file, f.root, f.skip) for f in found] == [(str(tmp_path / "m.pt"), str(tmp_path / "m.pt"), "")]
