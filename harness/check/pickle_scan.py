"""Read a pickle without unpickling it: its globals, storages and tensors.

`scan` runs the pickle's opcodes (decoded by `pickletools`) on a symbolic
stack: a ``GLOBAL`` becomes a `Global` name that is never imported, a
``REDUCE`` becomes an `Obj` that is never called. What is left is the shape
of the object the pickle would build, so ``check`` can list the globals a
load would import, the storages the file declares (the persistent IDs
``torch.save`` writes) and the tensors rebuilt from them, by name, in any
torch or none, for files that ``weights_only=True`` refuses too.

The scan follows ``STACK_GLOBAL`` (pickle protocol 4+), which torch's own
static scanner (``torch.serialization.get_unsafe_globals_in_checkpoint``)
rejects as an unsupported operand. Memo references can make a tiny pickle
describe an exponential tree, so the walk that names tensors has a budget.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
from dataclasses import dataclass, field
from typing import IO, Any, Optional, Union

__all__ = [
    "MODEL_KEYS",
    "STORAGE_DTYPES",
    "Call",
    "Global",
    "GlobalUse",
    "Obj",
    "PickleFacts",
    "PickleScanError",
    "StorageRef",
    "TensorRef",
    "describe",
    "scan",
    "scan_all",
]

#: What ``torch.save`` names a storage's type in a persistent ID, and the
#: dtype and element size that type means. The legacy typed-storage classes
#: are frozen (deprecated since torch 2.0); newer dtypes are saved as
#: ``UntypedStorage`` (bytes) plus a dtype argument to ``_rebuild_tensor_v3``.
STORAGE_DTYPES = {
    "DoubleStorage": ("float64", 8), "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1), "ComplexDoubleStorage": ("complex128", 16),
    "ComplexFloatStorage": ("complex64", 8), "QInt8Storage": ("qint8", 1), "QInt32Storage": ("qint32", 4),
    "QUInt8Storage": ("quint8", 1), "QUInt4x2Storage": ("quint4x2", 1), "QUInt2x4Storage": ("quint2x4", 1),
    "UntypedStorage": ("uint8", 1),
}

#: The walk that names tensors stops after this many nodes (memo sharing can
#: make a small pickle an exponentially large tree).
WALK_BUDGET = 2_000_000
MAX_TENSORS = 200_000
#: Names longer than this are not followed further (deep nesting, not a model).
MAX_NAME = 2000


class PickleScanError(ValueError):
    """The bytes are not a well-formed pickle; the message says where.

    `facts` holds what the scan had read before the error: an unpickler
    imports and calls as it goes, so a payload before a broken opcode runs
    all the same, and its globals must still be reported.
    """

    def __init__(self, message: str, facts: Optional[PickleFacts] = None) -> None:
        super().__init__(message)
        self.facts = facts

    @property
    def partial(self) -> Optional[PickleFacts]:
        """`facts` when they name a global or a call (an unpickler has run that much); None otherwise."""
        return self.facts if self.facts is not None and (self.facts.uses or self.facts.calls) else None


@dataclass(frozen=True)
class Global:
    """A global the pickle names (``GLOBAL``/``STACK_GLOBAL``/``INST``); never imported."""

    module: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class GlobalUse:
    """Where a pickle first names a global: its module and attribute path kept apart.

    The attribute path can hold dots (``STACK_GLOBAL`` resolves
    ``eval.__call__`` in ``builtins`` attribute by attribute), which the
    joined name cannot tell from a deeper module.
    """

    module: str
    name: str
    offset: int  # byte offset of the opcode that names it

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Call:
    """A call the pickle would make on load (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``), as text."""

    root: str  # the global at the root of what is called ("builtins.getattr" for getattr(...)(...))
    offset: int
    text: str  # e.g. "posix.system('touch /tmp/marker')"


@dataclass(eq=False)
class Obj:
    """An object the pickle would build by calling `factory` with `args`; never built."""

    factory: Any
    args: Any
    items: list[tuple[Any, Any]] = field(default_factory=list)  # SETITEM(S) on the object
    appends: list[Any] = field(default_factory=list)  # APPEND(S) on the object
    state: Any = None  # BUILD


@dataclass(eq=False)
class _Dict:
    pairs: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _List:
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Set:
    items: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _PersId:
    pid: Any


_UNKNOWN = object()  # a value the scan cannot know (out-of-band buffers, extension codes)


@dataclass(frozen=True)
class StorageRef:
    """A storage the file declares: ``('storage', type, key, location, numel)``."""

    key: str
    type_name: str
    location: str
    numel: int

    @property
    def dtype(self) -> Optional[str]:
        found = STORAGE_DTYPES.get(self.type_name)
        return found[0] if found else None

    @property
    def nbytes(self) -> Optional[int]:
        found = STORAGE_DTYPES.get(self.type_name)
        return self.numel * found[1] if found else None


@dataclass(frozen=True)
class TensorRef:
    """A tensor the pickle rebuilds: where it sits in the object, and what it claims."""

    name: str
    rebuild: str  # the torch._utils function that would rebuild it
    dtype: Optional[str]
    shape: Optional[tuple[int, ...]]
    stride: Optional[tuple[int, ...]] = None
    offset: int = 0
    storage: Optional[str] = None  # key of its StorageRef
    location: Optional[str] = None
    parameter: bool = False


@dataclass
class PickleFacts:
    """What one pickle would import and build."""

    globals: list[str] = field(default_factory=list)  # "module.name", in order of first use
    uses: list[GlobalUse] = field(default_factory=list)  # the same globals, with module and offset
    calls: list[Call] = field(default_factory=list)  # the first MAX_CALLS calls, in pickle order
    computed_globals: int = 0  # STACK_GLOBALs whose names are not constants
    extension_codes: list[int] = field(default_factory=list)  # EXT1/2/4: resolved via copyreg at load time
    storages: dict[str, StorageRef] = field(default_factory=dict)  # key -> StorageRef
    tensors: list[TensorRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    root: Any = None
    protocol: int = 0
    start: int = 0  # offset of the pickle's first opcode in what was scanned
    end: int = 0  # offset just after STOP, in the same terms as `start`
    truncated: bool = False  # the tensor walk ran out of budget

    @property
    def kind(self) -> str:
        """What the pickle holds, in a few words (see `describe`)."""
        return describe(self.root)


def _text(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):  # Python 2 pickles hold byte strings
        return value.decode("latin-1")
    return None


class _Machine:
    """The symbolic pickle machine: pickle's stack discipline, nothing executed."""

    def __init__(self, facts: PickleFacts) -> None:
        self.facts = facts
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.pos = 0  # offset of the opcode being run
        self._seen_globals: set[str] = set()

    def _pop(self) -> Any:
        if not self.stack:
            raise IndexError("the stack is empty")
        return self.stack.pop()

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise IndexError("no MARK to pop to")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def _global(self, module: Any, name: Any) -> Global:
        mod, nam = _text(module), _text(name)
        if mod is None or nam is None:
            self.facts.computed_globals += 1
            g = Global("?", "?")
        else:
            if self.facts.protocol < 3:
                # What Python's unpickler imports: it renames Python 2 names
                # (__builtin__.set -> builtins.set) below protocol 3.
                if (mod, nam) in _compat_pickle.NAME_MAPPING:
                    mod, nam = _compat_pickle.NAME_MAPPING[(mod, nam)]
                elif mod in _compat_pickle.IMPORT_MAPPING:
                    mod = _compat_pickle.IMPORT_MAPPING[mod]
            g = Global(mod, nam)
            if g.full not in self._seen_globals:
                self._seen_globals.add(g.full)
                self.facts.globals.append(g.full)
                self.facts.uses.append(GlobalUse(mod, nam, self.pos))
        return g

    def _call(self, func: Any, args: Any) -> Obj:
        """The object a call would build, noted as a `Call` where its callee is a global."""
        root = func
        for _ in range(32):  # getattr(...)(...): follow the callee to the global it starts from
            if not isinstance(root, Obj):
                break
            root = root.factory
        if isinstance(root, Global) and len(self.facts.calls) < MAX_CALLS:
            self.facts.calls.append(Call(root.full, self.pos, _call_text(func, args)))
        return Obj(func, args)

    def _persistent(self, pid: Any) -> _PersId:
        if isinstance(pid, tuple) and len(pid) >= 5 and _text(pid[0]) == "storage":
            stype, key, location, numel = pid[1], _text(pid[2]), _text(pid[3]), pid[4]
            type_name = stype.name if isinstance(stype, Global) else repr(stype)
            if key is None or location is None or not isinstance(numel, int) or isinstance(numel, bool):
                self.facts.problems.append(f"a storage persistent ID is malformed: {_short(pid)}")
            else:
                ref = StorageRef(key, type_name, location, numel)
                old = self.facts.storages.setdefault(key, ref)
                if old != ref:
                    self.facts.problems.append(f"storage {key!r} is declared twice, differently ({_short(old)} and {_short(ref)})")
        else:
            self.facts.notes.append(f"a persistent ID that is not a storage: {_short(pid)}")
        return _PersId(pid)

    def step(self, name: str, arg: Any) -> bool:
        """Run one opcode; True at STOP."""
        push, pop = self.stack.append, self._pop
        if name in _CONSTANTS:
            push(arg)
        elif name == "NONE":
            push(None)
        elif name == "NEWTRUE":
            push(True)
        elif name == "NEWFALSE":
            push(False)
        elif name == "EMPTY_LIST":
            push(_List())
        elif name == "EMPTY_DICT":
            push(_Dict())
        elif name == "EMPTY_TUPLE":
            push(())
        elif name == "EMPTY_SET":
            push(_Set())
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name == "TUPLE":
            push(tuple(self._pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(self.stack) < n:
                raise IndexError(f"{name} needs {n} items")
            items = self.stack[-n:]
            del self.stack[-n:]
            push(tuple(items))
        elif name == "LIST":
            push(_List(self._pop_mark()))
        elif name == "DICT":
            items = self._pop_mark()
            push(_Dict(list(zip(items[::2], items[1::2]))))
        elif name == "FROZENSET":
            push(_Set(self._pop_mark()))
        elif name == "APPEND":
            value = pop()
            self._extend(self.stack[-1] if self.stack else None, [value])
        elif name == "APPENDS":
            items = self._pop_mark()
            self._extend(self.stack[-1] if self.stack else None, items)
        elif name == "SETITEM":
            value, key = pop(), pop()
            self._setitems(self.stack[-1] if self.stack else None, [(key, value)])
        elif name == "SETITEMS":
            items = self._pop_mark()
            self._setitems(self.stack[-1] if self.stack else None, list(zip(items[::2], items[1::2])))
        elif name == "ADDITEMS":
            items = self._pop_mark()
            target = self.stack[-1] if self.stack else None
            if isinstance(target, _Set):
                target.items.extend(items)
        elif name == "POP":
            if self.stack and (not self.marks or self.marks[-1] < len(self.stack)):
                self.stack.pop()
            else:
                self._pop_mark()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            if not self.stack:
                raise IndexError("DUP on an empty stack")
            push(self.stack[-1])
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise KeyError(f"memo key {arg} was never stored")
            push(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not self.stack:
                raise IndexError(f"{name} on an empty stack")
            self.memo[arg] = self.stack[-1]
        elif name == "MEMOIZE":
            if not self.stack:
                raise IndexError("MEMOIZE on an empty stack")
            self.memo[len(self.memo)] = self.stack[-1]
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            push(self._global(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = pop(), pop()
            push(self._global(module, attr))
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            push(self._call(self._global(module, attr), tuple(self._pop_mark())))
        elif name == "OBJ":
            items = self._pop_mark()
            if not items:
                raise IndexError("OBJ without a class")
            push(self._call(items[0], tuple(items[1:])))
        elif name == "NEWOBJ":
            args, cls = pop(), pop()
            push(self._call(cls, args))
        elif name == "NEWOBJ_EX":
            kwargs, args, cls = pop(), pop(), pop()
            obj = self._call(cls, args)
            obj.items.append(("**kwargs", kwargs))
            push(obj)
        elif name == "REDUCE":
            args, func = pop(), pop()
            push(self._call(func, args))
        elif name == "BUILD":
            state = pop()
            if not self.stack:
                raise IndexError("BUILD on an empty stack")
            target = self.stack[-1]
            if isinstance(target, Obj):
                target.state = state
        elif name == "PERSID":
            push(self._persistent(arg))
        elif name == "BINPERSID":
            push(self._persistent(pop()))
        elif name in ("EXT1", "EXT2", "EXT4"):
            self.facts.extension_codes.append(arg)
            push(_UNKNOWN)
        elif name == "NEXT_BUFFER":
            push(_UNKNOWN)
        elif name == "READONLY_BUFFER":
            pass
        elif name == "PROTO":
            self.facts.protocol = int(arg)
        elif name == "FRAME":
            pass
        elif name == "STOP":
            self.facts.root = pop()
            return True
        else:  # pragma: no cover - an opcode added to pickle after this was written
            raise ValueError(f"opcode {name} is not known to the harness's scan")
        return False

    @staticmethod
    def _extend(target: Any, values: list[Any]) -> None:
        if isinstance(target, _List):
            target.items.extend(values)
        elif isinstance(target, Obj):
            target.appends.extend(values)

    @staticmethod
    def _setitems(target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, _Dict):
            target.pairs.extend(pairs)
        elif isinstance(target, Obj):
            target.items.extend(pairs)


_CONSTANTS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
})


#: Calls kept per pickle (a pickle can make millions; the first ones say what it does).
MAX_CALLS = 100


def _call_text(func: Any, args: Any) -> str:
    inner = ", ".join(_short(a, 240, 1) for a in args[:8]) if isinstance(args, tuple) else _short(args, 240, 1)
    text = _short(func, 160) + f"({inner})"
    return text if len(text) <= 400 else text[:397] + "..."


def _short(value: Any, limit: int = 120, depth: int = 0) -> str:
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Obj):
        text = "(...)(...)" if depth > 2 else _short(value.factory, 60, depth + 1) + (
            "(" + ", ".join(_short(a, 40, depth + 1) for a in value.args[:8]) + ")" if isinstance(value.args, tuple) else "(...)"
        )
        return text if len(text) <= limit else text[: limit - 3] + "..."
    if isinstance(value, StorageRef):
        return f"{value.type_name} x {value.numel} at {value.location}"
    if isinstance(value, tuple):
        text = "(...)" if depth > 2 else "(" + ", ".join(_short(v, 40, depth + 1) for v in value[:8]) + ")"
    elif isinstance(value, (str, bytes, int, float, bool, type(None))):
        text = repr(value[:limit] if isinstance(value, (str, bytes)) else value)
    else:
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scan(source: Union[bytes, IO[bytes]], *, walk_budget: int = WALK_BUDGET) -> PickleFacts:
    """The facts of the one pickle at the start of `source` (bytes or a binary file).

    Reads up to and including its STOP opcode, so a file position after the
    scan is where the next pickle begins. PickleScanError if the bytes are
    not a complete, well-formed pickle; its `facts` hold what came before
    the error.
    """
    facts = PickleFacts()
    machine = _Machine(facts)
    last = first = source.tell() if not isinstance(source, bytes) else 0
    facts.start = first
    try:
        for opcode, arg, pos in pickletools.genops(source):
            last = machine.pos = pos if pos is not None else last
            if machine.step(opcode.name, arg):
                facts.end = last + 1
                break
        else:
            raise ValueError("the pickle ends without a STOP opcode")
    except PickleScanError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, EOFError, OverflowError, MemoryError, UnicodeDecodeError) as e:
        # pickletools raises ValueError for bad bytes; the machine raises the others.
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PickleScanError(f"malformed pickle near byte {last}: {text[:200]}", facts) from None
    _Walker(facts, walk_budget).run()
    return facts


def scan_all(source: IO[bytes], end: Optional[int] = None) -> tuple[list[PickleFacts], Optional[PickleScanError]]:
    """Every pickle from `source`'s position on, one after another, up to `end` (default: EOF).

    ``pickle.load`` in a loop reads a stream of pickles, and a payload can
    follow a harmless first one. Stops at the first malformed pickle and
    returns its error too (with the facts read before it); bytes after that
    cannot be split into pickles.
    """
    found: list[PickleFacts] = []
    here = source.tell()
    limit = end if end is not None else source.seek(0, 2)
    source.seek(here)
    while True:
        at = source.tell()
        if at >= limit:
            return found, None
        try:
            facts = scan(source)
        except PickleScanError as e:
            return found, e
        found.append(facts)
        source.seek(facts.end)


# -- naming the tensors ------------------------------------------------------

_TRANSPARENT = ("_parameters", "_buffers", "_modules")  # nn.Module's __dict__ layout


def _join(path: str, key: Any) -> str:
    text = _text(key)
    if text is None:
        text = _short(key, 40)
    return f"{path}.{text}" if path else text


def _ints(value: Any) -> Optional[tuple[int, ...]]:
    """A tuple of ints (a size or stride), also when written as torch.Size((...)); else None."""
    if isinstance(value, Obj) and isinstance(value.factory, Global) and value.factory.full == "torch.Size":
        args = value.args[0] if isinstance(value.args, tuple) and value.args else None
        value = tuple(args.items) if isinstance(args, _List) else args
    if isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


def _rebuild_name(obj: Obj) -> Optional[str]:
    f = obj.factory
    if isinstance(f, Global) and f.module in ("torch._utils", "torch._tensor") and f.name.startswith("_rebuild_"):
        return f.name
    return None


class _Walker:
    """Names every tensor of the symbolic object by its path, as a state dict would.

    Iterative, with a node budget and a cap on name length: a pickle can
    nest ten thousand levels deep or share one object along 2**80 paths in
    a few hundred bytes, and neither may exhaust the stack or the clock.
    """

    def __init__(self, facts: PickleFacts, budget: int) -> None:
        self.facts = facts
        self.budget = budget
        self.names: set[str] = set()

    def run(self) -> None:
        # Entries: (node, path, kind); kind "node", "state" (a BUILD state,
        # whose nn.Module keys are transparent) or "leave" (the node's
        # subtree is done: it is no longer on the current path).
        stack: list[tuple[Any, str, str]] = [(self.facts.root, "", "node")]
        on_path: set[int] = set()
        while stack:
            node, path, kind = stack.pop()
            if kind == "leave":
                on_path.discard(id(node))
                continue
            self.budget -= 1
            if self.budget < 0 or len(path) > MAX_NAME:
                self.facts.truncated = True
                if self.budget < 0:
                    return
                continue
            if kind == "state":
                stack.extend(reversed(self._state_children(node, path)))
                continue
            if not isinstance(node, (Obj, _Dict, _List, _Set, tuple)) or id(node) in on_path:
                continue  # a leaf, or a cycle through the memo
            if isinstance(node, Obj) and _rebuild_name(node):
                self._tensor(path, node)
                continue
            on_path.add(id(node))
            stack.append((node, path, "leave"))
            stack.extend(reversed(self._children(node, path)))

    @staticmethod
    def _children(node: Any, path: str) -> list[tuple[Any, str, str]]:
        if isinstance(node, _Dict):
            return [(v, _join(path, k), "node") for k, v in node.pairs]
        if isinstance(node, (_List, _Set)):
            return [(v, _join(path, i), "node") for i, v in enumerate(node.items)]
        if isinstance(node, tuple):
            return [(v, _join(path, i), "node") for i, v in enumerate(node)]
        out = [(v, _join(path, k), "node") for k, v in node.items]
        out += [(v, _join(path, i), "node") for i, v in enumerate(node.appends)]
        if node.state is not None:
            out.append((node.state, path, "state"))
        if isinstance(node.args, tuple) and node.args and not (node.items or node.appends or node.state is not None):
            # A plain call such as OrderedDict([(k, v), ...]) holds its content in args.
            out.append((node.args[0] if len(node.args) == 1 else node.args, path, "node"))
        return out

    @staticmethod
    def _state_children(state: Any, path: str) -> list[tuple[Any, str, str]]:
        if isinstance(state, tuple) and len(state) == 2:  # (state, slotstate)
            return [(part, path, "state") for part in state]
        if isinstance(state, _Dict):
            out = []
            for key, value in state.pairs:
                if _text(key) in _TRANSPARENT:
                    out.append((value, path, "node"))
                elif _text(key) != "_metadata":
                    out.append((value, _join(path, key), "node"))
            return out
        return [(state, path, "node")]

    def _tensor(self, name: str, obj: Obj) -> None:
        rebuild, parameter = _rebuild_name(obj), False
        for _ in range(8):  # unwrap Parameter and subclass wrappers, a few levels at most
            args = obj.args if isinstance(obj.args, tuple) else ()
            if rebuild in ("_rebuild_parameter", "_rebuild_parameter_with_state") and args and isinstance(args[0], Obj) and _rebuild_name(args[0]):
                obj, rebuild, parameter = args[0], _rebuild_name(args[0]), True
            elif rebuild == "_rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[0], Global) and _rebuild_name(Obj(args[0], args[2])):
                # (func, new_type, args, state): a tensor subclass around func(*args)
                obj = Obj(args[0], args[2])
                rebuild = _rebuild_name(obj)
            else:
                break
        args = obj.args if isinstance(obj.args, tuple) else ()
        dtype: Optional[str] = None
        shape = stride = storage = location = None
        offset = 0
        if rebuild in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor") and len(args) >= 4:
            pid = args[0].pid if isinstance(args[0], _PersId) else None
            if isinstance(pid, tuple) and len(pid) >= 5:
                storage, location = _text(pid[2]), _text(pid[3])
                ref = self.facts.storages.get(storage)  # type: ignore[arg-type]  # a None key finds no ref, as meant
                dtype = ref.dtype if ref else None
            offset = args[1] if isinstance(args[1], int) else 0
            shape, stride = _ints(args[2]), _ints(args[3])
            if rebuild == "_rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], Global):
                dtype = args[6].name
        elif rebuild == "_rebuild_meta_tensor_no_storage" and len(args) >= 3:
            dtype = args[0].name if isinstance(args[0], Global) else None
            shape, stride, location = _ints(args[1]), _ints(args[2]), "meta"
        elif rebuild == "_rebuild_wrapper_subclass" and len(args) >= 4:
            dtype = args[1].name if isinstance(args[1], Global) else None
            shape, stride = _ints(args[2]), _ints(args[3])
        if name in self.names:  # the same object reached twice under one name
            return
        self.names.add(name)
        if len(self.facts.tensors) >= MAX_TENSORS:
            self.facts.truncated = True
            return
        self.facts.tensors.append(TensorRef(name or "<root>", rebuild or "?", dtype, shape, stride, offset, storage, location, parameter))


# -- what the root is --------------------------------------------------------

#: Keys under which a training checkpoint keeps the model's state dict.
MODEL_KEYS = ("model", "state_dict", "model_state_dict", "net", "module")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt")


def _pairs(node: Any) -> Optional[list[tuple[Any, Any]]]:
    if isinstance(node, _Dict):
        return node.pairs
    if isinstance(node, Obj) and isinstance(node.factory, Global) and node.factory.name in ("OrderedDict", "dict"):
        return node.items
    return None


def _is_tensor(node: Any) -> bool:
    return isinstance(node, Obj) and _rebuild_name(node) is not None


def _module_class(node: Any) -> Optional[str]:
    if not isinstance(node, Obj) or not isinstance(node.state, _Dict):
        return None
    keys = {_text(k) for k, _ in node.state.pairs}
    if not keys & {"_modules", "_parameters"} and not (
        isinstance(node.factory, Global) and node.factory.module.startswith("__torch__.")
    ):
        return None
    cls = node.factory
    if isinstance(cls, Global) and cls.full == "copyreg._reconstructor" and isinstance(node.args, tuple) and node.args:
        cls = node.args[0]
    return cls.full if isinstance(cls, Global) else "?"


def describe(root: Any) -> str:
    """``state_dict``, ``checkpoint``, ``module <class>``, ``tensor`` or a plain description."""
    pairs = _pairs(root)
    if pairs is not None:
        values = [v for _, v in pairs]
        if values and all(_is_tensor(v) for v in values):
            return "state_dict"
        keys = {_text(k) for k, _ in pairs}
        if keys & set(MODEL_KEYS) and keys & set(_OPTIMIZER_KEYS):
            return "checkpoint"
        return f"dict with {len(pairs)} key{'' if len(pairs) == 1 else 's'}"
    if _is_tensor(root):
        return "tensor"
    cls = _module_class(root)
    if cls:
        return f"module {cls}"
    if isinstance(root, (_List, tuple)):
        return f"{'list' if isinstance(root, _List) else 'tuple'} of {len(root.items if isinstance(root, _List) else root)}"
    if isinstance(root, Obj):
        f = root.factory
        return f"object built by {f.full}" if isinstance(f, Global) else "object"
    return type(root).__name__
