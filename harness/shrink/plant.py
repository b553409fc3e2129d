"""A torch bug planted on purpose: test and bench equipment for `harness.shrink`, never part of a real run.

The bug: when what ``torch.load`` returns holds a float16 tensor of at least
`MIN_HALF_ELEMENTS` (4) elements AND an int64 tensor, the lowest bit of the
first element of the first such float16 tensor is flipped, in place. It
needs two features of a spec together, so a shrinker that keeps only one of
them loses the failure: the shrink test and ``nox -s bench`` use it to show
that ``shrink`` ends at a spec holding just those two.

A second mode, ``abort:N``, plants a crash instead: every Nth outermost
``torch.load`` call of a process aborts it (``os.abort``, as a C++ assert
in torch does), counted per process, so a worker forked from a parent that
imported the planted torch counts afresh. The bench measures with it what
a load phase whose torch keeps crashing costs (``crash_cell_rate_ratio``).

It is active only in an interpreter started through the wrapper that
`planted_python` writes: the wrapper sets ``TORCH_ROUNDTRIP_PLANT`` (``1``, or ``abort:N``) and
puts a ``sitecustomize.py`` on ``PYTHONPATH`` that calls `install`, which does
nothing without that variable. Nothing in the harness imports this module
on its own; a plain ``python`` never sees the bug.

This file is also copied, as ``roundtrip_plant.py``, beside that
``sitecustomize.py``, and must work there on its own: the plain-torch
reproduction scripts run where the harness is not installed. So it imports
nothing from the harness, only the standard library at module level and
torch inside functions, and it keeps to Python 3.8.
"""

from __future__ import annotations

import functools
import os
import shlex
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

__all__ = ["ENV_VAR", "MIN_HALF_ELEMENTS", "PLANT_MODULE", "install", "parse_mode", "planted_python", "tamper"]

#: The variable that arms the plant; the wrapper of `planted_python` sets it
#: to its mode: ``1`` (flip a bit) or ``abort:N`` (abort every Nth load).
ENV_VAR = "TORCH_ROUNDTRIP_PLANT"
#: A float16 tensor needs at least this many elements to be flipped.
MIN_HALF_ELEMENTS = 4
#: The name this module is copied under beside the ``sitecustomize.py`` that imports it.
PLANT_MODULE = "roundtrip_plant"

# Marks a wrapper of ours, so that installing twice wraps once.
_MARK = "_roundtrip_plant_original"
# torch.load and torch.serialization.load may call each other (or be one
# object): only the outermost call tampers, so a nested one cannot flip the
# bit back.
_DEPTH = threading.local()
# abort:N counts outermost loads per process: keyed by pid, so a child
# forked from a parent that imported the planted torch starts from zero.
_CALLS: dict[int, int] = {}


def parse_mode(mode: str) -> Optional[int]:
    """The N of ``abort:N`` (None for ``1``, the bit flip); ValueError for anything else."""
    if mode == "1":
        return None
    kind, _, every = mode.partition(":")
    if kind == "abort" and every.isdigit() and int(every) >= 1:
        return int(every)
    msg = f"{ENV_VAR}={mode!r}: the plant's modes are 1 (flip a bit) and abort:N (abort every Nth torch.load, N >= 1)"
    raise ValueError(msg)


