"""The matrix: which envs `nox -s roundtrip` builds, and what each one needs.

It lives in one place, ``[tool.torch-roundtrip]`` in pyproject.toml, and
``nox -s roundtrip -- --torch 2.4.1 2.8.0`` (and the other options below)
overrides it for one run. Resolution turns it into envs: every torch x
Python x device (x numpy, where the matrix has a numpy axis) that can exist,
with the packages each needs to import cleanly; combinations that cannot
exist (a Python that torch release has no wheels for, a numpy that torch
release does not work with) are skipped with the reason, never attempted.

Version numbers here are facts about releases (which wheels exist, which
numpy imports cleanly), never feature switches: the runtime detects features.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from harness.runtime.defaults import DEFAULT_TIMEOUT
from harness.runtime.env import DEVICES, EXPECT_NUMPY, label_for
from harness.runtime.errors import InputError
from harness.runtime.format_names import FORMAT_NAMES
from harness.runtime.versions import matches, release

__all__ = [
    "EXPECT_NUMPY", "NUMPY_ALLOWED", "NUMPY_PYTHON", "PYTHON_SUPPORT", "Env", "Matrix", "Plan", "find_python", "numpy_allowed",
    "numpy_python", "parse_overrides", "pick_python", "posargs", "python_support", "requirements",
]

#: CPython versions with Linux x86_64 wheels on PyPI, per torch minor release
#: (read from PyPI with ``uv pip compile --python-version``, 2026-12; a newer
#: torch than the table knows is assumed to support what the newest known one
#: does). The harness's own floor, MIN_PYTHON, cuts the low end.
PYTHON_SUPPORT = {
    (1, 4): ("3.6", "3.8"), (1, 5): ("3.6", "3.8"), (1, 6): ("3.7", "3.8"), (1, 7): ("3.7", "3.9"),
    (1, 8): ("3.7", "3.9"), (1, 9): ("3.7", "3.9"), (1, 10): ("3.7", "3.9"), (1, 11): ("3.7", "3.10"),
    (1, 12): ("3.7", "3.10"), (1, 13): ("3.7", "3.11"),
    (2, 0): ("3.8", "3.11"), (2, 1): ("3.8", "3.11"), (2, 2): ("3.8", "3.12"), (2, 3): ("3.8", "3.12"),
    (2, 4): ("3.8", "3.12"), (2, 5): ("3.9", "3.13"), (2, 6): ("3.9", "3.13"), (2, 7): ("3.9", "3.13"),
    (2, 8): ("3.9", "3.13"), (2, 9): ("3.10", "3.14"), (2, 10): ("3.10", "3.14"), (2, 11): ("3.10", "3.14"),
    (2, 12): ("3.10", "3.14"), (2, 13): ("3.10", "3.14"), (2, 14): ("3.10", "3.14"), (2, 15): ("3.11", "3.15"),
}
#: The runtime runs on Python 3.8+ and torch 1.4+ (feature detection does the rest).
MIN_PYTHON = "3.8"
MIN_TORCH = "1.4"
#: numpy that imports cleanly beside each torch, first match wins: torch < 2.3
#: was built against numpy 1.x and fails or warns beside numpy 2, and torch
#: 1.4's wheels predate numpy 1.20's C API changes.
NUMPY_PINS = (("<1.5", "numpy<1.20"), ("<2.3", "numpy<2"), ("*", "numpy>=2"))
#: numpy each torch release works beside, for the numpy axis (``numpy = [...]``),
#: first match wins. The pins above are the default choice; this is the range.
#: torch 2.3 and later are built against numpy 2 and run beside numpy 1 too
#: (measured 2026-12 with torch 2.4.1 and 2.15.0: numpy 1.23.5, the oldest with
#: Python 3.11 wheels, 1.24.4, 1.26.4 and 2.0.2 import, convert and round-trip).
NUMPY_ALLOWED = (("<1.5", "<1.20"), ("<2.3", "<2"), ("*", ">=1.23"))
#: CPython versions with Linux x86_64 wheels of each numpy minor release (read
#: from PyPI with ``uv pip compile --only-binary :all: --python-version``,
#: 2026-12; the newest patch release of each minor). A numpy newer than the
#: table is assumed to support what the newest known one does.
NUMPY_PYTHON = {
    (1, 16): ("3.5", "3.7"), (1, 17): ("3.5", "3.8"), (1, 18): ("3.5", "3.8"), (1, 19): ("3.6", "3.9"),
    (1, 20): ("3.7", "3.9"), (1, 21): ("3.7", "3.10"), (1, 22): ("3.8", "3.10"), (1, 23): ("3.8", "3.11"),
    (1, 24): ("3.8", "3.11"), (1, 25): ("3.9", "3.11"), (1, 26): ("3.9", "3.12"), (2, 0): ("3.9", "3.12"),
    (2, 1): ("3.10", "3.13"), (2, 2): ("3.10", "3.13"), (2, 3): ("3.11", "3.14"), (2, 4): ("3.11", "3.14"),
}


def _wheel_range(table: dict[tuple[int, int], tuple[str, str]], version: str) -> tuple[str, str]:
    """(lowest, highest) CPython of `version`'s minor release in `table`; the nearest end of it for a release it lacks."""
    minor = release(version)[:2]
    if minor in table:
        return table[minor]
    newest = max(table)
    return table[newest] if minor > newest else table[min(table)]


