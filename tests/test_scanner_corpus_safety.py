"""The scanner corpus (`tests/scanner_corpus.py`) is written safely and reproducibly.

Only the generator is tested here: what ``check`` says about the files
belongs to the scanner's own tests. The corpus is generated with every
loader it could misuse (``pickle.load``/``loads``/``Unpickler``,
``torch.load``, ``torch.jit.load``, ``numpy.load``) replaced by one that
fails the test, and the marker that every payload would create must never
appear.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.scanner_corpus import (
    BENIGN_COUNT,
    CONTAINERS,
    MALICIOUS_COUNT,
    PEERS,
    CorpusFile,
    write_scanner_corpus,
)

pytestmark = pytest.mark.slow  # torch.save, TorchScript: about 15 s per generation


@dataclass
class Generated:
    root: Path
    directory: Path
    marker: Path
    files: list[CorpusFile]
    digests: dict[str, str]


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the corpus generator must never load or unpickle anything")


class _RefusingUnpickler(pickle.Unpickler):
    """Still a class (modules imported meanwhile may subclass pickle.Unpickler), but it never loads."""

    def load(self) -> Any:
        return _refuse()


def _generate(torch: Any, directory: Path, marker: Path) -> list[CorpusFile]:
    import numpy

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pickle, "Unpickler", _RefusingUnpickler)
        for owner, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.jit, "load"), (numpy, "load")):
            mp.setattr(owner, name, _refuse)
        return write_scanner_corpus(directory, marker)


def _digests(files: list[CorpusFile]) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, torch: Any) -> Generated:
    root = tmp_path_factory.mktemp("scanner_corpus")
    marker = root / "marker" / "payload_ran"
    marker.parent.mkdir()
    files = _generate(torch, root / "corpus", marker)
    return Generated(root, root / "corpus", marker, files, _digests(files))


def _contents(path: Path) -> bytes:
    """The file's bytes and those of every zip or tar member it holds (decompressed)."""
    data = path.read_bytes()
    parts = [data]
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                try:
                    parts.append(z.read(info))
                except Exception:  # flag bits and bad CRCs are the point of some files
                    pass
    if path.name.endswith((".tar", ".tar.gz")) or data[257:262] == b"ustar":
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                if handle is not None:
                    parts.append(handle.read())
    return b"".join(parts)


def test_generating_never_runs_a_payload(corpus: Generated) -> None:
    assert not corpus.marker.exists()
    assert list(corpus.marker.parent.iterdir()) == []
    assert sorted(p.name for p in corpus.root.iterdir()) == ["corpus", "marker"]


def test_counts_names_and_fields(corpus: Generated) -> None:
    files = corpus.files
    names = [f.name for f in files]
    assert len(names) == len(set(names)), "duplicate names"
    assert sum(f.malicious for f in files) == MALICIOUS_COUNT
    assert sum(not f.malicious for f in files) == BENIGN_COUNT >= 8
    assert sorted(p.name for p in corpus.directory.iterdir()) == sorted(names), "stray or missing files"
    for f in files:
        assert f.path == corpus.directory / f.name and f.path.stat().st_size > 0
        assert f.container in CONTAINERS and set(f.peers) <= set(PEERS)
        assert f.technique and "\n" not in f.technique
        assert bool(f.sources) == bool(f.peers), f"{f.name}: peers and their sources go together"
        assert all(":" in source for source in f.sources)


def test_every_payload_targets_the_marker(corpus: Generated) -> None:
    marker = str(corpus.marker).encode()
    malicious = {f.name for f in corpus.files if f.malicious}
    for f in corpus.files:
        contents = _contents(f.path)
        if not f.malicious:
            assert marker not in contents, f"{f.name} is benign but names the marker"
        elif marker not in contents:
            # a payload that loads another corpus file instead of naming the marker itself
            others = [name for name in malicious if name != f.name and str(corpus.directory / name).encode() in contents]
            assert others, f"{f.name}: its payload names neither the marker nor another payload file"


def test_the_same_inputs_give_the_same_bytes(corpus: Generated, torch: Any) -> None:
    again = _generate(torch, corpus.directory, corpus.marker)
    assert [f.name for f in again] == [f.name for f in corpus.files]
    assert [(f.technique, f.peers, f.malicious, f.container) for f in again] == \
        [(f.technique, f.peers, f.malicious, f.container) for f in corpus.files]
    assert _digests(again) == corpus.digests
    assert not corpus.marker.exists()
