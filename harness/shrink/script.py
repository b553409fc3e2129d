"""The plain-torch reproduction of a shrunk failure: ``save.py``, ``load.py`` and ``README.md``.

A shrink ends with the smallest spec that still fails between two envs.
An upstream bug report needs more than a spec only the harness reads: two
scripts that use torch alone, one run in env A (``python save.py``: build
the model, save it as the cell's format saves it, and write
``expected.json``, what every saved tensor holds) and one in env B
(``python load.py``: load the file exactly as the cell's load options say,
gather what came back as the harness gathers it for that ``apply``, and
compare it with ``expected.json`` bit for bit). ``load.py`` exits 1 and
prints each difference (or the load's exception) when it sees the failure,
0 with ``OK: N tensors bit-identical`` when it does not, and 2 when this
torch lacks an option the cell uses. ``README.md`` is the text of the
issue: the failure, the two envs, the commands, expected and observed.

The model is written out as plain ``nn.Module`` code by
`harness.shrink.plain_model`, with the saved values as literals; a user
case's model cannot be (its factory is opaque), so its scripts import the
factory and seed it as the harness does. What cannot be expressed in plain
torch (a refactor's load-side code, a migration, a training step compared
across kernels) raises `ReproUnsupported`, and nothing is written.

The scripts run in any env the harness runs in (Python 3.8, torch 1.4
onward): they detect features, never versions.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from harness.runtime.load_options import MAP_LOCATIONS, SOURCES, LoadOptions
from harness.runtime.spec import Spec

__all__ = ["EXPECTED_NAME", "LOAD_NAME", "README_NAME", "SAVE_NAME", "ReproUnsupported", "write_repro"]

SAVE_NAME = "save.py"
LOAD_NAME = "load.py"
README_NAME = "README.md"
#: What save.py writes beside the file: what every saved tensor holds.
EXPECTED_NAME = "expected.json"
#: The file each format writes (as `harness.runtime.formats` names it).
_FILENAMES = {
    "state_dict": "model.pt",
    "state_dict_legacy": "model.legacy.pt",
    "full_model": "model.full.pt",
    "torchscript": "model.ts",
    "exported": "model.pt2",
    "safetensors": "model.safetensors",
    "checkpoint": "checkpoint.pt",
}
#: Applies that build the load-side model (`harness.runtime.runner.load`).
_BUILDS_MODEL = ("strict", "assign", "resume", "step", "model")
#: The checkpoint's own entries, rebuilt from the artifact's file view; the
#: model's state comes from the plain model, the extras from their kinds.
_CHECKPOINT_ENTRIES = ("optimizer", "scheduler", "rng", "step")
#: A manifest value spelled ``TYPE:REPR`` (`harness.runtime.manifest`), as opposed to a plain string.
_TYPED = re.compile(r"^[A-Za-z_][\w.]*:")
#: Characters of base64 per line in a tensor literal.
_WRAP = 96


class ReproUnsupported(Exception):
    """str() is the one-line reason no plain-torch reproduction could be written."""


def write_repro(
    out: Path, *, spec: Spec, fmt: str, load: dict[str, Any], artifact: Path, envs: dict[str, Any],
    observed: dict[str, Any], signature: dict[str, Any], key: str, command: str,
) -> dict[str, str]:
    """Write ``out/save.py``, ``out/load.py`` and ``out/README.md``; their names by role.

    Raises `ReproUnsupported` (and writes nothing) when the format, a load
    option or a feature of the spec cannot be expressed in plain torch.
    """
    out, artifact = Path(out), Path(artifact)
    unknown = sorted(set(load) - set(LoadOptions.__dataclass_fields__))
    if unknown:
        raise ReproUnsupported(f"load options {', '.join(unknown)}: not options this writer knows (load={load!r})")
    options = LoadOptions.from_dict(load)
    _check_supported(spec, fmt, options)
    manifest = _read_manifest(artifact)
    if manifest.get("format") != fmt:
        raise ReproUnsupported(f"{artifact}: the artifact is of format {manifest.get('format')!r}, not the cell's {fmt}")
    cell = _Cell(spec, fmt, options, artifact, manifest, envs, signature)
    model_code, class_name, module_files = _model_code(cell)
    save_src = _unused_helpers_dropped(_save_script(cell, model_code, module_files))
    load_src = _unused_helpers_dropped(_load_script(cell, model_code, class_name))
    for name, src in ((SAVE_NAME, save_src), (LOAD_NAME, load_src)):
        _check_script(name, src, allowed_harness=_factory_module(spec))
    readme = _readme(cell, observed, key, command, class_name)
    written = {"save": SAVE_NAME, "load": LOAD_NAME, "readme": README_NAME}
    _write_all(out, {SAVE_NAME: save_src, LOAD_NAME: load_src, README_NAME: readme})
    return written


# --------------------------------------------------------------------------
# What can be expressed


def _check_supported(spec: Spec, fmt: str, options: LoadOptions) -> None:
    if fmt not in _FILENAMES:
        raise ReproUnsupported(f"format={fmt!r}: no plain-torch reproduction is written for it (known: {', '.join(_FILENAMES)})")
    for name in ("load_as", "migrate", "rename_class"):
        if getattr(options, name):
            msg = (f"load option {name}={getattr(options, name)!r}: the load side runs other model code than the save "
                   "(a refactor and its migration), which a two-script reproduction does not write out")
            raise ReproUnsupported(msg)
    if spec.refactored and (options.apply in _BUILDS_MODEL or fmt == "full_model"):
        msg = (f"the case is a refactor (load_as) and apply={options.apply or 'none'} / format={fmt} loads into its "
               "load-side code, which a two-script reproduction does not write out")
        raise ReproUnsupported(msg)
    if options.apply == "step":
        msg = ("apply=step compares one training step taken in each env, which is bit-exact only with the same "
               "kernels: not a plain-torch reproduction of a load")
        raise ReproUnsupported(msg)
    if options.map_location not in (None, "none") and options.map_location not in MAP_LOCATIONS:
        raise ReproUnsupported(f"map_location={options.map_location!r} is not a load-option spelling this writer knows")
    if options.source is not None and options.source not in SOURCES:
        raise ReproUnsupported(f"source={options.source!r} is not a load-option spelling this writer knows")
    if options.safe_globals not in (None, "needed"):
        raise ReproUnsupported(f"safe_globals={options.safe_globals!r} is not a load-option spelling this writer knows")
    if options.safe_globals and fmt != "checkpoint":
        raise ReproUnsupported(f"safe_globals={options.safe_globals} applies to the checkpoint format only, not {fmt}")
    known_apply = {
        "state_dict": (None, "none", "strict", "assign"), "state_dict_legacy": (None, "none", "strict", "assign"),
        "full_model": (None, "none"), "torchscript": (None, "none"), "exported": (None, "none"),
        "safetensors": (None, "model"), "checkpoint": (None, "none", "resume"),
    }[fmt]
    if options.apply not in known_apply:
        raise ReproUnsupported(f"apply={options.apply} with format={fmt}: no plain-torch reproduction is written for it")
    loaders = {"torchscript": ("torch.load", "torch.jit.load"), "full_model": ("torch.load", "torch.jit.load"),
               "safetensors": ("torch.load", "safetensors.torch.load_file")}.get(fmt, ("torch.load",))
    if options.loader is not None and options.loader not in loaders:
        raise ReproUnsupported(f"loader={options.loader!r} with format={fmt}: no plain-torch reproduction is written for it")
    if options.source is not None and fmt not in ("state_dict", "state_dict_legacy"):
        raise ReproUnsupported(f"source={options.source} with format={fmt}: the harness sweeps sources on the state_dict formats only")


def _read_manifest(artifact: Path) -> dict[str, Any]:
    path = artifact / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReproUnsupported(f"{path}: the best step's artifact is unreadable ({type(e).__name__})") from None
    if manifest.get("status") != "saved":
        raise ReproUnsupported(f"{path}: the artifact was not saved ({manifest.get('status')}: {manifest.get('reason')})")
    return manifest


class _Cell:
    """The facts about one shrunk cell the scripts and the README are written from."""

    def __init__(self, spec: Spec, fmt: str, options: LoadOptions, artifact: Path, manifest: dict[str, Any],
                 envs: dict[str, Any], signature: dict[str, Any]) -> None:
        self.spec, self.fmt, self.options, self.artifact, self.manifest = spec, fmt, options, artifact, manifest
        self.envs, self.signature = envs, signature
        self.filename = _FILENAMES[fmt]
        self.apply = options.apply or "none"
        self.view = _view_name(fmt, self.apply)
        source = manifest.get("source") or {}
        self.save_device = str(source.get("device") or _side(envs, "source").get("fingerprint", {}).get("device") or "cpu")
        self.emulated = bool(manifest.get("emulated")) or self.save_device == "cuda-emulated"
        target_fp = _side(envs, "target").get("fingerprint") or {}
        self.load_device = "cuda" if target_fp.get("device") == "cuda" else "cpu"
        self.compare_forward = signature.get("aspect") == "forward"
        self.method = (manifest.get("saved_with") or {}).get("method")

    @property
    def user(self) -> bool:
        return bool(self.spec.factory)

    @property
    def extras(self) -> list[str]:
        return list(self.spec.data.get("checkpoint_extras") or []) if self.fmt == "checkpoint" else []


def _side(envs: Mapping[str, Any], side: str) -> dict[str, Any]:
    value = envs.get(side) if isinstance(envs, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def _view_name(fmt: str, apply: str) -> str:
    """The manifest view the harness compares for this format and apply (`Loaded.view`)."""
    if fmt in ("state_dict", "state_dict_legacy"):
        return "module" if apply in ("strict", "assign") else "file"
    if fmt == "exported":
        return "program"
    if fmt == "checkpoint":
        return "resume" if apply == "resume" else "file"
    return "module"


def _factory_module(spec: Spec) -> Optional[str]:
    return spec.factory.split(":", 1)[0] if spec.factory else None


def _model_code(cell: _Cell) -> tuple[str, str, dict[str, str]]:
    """(model source, class name, module files): `plain_model`'s, or a user case's factory call."""
    if cell.user:
        return _factory_code(cell.spec), cell.spec.factory or "", {}
    from harness.shrink.plain_model import PlainUnsupported, plain_model

    try:
        plain = plain_model(cell.spec, cell.artifact)
    except PlainUnsupported as e:
        raise ReproUnsupported(str(e)) from None
    return plain.code, plain.class_name, dict(plain.module_files)


def _unused_helpers_dropped(src: str) -> str:
    """`src` without the top-level functions nothing in it uses.

    The helpers are shared by every format and option; a reproduction for an
    upstream issue should hold only what its case runs. A function is kept
    when a module-level statement, a class or a kept function names it;
    classes are always kept (a pickle names them, not the code).
    """
    tree = ast.parse(src)
    defs: dict[str, ast.AST] = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}

    def named(node: ast.AST) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}

    todo = [name for n in tree.body if not isinstance(n, ast.FunctionDef) for name in named(n) | {getattr(n, "name", "")} if name in defs]
    kept: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in kept:
            kept.add(name)
            todo += [other for other in named(defs[name]) if other in defs and other not in kept]
    lines = src.splitlines(keepends=True)
    for name in sorted(set(defs) - kept, key=lambda n: -getattr(defs[n], "lineno", 0)):
        node = defs[name]
        assert isinstance(node, ast.FunctionDef)
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        last = node.end_lineno or node.lineno
        del lines[first:last]
    return re.sub(r"\n{4,}", "\n\n\n", "".join(lines))


def _check_script(name: str, src: str, allowed_harness: Optional[str]) -> None:
    """A script must parse, define each top-level name once, and import no harness module (but the user's factory's)."""
    try:
        tree = ast.parse(src, filename=name)
    except SyntaxError as e:  # a bug in a writer, not a fact about the case
        msg = f"the generated {name} does not parse: {e}"
        raise RuntimeError(msg) from e
    defined: dict[str, int] = {}
    for statement in tree.body:  # the helpers and the model's code share one namespace: nothing may be defined twice
        targets: list[str] = []
        if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            targets.append(statement.name)
        elif isinstance(statement, ast.Assign):
            targets += [t.id for t in statement.targets if isinstance(t, ast.Name)]
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            targets.append(statement.target.id)
        for target in targets:
            if target in defined:
                msg = f"the generated {name} defines {target} twice (lines {defined[target]} and {statement.lineno})"
                raise RuntimeError(msg)
            defined[target] = statement.lineno
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for imported in names:
            if (imported == "harness" or imported.startswith("harness.")) and imported != allowed_harness:
                msg = f"the generated {name} imports {imported}: a reproduction must run without the harness"
                raise RuntimeError(msg)


def _write_all(out: Path, files: dict[str, str]) -> None:
    """Write every file or none: temporary names first, then renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            tmp = out / f".{name}.tmp{os.getpid()}"
            tmp.write_text(text, encoding="utf-8")
            temps.append((tmp, out / name))
        for tmp, final in temps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()