def python_support(torch: str) -> tuple[str, str]:
    """(lowest, highest) CPython version with wheels for this torch release."""
    return _wheel_range(PYTHON_SUPPORT, torch)


def numpy_allowed(torch: str) -> str:
    """The numpy versions this torch release works beside, as a specifier (``"<2"``)."""
    return next(spec for release_spec, spec in NUMPY_ALLOWED if matches(torch, release_spec))


def numpy_python(numpy: str) -> tuple[str, str]:
    """(lowest, highest) CPython version with wheels for this numpy release."""
    return _wheel_range(NUMPY_PYTHON, numpy)


def _python_range(torch: str) -> tuple[str, str]:
    """The Pythons an env of this torch can use: its wheels, cut at the harness's floor."""
    low, high = python_support(torch)
    return max(low, MIN_PYTHON, key=release), high


def _supports(torch: str, python: str) -> bool:
    low, high = _python_range(torch)
    return release(low) <= release(python) <= release(high)


def requirements(torch: str, numpy: Optional[str] = None) -> list[str]:
    """What an env of this torch (and this numpy, on a numpy axis) installs besides the harness."""
    pin = f"numpy=={numpy}" if numpy else next(pin for spec, pin in NUMPY_PINS if matches(torch, spec))
    return [f"torch=={torch}", "safetensors>=0.3", pin]


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> Optional[str]:
    """An interpreter of this CPython minor on the machine (PATH, then pyenv), or None.

    pyenv's shims answer for every installed version but run only the ones
    `pyenv global` lists, so a candidate counts only once it has run.
    """
    candidates = [shutil.which(f"python{version}")]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted((str(p) for p in root.glob(f"{version}.*/bin/python{version}")), reverse=True)
    for exe in candidates:
        if exe and _runs(exe, version):
            return exe
    return None


def _runs(exe: str, version: str) -> bool:
    try:
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def pick_python(torch: str, have: Callable[[str], bool]) -> Optional[str]:
    """The Python for a torch release that none of the configured ones supports.

    The newest CPython it has wheels for that the machine has (`have`), so a
    wide matrix runs old releases without asking for their Python by name.
    """
    low, high = _python_range(torch)
    minor = release(high)[1]
    while minor >= release(low)[1]:
        python = f"3.{minor}"
        if have(python):
            return python
        minor -= 1
    return None


