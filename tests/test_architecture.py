"""The tree keeps its shape: who may import whom, what `build_id` covers, public names.

`build_id` is a digest of `harness/runtime/` alone, so artifact reuse is
only honest if the runtime imports nothing outside itself; these tests read
every module's imports (also those inside functions) from its source.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every `import` and `from ... import` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


def _harness_imports(path: Path) -> list[tuple[str, int]]:
    """The harness modules a file imports (``from harness import x`` counts as harness.x when x is a module)."""
    modules = _modules()
    out = []
    for module, names, line in _imports(path):
        if module != "harness" and not module.startswith("harness."):
            continue
        subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
        out.extend((m, line) for m in (subs or [module]))
    return out


# Which packages each part of the tree may import from (besides itself).
ALLOWED = {
    "harness.runtime": ("harness.runtime",),
    "harness.check": ("harness.runtime", "harness.check"),
    "harness.strategies": ("harness.runtime", "harness.strategies"),
    # bench and shrink.record: the classes that hold bench.json and shrink.json to their schemas.
    "harness.report": ("harness.runtime", "harness.report", "harness.bench", "harness.shrink.record"),
}


def _allowed(importer: str, imported: str) -> bool:
    for part, allowed in ALLOWED.items():
        if importer == part or importer.startswith(part + "."):
            # The root package gives every part its version and build id.
            return imported == "harness" or any(imported == a or imported.startswith(a + ".") for a in allowed)
    return True  # host code (cli, corpus, matrix, bench) may import anything


def test_each_part_imports_only_what_it_may():
    bad = []
    for name, path in _modules().items():
        for imported, line in _harness_imports(path):
            if not _allowed(name, imported):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not bad, "imports across the runtime/check/host split:\n" + "\n".join(bad)


def test_the_rule_catches_a_runtime_module_importing_host_code(tmp_path):
    # The check above must be able to fail: a runtime module that imports
    # the report is refused.
    assert not _allowed("harness.runtime.cell", "harness.report.html")
    assert not _allowed("harness.runtime.runner.load", "harness.check.sniff")
    assert not _allowed("harness.check.sniff", "harness.matrix")
    assert _allowed("harness.runtime.env", "harness")
    assert _allowed("harness.cli", "harness.report.build")
    # the report reads shrink records, and never runs a shrink
    assert _allowed("harness.report.shrunk", "harness.shrink.record")
    assert not _allowed("harness.report.shrunk", "harness.shrink.shrinker")


def test_no_private_name_is_imported_across_modules():
    bad = []
    for name, path in _modules().items():
        for module, names, line in _imports(path):
            if module.startswith("harness") and module != name:
                bad += [f"{path.relative_to(ROOT)}:{line} imports {module}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_all_lists_every_name_other_modules_import():
    modules = _modules()
    exported: dict[str, set[str]] = {}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exported[name] = set(ast.literal_eval(node.value))
    missing = []
    for name, path in list(modules.items()) + [(_module_name(p), p) for p in (ROOT / "tests").glob("*.py")]:
        for module, names, line in _imports(path):
            if module in exported and module != name:
                missing += [f"{path.relative_to(ROOT)}:{line}: {module}.{n}" for n in names if n not in exported[module] and f"{module}.{n}" not in modules]
    assert not missing, "imported but not in the module's __all__:\n" + "\n".join(missing)
    def defines_something(path: Path) -> bool:  # more than a docstring
        body = ast.parse(path.read_text()).body
        return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)

    no_all = sorted(n for n, p in modules.items() if n not in exported and p.name != "__main__.py" and defines_something(p))
    assert not no_all, f"modules without __all__: {no_all}"


def test_harness_has_at_most_15_top_level_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 15, top


def _build_id(package_root: Path) -> str:
    code = "import harness; print(harness.build_id())"
    return subprocess.run([sys.executable, "-c", code], cwd=package_root, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_build_id_follows_the_runtime_and_only_the_runtime(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    before = _build_id(copy)
    assert before.startswith("0.") and "+" in before

    # Host code, check and reports change nothing a save or load records.
    for host in ("cli.py", "report/html.py", "check/sniff.py", "strategies/grammar.py"):
        with open(copy / "harness" / host, "a") as f:
            f.write("\n# an edit\n")
    assert _build_id(copy) == before

    # Any runtime file, however deep, changes it; so does a new one.
    with open(copy / "harness" / "runtime" / "formats" / "safetensors.py", "a") as f:
        f.write("\n# an edit\n")
    changed = _build_id(copy)
    assert changed != before
    (copy / "harness" / "runtime" / "new_module.py").write_text('"""new."""\n')
    assert _build_id(copy) != changed


@pytest.mark.parametrize("part", ["runtime", "check"])
def test_parts_are_packages_with_a_docstring(part):
    init = PACKAGE / part / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"harness/{part}/__init__.py explains what the part is"


# Imports that fail in nox's own environment, which has none of these.
_HEAVY = ("torch", "xxhash", "numpy", "jinja2", "hypothesis", "rich", "safetensors")
_BLOCKER = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(_HEAVY)!r}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
"""


def _imports_without_heavy_libraries(*modules: str) -> subprocess.CompletedProcess:
    code = _BLOCKER + "".join(f"import {m}\n" for m in modules)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_what_the_noxfile_imports_needs_only_the_standard_library():
    # The noxfile runs in nox's environment: the matrix and the check summary
    # must import there without torch, xxhash or Jinja.
    done = _imports_without_heavy_libraries("harness.matrix", "harness.runtime.errors", "harness.runtime.versions",
                                            "harness.check.fleet_record", "harness.check.fleet_report", "harness.cli")
    assert done.returncode == 0, done.stderr[-2000:]
    # ... and the blocker is real: a module that needs xxhash is refused.
    assert _imports_without_heavy_libraries("harness.runtime.digest").returncode != 0