# --------------------------------------------------------------------------
# Literals


def _reference_path(cell: _Cell) -> Path:
    return cell.artifact.parent / "reference.bin"


def _tensor_literal(record: dict[str, Any], reference: Path, indent: int = 0) -> str:
    """Source text that makes a tensor holding exactly a manifest record's saved bytes."""
    ref = record.get("ref")
    if record.get("layout", "strided") != "strided" or ref is None:
        raise ReproUnsupported(f"{record.get('name')}: a {record.get('layout')} tensor without saved bytes cannot be written as a literal")
    with open(reference, "rb") as f:
        f.seek(ref[0])
        data = f.read(ref[1])
    text = base64.b64encode(data).decode("ascii")
    if len(text) > _WRAP:  # one line per chunk, joined by the parser (implicit concatenation)
        pad = " " * (indent + 4)
        text_src = "(\n" + "".join(f"{pad}{text[i:i + _WRAP]!r}\n" for i in range(0, len(text), _WRAP)) + " " * indent + ")"
    else:
        text_src = repr(text)
    grad = ", requires_grad=True" if record.get("requires_grad") else ""
    return f"literal_tensor({record['dtype']!r}, {list(record['shape'])!r}, {text_src}{grad})"


def _value_literal(value: Any, where: str, indent: int = 0) -> str:
    """A manifest value (spelled by `harness.runtime.manifest`) as Python source; a long list one row of items a line."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, list):
        items = [_value_literal(v, where) for v in value]
        if len(items) <= 12:
            return "[" + ", ".join(items) + "]"
        pad = " " * (indent + 4)
        rows = ["".join(f"{item}, " for item in items[i:i + 12]).rstrip() for i in range(0, len(items), 12)]
        return "[\n" + "".join(f"{pad}{row}\n" for row in rows) + " " * indent + "]"
    if isinstance(value, str):
        kind, _, rest = value.partition(":")
        if kind == "float":
            number = float(rest)
            return repr(number) if number == number and abs(number) != float("inf") else f"float({rest!r})"
        if _TYPED.match(value):  # another type spelled by its repr: not rebuilt from text
            raise ReproUnsupported(f"{where}: the value {value!r} cannot be written as a literal")
        return repr(value)
    raise ReproUnsupported(f"{where}: the value {value!r} cannot be written as a literal")


def _unflatten_source(view: dict[str, Any], top: str, reference: Path, indent: int) -> str:
    """The object the file view recorded under `top` (``optimizer``, ``scheduler``, ``rng``, ``step``), as source."""
    def under(name: str) -> bool:
        return name == top or name.startswith(top + ".")

    tree: dict[str, Any] = {}
    leaves: dict[str, str] = {}
    # indent: how deep the literal sits in the nested source (_node_source's indent), for wrapped lines
    for rec in view.get("tensors") or []:
        if under(rec["name"]):
            leaves[rec["name"]] = _tensor_literal(rec, reference, indent + 4 * rec["name"].count("."))
    for name, value in (view.get("values") or {}).items():
        if under(name):
            leaves[name] = _value_literal(value, name, indent + 4 * name.count("."))
    if not leaves:
        raise ReproUnsupported(f"the checkpoint's file view has no {top!r} entry to rebuild")
    for name, text in leaves.items():
        parts = name.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ReproUnsupported(f"{name}: the file view's keys overlap and cannot be rebuilt")
        node[parts[-1]] = text
    return _node_source(tree[top], top, indent)


def _node_source(node: Any, where: str, indent: int) -> str:
    if isinstance(node, str):
        return node
    pad, inner = " " * indent, " " * (indent + 4)
    if "$len" in node:
        n = int(ast.literal_eval(node["$len"]))
        items = [_node_source(node.get(str(i), "None"), f"{where}.{i}", indent + 4) for i in range(n)]
        if where == "rng.python":  # random.setstate takes (version, tuple of ints, gauss)
            items[1:2] = [f"tuple({items[1]})"] if len(items) > 1 else []
            return "(" + ", ".join(items) + ")"
        return "[\n" + "".join(f"{inner}{item},\n" for item in items) + pad + "]"
    keys = [k for k in node if not k.startswith("$")]
    if "$type" in node:
        raise ReproUnsupported(f"{where}: an object of type {node['$type']} inside the checkpoint's training state")
    if not keys:
        return "{}"
    numeric = all(k.isdigit() for k in keys)
    body = "".join(
        f"{inner}{int(k) if numeric else repr(k)}: {_node_source(node[k], f'{where}.{k}', indent + 4)},\n" for k in keys
    )
    return "{\n" + body + pad + "}"


# --------------------------------------------------------------------------
# Code shared by both scripts (Python 3.8, torch 1.4 onward)

_HELPERS = r'''
# ---------------------------------------------------------------------------
# Helpers (the same in save.py and load.py): tensors as the harness compares them.

MAX_KEPT_BYTES = 1 << 20  # expected.json keeps a tensor's bytes up to this size, to name the first differing element
_STRUCT = {"float32": "<f", "float64": "<d", "float16": "<e", "int64": "<q", "int32": "<i", "int16": "<h",
           "int8": "<b", "uint8": "<B", "uint16": "<H", "uint32": "<I", "uint64": "<Q", "bool": "<?"}
_SCALARS = (bool, int, float, str, type(None))


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def literal_tensor(dtype, shape, data, requires_grad=False):
    """A CPU tensor of `dtype` and `shape` holding exactly the base64 bytes `data`."""
    raw = base64.b64decode(data)
    t = torch.empty(list(shape), dtype=getattr(torch, dtype))
    if t.numel() * t.element_size() != len(raw):
        raise ValueError("%d bytes cannot fill a %s tensor of shape %s" % (len(raw), dtype, list(shape)))
    if raw:
        ctypes.memmove(t.data_ptr(), raw, len(raw))
    return t.requires_grad_(True) if requires_grad else t


def tensor_bytes(t):
    """A tensor's values as bytes in logical (row-major) order; a sparse COO tensor: its indices, then its values."""
    t = t.detach()
    if t.layout != torch.strided:
        return tensor_bytes(t._indices()) + tensor_bytes(t._values())
    if t.device.type != "cpu":
        t = t.cpu()
    if hasattr(t, "resolve_conj"):
        t = t.resolve_conj().resolve_neg()
    t = t.contiguous()
    n = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), n) if n else b""