def _fields(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Matrix fields from TOML values: lists become tuples of strings (the dataclass is frozen and hashable)."""
    return {key: tuple(str(v) for v in value) if isinstance(value, list) else value for key, value in items}


@dataclass(frozen=True)
class Env:
    """One env of the matrix: where a save or a load session runs."""

    torch: str
    python: str
    device: str
    #: the numpy it installs and names in its label; None without a numpy axis
    numpy: Optional[str] = None

    @property
    def label(self) -> str:
        return label_for(self.torch, self.python, self.device, self.numpy)

    @property
    def requirements(self) -> list[str]:
        return requirements(self.torch, self.numpy)

    @property
    def phase_env(self) -> dict[str, str]:
        """Environment variables of its phases: the numpy guard where the matrix has a numpy axis.

        Empty without the axis, so a value left in the outer environment
        cannot add a numpy to the labels of a matrix that has none.
        """
        return {EXPECT_NUMPY: self.numpy or ""}


@dataclass(frozen=True)
class Plan:
    save: list[Env]
    load: list[Env]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)
    notes: list[str] = field(default_factory=list)  # choices made for the user (a Python picked for an old torch)


@dataclass(frozen=True)
class Matrix:
    """The matrix as configured (pyproject.toml, then command-line overrides)."""

    torch: tuple[str, ...] = ("2.4.1", "2.15.0")
    python: tuple[str, ...] = ("3.11",)
    devices: tuple[str, ...] = ("cpu", "cuda-emulated")
    #: the numpy axis: each torch release gets the versions of this list it
    #: works beside (NUMPY_ALLOWED); empty, each gets its default pin and
    #: labels name no numpy
    numpy: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    generated: int = 0
    seed: int = 0
    timeout: float = DEFAULT_TIMEOUT
    user_cases: tuple[str, ...] = ()
    #: model code that changed between the save and the load (``load --load-as``):
    #: ``"OLD_MOD:FN=NEW_MOD:FN"``, the user case saved from OLD loaded into NEW's model
    load_as: tuple[str, ...] = ()
    #: migrations (``load --migrate``): ``"OLD_MOD:FN=MIG_MOD:FN"``, each with the load_as of its OLD
    migrate: tuple[str, ...] = ()
    #: classes whole-model pickles of user cases import from elsewhere (``load --rename-class``):
    #: ``"old.mod.Cls=new.mod.Cls"``
    rename_class: tuple[str, ...] = ()
    #: extra requirements every env installs (the package your user cases live in, ...)
    install: tuple[str, ...] = ()
    #: load the golden corpus (golden/) as extra sources in every load session
    golden: bool = True
    #: named matrices (``[tool.torch-roundtrip.matrix.NAME]``) that ``--matrix NAME`` selects;
    #: each table overrides the keys it gives
    named: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str = "[tool.torch-roundtrip]") -> Matrix:
        table = dict(table)
        named = table.pop("matrix", {})
        known = set(cls.__dataclass_fields__) - {"named"}
        for key in table:
            if key not in known:
                msg = f"{where}: unknown key {key!r} (known: {', '.join(sorted(known | {'matrix'}))})"
                raise InputError(msg)
        if not isinstance(named, dict) or not all(isinstance(t, dict) for t in named.values()):
            raise InputError(f"{where}: matrix must hold tables, e.g. [tool.torch-roundtrip.matrix.history]")
        for name, sub in named.items():
            # Refuse a bad named matrix when it is read, as `select` will make
            # it: its keys over these (its load_as may name these user_cases).
            cls.from_table({**table, **sub}, f"{where} matrix.{name}")
        kw = _fields(table.items())
        kw["named"] = tuple((name, tuple(sub.items())) for name, sub in named.items())
        return cls(**kw).validated(where)

    def select(self, name: str) -> Matrix:
        """This matrix with the named one's keys applied (``--matrix NAME``)."""
        tables = dict(self.named)
        if name not in tables:
            known = ", ".join(tables) or "none are configured"
            raise InputError(f"no matrix named {name!r} in [tool.torch-roundtrip.matrix] (known: {known})")
        return replace(self, **_fields(tables[name])).validated(f"matrix {name}")

    @classmethod
    def from_pyproject(cls, path: Path) -> Matrix:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_table(data.get("tool", {}).get("torch-roundtrip", {}), f"{path} [tool.torch-roundtrip]")

    def validated(self, where: str) -> Matrix:
        if not self.torch:
            raise InputError(f"{where}: torch is empty: name at least one torch release")
        for v in self.torch:
            try:
                if release(v) < release(MIN_TORCH):
                    raise InputError(f"{where}: torch {v} is older than {MIN_TORCH}, the oldest the harness runs under")
            except ValueError:
                raise InputError(f"{where}: torch {v!r} is not a release number like 2.4.1") from None
        for d in self.devices:
            if d not in DEVICES:
                raise InputError(f"{where}: device {d!r} is not one of {', '.join(DEVICES)}")
        if not self.python:
            raise InputError(f"{where}: python is empty")
        if self.timeout <= 0:
            raise InputError(f"{where}: timeout must be > 0 seconds")
        for f in self.formats:
            if f not in FORMAT_NAMES:
                raise InputError(f"{where}: format {f!r} is not one of {', '.join(FORMAT_NAMES)}")
        if not isinstance(self.golden, bool):
            raise InputError(f"{where}: golden must be true or false, not {self.golden!r}")
        self._check_refactors(where)
        for n in self.numpy:
            # A full release: the label names it, and the env must report the same string.
            if not re.fullmatch(r"\d+\.\d+\.\d+", n):
                raise InputError(f"{where}: numpy {n!r} is not a full release number like 1.26.4")
            if not any(matches(n, numpy_allowed(t)) for t in self.torch):
                ranges = "; ".join(f"torch {t}: numpy {numpy_allowed(t)}" for t in self.torch)
                raise InputError(f"{where}: numpy {n} works beside none of the torch releases of the matrix ({ranges})")
        return self

    def _check_refactors(self, where: str) -> None:
        """load_as, migrate and rename_class: lists of OLD=NEW pairs, each migration with its load_as.

        The load phase parses them again (`harness.runtime.refactor.UserRefactors`,
        which nox cannot import); this catches a typo before any env is built.
        """
        pairs: dict[str, dict[str, str]] = {}
        for key, side, example in (
            ("load_as", _FACTORY, "OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"),
            ("migrate", _FACTORY, "OLD_MODULE:FACTORY=MIGRATION_MODULE:FUNCTION"),
            ("rename_class", _CLASS_PATH, "old.module.Class=new.module.Class"),
        ):
            value = getattr(self, key)
            if not isinstance(value, tuple):
                raise InputError(f"{where}: {key} must be a list of strings like {example!r}, not {value!r}")
            pairs[key] = {}
            for item in value:
                old, sep, new = item.partition("=")
                if not (sep and side.fullmatch(old) and side.fullmatch(new)):
                    raise InputError(f"{where}: {key} {item!r} is not {example}")
                if pairs[key].get(old, new) != new:
                    raise InputError(f"{where}: {key} names {old} twice ({pairs[key][old]} and {new})")
                pairs[key][old] = new
        for old in pairs["migrate"]:
            if old not in pairs["load_as"]:
                raise InputError(f"{where}: migrate {old}=... needs load_as {old}=NEW_MODULE:FACTORY too "
                                 "(a migration loads into the new model)")
        for old in pairs["load_as"]:
            if old not in self.user_cases:
                raise InputError(f"{where}: load_as {old}=... names a factory user_cases does not save "
                                 f"(user_cases: {', '.join(self.user_cases) or 'none'})")

    def plan(self, have: Optional[Callable[[str], bool]] = None) -> Plan:
        """Every save env and load env that can exist; the rest, with reasons.

        A torch release none of the configured Pythons has wheels for gets
        the newest Python it supports that the machine has (`have`, by
        default `find_python`), so ``--torch 1.4.0 2.15.0`` works as given.
        """
        have = have or (lambda v: find_python(v) is not None)
        save, load, skipped, notes = [], [], [], []
        load_devices = ["cpu"] + (["cuda"] if "cuda" in self.devices else [])
        for torch in self.torch:
            low, high = python_support(torch)
            pythons = [p for p in self.python if _supports(torch, p)]
            if pythons:
                why = f"torch {torch} has wheels for Python {low} to {high} only"
                skipped += [(Env(torch, p, d).label, why) for p in self.python if p not in pythons for d in self.devices]
            else:
                picked = pick_python(torch, have)
                if picked is None:
                    why = (f"torch {torch} has wheels for Python {low} to {high} only, and this machine has none "
                           f"of them from {MIN_PYTHON} on (pyenv install {high})")
                    skipped += [(Env(torch, p, d).label, why) for p in self.python for d in self.devices]
                    continue
                notes.append(f"torch {torch} has no wheels for Python {', '.join(self.python)}: using {picked}")
                pythons = [picked]
            for python in pythons:
                for numpy in self._numpy_for(torch, python, skipped):
                    save += [Env(torch, python, device, numpy) for device in self.devices]
                    load += [Env(torch, python, device, numpy) for device in load_devices]
        if not save:
            reasons = "; ".join(f"{label}: {why}" for label, why in skipped) or "the matrix is empty"
            raise InputError(f"no env of the matrix can exist ({reasons})")
        return Plan(save, load, skipped, notes)

    def _numpy_for(self, torch: str, python: str, skipped: list[tuple[str, str]]) -> list[Optional[str]]:
        """The numpy versions of the axis an env of this torch and Python gets; [None] without the axis.

        The others are added to `skipped` with the reason.
        """
        if not self.numpy:
            return [None]
        allowed = numpy_allowed(torch)
        found: list[Optional[str]] = []
        for numpy in self.numpy:
            low, high = numpy_python(numpy)
            if not matches(numpy, allowed):
                why = f"torch {torch} works beside numpy {allowed} only"
            elif not release(low) <= release(python) <= release(high):
                why = f"numpy {numpy} has wheels for Python {low} to {high} only"
            else:
                found.append(numpy)
                continue
            skipped += [(Env(torch, python, d, numpy).label, why) for d in self.devices]
        return found

    def corpus_args(self) -> list[str]:
        return ["--generated", str(self.generated), "--seed", str(self.seed)]


#: ``MODULE:FUNCTION`` (a user case's factory, a migration) and a class path,
#: as the load phase reads them
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_CLASS_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")

#: Options of sessions other than the matrix's (check's, bench's, shrink's): not typos of matrix options.
_SESSION_OPTIONS = (
    "--trust", "--include", "--exclude", "--workers", "--shard", "--quick", "--target", "--max-seconds", "--max-steps",
    "--source-python", "--target-python", "--out", "--quiet", "-q",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nox -s roundtrip --", add_help=False)
    p.add_argument("--matrix")
    p.add_argument("--torch", nargs="+")
    p.add_argument("--python", nargs="+")
    p.add_argument("--device", "--devices", dest="devices", nargs="+")
    p.add_argument("--numpy", nargs="+")
    p.add_argument("--formats", nargs="+")
    p.add_argument("--generated", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--user-case", dest="user_cases", action="append")
    p.add_argument("--load-as", dest="load_as", action="append")
    p.add_argument("--migrate", action="append")
    p.add_argument("--rename-class", dest="rename_class", action="append")
    p.add_argument("--install", action="append")
    return p


def parse_overrides(matrix: Matrix, args: Sequence[str], warn: Optional[Callable[[str], None]] = None) -> Matrix:
    """`matrix` with the command-line overrides in `args` applied.

    ``--matrix NAME`` starts from a named matrix of pyproject.toml, and the
    other options apply on top of it. Formats may be given space- or
    comma-separated. ``--device cuda`` adds real CUDA envs to the configured
    devices; other lists replace the configured ones.
    """
    ns, unknown = _parser().parse_known_args(list(args))
    # Bare words are other sessions' arguments (the files of `check`); only
    # unknown --options may be typos of matrix options.
    unknown = [a for a in unknown if a.startswith("-") and a.split("=", 1)[0] not in _SESSION_OPTIONS]
    if unknown and warn is not None:
        # The same arguments reach every session (pytest's, load's --cell):
        # say what the matrix ignores rather than refuse it.
        warn(f"matrix: ignoring {' '.join(unknown)} (matrix options: --matrix, --torch, --python, --device, --numpy, --formats, --generated, --seed, --timeout, --user-case, --load-as, --migrate, --rename-class, --install)")
    if ns.matrix:
        matrix = matrix.select(ns.matrix)
    changes: dict[str, Any] = {}
    for key in ("torch", "python", "numpy", "formats", "user_cases", "load_as", "migrate", "rename_class", "install"):
        value = getattr(ns, key)
        if value:
            if key == "formats":
                value = [f for v in value for f in v.split(",") if f]
            changes[key] = tuple(value)
    if ns.devices:
        devices = list(matrix.devices)
        for d in ns.devices:
            if d not in devices:
                devices.append(d)
        if set(ns.devices) - {"cuda"}:
            devices = list(ns.devices)
        changes["devices"] = tuple(devices)
    for key in ("generated", "seed", "timeout"):
        if getattr(ns, key) is not None:
            changes[key] = getattr(ns, key)
    return replace(matrix, **changes).validated("command line")


def posargs(argv: Sequence[str]) -> list[str]:
    """The arguments after ``--`` on a nox command line."""
    argv = list(argv)
    return argv[argv.index("--") + 1:] if "--" in argv else []


