"""The golden corpus: files saved by old releases, kept in the repository.

Every default ``nox -s roundtrip`` loads them in every env as extra sources,
so each run checks files from six years of torch without installing the old
releases. ``nox -s golden`` regenerates the corpus: the `history` matrix
saves the curated cases, and `pack` keeps them as one ``.tar.xz`` per env
under ``golden/`` (byte-for-byte reproducible archives) with
``golden/index.json``, which records the SHA-256 of every archive and of
every file in it.

A golden source's label is its saving env's label with the ``golden-``
prefix (``golden-torch-1.4.0-py3.8-cpu``), so its cells never collide with
a live env of the same release. `unpack` refuses an archive or a file whose
bytes no longer match the index: a damaged golden file is a hard error,
never a pass.

Standard library only: noxfile.py imports this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from harness.runtime.env import GOLDEN_PREFIX
from harness.runtime.errors import InputError
from harness.runtime.fileio import replace_dir, write_text

__all__ = ["GOLDEN_SCHEMA", "golden_labels", "pack", "unpack"]

GOLDEN_SCHEMA = 1
INDEX = "index.json"
REGENERATE = "nox -s golden"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _relabel(data: bytes, label: str) -> bytes:
    """env.json or manifest.json with the saving env's label made a golden one."""
    doc = json.loads(data)
    holder = doc.get("source", doc)
    holder["label"] = label
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _env_files(env_dir: Path, label: str) -> dict[str, bytes]:
    """The curated cases of one saved env, relabelled, by path inside the archive."""
    files = {f"{label}/env.json": _relabel((env_dir / "env.json").read_bytes(), label)}
    for manifest in sorted(env_dir.glob("*/*/manifest.json")):
        doc = json.loads(manifest.read_bytes())
        if doc.get("spec", {}).get("origin") != "curated":
            continue  # generated and user cases depend on the run that drew them
        case_dir = manifest.parent.parent
        files[f"{label}/{case_dir.name}/reference.bin"] = (case_dir / "reference.bin").read_bytes()
        for path in sorted(manifest.parent.iterdir()):
            rel = f"{label}/{case_dir.name}/{manifest.parent.name}/{path.name}"
            data = path.read_bytes()
            files[rel] = _relabel(data, label) if path.name == "manifest.json" else data
    return files


def _archive(files: dict[str, bytes]) -> bytes:
    # Fixed order, times and owners: the same files make the same bytes.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def pack(artifacts: Path, out: Path, labels: list[str]) -> dict[str, Any]:
    """Keep the curated cases the envs `labels` saved under `artifacts` as the golden corpus in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"schema": GOLDEN_SCHEMA, "regenerate": REGENERATE, "archives": {}}
    for old in out.glob("*.tar.xz"):
        old.unlink()
    for label in labels:
        env_dir = artifacts / label
        if not (env_dir / "env.json").is_file():
            raise InputError(f"{env_dir}: no saved env here (did save({label}) run?)")
        golden = GOLDEN_PREFIX + label
        files = _env_files(env_dir, golden)
        data = _archive(files)
        (out / f"{golden}.tar.xz").write_bytes(data)
        index["archives"][f"{golden}.tar.xz"] = {
            "label": golden, "sha256": _sha256(data), "bytes": len(data),
            "files": {name: _sha256(body) for name, body in sorted(files.items())},
        }
    write_text(out / INDEX, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


def _index(golden: Path) -> dict[str, Any]:
    path = golden / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the golden index ({e}); regenerate it with {REGENERATE}") from None
    if index.get("schema") != GOLDEN_SCHEMA:
        raise InputError(f"{path}: schema {index.get('schema')!r}, this harness reads {GOLDEN_SCHEMA}")
    return index


def golden_labels(golden: Path) -> list[str]:
    """The source labels of the golden corpus in `golden` (none when there is no corpus)."""
    if not (golden / INDEX).exists():
        return []
    return sorted(entry["label"] for entry in _index(golden)["archives"].values())


def unpack(golden: Path, artifacts: Path) -> list[str]:
    """Verify every golden archive and place its env under `artifacts`; returns the labels.

    Raises InputError, naming the file, when an archive or a file in it does
    not have the bytes the index records.
    """
    index = _index(golden)
    labels = []
    for name, entry in sorted(index["archives"].items()):
        path = golden / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"{path}: golden archive missing ({e.strerror}); restore it or regenerate with {REGENERATE}") from None
        if _sha256(data) != entry["sha256"]:
            raise InputError(f"{path}: its bytes no longer match {golden / INDEX} (sha256 {_sha256(data)[:16]}, "
                             f"recorded {entry['sha256'][:16]}); restore it or regenerate with {REGENERATE}")
        artifacts.mkdir(parents=True, exist_ok=True)
        # Beside its final place (one filesystem, so the move is a rename);
        # a dot name, so no reader takes it for an env.
        with tempfile.TemporaryDirectory(dir=artifacts, prefix=".golden-") as tmp:
            _extract(data, Path(tmp), entry, path)
            replace_dir(Path(tmp) / entry["label"], artifacts / entry["label"])
        labels.append(entry["label"])
    return labels


def _extract(data: bytes, into: Path, entry: dict[str, Any], where: Path) -> None:
    want: dict[str, str] = entry["files"]
    seen = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or name.startswith("/") or ".." in Path(name).parts or name not in want:
                raise InputError(f"{where}: unexpected member {name!r}; regenerate it with {REGENERATE}")
            f = tar.extractfile(member)
            body = f.read() if f is not None else b""
            if _sha256(body) != want[name]:
                raise InputError(f"{where}: {name} no longer matches {INDEX}; regenerate it with {REGENERATE}")
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            seen.add(name)
    missing = sorted(set(want) - seen)
    if missing:
        raise InputError(f"{where}: {len(missing)} recorded files are missing (first: {missing[0]}); regenerate it with {REGENERATE}")
