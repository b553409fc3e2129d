"""The golden corpus: packed reproducibly, verified byte for byte, small enough to keep."""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import REPO

from harness.golden import golden_labels, pack, unpack
from harness.runtime.env import parse_label
from harness.runtime.errors import InputError

LABEL = "torch-1.4.0-py3.8-cpu"


def _saved_env(root, label=LABEL):
    env = root / label
    (env / "simple_net" / "state_dict").mkdir(parents=True)
    (env / "gen-7-0" / "state_dict").mkdir(parents=True)
    (env / "env.json").write_text(json.dumps({"label": label, "torch": "1.4.0"}))
    for case, origin in (("simple_net", "curated"), ("gen-7-0", "generated")):
        (env / case / "reference.bin").write_bytes(b"\x00\x01" * 8)
        (env / case / "state_dict" / "model.pt").write_bytes(b"PK-not-really" + case.encode())
        manifest = {"case": case, "format": "state_dict", "source": {"label": label}, "spec": {"origin": origin}}
        (env / case / "state_dict" / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_pack_keeps_curated_cases_relabelled_and_unpack_restores_them(tmp_path):
    golden = tmp_path / "golden"
    index = pack(_saved_env(tmp_path / "art"), golden, [LABEL])
    assert list(index["archives"]) == [f"golden-{LABEL}.tar.xz"]
    assert golden_labels(golden) == [f"golden-{LABEL}"]
    labels = unpack(golden, tmp_path / "artifacts")
    env = tmp_path / "artifacts" / f"golden-{LABEL}"
    assert labels == [f"golden-{LABEL}"]
    assert json.loads((env / "env.json").read_text())["label"] == f"golden-{LABEL}"
    manifest = json.loads((env / "simple_net" / "state_dict" / "manifest.json").read_text())
    assert manifest["source"]["label"] == f"golden-{LABEL}"
    assert (env / "simple_net" / "state_dict" / "model.pt").read_bytes() == b"PK-not-reallysimple_net"
    assert not (env / "gen-7-0").exists()  # generated cases depend on the run that drew them
    # a golden label still says which release saved it
    assert parse_label(f"golden-{LABEL}")["torch"] == "1.4.0"


def test_packing_is_reproducible(tmp_path):
    art = _saved_env(tmp_path / "art")
    first = pack(art, tmp_path / "g1", [LABEL])
    second = pack(art, tmp_path / "g2", [LABEL])
    assert first == second
    name = f"golden-{LABEL}.tar.xz"
    assert (tmp_path / "g1" / name).read_bytes() == (tmp_path / "g2" / name).read_bytes()


def test_a_golden_archive_with_other_bytes_is_a_hard_error(tmp_path):
    golden = tmp_path / "golden"
    pack(_saved_env(tmp_path / "art"), golden, [LABEL])
    archive = golden / f"golden-{LABEL}.tar.xz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="bytes no longer match"):
        unpack(golden, tmp_path / "artifacts")


def test_a_file_that_no_longer_matches_its_record_is_a_hard_error(tmp_path):
    golden = tmp_path / "golden"
    pack(_saved_env(tmp_path / "art"), golden, [LABEL])
    index = json.loads((golden / "index.json").read_text())
    entry = index["archives"][f"golden-{LABEL}.tar.xz"]
    entry["files"][f"golden-{LABEL}/simple_net/state_dict/model.pt"] = "0" * 64
    (golden / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="model.pt no longer matches"):
        unpack(golden, tmp_path / "artifacts")


def test_unpack_refuses_members_outside_the_record(tmp_path):
    golden = tmp_path / "golden"
    pack(_saved_env(tmp_path / "art"), golden, [LABEL])
    archive = golden / f"golden-{LABEL}.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(tmp_path / "art" / LABEL / "env.json", arcname="../escape.json")
    index = json.loads((golden / "index.json").read_text())
    import hashlib

    index["archives"][archive.name]["sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
    (golden / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="unexpected member"):
        unpack(golden, tmp_path / "artifacts")
    assert not (tmp_path / "escape.json").exists()


def test_the_repository_corpus_is_small_intact_and_six_years_wide(tmp_path):
    golden = REPO / "golden"
    index = json.loads((golden / "index.json").read_text())
    size = sum(p.stat().st_size for p in golden.iterdir())
    assert size <= 10 * 2**20, f"golden/ is {size / 2**20:.1f} MiB; the budget is 10"
    labels = unpack(golden, tmp_path / "artifacts")  # verifies every byte
    torches = {parse_label(label)["torch"] for label in labels}
    assert {"1.4.0", "1.8.1", "1.13.1", "2.0.1", "2.4.1", "2.8.0"} <= torches
    assert {parse_label(label)["device"] for label in labels} == {"cpu", "cuda-emulated"}
    assert len(index["archives"]) == len(labels)
