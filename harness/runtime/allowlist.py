"""The weights_only fix: every global a file needs allowlisted, found by asking this torch.

torch's refusal names one global at a time ("GLOBAL numpy.dtype was not an
allowed global", or "Can only build ... but got <class
'numpy.dtypes.Float64DType'>"), so a user who allowlists what the message
names meets the next refusal, once per global. Its static finder
(``torch.serialization.get_unsafe_globals_in_checkpoint``, torch 2.5+) misses
the classes a pickle builds without naming them (numpy 2's dtype classes).
So the complete list is found the way a user would find it, only all at
once: load under the growing allowlist until the load succeeds
(`load_allowing`). The load that ends the loop is the proof that the fix
works; `fix_text` spells the fix for the user.

A global that runs code (`harness.runtime.unsafe_globals.runs_code`) is
never allowlisted: such a file is not fixed by an allowlist.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Optional

from harness.runtime.errors import Unsupported
from harness.runtime.unsafe_globals import runs_code

__all__ = [
    "AllowlistRefused",
    "fix_text",
    "load_allowing",
    "refused_global",
    "resolve_global",
    "torch_allowlist_api",
]

_REFUSED = (
    re.compile(r"GLOBAL ([A-Za-z_][\w.]*) was not an allowed global"),
    re.compile(r"Unsupported global: GLOBAL ([A-Za-z_][\w.]*)"),
    re.compile(r"types allowlisted via `add_safe_globals`, but got <class '([A-Za-z_][\w.]*(?:\[\w+\])?)'>"),
    re.compile(r"Unsupported class ([A-Za-z_][\w.]*)"),
)
#: How many refusals a load may need: a checkpoint with more distinct
#: classes than this is not a checkpoint people write.
MAX_GLOBALS = 64


class AllowlistRefused(Exception):
    """The allowlist cannot fix this file: a global that runs code, or one this env cannot import."""


def refused_global(message: str) -> Optional[str]:
    """The global a weights_only refusal names ("numpy.dtype"), or None."""
    for pattern in _REFUSED:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


_DTYPE_CLASS = re.compile(r"^numpy\.dtype\[(\w+)\]$")


def _split(name: str) -> tuple[str, list[str]]:
    """(the longest importable module of `name`, the attribute path after it)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            importlib.import_module(module_name)
        except ImportError:
            if cut == 1:
                raise
            continue
        return module_name, parts[cut:]
    msg = f"{name!r} is not a dotted global"
    raise ValueError(msg)


def resolve_global(name: str) -> Any:
    """The object ``module.attr`` names, importing the longest module prefix that imports.

    ``numpy.dtype[float64]`` is numpy 1's dtype class, which has no import
    path. Raises `AllowlistRefused` for a global that runs code (it is never
    imported), ImportError or AttributeError when this env lacks it (numpy
    1.24 has no ``numpy._core``: that is the finding, not a harness bug).
    """
    if runs_code(name):
        msg = f"{name} runs code when unpickled: an allowlist must never name it"
        raise AllowlistRefused(msg)
    m = _DTYPE_CLASS.match(name)
    if m:
        import numpy

        return type(numpy.dtype(m.group(1)))
    module_name, attrs = _split(name)
    obj: Any = importlib.import_module(module_name)
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


def _is_torch_dtype(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.dtype)


def _own_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def torch_allowlist_api() -> tuple[Callable[[list[Any]], Any], Callable[[], list[Any]], Callable[[], None]]:
    """(add_safe_globals, get_safe_globals, clear_safe_globals) of this torch; Unsupported where it has none."""
    import torch.serialization as ser

    found = [getattr(ser, n, None) for n in ("add_safe_globals", "get_safe_globals", "clear_safe_globals")]
    if any(f is None for f in found):
        msg = "torch.serialization has no add_safe_globals in this torch (it appeared in 2.4): only weights_only=False loads such a file"
        raise Unsupported(msg)
    return found[0], found[1], found[2]  # type: ignore[return-value]


def load_allowing(load: Callable[[], Any], admit: Optional[Callable[[str], bool]] = None) -> tuple[Any, list[str]]:
    """Run `load` (a weights_only=True load) under an allowlist grown one refusal at a time.

    Returns what `load` returned and the globals it needed, in the order
    torch asked for them. The allowlist torch had before is restored
    afterwards, whatever happens. A refusal that names no global, or names
    one twice, is re-raised as it is: an allowlist is not its fix.
    `admit(name)` may refuse a global before it is even imported
    (`AllowlistRefused`): ``check`` admits only those known to build data.
    """
    add, get, clear = torch_allowlist_api()
    before = list(get())
    needed: list[str] = []
    try:
        renamed: Optional[str] = None
        while True:
            try:
                return load(), needed
            except Exception as e:  # torch's refusal: find what it names, allowlist it, go again
                if renamed is not None and isinstance(e, (AttributeError, TypeError)) and "tuple" in str(e):
                    # torch 2.4's allowlist takes objects only, read by their own name
                    msg = (f"this torch's add_safe_globals takes no (global, name) pairs (torch 2.5 added them): the file "
                           f"names {renamed}, which this numpy keeps under another name, so no allowlist loads it here")
                    raise Unsupported(msg) from None
                name = refused_global(str(e))
                if name is None or name in needed or len(needed) >= MAX_GLOBALS:
                    raise
                if admit is not None and not admit(name):
                    msg = f"{name} is not known to only build a value, so it is not allowlisted without --trust"
                    raise AllowlistRefused(msg) from None
                obj = resolve_global(name)
                if _is_torch_dtype(obj):
                    # torch.uint16 refused by torch 2.4/2.5: their allowlists
                    # take classes and functions, never a dtype, so only a
                    # torch whose unpickler allows it (2.6+) loads the file.
                    raise
                # A global the file names by another path than the object's
                # own (numpy.core.multiarray.scalar, loaded under numpy 2)
                # is allowlisted under the file's name.
                if _own_name(obj) == name:
                    add([obj])
                else:
                    add([(obj, name)])
                    renamed = name
                needed.append(name)
    finally:
        clear()
        if before:
            add(before)


_NUMPY_CORE = re.compile(r"^numpy\.(_core|core)\.")


def fix_text(names: list[str]) -> str:
    """The one line a user types before ``torch.load(f, weights_only=True)``: every global, once.

    numpy 2 pickles name ``numpy._core.*`` and numpy 1 pickles
    ``numpy.core.*``; the line allowlists both spellings through whichever
    module the loading numpy has, so it works beside either numpy and for
    files from either. Each other name's module is imported by its full path.
    """
    entries: list[str] = []
    imports = set()
    core = False
    for name in names:
        m = _NUMPY_CORE.match(name)
        dtype = _DTYPE_CLASS.match(name)
        if m:
            core = True
            tail = name[m.end():]
            spelled = [f'(np_core.{tail}, "numpy.core.{tail}")', f'(np_core.{tail}, "numpy._core.{tail}")']
        elif dtype:
            imports.add("numpy")
            spelled = [f'type(numpy.dtype("{dtype.group(1)}"))']
        else:
            try:
                imports.add(_split(name)[0])
            except (ImportError, ValueError):
                imports.add(name.rpartition(".")[0])
            spelled = [name]
        entries.extend(e for e in spelled if e not in entries)
    if core:
        imports.add("numpy")
    prefix = f"import {', '.join(sorted(imports))}; " if imports else ""
    if core:
        prefix += 'np_core = getattr(numpy, "_core", None) or numpy.core; '
    return f"{prefix}torch.serialization.add_safe_globals([{', '.join(entries)}])"
