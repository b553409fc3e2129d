"""Calls in a TorchScript archive's code that leave TorchScript's sandbox.

``torch.jit.load`` compiles the archive's ``code/**/*.py`` and runs the
module's ``__setstate__`` methods, so the archive's code runs on load. The
TorchScript language itself cannot import or call Python, but some of its
operators touch the world: they read or write files (``aten::from_file``
maps a file, and a shared mapping writes to it; ``aten::save``) or load
native libraries. `escapes` finds those calls by parsing the code with `ast`
(never compiling or running it); code that does not parse is searched as
text, since a crafted archive need not be valid Python.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from harness.runtime.unsafe_globals import runs_code

__all__ = ["Escape", "escapes"]

#: Operators (the last part of ``torch.X`` / ``torch.ops.aten.X`` / ``ops.prim.X``)
#: that reach files, processes or native libraries.
_ESCAPING_OPS = frozenset({
    "from_file", "save", "load", "_save", "_load", "load_library", "_load_for_mobile", "_save_for_mobile",
    "_save_parameters", "_load_parameters", "_load_from_bytes", "import_ir_module", "system", "popen",
    "_jit_pass_load", "open", "read_file", "write_file",
})
#: Names that no TorchScript file writes, only a crafted one.
_PYTHON_ONLY = frozenset({"eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "open", "breakpoint"})
_TEXT_PATTERNS = re.compile(
    r"\b(?:from_file|load_library|__import__|subprocess|os\.system|os\.popen|eval\s*\(|exec\s*\(|ops\.aten\.save|torch\.save)\b"
)


@dataclass(frozen=True)
class Escape:
    """A call in the archive's code that can leave the sandbox: where, and what."""

    where: str  # record name and line, e.g. "archive/code/__torch__.py:12"
    call: str  # the called name, e.g. "torch.from_file"
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "call": self.call, "why": self.why}


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    else:
        parts.append("?")
    return ".".join(reversed(parts))


def _why(name: str) -> str:
    parts = name.split(".")
    last = parts[-1]
    if len(parts) == 1 and last in _PYTHON_ONLY:
        return "a Python builtin, which TorchScript does not have: only a crafted archive calls it"
    if last in _ESCAPING_OPS and parts[0] in ("torch", "ops"):
        return "an operator that reads or writes files or loads native code"
    if runs_code(name):
        return "a known way to run code or commands"
    return ""


def escapes(source: str, where: str) -> list[Escape]:
    """The sandbox-leaving calls in one code file `source` (named `where` in the findings)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        found = []
        for lineno, line in enumerate(source.splitlines(), 1):
            for m in _TEXT_PATTERNS.finditer(line):
                found.append(Escape(f"{where}:{lineno}", m.group(0).rstrip("( "), "named in code that does not parse: a crafted archive"))
        return found
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            why = _why(name)
            if why:
                found.append(Escape(f"{where}:{node.lineno}", name, why))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(Escape(f"{where}:{node.lineno}", ast.unparse(node), "an import statement, which TorchScript code never holds"))
    return found