def storage_key(t):
    """Where a strided tensor's bytes live (device and address): tensors with the same key share storage."""
    if t.layout != torch.strided or t.device.type == "meta":
        return None
    if hasattr(t, "untyped_storage"):
        s = t.untyped_storage()
        ptr, size = s.data_ptr(), s.nbytes()
    else:  # torch < 2.0: a typed storage, sized in elements
        try:
            s = t.storage()
        except RuntimeError:  # no storage class for this dtype: an integer view of the same width has one
            s = t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).storage()
        ptr, size = s.data_ptr(), s.size() * s.element_size()
    return "%s@%d" % (t.device, ptr) if size else None


def plain(value):
    """A leaf value spelled exactly: its type and repr (a float's repr keeps every bit)."""
    return "%s:%r" % (type(value).__name__, value)


def describe_object(obj):
    """("tensor", t), ("items", (type name, dict)) or ("value", text) for what training checkpoints carry besides tensors."""
    cls = type(obj)
    module = (cls.__module__ or "").split(".")[0]
    if module == "numpy":
        import numpy
        if isinstance(obj, numpy.ndarray):
            return "tensor", torch.from_numpy(numpy.ascontiguousarray(obj).copy())
        return "value", "numpy.%s:%s" % (cls.__name__, obj.tobytes().hex())
    if isinstance(obj, argparse.Namespace):
        return "items", ("argparse.Namespace", dict(vars(obj)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return "items", (cls.__qualname__, dict((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)))
    if isinstance(obj, enum.Enum):
        return "value", "enum:%s.%s" % (cls.__qualname__, obj.name)
    if isinstance(obj, pathlib.PurePath):
        return "value", "path:%s:%s" % ("posix" if isinstance(obj, pathlib.PurePosixPath) else "windows", obj.as_posix())
    if isinstance(obj, (set, frozenset)):
        return "value", "%s:{%s}" % (cls.__name__, ", ".join(sorted(repr(v) for v in obj)))
    if isinstance(obj, (bytes, bytearray)):
        return "value", "%s:%s" % (cls.__name__, bytes(obj).hex())
    if isinstance(obj, torch.nn.Module):
        items = dict((k, v) for k, v in vars(obj).items() if not k.startswith("_") and k != "training")
        items.update(("$" + k, v) for k, v in obj.state_dict().items())
        return "items", ("%s.%s" % (cls.__module__, cls.__qualname__), items)
    return "value", "object:%s.%s" % (cls.__module__, cls.__qualname__)


def flatten(obj, prefix="", tensors=None, values=None):
    """(name -> (tensor, role), name -> value) of a nested object: dicts by key, sequences by index."""
    if tensors is None:
        tensors, values = {}, {}
    name = prefix.rstrip(".")
    if isinstance(obj, torch.Tensor):
        tensors[name] = (obj, "tensor")
    elif isinstance(obj, dict):
        meta = getattr(obj, "_metadata", None)  # a state dict's per-module versions: load_state_dict reads them
        if meta is not None:
            values[prefix + "$metadata"] = json.dumps(meta, sort_keys=True, default=repr)
        if not obj:
            values[prefix + "$empty"] = "dict"
        for k, v in obj.items():
            flatten(v, "%s%s." % (prefix, k), tensors, values)
    elif isinstance(obj, (list, tuple)):
        if all(isinstance(v, _SCALARS) for v in obj):
            values[name] = [plain(v) for v in obj]
        else:
            values[prefix + "$len"] = len(obj)
            for i, v in enumerate(obj):
                flatten(v, "%s%d." % (prefix, i), tensors, values)
    elif type(obj) in _SCALARS:
        values[name] = plain(obj)
    else:
        kind, found = describe_object(obj)
        if kind == "tensor":
            tensors[name] = (found, "ndarray")
        elif kind == "items":
            values[prefix + "$type"] = found[0]
            for k, v in found[1].items():
                flatten(v, "%s%s." % (prefix, k), tensors, values)
        else:
            values[name] = found
    return tensors, values


def all_parameters(module):
    """Every parameter under every name it has, tied ones included."""
    try:
        return dict(module.named_parameters(remove_duplicate=False))
    except TypeError:  # torch < 1.12 has no remove_duplicate: walk the modules' own tables
        out = {}
        for prefix, sub in module.named_modules():
            for name, p in sub._parameters.items():
                if p is not None:
                    out[prefix + "." + name if prefix else name] = p
        return out


def module_tensors(module, prefix=""):
    """Parameters, persistent buffers (the state dict) and non-persistent buffers of a module, with their roles."""
    state = module.state_dict(keep_vars=True)
    params = all_parameters(module)
    tensors, values = {}, {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):  # a module's extra state
            flatten(t, prefix + name + ".", tensors, values)
            continue
        is_param = name in params or isinstance(t, torch.nn.Parameter)
        tensors[prefix + name] = (t, "parameter" if is_param else "buffer")
    for name, t in module.named_buffers():
        if name not in state:
            tensors[prefix + name] = (t, "buffer_np")
    return tensors, values


def program_tensors(ep):
    """Parameters and buffers of a torch.export ExportedProgram, plus its lifted constants."""
    tensors = {}
    for name, t in ep.state_dict.items():
        tensors[name] = (t, "parameter" if isinstance(t, torch.nn.Parameter) else "buffer")
    for name, t in (getattr(ep, "constants", None) or {}).items():
        if isinstance(t, torch.Tensor):
            tensors["$constant." + name] = (t, "constant")
    return tensors, {}


def record(tensors, values):
    """What expected.json says about a set of tensors: per tensor its dtype, shape, role and sha256; which share storage."""
    out, groups = {}, {}
    for name, (t, role) in tensors.items():
        rec = {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "layout": str(t.layout).replace("torch.", ""),
               "role": role, "requires_grad": bool(t.requires_grad), "device": str(t.device)}
        if t.device.type != "meta":
            data = tensor_bytes(t)
            rec["sha256"] = hashlib.sha256(data).hexdigest()
            if len(data) <= MAX_KEPT_BYTES:
                rec["bytes"] = base64.b64encode(data).decode("ascii")
        out[name] = rec
        key = storage_key(t)
        if key is not None:
            groups.setdefault(key, []).append(name)
    shared = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    return {"tensors": out, "shared_storage": shared, "values": values}


def forward_outputs(value):
    """The tensors a forward returned, in order (dicts by sorted key)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in forward_outputs(v)]
    if isinstance(value, dict):
        return [t for k in sorted(value) for t in forward_outputs(value[k])]
    return []


def run_forward(module, inputs):
    with torch.no_grad():
        return [o.detach() for o in forward_outputs(module(*inputs))]
'''

_COMMON_IMPORTS = """import argparse
import base64
import ctypes
import dataclasses
import enum
import hashlib
import json
import os
import pathlib
import sys

import torch
import torch.nn as nn
"""


def _fill(template: str, **values: str) -> str:
    """`template` with each ``@@NAME@@`` replaced by the source text given for NAME."""
    for name, text in values.items():
        template = template.replace(f"@@{name}@@", text)
    if "@@" in template:
        start = template.index("@@")
        raise RuntimeError(f"unfilled placeholder in a script template: {template[start:start + 40]!r}")
    return template


def _hoist_future(code: str) -> tuple[str, str]:
    """(``from __future__`` lines, the rest): those lines must open a script."""
    future: list[str] = []
    rest: list[str] = []
    for line in code.splitlines():
        (future if line.startswith("from __future__ import") else rest).append(line)
    return "\n".join(future), "\n".join(rest)


def _torch_of(cell: _Cell, side: str) -> str:
    info = _side(cell.envs, side)
    return str(info.get("torch") or (info.get("fingerprint") or {}).get("torch") or "?")


def _label_of(cell: _Cell, side: str) -> str:
    return str(_side(cell.envs, side).get("label") or side)


# --------------------------------------------------------------------------
# A user case: the factory, seeded as the harness seeds it


def _factory_code(spec: Spec) -> str:
    module, _, function = (spec.factory or "").partition(":")
    train = spec.data.get("train")
    return _fill(r'''
import random

from @@MODULE@@ import @@FUNCTION@@ as make_user_model

SEED = @@SEED@@
#: the training the case's spec asks for (None: the factory's weights as they are)
TRAIN = @@TRAIN@@
POISON_BYTE = 0xA5


def call_factory():
    """The factory's (model, inputs), called as the harness calls it: one thread, seeded, RNG restored after."""
    threads, rng, py_rng = torch.get_num_threads(), torch.get_rng_state(), random.getstate()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    try:
        made = make_user_model()
        inputs = None
        if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
            made, inputs = made
            inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        if TRAIN:
            train(made, inputs)
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        random.setstate(py_rng)
    made.eval()
    return made, inputs


@@TRAINING@@


def train(model, inputs):
    optimizer, scheduler = make_training(model)
    model.train()
    for _ in range(int(TRAIN.get("steps", 1))):
        optimizer.zero_grad()
        outputs = forward_outputs(model(*inputs))
        if TRAIN.get("loss") == "cross_entropy":
            logits = outputs[0]
            target = torch.full((logits.shape[0],), int(TRAIN.get("target", 0)), dtype=torch.long)
            loss = nn.functional.cross_entropy(logits, target)
        else:
            loss = sum((o.real if o.is_complex() else o).float().pow(2).mean() for o in outputs if o.is_floating_point() or o.is_complex())
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()


def build_model():
    """The model as the save side saves it: the factory's, seeded (and trained as the spec says)."""
    return call_factory()[0]


def make_inputs():
    """The factory's example inputs (None when it gives none)."""
    return call_factory()[1]


def new_model():
    """A freshly built model to load into: every parameter and persistent buffer filled with 0xA5."""
    model = call_factory()[0]
    keep = set()
    for module in model.modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            buf = module._buffers.get(name)
            if buf is not None and buf.layout == torch.strided:
                keep.add(storage_key(buf))
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.layout == torch.strided and t.device.type == "cpu" and storage_key(t) not in keep:
                ctypes.memset(t.data_ptr(), POISON_BYTE, t.numel() * t.element_size())
    return model
''', MODULE=module, FUNCTION=function, SEED=repr(spec.seed), TRAIN=repr(train) if train else "None",
                 TRAINING=_training_code(train or {}))


# --------------------------------------------------------------------------
# The checkpoint's extras, as training scripts save them


_EXTRA_CLASSES = r'''

@dataclasses.dataclass
class TrainConfig:
    """A run's configuration as a dataclass, the way people keep one beside the weights."""

    lr: float
    batch_size: int
    betas: tuple
    schedule: str


class Phase(enum.Enum):
    """The phase a run was in when it saved."""

    WARMUP = "warmup"
    TRAIN = "train"
    FINETUNE = "finetune"
'''

_EXTRA_CODE = {
    "numpy_scalar": ['out["best_loss"] = numpy.float64(0.25 + K / 64)', 'out["epoch_np"] = numpy.int64(3 + K)'],
    "numpy_array": ['out["val_history"] = numpy.arange(6, dtype=numpy.float32).reshape(2, 3) / numpy.float32(8) + numpy.float32(K)'],
    "namespace": ['out["args"] = argparse.Namespace(lr=0.001 * (K + 1), epochs=10 + K, arch="tiny", betas=(0.9, 0.999), resume=None)'],
    "dataclass": ['out["config"] = TrainConfig(lr=0.5 ** (K + 3), batch_size=32, betas=(0.9, 0.999), schedule="cosine")'],
    "enum": ['out["phase"] = list(Phase)[K % len(Phase)]'],
    "path": ['out["data_dir"] = pathlib.Path("/data/runs") / ("run-%d" % K) / "train"'],
    "loss_module": [
        'wanted = {"ignore_index": -1, "label_smoothing": 0.125}  # label_smoothing appeared in torch 1.10',
        'params = inspect.signature(torch.nn.CrossEntropyLoss).parameters',
        'out["criterion"] = torch.nn.CrossEntropyLoss(**dict((k, v) for k, v in wanted.items() if k in params))',
    ],
    "tuple": ['out["best"] = (7 + K, 0.875)'],
    "set": ['out["seen_classes"] = {0, 3, 5 + K}'],
    "bytes": ['out["git_sha"] = bytes(range(K, K + 20))'],
    "nested": ['out["history"] = {"train": [1.0, 0.5, 0.25], "val": {"top1": (0.375, 0.5), "ok": True}, "note": None}'],
}


def _extras_builder(kinds: list[str], seed: int) -> str:
    """``build_extras()``: what the checkpoint holds beside the training state (`harness.runtime.checkpoint_extras`)."""
    unknown = [k for k in kinds if k not in _EXTRA_CODE]
    if unknown:
        raise ReproUnsupported(f"checkpoint_extras {', '.join(unknown)}: no plain-torch spelling is written for them")
    lines = ["", "", "def build_extras():", '    """What the checkpoint holds beside the model and training state, as training scripts save it."""']
    if any(k in ("numpy_scalar", "numpy_array") for k in kinds):
        lines.append("    import numpy")
    if "loss_module" in kinds:
        lines.append("    import inspect")
    lines += [f"    K = {seed % 7}", "    out = {}"]
    for kind in kinds:
        lines += [f"    {line}" for line in _EXTRA_CODE[kind]]
    lines.append("    return out")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# save.py


def _save_body(cell: _Cell) -> str:
    """``save_file(model, inputs)``: save as the cell's format saves; returns (tensors, values, forward module)."""
    fmt = cell.fmt
    if fmt in ("state_dict", "state_dict_legacy"):
        kwargs = ", _use_new_zipfile_serialization=False" if fmt == "state_dict_legacy" else ""
        gather = ("    return flatten(state) + (None,)" if cell.view == "file"
                  else "    return module_tensors(model) + (model,)")
        return _PREFIXED + (
            "\n\ndef save_file(model, inputs):\n"
            f'    """torch.save(model.state_dict(){", legacy format" if kwargs else ""}) as the harness\'s {fmt} format does."""\n'
            "    state = prefixed_state_dict(model, PREFIX)\n"
            f"    torch.save(state, FILENAME{kwargs})\n"
            f"{gather}\n"
        )
    if fmt == "full_model":
        return (
            "\n\ndef save_file(model, inputs):\n"
            '    """torch.save(model): the whole pickled module."""\n'
            "    torch.save(model, FILENAME)\n"
            "    return module_tensors(model) + (model,)\n"
        )
    if fmt == "torchscript":
        return (
            "\n\ndef save_file(model, inputs):\n"
            '    """torch.jit.save of torch.jit.script(model), or of a trace when scripting fails (as the harness does)."""\n'
            "    try:\n"
            "        scripted = torch.jit.script(model)\n"
            '        print("saved with torch.jit.script")\n'
            "    except Exception as e:  # scripting is best effort; tracing is the documented fallback\n"
            '        print("torch.jit.script failed (%s: %s); tracing instead" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))\n'
            "        scripted = torch.jit.trace(model, inputs, check_trace=False)\n"
            "    torch.jit.save(scripted, FILENAME)\n"
            "    return module_tensors(scripted) + (scripted,)\n"
        )
    if fmt == "exported":
        return (
            "\n\ndef save_file(model, inputs):\n"
            '    """torch.export.save(torch.export.export(model, inputs))."""\n'
            "    ep = torch.export.export(model, tuple(inputs))\n"
            "    torch.export.save(ep, FILENAME)\n"
            "    return program_tensors(ep) + (ep.module(),)\n"
        )
    if fmt == "safetensors":
        return (
            "\n\ndef save_file(model, inputs):\n"
            '    """safetensors.torch.save_model(model, FILENAME) (force_contiguous where it has the argument)."""\n'
            "    import inspect\n\n"
            "    import safetensors.torch\n\n"
            "    kw = {}\n"
            '    if "force_contiguous" in inspect.signature(safetensors.torch.save_model).parameters:\n'
            '        kw["force_contiguous"] = True\n'
            "    safetensors.torch.save_model(model, FILENAME, **kw)\n"
            "    return module_tensors(model) + (model,)\n"
        )
    return _checkpoint_save_body(cell)


_PREFIXED = r'''

def prefixed_state_dict(model, prefix):
    """model.state_dict(), with every key prefixed as torch.compile ("_orig_mod.") or DataParallel ("module.") would."""
    from collections import OrderedDict

    state = model.state_dict()
    if not prefix:
        return state
    out = OrderedDict((prefix + k, v) for k, v in state.items())
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        out._metadata = OrderedDict(((prefix + k).rstrip(".") if k else prefix.rstrip("."), v) for k, v in meta.items())
    return out
'''


def _checkpoint_save_body(cell: _Cell) -> str:
    view = (cell.manifest.get("views") or {}).get("file")
    if not view:
        raise ReproUnsupported("the checkpoint artifact has no file view to rebuild its training state from")
    reference = _reference_path(cell)
    entries = "".join(
        f"        {name!r}: {_unflatten_source(view, name, reference, 8)},\n" for name in _CHECKPOINT_ENTRIES
    )
    extras = _extras_builder(cell.extras, cell.spec.seed) if cell.extras else ""
    update = "    ckpt.update(build_extras())\n" if cell.extras else ""
    if cell.view == "resume":
        gather = "    return resume_state(model, ckpt) + (model,)\n"
    else:
        gather = "    return flatten(ckpt) + (None,)\n"
    return _PREFIXED + extras + (
        "\n\ndef build_checkpoint(model):\n"
        '    """The checkpoint as the source env saved it: the model\'s state dict, and the optimizer, scheduler,\n'
        '    RNG and step exactly as they were (their values are literals from the saved file)."""\n'
        "    ckpt = {\n"
        "        'model': prefixed_state_dict(model, PREFIX),\n"
        + entries
        + "    }\n"
        + "    # the entries in the order the harness writes them: model, optimizer, scheduler, rng, step\n"
        + update
        + "    return ckpt\n"
        "\n\ndef save_file(model, inputs):\n"
        '    """torch.save of a training checkpoint: model, optimizer, LR scheduler, RNG states, step (and extras)."""\n'
        "    ckpt = build_checkpoint(model)\n"
        "    torch.save(ckpt, FILENAME)\n"
        + gather
    ) + (_CANONICAL + _RESUME_STATE if cell.view == "resume" else "")


_CANONICAL = r'''

def canonical_optimizer_state(state_dict):
    """An optimizer state dict with params numbered by position and Adam's step as a number (as the harness compares it)."""
    order = [p for group in state_dict.get("param_groups", []) for p in group.get("params", [])]
    number = dict((p, i) for i, p in enumerate(order))
    groups = [dict(g, params=[number[p] for p in g.get("params", [])]) for g in state_dict.get("param_groups", [])]
    state = {}
    for key, value in state_dict.get("state", {}).items():
        if isinstance(value, dict) and "step" in value:
            step = value["step"]
            value = dict(value, step=float(step.item() if isinstance(step, torch.Tensor) else step))
        state[number.get(key, key)] = value
    return dict(state_dict, state=state, param_groups=groups)
'''

_RESUME_STATE = r'''

def resume_state(model, ckpt):
    """What a resume must restore: the model, the optimizer and scheduler states, the RNG states and the step."""
    tensors, values = module_tensors(model, "model.")
    flatten(canonical_optimizer_state(ckpt["optimizer"]), "optimizer.", tensors, values)
    flatten(ckpt["scheduler"], "scheduler.", tensors, values)
    flatten(ckpt["rng"], "rng.", tensors, values)
    values["step"] = plain(ckpt["step"])
    return tensors, values
'''


_SAVE_MAIN = r'''

FORMAT = @@FORMAT@@
FILENAME = @@FILENAME@@
PREFIX = @@PREFIX@@  # the state-dict key prefix of the case (torch.compile / DataParallel), or None
#: where the source env placed the model: "cpu", or "cuda:N" (a GPU save; without a GPU here its storages
#: are tagged cuda:N as a GPU save tags them, through torch.serialization.register_package)
DEVICE = @@DEVICE@@


def gpu_tags(device):
    """Make torch.save tag every storage `device` (the tag a save on that GPU writes); returns the undo."""
    import torch.serialization as ser

    def tagger(obj):
        return device

    def never_restore(obj, location):
        return None

    ser.register_package(-1, tagger, never_restore)
    return lambda: ser._package_registry.remove(next(e for e in ser._package_registry if e[1] is tagger))


def save():
    print("env A: torch %s, Python %s" % (torch.__version__, sys.version.split()[0]))
    model = build_model()
    inputs = make_inputs()
    undo = None
    if DEVICE.startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.device_count() > int(DEVICE.split(":")[1]):
            model = model.to(DEVICE)
            inputs = tuple(t.to(DEVICE) for t in inputs) if inputs is not None else None
        else:
            print("no %s here: storages are tagged %s as a save on that GPU tags them" % (DEVICE, DEVICE))
            undo = gpu_tags(DEVICE)
    try:
        tensors, values, forward_module = save_file(model, inputs)
    finally:
        if undo is not None:
            undo()
    expected = record(tensors, values)
    expected.update(format=FORMAT, file=FILENAME, view=@@VIEW@@, torch=torch.__version__, python=sys.version.split()[0])
    expected["forward"] = None
    if forward_module is not None and inputs is not None:
        try:
            outputs = run_forward(forward_module, inputs)
        except Exception as e:  # a model this env cannot run: nothing to compare later
            print("no forward outputs recorded: %s: %s" % (type(e).__name__, e))
        else:
            expected["forward"] = record(dict(("output%d" % i, (o, "output")) for i, o in enumerate(outputs)), {})
    with open("expected.json", "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    print("wrote %s (%s) and expected.json: %d tensors" % (FILENAME, FORMAT, len(tensors)))
    return 0


@@MAIN@@if __name__ == "__main__":
    sys.exit(main())
'''

_MAIN_CLEANING = '''def main():
    try:
        return save()
    finally:  # the moved class's module exists only while saving
        remove_module_files()


'''
_MAIN = '''def main():
    return save()


'''


def _module_files_source(module_files: dict[str, str]) -> str:
    """Code that writes a moved class's module beside save.py before the model's code imports it."""
    if not module_files:
        return ""
    tops = sorted({rel.split("/")[0] for rel in module_files})
    return _fill(_MODULE_FILES, FILES=json.dumps(module_files, indent=1, sort_keys=True), TOPS=repr(tops))


_MODULE_FILES = r'''
# ---------------------------------------------------------------------------
# The model's class moved: the file pickles it under a module that only the
# save side has. It is written beside this script while the model is built
# and saved, then removed, so load.py (like the new code) cannot import it.

MODULE_FILES = @@FILES@@
MODULE_DIRS = @@TOPS@@


def write_module_files():
    here = os.path.dirname(os.path.abspath(__file__))
    for rel, text in MODULE_FILES.items():
        path = os.path.join(here, *rel.split("/"))
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(text)


def remove_module_files():
    import shutil

    here = os.path.dirname(os.path.abspath(__file__))
    for top in MODULE_DIRS:
        shutil.rmtree(os.path.join(here, top), ignore_errors=True)


write_module_files()
'''


def _header(cell: _Cell, role: str) -> str:
    text = cell.signature.get("text") or cell.signature.get("outcome") or "failure"
    a, b = _torch_of(cell, "source"), _torch_of(cell, "target")
    if role == "save":
        what = (f"Run in env A ({_label_of(cell, 'source')}): ``python save.py``. It builds the model, saves it as\n"
                f"the {cell.fmt} format does ({cell.filename}) and writes expected.json: every saved tensor's dtype,\n"
                "shape and sha256, and which tensors share storage.")
    else:
        what = (f"Run in env B ({_label_of(cell, 'target')}), in a folder holding {cell.filename} and expected.json from\n"
                f"env A: ``python load.py``. It loads {cell.filename} with {_options_text(cell.options)}\n"
                "and compares what came back with expected.json bit for bit. Exit 1: the failure (each difference, or\n"
                "the load's exception, is printed); 0: \"OK: N tensors bit-identical\"; 2: this torch lacks an option used.")
    return f'"""Reproduction of "{text}" (torch {a} -> torch {b}): the {role} side. Plain torch only.\n\n{what}\n"""\n'


def _save_script(cell: _Cell, model_code: str, module_files: dict[str, str]) -> str:
    future, code = _hoist_future(model_code)
    prefix = cell.spec.data.get("state_dict_prefix")
    device = "cpu"
    if cell.save_device in ("cuda", "cuda-emulated"):
        device = f"cuda:{cell.spec.device_index}"
    parts = [
        _header(cell, "save"),
        future + "\n" if future else "",
        _COMMON_IMPORTS,
        _HELPERS,
        _module_files_source(module_files),
        "\n# ---------------------------------------------------------------------------\n# The model\n",
        code.strip("\n") + "\n",
        _EXTRA_CLASSES if cell.extras else "",
        "\n# ---------------------------------------------------------------------------\n# The save\n",
        _save_body(cell),
        _fill(_SAVE_MAIN, FORMAT=repr(cell.fmt), FILENAME=repr(cell.filename), PREFIX=repr(prefix),
              DEVICE=repr(device), VIEW=repr(cell.view),
              MAIN=_MAIN_CLEANING if module_files else _MAIN),
    ]
    return "".join(parts)


# --------------------------------------------------------------------------
# load.py


def _options_text(options: LoadOptions) -> str:
    shown = options.to_dict()
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "the format's own loader"


_MAP_LOCATION_SOURCE = {
    "cpu": '"cpu"',
    "device:cpu": 'torch.device("cpu")',
    "dict:cuda:0->cpu": '{"cuda:0": "cpu"}',
    "callable": "lambda storage, loc: storage",
    "cuda": '"cuda"',
    "cuda:0": '"cuda:0"',
    "device:cuda:0": 'torch.device("cuda", 0)',
    "dict:cuda:1->cuda:0": '{"cuda:1": "cuda:0"}',
    "dict:cuda:1->cpu": '{"cuda:1": "cpu"}',
}

_LOAD_KWARGS = r'''

class NotHere(Exception):
    """This torch lacks an option the cell uses: the reproduction does not apply here (exit 2)."""


def has_param(fn, name):
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def torch_load_kwargs():
    """torch.load's keyword arguments for this cell: @@OPTIONS@@."""
    kw = {}
@@KWARGS@@    return kw
'''


def _kwargs_source(options: LoadOptions) -> str:
    lines = []
    if options.map_location not in (None, "none"):
        lines.append(f"    kw[\"map_location\"] = {_MAP_LOCATION_SOURCE[options.map_location]}\n")
    if options.weights_only not in (None, "default"):
        lines += [
            '    if not has_param(torch.load, "weights_only"):\n',
            '        raise NotHere("torch.load has no weights_only parameter in this torch")\n',
            f'    kw["weights_only"] = {options.weights_only == "true"}\n',
        ]
    if options.mmap:
        lines += [
            '    if not has_param(torch.load, "mmap"):\n',
            '        raise NotHere("torch.load has no mmap parameter in this torch")\n',
            '    kw["mmap"] = True\n',
        ]
    return "".join(lines)


_SOURCE_FORMS = {
    None: ("return str(path)", ""),
    "pathlib": ("return pathlib.Path(path)", ""),
    "file": ('return stack.enter_context(open(path, "rb"))', ""),
    "bytesio": ('with open(path, "rb") as f:\n        return io.BytesIO(f.read())', ""),
    "stream": ('return Unseekable(stack.enter_context(open(path, "rb")))', "unseekable"),
    "stream-buffered": ('return io.BytesIO(Unseekable(stack.enter_context(open(path, "rb"))).read())', "unseekable"),
    "nonascii": (
        'target = os.path.join(scratch, "mod\\u00e8le-\\u6a21\\u578b.pt")  # modèle-模型.pt\n'
        "    shutil.copyfile(path, target)\n    return target", ""),
    "gzip": ('target = os.path.join(scratch, os.path.basename(path) + ".gz")\n'
             '    with open(path, "rb") as f, open(target, "wb") as g:\n'
             "        g.write(gzip.compress(f.read(), mtime=0))\n    return target", ""),
    "gzip-decompressed": ('target = os.path.join(scratch, os.path.basename(path) + ".gz")\n'
                          '    with open(path, "rb") as f, open(target, "wb") as g:\n'
                          "        g.write(gzip.compress(f.read(), mtime=0))\n"
                          '    with gzip.open(target, "rb") as f:  # the fix: decompress, then load the bytes\n'
                          "        return io.BytesIO(f.read())", ""),
    "lfs-pointer": ('with open(path, "rb") as f:\n        data = f.read()\n'
                    '    target = os.path.join(scratch, os.path.basename(path))\n'
                    '    with open(target, "w") as g:  # what a clone made without git lfs leaves in place of the file\n'
                    '        g.write("version https://git-lfs.github.com/spec/v1\\noid sha256:%s\\nsize %d\\n" % (hashlib.sha256(data).hexdigest(), len(data)))\n'
                    "    return target", ""),
    "html-page": ('target = os.path.join(scratch, os.path.basename(path))\n'
                  '    with open(target, "w") as g:  # what a failed download saves under the model\'s name\n'
                  '        g.write("<!DOCTYPE html>\\n<html><head><title>404 Not Found</title></head>\\n"\n'
                  '                "<body><h1>Not Found</h1><p>The requested URL /models/%s was not found on this server.</p></body></html>\\n"\n'
                  "                % os.path.basename(path))\n    return target", ""),
    "truncated": ('with open(path, "rb") as f:\n        data = f.read()\n'
                  '    target = os.path.join(scratch, os.path.basename(path))\n'
                  '    with open(target, "wb") as g:  # an interrupted copy: the first half\n'
                  "        g.write(data[:len(data) // 2])\n    return target", ""),
}

_UNSEEKABLE = r'''

class Unseekable(io.RawIOBase):
    """Reads a file front to back and can neither seek nor tell, like a pipe or an HTTP body."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buffer):
        data = self.inner.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset, whence=0):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")
'''


def _source_code(options: LoadOptions) -> str:
    body, extra = _SOURCE_FORMS[options.source]
    what = SOURCES.get(options.source or "", "its path as a str")
    return (
        (_UNSEEKABLE if extra == "unseekable" else "")
        + "\n\ndef file_source(path, scratch, stack):\n"
        + f'    """What torch.load is given: {what}."""\n'
        + f"    {body}\n"
    )


_ALLOWLIST = r'''

_REFUSED = (
    re.compile(r"GLOBAL ([A-Za-z_][\w.]*) was not an allowed global"),
    re.compile(r"Unsupported global: GLOBAL ([A-Za-z_][\w.]*)"),
    re.compile(r"types allowlisted via `add_safe_globals`, but got <class '([A-Za-z_][\w.]*(?:\[\w+\])?)'>"),
    re.compile(r"Unsupported class ([A-Za-z_][\w.]*)"),
)
# Globals whose import or call runs code: never allowlisted (an allowlist is no fix for such a file).
_RUNS_CODE = ("builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__", "builtins.getattr",
              "builtins.open", "os.", "posix.", "nt.", "subprocess.", "runpy.", "importlib.", "pickle.", "shutil.")


def resolve_global(name):
    """The object a refused global names: its longest importable module, then attributes."""
    import importlib

    m = re.match(r"^numpy\.dtype\[(\w+)\]$", name)
    if m:  # numpy 1's dtype classes have no import path
        import numpy
        return type(numpy.dtype(m.group(1)))
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError("cannot import %s" % name)


def load_allowing(load):
    """Load with weights_only=True, allowlisting each global torch refuses until the load succeeds."""
    ser = torch.serialization
    if not hasattr(ser, "add_safe_globals"):
        raise NotHere("torch.serialization has no add_safe_globals in this torch")
    before = list(ser.get_safe_globals()) if hasattr(ser, "get_safe_globals") else None
    needed = []
    try:
        while True:
            try:
                return load(), needed
            except Exception as e:
                name = next((m.group(1) for m in (p.search(str(e)) for p in _REFUSED) if m), None)
                if name is None or name in needed or len(needed) >= 64 or name.startswith(_RUNS_CODE):
                    raise
                obj = resolve_global(name)
                own = "%s.%s" % (getattr(obj, "__module__", ""), getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
                ser.add_safe_globals([obj] if own == name else [(obj, name)])
                needed.append(name)
    finally:  # the allowlist as it was: what this load needed is printed, not kept
        if before is not None and hasattr(ser, "clear_safe_globals"):
            ser.clear_safe_globals()
            if before:
                ser.add_safe_globals(before)
'''


def _load_body(cell: _Cell) -> str:
    """``load()``: load as the cell says; returns (tensors, values, module for the forward, names to ignore)."""
    o, fmt = cell.options, cell.fmt
    into = "    model = new_model()\n" + ("    model = model.to(LOAD_DEVICE)\n" if cell.load_device != "cpu" else "")
    if fmt in ("state_dict", "state_dict_legacy"):
        head = (
            "    scratch = tempfile.mkdtemp(prefix=\"repro-source-\")\n"
            "    try:\n"
            "        with contextlib.ExitStack() as stack:\n"
            "            state = torch.load(file_source(FILENAME, scratch, stack), **torch_load_kwargs())\n"
            "    finally:\n"
            "        shutil.rmtree(scratch, ignore_errors=True)\n"
        )
        if cell.apply == "strict":
            return head + into + "    model.load_state_dict(state, strict=True)\n    return module_tensors(model) + (model, ())\n"
        if cell.apply == "assign":
            return head + _ASSIGN
        return head + "    return flatten(state) + (None, ())\n"
    if fmt == "full_model":
        if o.loader == "torch.jit.load":
            return _JIT_LOAD + "    model = jit_load()\n    return module_tensors(model) + (model, ())\n"
        return (
            "    model = torch.load(FILENAME, **torch_load_kwargs())\n"
            "    if not isinstance(model, torch.nn.Module):\n"
            '        raise TypeError("torch.load returned a %s, not an nn.Module" % type(model).__name__)\n'
            "    return module_tensors(model) + (model, ())\n"
        )
    if fmt == "torchscript":
        if o.loader == "torch.load":
            return (
                "    model = torch.load(FILENAME, **torch_load_kwargs())\n"
                "    if not isinstance(model, torch.jit.ScriptModule):\n"
                '        raise TypeError("torch.load returned a %s from a TorchScript archive, not a ScriptModule" % type(model).__name__)\n'
                "    return module_tensors(model) + (model, ())\n"
            )
        return _JIT_LOAD + "    model = jit_load()\n    return module_tensors(model) + (model, ())\n"
    if fmt == "exported":
        return (
            '    if not hasattr(torch, "export") or not hasattr(torch.export, "load"):\n'
            '        raise NotHere("torch.export.load does not exist in this torch")\n'
            "    ep = torch.export.load(FILENAME)\n"
            "    return program_tensors(ep) + (ep.module(), ())\n"
        )
    if fmt == "safetensors":
        if o.loader == "torch.load":
            return (
                "    state = torch.load(FILENAME, **torch_load_kwargs())\n"
                "    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):\n"
                '        raise TypeError("torch.load returned a %s from a safetensors file, not a dict of tensors" % type(state).__name__)\n'
                + into + _SAFETENSORS_INTO + "    return module_tensors(model) + (model, ())\n"
            )
        device = repr(o.device) if o.device else "None"
        return (
            "    import inspect\n\n    import safetensors.torch\n\n"
            + into
            + "    kw = {}\n"
            f"    if {device} is not None and \"device\" in inspect.signature(safetensors.torch.load_model).parameters:\n"
            f"        kw[\"device\"] = {device}\n"
            "    safetensors.torch.load_model(model, FILENAME, strict=True, **kw)\n"
            "    return module_tensors(model) + (model, ())\n"
        )
    # checkpoint
    if o.safe_globals == "needed":
        head = (
            "    ckpt, needed = load_allowing(lambda: torch.load(FILENAME, **torch_load_kwargs()))\n"
            "    if needed:\n"
            '        print("weights_only=True loads it once these %d globals are allowlisted: %s" % (len(needed), ", ".join(needed)))\n'
        )
    else:
        head = "    ckpt = torch.load(FILENAME, **torch_load_kwargs())\n"
    if cell.apply == "resume":
        return head + into + _RESUME_LOAD
    return head + "    return flatten(ckpt) + (None, ())\n"


_JIT_LOAD = r'''    def jit_load():
        """torch.jit.load with the cell's map_location (it takes a device or a string, never a dict or a callable)."""
        kw = torch_load_kwargs()
        return torch.jit.load(FILENAME, **dict((k, v) for k, v in kw.items() if k == "map_location"))

'''

_ASSIGN = r'''    if not has_param(torch.nn.Module.load_state_dict, "assign"):
        raise NotHere("nn.Module.load_state_dict has no assign parameter in this torch")
    model = meta_model()
    model.load_state_dict(state, strict=True, assign=True)
    tensors, values = module_tensors(model)
    # Non-persistent buffers are in no state dict, so assign=True leaves them on the meta device: not a loading
    # defect (the user re-creates them), so they are not compared, and no forward is run.
    left = tuple(n for n, (t, role) in tensors.items() if role == "buffer_np" and t.device.type == "meta")
    return tensors, values, (None if left else model), left
'''

_SAFETENSORS_INTO = r'''    # Put the tensors into the model strictly, as safetensors.torch.load_model does: a key the file lacks is
    # fine only when it shares storage with one it has (save_model keeps one name per group of tied tensors).
    own = model.state_dict()
    loaded = set(storage_key(own[k]) for k in state if k in own)
    missing, unexpected = model.load_state_dict(state, strict=False)
    untied = sorted(k for k in missing if storage_key(own[k]) not in loaded)
    if untied or unexpected:
        raise RuntimeError("Error(s) in loading state_dict for %s: missing %s, unexpected %s"
                           % (type(model).__name__, untied, sorted(unexpected)))
'''

_RESUME_LOAD = r'''    model.load_state_dict(ckpt["model"], strict=True)
    optimizer, scheduler = make_training(model)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    rng = ckpt["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    python_state = rng["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    tensors, values = module_tensors(model, "model.")
    flatten(canonical_optimizer_state(optimizer.state_dict()), "optimizer.", tensors, values)
    flatten(scheduler.state_dict(), "scheduler.", tensors, values)
    flatten({"torch": torch.get_rng_state(), "python": random.getstate()}, "rng.", tensors, values)
    values["step"] = plain(ckpt["step"])
    return tensors, values, model, ()
'''

def _training_code(train: dict[str, Any]) -> str:
    """`make_training` for the case's optimizer and learning rate: one spelling for a spec'd case and a user case."""
    return f"\nOPTIMIZER = {train.get('optimizer', 'adam')!r}\nLR = {float(train.get('lr', 1e-3))!r}\n" + _MAKE_TRAINING


_MAKE_TRAINING = r'''

def make_training(model):
    """A fresh optimizer and LR scheduler for `model`, as the case trains it."""
    seen, params = set(), []
    for p in model.parameters():
        if id(p) not in seen and p.requires_grad:
            seen.add(id(p))
            params.append(p)
    if OPTIMIZER == "sgd":
        optimizer = torch.optim.SGD(params, lr=LR, momentum=0.9)
    elif OPTIMIZER == "adamw":
        optimizer = torch.optim.AdamW(params, lr=LR)
    else:
        optimizer = torch.optim.Adam(params, lr=LR)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
'''

_META_MODEL = r'''

def meta_model():
    """The model with every tensor on the meta device (built there, so tied parameters stay one), for assign=True."""
    if not hasattr(torch.device, "__enter__"):
        raise NotHere("this torch cannot build a model on the meta device (torch.device is no context manager)")
    with torch.device("meta"):
        return @@BUILD@@
'''

_COMPARE = r'''

def unravel(flat, shape):
    index = []
    for dim in reversed(shape):
        if dim == 0:
            return [flat]
        index.append(flat % dim)
        flat //= dim
    return list(reversed(index))


def element_text(data, dtype):
    """One element's bytes as hex (most significant first), and its value where struct can read it."""
    h = "0x" + data[::-1].hex()
    try:
        if dtype == "bfloat16":
            value = struct.unpack("<f", b"\x00\x00" + data)[0]
        elif dtype == "complex64":
            value = complex(*struct.unpack("<ff", data))
        elif dtype == "complex128":
            value = complex(*struct.unpack("<dd", data))
        else:
            value = struct.unpack(_STRUCT[dtype], data)[0]
    except (KeyError, struct.error):
        return h
    return "%s (%r)" % (h, value)


def bits_difference(name, rec, t):
    """Where a loaded tensor's bytes first differ from the saved ones."""
    data = tensor_bytes(t)
    if hashlib.sha256(data).hexdigest() == rec["sha256"]:
        return None
    saved = base64.b64decode(rec["bytes"]) if "bytes" in rec else None
    if saved is None or t.layout != torch.strided:
        return "%s: bits differ: sha256 %s -> %s" % (name, rec["sha256"][:16], hashlib.sha256(data).hexdigest()[:16])
    size = max(t.element_size(), 1)
    i = next((k for k in range(min(len(saved), len(data))) if saved[k] != data[k]), min(len(saved), len(data))) // size
    chunk = slice(i * size, (i + 1) * size)
    return "%s%s: bits differ: saved %s, loaded %s" % (
        name, unravel(i, rec["shape"]), element_text(saved[chunk], rec["dtype"]), element_text(data[chunk], rec["dtype"]))


def tensor_differences(name, rec, t, role):
    if t.device.type == "meta":
        return ["%s: still on the meta device (nothing was loaded into it)" % name]
    out = []
    if dtype_name(t.dtype) != rec["dtype"]:
        out.append("%s: dtype %s -> %s" % (name, rec["dtype"], dtype_name(t.dtype)))
    if list(t.shape) != rec["shape"]:
        out.append("%s: shape %s -> %s" % (name, rec["shape"], list(t.shape)))
    layout = str(t.layout).replace("torch.", "")
    if layout != rec["layout"]:
        out.append("%s: layout %s -> %s" % (name, rec["layout"], layout))
    # "tensor" is a file's role where nothing knows better; a numpy array is never interchangeable with a tensor
    if ("tensor" not in (role, rec["role"]) or "ndarray" in (role, rec["role"])) and role != rec["role"]:
        out.append("%s: role %s -> %s" % (name, rec["role"], role))
    if rec["role"] == "parameter" and bool(t.requires_grad) != rec["requires_grad"]:
        out.append("%s: requires_grad %s -> %s" % (name, rec["requires_grad"], bool(t.requires_grad)))
    if out:
        return out
    diff = bits_difference(name, rec, t)
    return [diff] if diff else []


def compare(expected, tensors, values, ignore):
    """Every difference between what save.py recorded and what the load gave back."""
    want = dict((n, r) for n, r in expected["tensors"].items() if n not in ignore)
    got = dict((n, v) for n, v in tensors.items() if n not in ignore)
    diffs = ["%s: missing (saved, not loaded)" % n for n in sorted(set(want) - set(got))]
    diffs += ["%s: unexpected (loaded, never saved)" % n for n in sorted(set(got) - set(want))]
    both = set(want) & set(got)
    for name in sorted(both):
        t, role = got[name]
        diffs += tensor_differences(name, want[name], t, role)
    before = set(frozenset(g) & both for g in expected["shared_storage"])
    groups = {}
    for name in both:
        key = storage_key(got[name][0])
        if key is not None:
            groups.setdefault(key, set()).add(name)
    after = set(frozenset(g) for g in groups.values())
    before, after = set(g for g in before if len(g) > 1), set(g for g in after if len(g) > 1)
    diffs += ["%s: shared storage when saved, separate now (tie lost)" % ", ".join(sorted(g)) for g in sorted(before - after, key=sorted)]
    diffs += ["%s: separate storage when saved, shared now" % ", ".join(sorted(g)) for g in sorted(after - before, key=sorted)]
    for key, value in sorted(expected["values"].items()):
        if key not in values:
            diffs.append("%s: value %s -> (absent)" % (key, value))
        elif values[key] != value:
            diffs.append("%s: value %s -> %s" % (key, value, values[key]))
    return diffs


def forward_differences(expected, module):
    """The forward outputs on the saved inputs, compared with the saved ones (other kernels may differ in the last bits)."""
    inputs = make_inputs()
    if expected.get("forward") is None or inputs is None:
        return ["forward: save.py recorded no forward outputs"]
    if LOAD_DEVICE != "cpu":
        inputs = tuple(t.to(LOAD_DEVICE) for t in inputs)
    try:
        outputs = run_forward(module, inputs)
    except Exception as e:
        return ["forward: raised %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")]
    saved = expected["forward"]["tensors"]
    if len(outputs) != len(saved):
        return ["forward: %d outputs, %d when saved" % (len(outputs), len(saved))]
    diffs = []
    for i, out in enumerate(outputs):
        diffs += tensor_differences("output%d" % i, saved["output%d" % i], out, "output")
    return diffs
'''

_RECOVER = r'''

def recover(expected, tensors, module):
    """Find saved buffers the module holds as plain attributes: an archive from an older torch (1.4) records them so.

    state_dict() and named_buffers() then omit them, though forward uses them; they are compared anyway, and said.
    """
    found = []
    for name, rec in expected["tensors"].items():
        if name in tensors or rec["role"] not in ("buffer", "buffer_np"):
            continue
        value = module
        for part in name.split("."):
            value = getattr(value, part, None)
        if isinstance(value, torch.Tensor):
            tensors[name] = (value, rec["role"])
            found.append(name)
    if found:
        print("note: %s are not in this module's state_dict() or named_buffers(), only attributes (an archive from an "
              "older torch); compared as attributes" % ", ".join(found))
'''

_LOAD_MAIN = r'''

FORMAT = @@FORMAT@@
FILENAME = @@FILENAME@@
#: where the load builds models: the target env's device
LOAD_DEVICE = @@LOAD_DEVICE@@
#: compare the forward outputs too (the failure is in them)
COMPARE_FORWARD = @@COMPARE_FORWARD@@


def message(error):
    """An exception's message without the C++ stack frames torch appends (they name addresses, not causes)."""
    lines = str(error).splitlines()
    kept = [ln for ln in lines if not ln.startswith(("frame #", "Exception raised from ")) and ln.strip() != "<omitting python frames>"]
    return "\n".join(kept).strip()


def main():
    print("env B: torch %s, Python %s" % (torch.__version__, sys.version.split()[0]))
    with open("expected.json") as f:
        expected = json.load(f)
    print("expected.json: saved by torch %s (Python %s), %s format, %d tensors"
          % (expected["torch"], expected["python"], expected["format"], len(expected["tensors"])))
    try:
        tensors, values, module, ignore = load()
    except NotHere as e:
        print("CANNOT RUN HERE: %s" % e)
        return 2
    except Exception as e:  # the load raised: that is the failure
        print("FAIL: the load raised %s: %s" % (type(e).__name__, message(e)))
        return 1
@@RECOVER_CALL@@    diffs = compare(expected, tensors, values, ignore)
    if COMPARE_FORWARD:
        if module is None:
            diffs.append("forward: the load gives no module to run")
        else:
            diffs += forward_differences(expected, module)
    if diffs:
        print("FAIL: %d difference(s) between what save.py saved and what the load gave back:" % len(diffs))
        for line in diffs:
            print("  " + line)
        return 1
    compared = len([n for n in expected["tensors"] if n not in ignore])
    print("OK: %d tensors bit-identical" % compared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _needs_model(cell: _Cell) -> bool:
    """Whether load.py needs the model's code: to build a model, to unpickle its class, or to make the forward inputs."""
    return cell.apply in _BUILDS_MODEL or cell.fmt in ("full_model", "safetensors") or cell.compare_forward


def _load_script(cell: _Cell, model_code: str, class_name: str) -> str:
    future, code = _hoist_future(model_code)
    o = cell.options
    imports = _COMMON_IMPORTS + "import contextlib\nimport io\nimport shutil\nimport struct\nimport tempfile\n"
    if o.source in ("gzip", "gzip-decompressed"):
        imports += "import gzip\n"
    if o.safe_globals == "needed":
        imports += "import re\n"
    if cell.apply == "resume":
        imports += "import random\n"
    model_part = ""
    if _needs_model(cell):
        model_part = "\n# ---------------------------------------------------------------------------\n# The model\n" + code.strip("\n") + "\n"
    extras = _EXTRA_CLASSES if cell.extras else ""
    body = "\n# ---------------------------------------------------------------------------\n# The load\n"
    body += _fill(_LOAD_KWARGS, OPTIONS=_options_text(o), KWARGS=_kwargs_source(o))
    if cell.fmt in ("state_dict", "state_dict_legacy"):
        body += _source_code(o)
    if o.safe_globals == "needed":
        body += _ALLOWLIST
    if cell.apply == "assign":
        body += _fill(_META_MODEL, BUILD=_meta_build(cell, code, class_name))
    if cell.apply == "resume":
        train = cell.spec.data.get("train") or {}
        if not cell.user:  # a user case's code has its make_training already (`_factory_code`)
            body += _training_code(train)
        body += _CANONICAL
    body += "\n\ndef load():\n"
    body += f'    """Load {cell.filename} as the cell does; (tensors, values, module for the forward, names not compared)."""\n'
    body += _load_body(cell)
    parts = [
        _header(cell, "load"),
        future + "\n" if future else "",
        imports,
        _HELPERS,
        _COMPARE,
        model_part,
        extras,
        body,
        _RECOVER if cell.fmt == "torchscript" else "",
        _fill(_LOAD_MAIN, FORMAT=repr(cell.fmt), FILENAME=repr(cell.filename), LOAD_DEVICE=repr(cell.load_device),
              COMPARE_FORWARD=repr(cell.compare_forward),
              RECOVER_CALL="    if module is not None:\n        recover(expected, tensors, module)\n" if cell.fmt == "torchscript" else ""),
    ]
    return "".join(parts)


def _meta_build(cell: _Cell, code: str, class_name: str) -> str:
    """The expression that builds the model's architecture (no values) inside ``with torch.device("meta")``."""
    if cell.user:
        return "call_factory()[0]"
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise RuntimeError(f"the plain model's code does not parse: {e}") from e
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    if class_name in names:
        return f"{class_name}()"
    raise ReproUnsupported(f"the plain model's code defines no class {class_name!r} to build on the meta device for assign=True")


# --------------------------------------------------------------------------
# README.md


def _fp_line(info: dict[str, Any]) -> str:
    fp = info.get("fingerprint") or {}
    parts = [f"torch {fp.get('torch') or info.get('torch') or '?'}"]
    if fp.get("torch_git"):
        parts.append(f"git {str(fp['torch_git'])[:12]}")
    parts.append(f"Python {fp.get('python') or '?'}")
    if fp.get("numpy"):
        parts.append(f"numpy {fp['numpy']}")
    if fp.get("cuda"):
        parts.append(f"CUDA {fp['cuda']}")
    parts.append(f"{fp.get('platform') or '?'} {fp.get('machine') or ''}".strip())
    if fp.get("device"):
        parts.append(f"device {fp['device']}")
    return ", ".join(parts)


def _spec_brief(spec: Spec) -> list[str]:
    data = spec.data
    if spec.factory:
        return [f"- a user case: the model comes from the factory `{spec.factory}` (seed {spec.seed}); its code "
                "cannot be written out, so both scripts import it: install the package that holds it in both envs"]
    lines = []
    leaves = spec.leaves()
    layers = ", ".join(f"`{leaf.path}` {leaf.kind} ({leaf.dtype})" for leaf in leaves) or "none"
    lines.append(f"- layers: {layers}")
    for t in data.get("tensors") or []:
        kind = t.get("kind", "buffer")
        if kind == "buffer" and not t.get("persistent", True):
            kind = "non-persistent buffer"
        where = f" on `{t['at']}`" if t.get("at") else ""
        lines.append(f"- extra {kind} `{t['name']}`{where}: {t.get('dtype', 'float32')} {list(t['shape'])}"
                     + (f", {t['layout']}" if t.get("layout", "strided") != "strided" else ""))
    for key, label in (("ties", "tied"), ("plant", "special values planted in"), ("layout", "layout"),
                       ("parametrize", "parametrized")):
        for item in data.get(key) or []:
            lines.append(f"- {label}: {json.dumps(item, sort_keys=True)}")
    if data.get("train"):
        lines.append(f"- trained: {json.dumps(data['train'], sort_keys=True)}")
    if data.get("state_dict_prefix"):
        lines.append(f"- state-dict keys prefixed with `{data['state_dict_prefix']}`")
    if data.get("checkpoint_extras"):
        lines.append(f"- checkpoint extras: {', '.join(data['checkpoint_extras'])}")
    if data.get("class_path"):
        lines.append(f"- pickled under the class path `{data['class_path']}`, which only the save side can import")
    return lines


def _observed_lines(observed: dict[str, Any]) -> list[str]:
    if not observed:
        return ["- (no result recorded)"]
    lines = [f"- outcome: **{observed.get('outcome', '?')}**"]
    if observed.get("detail"):
        lines.append(f"- detail: {observed['detail']}")
    diagnosis = observed.get("diagnosis") or {}
    if diagnosis:
        lines.append(f"- diagnosis `{diagnosis.get('code')}`: {diagnosis.get('summary')}")
        if diagnosis.get("fix"):
            lines.append(f"- fix: `{diagnosis['fix']}`")
    error = observed.get("error") or {}
    if error:
        message = str(error.get("message") or "").strip()
        lines.append(f"- exception: `{error.get('type')}`" + (f"\n\n  ```\n  {message[:1500].replace(chr(10), chr(10) + '  ')}\n  ```" if message else ""))
    diffs = observed.get("differences") or []
    for d in diffs[:5]:
        where = f"[{', '.join(map(str, d['index']))}]" if d.get("index") is not None else ""
        if d.get("aspect") in ("missing", "unexpected"):
            lines.append(f"- {d['aspect']} key `{d.get('tensor')}`")
        else:
            lines.append(f"- `{d.get('tensor')}{where}`: {d.get('aspect')} {d.get('expected')} -> {d.get('actual')}")
    if len(diffs) > 5:
        lines.append(f"- and {len(diffs) - 5} more differences")
    forward = observed.get("forward") or {}
    if forward.get("status") in ("drift", "error"):
        lines.append(f"- forward: {json.dumps(forward, sort_keys=True)}")
    return lines


def _readme(cell: _Cell, observed: dict[str, Any], key: str, command: str, class_name: str) -> str:
    text = cell.signature.get("text") or observed.get("outcome") or "failure"
    a, b = _torch_of(cell, "source"), _torch_of(cell, "target")
    source, target = _side(cell.envs, "source"), _side(cell.envs, "target")
    needs = ["torch"] + (["safetensors"] if cell.fmt == "safetensors" else [])
    if any(k in ("numpy_scalar", "numpy_array") for k in cell.extras):
        needs.append("numpy")
    lines = [
        f"# {cell.fmt}: {text} (saved by torch {a}, loaded by torch {b})",
        "",
        f"A model saved with torch {a} as `{cell.filename}` ({cell.fmt}: {_format_summary(cell.fmt)}) "
        f"{_what_happens(observed.get('outcome') or cell.signature.get('outcome'))} when torch {b} loads it with "
        f"{_options_text(cell.options)}.",
        "",
        "## Environments",
        "",
        f"- env A (save), `{source.get('label', '?')}`: {_fp_line(source)}",
        f"- env B (load), `{target.get('label', '?')}`: {_fp_line(target)}",
        f"- each needs: {', '.join(needs)}" + (f", and the package that holds `{cell.spec.factory}`" if cell.user else ""),
        "",
        "## Reproduce",
        "",
        "Both scripts use plain torch only. In env A:",
        "",
        "```",
        "python save.py",
        "```",
        "",
        f"It writes `{cell.filename}` and `expected.json` (every saved tensor's dtype, shape and sha256, and which "
        f"tensors share storage). Copy both next to `load.py` in env B, then:",
        "",
        "```",
        "python load.py",
        "```",
        "",
        "`load.py` exits 1 and prints each difference (tensor, aspect, first differing element) or the load's "
        "exception when it sees the failure; 0 and `OK: N tensors bit-identical` when it does not; 2 when this torch "
        "lacks an option it uses.",
    ]
    if cell.emulated:
        lines += ["", f"The source env saved on an emulated GPU: its storages carry the `cuda:{cell.spec.device_index}` "
                  "tag a GPU save writes. `save.py` saves on that GPU where there is one, and otherwise tags the "
                  "storages the same way through `torch.serialization.register_package`."]
    if cell.fmt == "full_model" and not cell.user and not cell.spec.class_path:
        lines += ["", f"The file pickles the model's class by name (`__main__.{class_name}` when `save.py` defines it); "
                  "`load.py` defines the same class, as the code that loads a whole-model pickle must."]
    if cell.method == "trace":
        lines += ["", "The source env could not script the model and traced it, as `save.py` does when scripting fails."]
    lines += [
        "",
        "## Expected",
        "",
        f"The load succeeds and every tensor comes back bit-identical to what torch {a} saved "
        "(same keys, dtypes, shapes, bytes and shared storage)"
        + (", and the forward outputs match" if cell.compare_forward else "") + ".",
        "",
        "## Observed",
        "",
        f"With torch {b}, as the harness saw it (the harness builds the model as a class of its own; the scripts "
        "define theirs):",
        "",
        *_observed_lines(observed),
        "",
        "## The model",
        "",
        f"The smallest case found (`{cell.spec.name}`, {cell.spec.origin}); `load.py` and `save.py` hold it as "
        + ("a call of the user's factory." if cell.user else f"plain `nn.Module` code (`{class_name}`)."),
        "",
        *_spec_brief(cell.spec),
        "",
        "## How it was found",
        "",
        f"torch-roundtrip (a cross-env serialization harness) saw cell `{key}` fail in `{target.get('label', '?')}` "
        "and shrank it with:",
        "",
        "```",
        command,
        "```",
        "",
        "`python -m harness replay spec.json` replays the shrunk case in one env.",
        "",
    ]
    return "\n".join(lines)


def _what_happens(outcome: Optional[str]) -> str:
    return {
        "error": "fails to load (torch raises)",
        "crash": "crashes the loading process",
        "timeout": "hangs while loading",
    }.get(outcome or "", "does not come back intact")


def _format_summary(fmt: str) -> str:
    from harness.runtime.formats import FORMATS

    return FORMATS[fmt].summary
