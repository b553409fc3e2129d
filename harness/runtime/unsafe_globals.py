"""Globals whose import alone runs code or commands.

A pickle that imports one of these (``os.system``, ``builtins.eval``, ...)
runs code when unpickled, whatever else it holds. The runtime's diagnoses
and ``check``'s pickle scanner both ask `runs_code`.
"""

from __future__ import annotations

__all__ = ["runs_code"]

# After the lists of pickle scanners (fickling, picklescan): reported apart
# from the merely unknown classes that weights_only also refuses.
_CODE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "runpy", "pty", "socket", "shutil", "importlib",
    "ctypes", "code", "codeop", "webbrowser", "multiprocessing", "asyncio", "pickle", "_pickle",
    "marshal", "types", "commands", "popen2", "platform", "pdb", "timeit", "bdb", "cProfile", "profile",
})
_CODE_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "__import__", "open", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "apply",
})


def runs_code(name: str) -> bool:
    """Whether importing global `name` is by itself a way to run code or commands."""
    module, _, attr = name.rpartition(".")
    top = module.split(".")[0]
    if top in _CODE_MODULES:
        return True
    return top in ("builtins", "__builtin__") and attr in _CODE_BUILTINS
