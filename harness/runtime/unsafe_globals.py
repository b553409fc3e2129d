"""Globals known to run code or commands when a pickle names them.

A pickle that imports one of these (``os.system``, ``builtins.eval``,
``pkgutil.resolve_name``, ...) runs code when unpickled, whatever else it
holds. This is the list of *known* gadgets, used where the harness must say
"this runs code" about a global torch named in an error (the runtime's
diagnoses). ``check``'s verdict is stricter: it treats every global that is
not known to be harmless as code (`harness.check.global_kinds`).
"""

from __future__ import annotations

__all__ = ["runs_code"]

# After the lists of pickle scanners (fickling, picklescan, modelscan) and
# the gadgets their test suites exercise.
_CODE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "runpy", "pty", "socket", "shutil", "importlib",
    "ctypes", "code", "codeop", "webbrowser", "multiprocessing", "asyncio", "pickle", "_pickle",
    "marshal", "types", "commands", "popen2", "platform", "pdb", "timeit", "bdb", "cProfile", "profile",
    "pkgutil", "pydoc", "imaplib", "nntplib", "smtplib", "ftplib", "poplib", "telnetlib", "http",
    "urllib", "requests", "logging", "_io", "io", "tempfile", "glob", "fileinput", "zipimport",
    "dill", "cloudpickle", "joblib", "_posixsubprocess", "_thread", "threading", "signal",
    "operator", "functools", "_operator", "_functools", "site", "venv",
    "ensurepip", "distutils", "setuptools", "pip", "idlelib", "lib2to3", "trace", "doctest",
    "unittest", "test", "_osx_support", "_aix_support", "_sitebuiltins", "sysconfig",
    "ast", "inspect", "linecache", "zipfile", "tarfile", "sqlite3", "dbm", "shelve",
})
#: Names that, reached as an attribute of something else, are the same gadget.
_REACHED = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtins__", "importlib", "system",
    "popen", "eval", "exec", "compile", "__import__", "getattr", "spawnl", "execv", "execve",
})
_CODE_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "__import__", "open", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "apply", "help", "memoryview", "reload",
})
#: Helpers of numpy and torch that load files, compile or call what they are given.
_CODE_NAMES = frozenset({
    "numpy.testing._private.utils.runstring", "numpy.load", "numpy.lib.npyio.load", "numpy.fromfile",
    "numpy.f2py", "numpy.distutils", "numpy.ctypeslib.load_library", "numpy.lib.format.read_array",
    "numpy.save", "numpy.tofile", "numpy.loadtxt", "numpy.genfromtxt",
    "torch.load", "torch.serialization.load", "torch.storage._load_from_bytes", "torch.hub.load",
    "torch.hub.load_state_dict_from_url", "torch.hub._load_local", "torch.jit.load", "torch.jit._load",
    "torch.save", "torch.serialization.save", "torch.from_file", "torch.ops.load_library",
    "torch.utils.cpp_extension.load", "torch.utils.cpp_extension.load_inline",
    "torch._dynamo", "torch._inductor", "torch.compile", "torch.package", "torch.fx.graph_module",
    "torch.classes.load_library", "torch._C._load_for_lite_interpreter", "torch._C.import_ir_module",
    "uuid._get_command_stdout", "uuid._popen", "uuid._find_mac", "uuid._ifconfig_getnode",
})


def runs_code(name: str) -> bool:
    """Whether the global `name` ("module.attr", the attribute part may be dotted) is a known way to run code.

    Every dotted part counts: ``pathlib.os.system`` reaches ``os`` through an
    attribute of ``pathlib``, and ``builtins.eval.__call__`` is ``eval``.
    """
    parts = name.split(".")
    if parts[0] in _CODE_MODULES or any(p in _REACHED for p in parts[1:]):
        return True
    if any(name == n or name.startswith(n + ".") for n in _CODE_NAMES):
        return True
    if parts[0] in ("builtins", "__builtin__", "__builtins__"):
        return any(p in _CODE_BUILTINS for p in parts[1:])
    return False
