"""A fleet of checkpoints for the fleet tests: over a thousand files of every kind, in nested folders.

`build_fleet(dest)` writes, under ``dest/fleet`` (the root a test walks):

- every model file of the golden corpus (seven releases from 1.4.0 to
  2.15.0, CPU and cuda-emulated, every format), unpacked and verified by
  `harness.golden.unpack`, under ``golden/<label>/<case>/<format>/``
  (`copies` > 1 repeats them under ``golden-2/`` ...);
- small files saved now by this torch: state dicts, training checkpoints,
  legacy streams, cuda-emulated tags, safetensors, TorchScript, a
  ``torch.export`` archive (where this torch has it), a numpy ``.npy``;
- the hostile corpus of `tests.hostile_files` (code-running pickles with
  harmless payloads that only create a marker file, a zip bomb, absurd
  sizes, a tar polyglot) and its hang and crash files;
- what stands in for a checkpoint by mistake: truncated copies, an empty
  file, a Git LFS pointer, an HTML page, random bytes, a README;
- names with spaces and non-ASCII characters;
- a FIFO, symlinks to a file inside the tree, out of the tree and to
  nowhere, and to folders inside and outside the tree (never descended:
  the files of one inside are reported by their own names, and one
  outside is reported as a link not followed);
- files the walk must never report: under ``excluded/`` (for
  ``--exclude excluded``) and under ``.git/`` (always skipped).

`FleetCorpus` says what a walk with `FleetCorpus.exclude` must report and
what it must not. Nothing here unpickles a hostile file: the corpus is
written with plain file operations and `torch.save` of objects built here.
Deterministic: the same torch builds the same tree, the same names.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tests.hostile_files import hang_and_crash, write_corpus

__all__ = ["EXCLUDE", "FleetCorpus", "build_fleet", "golden_model_files"]

#: The --exclude glob the fleet tests pass: the ``excluded/`` folder.
EXCLUDE = ("excluded",)

#: Golden files that are not model files (each artifact's manifest, each case's reference bytes, each env's record).
_GOLDEN_SIDE_FILES = ("manifest.json", "reference.bin", "env.json")


@dataclass(frozen=True)
class FleetCorpus:
    """A fleet on disk, and what a walk of `root` with `exclude` must and must not report.

    Paths are relative to `root`, ``/``-separated. `files`: every path the
    walk reports (symlinks and the FIFO included: a fleet reports them as
    findings, unopened). `not_walked`: paths that exist (or are reached
    through a folder link) but must not be reported. `hostile`: files whose
    pickles would run code, each creating one of `markers` if it ran.
    `outside`: the folder out-of-tree links point into; `outside_files`,
    its files, which no line may describe. `releases`: the torch release
    that wrote each file saved by a known release (golden, and this torch).
    """

    root: Path
    files: tuple[str, ...]
    not_walked: tuple[str, ...]
    hostile: tuple[str, ...]
    markers: tuple[Path, ...]
    outside: Path
    outside_files: tuple[str, ...]
    links_out: tuple[str, ...]
    dangling: tuple[str, ...]
    releases: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = EXCLUDE

    def __len__(self) -> int:
        return len(self.files)


def golden_model_files(unpacked: Path) -> list[Path]:
    """The model files of an unpacked golden corpus (not its manifests, reference bytes or env records), sorted."""
    return sorted(p for p in unpacked.rglob("*") if p.is_file() and p.name not in _GOLDEN_SIDE_FILES)


def _release(label: str) -> str:
    """``golden-torch-1.4.0-py3.8-cpu`` -> ``1.4.0``."""
    return label.split("torch-", 1)[1].split("-", 1)[0]


def _save_now(root: Path) -> dict[str, str]:
    """Small files of every format, saved by this torch; relative path -> release."""
    import numpy as np
    import torch as t

    from harness.runtime.emulation import emulate_cuda

    release = t.__version__.split("+")[0]
    written: dict[str, str] = {}

    def path(rel: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        written[rel] = release
        return p

    t.manual_seed(0)
    dtypes = (t.float32, t.float16, t.bfloat16, t.float64, t.float32)
    for run in range(5):
        model = t.nn.Sequential(t.nn.Linear(4, 3), t.nn.ReLU(), t.nn.Linear(3, 2)).to(dtypes[run])
        for step in range(10):
            t.save(model.state_dict(), path(f"runs/exp-{run}/step-{step:03d}.pt"))
        opt = t.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": run, "rng": t.get_rng_state()}
        t.save(ckpt, path(f"runs/exp-{run}/checkpoint.pt"))
        t.save(model.state_dict(), path(f"legacy/run-{run}.pt"), _use_new_zipfile_serialization=False)
    with emulate_cuda():
        t.save({"w": t.ones(2, 2)}, path("gpu/emulated-cuda.pt"))
    with emulate_cuda(index=1):
        t.save({"w": t.ones(2, 2)}, path("gpu/emulated-cuda1.pt"))
    t.save({"w": t.ones(2)}, path("names/with space/my model.pt"))
    t.save({"w": t.ones(2)}, path("names/ünïcödé/modèle ✓.pt"))
    try:
        from safetensors.torch import save_file
    except ImportError:
        pass
    else:
        for i in range(5):
            save_file({"w": t.full((2, 3), float(i)), "b": t.zeros(2)}, str(path(f"safetensors/shard-{i:05d}.safetensors")))
    small = t.nn.Sequential(t.nn.Linear(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recent releases deprecate TorchScript: its files are still in fleets
        t.jit.script(small).save(str(path("scripted/model.ts")))
        t.jit.trace(small, t.ones(1, 3)).save(str(path("scripted/traced.ts")))
    if hasattr(t, "export") and hasattr(t.export, "save"):  # torch.export: 2.1 and later
        t.export.save(t.export.export(small, (t.ones(1, 3),)), str(path("exported/model.pt2")))
    np.save(path("other/array.npy"), np.arange(6, dtype=np.float32))
    written.pop("other/array.npy")  # numpy wrote it, not torch
    return written


def _stand_ins(root: Path, sample_zip: Path, sample_legacy: Path) -> None:
    """What stands in for a checkpoint by mistake."""
    other = root / "other"
    other.mkdir(parents=True, exist_ok=True)
    zip_bytes, legacy_bytes = sample_zip.read_bytes(), sample_legacy.read_bytes()
    (other / "cut-half.pt").write_bytes(zip_bytes[: len(zip_bytes) // 2])
    (other / "cut-end.pt").write_bytes(zip_bytes[:-7])
    (other / "cut-legacy.pt").write_bytes(legacy_bytes[:-10])
    (other / "empty.pt").write_bytes(b"")
    (other / "lfs-pointer.bin").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1048576\n"
    )
    (other / "model.pt.html").write_bytes(
        b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in to download.</body></html>\n"
    )
    rng = random.Random(15)
    (other / "random.bin").write_bytes(bytes(rng.getrandbits(8) for _ in range(2048)))
    (other / "README.md").write_text("# Checkpoints\n\nThe weights of run 3 are in runs/exp-3.\n", encoding="utf-8")


def build_fleet(dest: Path, *, copies: int = 1, golden: Optional[Path] = None) -> FleetCorpus:
    """Write the fleet under ``dest/fleet`` (and its out-of-tree targets under ``dest/outside``).

    `golden`: an unpacked golden corpus to copy from (a session fixture
    unpacks it once); by default it is unpacked here, verified, beside the fleet.
    """
    from harness.golden import unpack

    dest = Path(dest)
    root, outside = dest / "fleet", dest / "outside"
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    if golden is None:
        golden = dest / "golden-unpacked"
        unpack(Path(__file__).resolve().parent.parent / "golden", golden)
    releases: dict[str, str] = {}
    models = golden_model_files(golden)
    for copy in range(1, copies + 1):
        folder = "golden" if copy == 1 else f"golden-{copy}"
        for src in models:
            rel = f"{folder}/{src.relative_to(golden).as_posix()}"
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)  # a copy, never a link: a test changes files in the fleet
            releases[rel] = _release(src.relative_to(golden).parts[0])
    releases.update(_save_now(root))
    _stand_ins(root, root / "runs/exp-0/step-000.pt", root / "legacy/run-0.pt")
    hostile_dir = root / "hostile"
    corpus = write_corpus(hostile_dir)
    crafted = hang_and_crash(hostile_dir / "process")
    hostile = sorted(
        [f"hostile/{name}" for name, h in corpus.items() if h.marker is not None]
        + [f"hostile/process/{name}" for name in crafted]
    )
    markers = tuple(sorted(h.marker for h in corpus.values() if h.marker is not None))
    # Files the walk must not report: an excluded folder (one of them hostile), version control.
    (root / "excluded").mkdir()
    shutil.copyfile(root / "runs/exp-0/step-000.pt", root / "excluded/old.pt")
    shutil.copyfile(hostile_dir / "payload_zip.pt", root / "excluded/payload.pt")
    (root / ".git/objects/ab").mkdir(parents=True)
    (root / ".git/objects/ab/cdef").write_bytes(b"x\x01not a model")
    (root / ".git/HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    # Out of the tree: a real state dict and a hostile file that no line may describe.
    shutil.copyfile(root / "runs/exp-1/step-000.pt", outside / "secret.pt")
    shutil.copyfile(hostile_dir / "payload_legacy.pt", outside / "payload.pt")
    (outside / "folder").mkdir()
    shutil.copyfile(root / "runs/exp-2/step-000.pt", outside / "folder/other.pt")
    links = root / "links"
    links.mkdir()
    os.symlink(outside / "secret.pt", links / "to-outside.pt")
    os.symlink(outside / "payload.pt", links / "to-outside-payload.pt")
    os.symlink(root / "runs/exp-0/step-001.pt", links / "to-inside.pt")
    os.symlink("../runs/exp-0/step-002.pt", links / "to-inside-relative.pt")
    os.symlink(root / "nowhere.pt", links / "dangling.pt")
    os.symlink(root / "runs/exp-4", links / "folder-inside")  # a folder link: never descended
    os.symlink(outside / "folder", links / "folder-outside")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "other/pipe.pt")  # would block a reader forever: reported, never opened
    links_out = ("links/to-outside.pt", "links/to-outside-payload.pt")
    dangling = ("links/dangling.pt",)
    not_walked = (
        "excluded/old.pt", "excluded/payload.pt", ".git/HEAD", ".git/objects/ab/cdef",
        *(f"links/folder-inside/{p.name}" for p in sorted((root / "runs/exp-4").iterdir())),
        "links/folder-outside/other.pt",
    )
    files = sorted(rel for rel in _listing(root) if not _under_any(rel, ("excluded", ".git")))
    return FleetCorpus(
        root=root, files=tuple(files), not_walked=not_walked, hostile=tuple(hostile), markers=markers,
        outside=outside, outside_files=("secret.pt", "payload.pt", "folder/other.pt"), links_out=links_out,
        dangling=dangling, releases=releases,
    )


def _listing(root: Path) -> list[str]:
    """Every entry below `root` that is not a folder (files, links of any kind but to folders, FIFOs), never through a link."""
    found = []
    for folder, dirs, names in os.walk(root):  # followlinks=False: a folder link is listed among dirs, not entered
        here = Path(folder)
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path.is_symlink() and path.is_dir() and _inside(path.resolve(), root.resolve()):
                continue  # a link to a folder in the tree: its files are reported by their own names
            found.append(path.relative_to(root).as_posix())
    return found


def _inside(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _under_any(rel: str, folders: tuple[str, ...]) -> bool:
    return any(rel == f or rel.startswith(f + "/") for f in folders)