def _tensors(obj: Any, path: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """(path, tensor) for every tensor in `obj`, depth first, in the order a reader meets them."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield path, obj
        return
    if id(obj) in seen:  # a container met twice (or a cycle) is walked once
        return
    if isinstance(obj, torch.nn.Module):
        seen.add(id(obj))
        for name, t in obj.named_parameters():
            yield f"{path}.{name}" if path else name, t
        for name, t in obj.named_buffers():
            yield f"{path}.{name}" if path else name, t
    elif isinstance(obj, dict):
        seen.add(id(obj))
        for key, value in obj.items():
            yield from _tensors(value, f"{path}[{key!r}]", seen)
    elif isinstance(obj, (list, tuple)):
        seen.add(id(obj))
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{path}[{i}]", seen)


def _flippable_half(t: Any) -> bool:
    """A float16 tensor the plant flips: strided, in memory, with at least MIN_HALF_ELEMENTS elements."""
    import torch

    return (t.dtype == torch.float16 and t.layout == torch.strided and t.numel() >= MIN_HALF_ELEMENTS
            and t.device.type != "meta")


def tamper(obj: Any) -> Optional[str]:
    """Apply the planted bug to `obj` (what torch.load returned); the path of the flipped tensor, or None.

    Walks dicts, lists, tuples and the parameters and buffers of modules.
    When they hold a float16 tensor of at least four elements and an int64
    tensor, it flips the lowest bit of the first element of the first such
    float16 tensor, in place, through an int16 view of it (so a
    non-contiguous or mmap'd tensor is flipped where it lies; an mmap'd one
    is mapped privately, so the file stays as it was). Otherwise it changes
    nothing.
    """
    import torch

    half: Optional[tuple[str, Any]] = None
    has_int64 = False
    for path, t in _tensors(obj, "", set()):
        if half is None and _flippable_half(t):
            half = (path, t)
        has_int64 = has_int64 or t.dtype == torch.int64
        if half is not None and has_int64:
            break
    if half is None or not has_int64:
        return None
    path, t = half
    with torch.no_grad():
        _flip_first_bit(t.detach())
    return path or "<the loaded tensor>"


def _flip_first_bit(t: Any) -> None:
    """Flip the lowest bit of `t`'s first element (logical order) where it lies in memory."""
    import torch

    index = (0,) * t.dim()
    try:
        bits = t.view(torch.int16)  # same element size: a view for any strides
    except TypeError:  # a torch without Tensor.view(dtype) (before 1.5 or so): numpy shares the memory
        if t.device.type != "cpu":
            msg = f"{PLANT_MODULE}: this torch has no Tensor.view(dtype) to flip a bit of a {t.device.type} tensor in place"
            raise TypeError(msg) from None
        import numpy

        t.numpy().view(numpy.int16)[index] ^= 1
        return
    bits[index] ^= 1


def _abort_now(every: int) -> None:
    """Count one outermost load of this process; abort it on every `every`-th, as a C++ assert would."""
    pid = os.getpid()
    calls = _CALLS[pid] = _CALLS.get(pid, 0) + 1
    if calls % every == 0:
        sys.stderr.write(f"{PLANT_MODULE}: planted abort on torch.load call {calls} of process {pid} (abort:{every})\n")
        sys.stderr.flush()
        os.abort()


def _wrap(load: Callable[..., Any], abort_every: Optional[int]) -> Callable[..., Any]:
    @functools.wraps(load)  # keeps the signature: the harness inspects torch.load's parameters
    def planted_load(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_DEPTH, "value", 0)
        if depth == 0 and abort_every is not None:
            _abort_now(abort_every)
        _DEPTH.value = depth + 1
        try:
            result = load(*args, **kwargs)
        finally:
            _DEPTH.value = depth
        if depth == 0 and abort_every is None:
            tamper(result)
        return result

    setattr(planted_load, _MARK, load)
    return planted_load


def _patch(torch: Any, abort_every: Optional[int]) -> None:
    """Wrap torch.load and torch.serialization.load once each (one wrapper when they are one object)."""
    wrappers = {}
    owners = [owner for owner in (torch, getattr(torch, "serialization", None)) if owner is not None]
    for owner in owners:
        load = getattr(owner, "load", None)
        if load is None or hasattr(load, _MARK):
            continue
        if id(load) not in wrappers:
            wrappers[id(load)] = _wrap(load, abort_every)
        owner.load = wrappers[id(load)]


class _PatchOnImport:
    """A meta path finder that patches torch right after it is first imported.

    So an interpreter started through the wrapper pays for torch only when
    it imports torch itself (the load phase's parent never does).
    """

    def __init__(self, abort_every: Optional[int]) -> None:
        self.abort_every = abort_every

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "torch":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once: the finders below find torch itself
        spec = importlib.util.find_spec("torch")
        if spec is None:  # no torch here: the import fails as it would without the plant
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            # Loud, not a torch without the bug: a shrink would report "not reproduced" for the wrong reason.
            msg = f"{PLANT_MODULE}: cannot plant the bug: torch's loader {loader!r} has no exec_module to hook"
            raise ImportError(msg)
        exec_module = loader.exec_module
        abort_every = self.abort_every

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _patch(module, abort_every)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]  # this loader instance only
        return spec


def install() -> bool:
    """Plant the bug in this interpreter when ``TORCH_ROUNDTRIP_PLANT`` is set; whether it is planted.

    ``1`` plants the bit flip, ``abort:N`` the abort on every Nth load
    (`parse_mode`; ValueError for another value: a plant that silently did
    nothing would make a test or a bench measure the wrong thing).
    Idempotent. Wraps torch.load (and torch.serialization.load) now if
    torch is imported, else as soon as it is. Without the variable it does
    nothing: the ``sitecustomize.py`` of `planted_python` calls it in every
    interpreter that has that folder on its path, and only the wrapper sets
    the variable.
    """
    mode = os.environ.get(ENV_VAR)
    if not mode:
        return False
    abort_every = parse_mode(mode)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "load"):
        _patch(torch, abort_every)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(abort_every))
    return True


_SITECUSTOMIZE = f'''"""Written by harness.shrink.plant.planted_python: plants a torch bug on purpose (test equipment).

Active only when {ENV_VAR} is set (1, or abort:N), which the wrapper script beside this file does.
"""

import {PLANT_MODULE}

{PLANT_MODULE}.install()
'''


def planted_python(python: str, folder: Path, *, pythonpath: Sequence[str] = (), mode: str = "1") -> str:
    """Write an interpreter wrapper whose torch.load has the planted bug; the wrapper's path.

    Test and bench equipment. Writes into `folder` a copy of this module
    (``roundtrip_plant.py``), a ``sitecustomize.py`` that imports it and
    calls `install`, and ``folder/python``: a POSIX sh script that sets
    ``TORCH_ROUNDTRIP_PLANT`` to `mode` (``1``: the bit flip; ``abort:N``:
    every Nth load aborts the process), puts `folder` and then `pythonpath` in
    front of ``PYTHONPATH`` and execs `python` with its arguments. Use it as
    an interpreter: ``[wrapper, "-m", "harness.runtime.runner.worker",
    "cpu"]`` or ``[wrapper, "load.py"]``; processes it starts inherit the
    plant through the environment. `pythonpath` lets an env without the
    harness installed run the harness's workers (the repository's root).

    Our ``sitecustomize.py`` comes first on the path, so it shadows any
    ``sitecustomize`` the interpreter already has (Debian's system Pythons
    ship one): that one does not run under the wrapper.
    """
    parse_mode(mode)
    folder = Path(os.path.abspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    # A bare command name ("python3") is looked up on PATH by exec; a path is made absolute.
    exe = os.path.abspath(python) if os.sep in python else python
    entries = [str(folder)] + [os.path.abspath(p) for p in pythonpath]
    bad = [p for p in entries if os.pathsep in p]
    if bad:
        msg = f"pythonpath={bad[0]!r} holds {os.pathsep!r}, which PYTHONPATH cannot carry: use a folder without it"
        raise ValueError(msg)
    (folder / f"{PLANT_MODULE}.py").write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    joined = shlex.quote(os.pathsep.join(entries))
    lines: list[str] = [
        "#!/bin/sh",
        "# Written by harness.shrink.plant.planted_python: this interpreter's torch.load has a bug planted",
        "# on purpose (test equipment). See roundtrip_plant.py beside this script.",
        f"{ENV_VAR}={shlex.quote(mode)}",
        f"export {ENV_VAR}",
        f'PYTHONPATH={joined}"${{PYTHONPATH:+{os.pathsep}$PYTHONPATH}}"',
        "export PYTHONPATH",
        f'exec {shlex.quote(exe)} "$@"',
        "",
    ]
    wrapper = folder / "python"
    wrapper.write_text("\n".join(lines), encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(wrapper)
