"""Hostile and broken model files, written at test time (no binary blobs in git).

`write_corpus(directory)` writes one file per kind of trouble ``check``
must survive and returns `Hostile` records saying what ``check`` should say
about each. Payload pickles run ``sh -c 'echo $PPID > MARKER'``: the marker
file appears only if the payload ran, and holds the pid of the Python
process that unpickled it, so a test can tell the harness process from a
child. `run_check` runs the real CLI in a subprocess.

Not pytest-specific: ``python -c 'from tests.hostile_files import ...'``
works under any torch, for checks in envs without pytest.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import random
import shlex
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "BOUNDARY_INTS",
    "FIELD_GLOBALS",
    "FIELD_STRINGS",
    "Hostile",
    "apply_edits",
    "crafted_zip",
    "hang_and_crash",
    "legacy_stream",
    "mutate_inner_pickle",
    "rewrite_fields",
    "rewrite_legacy_object",
    "run_check",
    "tar_polyglot",
    "write_corpus",
]

TERABYTES = 1 << 40  # elements a crafted storage claims (4 TiB of float32)


@dataclass(frozen=True)
class Hostile:
    """One file of the corpus and what check must say about it (without --trust)."""

    name: str
    path: Path
    message: str  # a substring of the one-line summary
    marker: Optional[Path] = None  # created only if a payload ran
    format: Optional[str] = None  # the format check must report


# -- pickles that build torch-looking objects without torch ------------------


class _Storage:
    """Pickled as ``('storage', torch.FloatStorage, key, location, numel)``."""

    def __init__(self, key: str, numel: int, location: str = "cpu") -> None:
        self.key, self.numel, self.location = key, numel, location


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> tuple:
        import torch._utils

        stride, acc = [], 1
        for s in reversed(self.shape):
            stride.insert(0, acc)
            acc *= s
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, self.shape, tuple(stride), False, collections.OrderedDict()))


class _Payload:
    """Unpickling it runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.command = f"echo $PPID > {shlex.quote(str(marker))}"

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class _Sleep:
    def __reduce__(self) -> tuple:
        import time

        return (time.sleep, (3600,))


class _Abort:
    def __reduce__(self) -> tuple:
        return (os.abort, ())


def _pickle(obj: Any, legacy_ids: bool = False, protocol: int = 2) -> bytes:
    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            if isinstance(o, _Storage):
                pid = ("storage", torch.FloatStorage, o.key, o.location, o.numel)
                return pid + (None,) if legacy_ids else pid
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def crafted_zip(obj: Any, records: dict, *, protocol: int = 2, name: str = "archive", pkl: Optional[bytes] = None) -> bytes:
    """A zip laid out like torch.save's: NAME/data.pkl, NAME/data/KEY..., NAME/version."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", pkl if pkl is not None else _pickle(obj, protocol=protocol))
        z.writestr(f"{name}/byteorder", b"little")
        for key, data in records.items():
            z.writestr(f"{name}/data/{key}", data)
        z.writestr(f"{name}/version", b"3\n")
    return out.getvalue()


def legacy_stream(obj: Any, storages: list, *, data: Optional[bytes] = None) -> bytes:
    """The legacy torch.save layout: magic, protocol, sys info, object, keys, then storage data."""
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, buf, protocol=2)
    buf.write(_pickle(obj, legacy_ids=True))
    pickle.dump([s.key for s in storages], buf, protocol=2)
    if data is None:
        for s in storages:
            buf.write(s.numel.to_bytes(8, "little", signed=True) + b"\0" * (4 * s.numel))
    else:
        buf.write(data)
    return buf.getvalue()


def tar_polyglot() -> bytes:
    """A legacy torch stream whose first 512 bytes are also a valid tar header.

    torch.load tries a non-zip file as a pre-0.4 tar archive before it reads
    the legacy pickles, so such a file takes a path check must not vouch for.
    The tar header's fields after its name lie inside a string of the
    system-info pickle.
    """
    import tarfile

    head = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, head, protocol=2)
    pickle.dump(1001, head, protocol=2)
    prefix = head.getvalue() + b"\x80\x02}(X\x03\x00\x00\x00padX"  # sys info: {"pad": "<tar fields>", ...
    fields_at = len(prefix) + 4  # after the string's 4-byte length
    info = tarfile.TarInfo("storages")
    info.size = 0
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT)[:512])
    string = bytes(header[fields_at:512])
    block = bytearray(prefix + len(string).to_bytes(4, "little") + string)
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % sum(block)
    info_pickle = pickletools.optimize(pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    assert info_pickle[:4] == b"\x80\x02}(", info_pickle[:4]
    tail = info_pickle[4:]  # the dict's other items, SETITEMS and STOP
    body = bytes(block) + tail
    legacy_rest = legacy_stream({}, [])
    # legacy_stream's object and key pickles follow its three header pickles
    skip = io.BytesIO(legacy_rest)
    for _ in range(3):
        pickle.load(skip)
    return body + legacy_rest[skip.tell():]


def _rezip(source: bytes, drop: str) -> bytes:
    """`source` without the records whose name ends with `drop`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith(drop):
                zout.writestr(info, zin.read(info))
    return out.getvalue()


def write_corpus(directory: Path) -> dict:
    """Write the corpus into `directory`; name -> `Hostile`."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "bias": torch.ones(3)}
    buf = io.BytesIO()
    torch.save(state, buf)
    real_zip = buf.getvalue()
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    real_legacy = buf.getvalue()

    corpus: dict = {}

    def add(name: str, data: bytes, message: str, fmt: Optional[str] = None, marker: Optional[Path] = None) -> None:
        path = directory / name
        path.write_bytes(data)
        corpus[name] = Hostile(name, path, message, marker, fmt)

    add("empty.pt", b"", "unknown format: the file is empty (0 bytes)", "unknown")
    rng = random.Random(7)
    add("random.bin", bytes(rng.getrandbits(8) for _ in range(4096)), "unknown format: not a zip archive", "unknown")
    add("notes.txt", b"this is a model, trust me\nweights: 1 2 3\n", "unknown format: a text file", "unknown")
    add("truncated_zip.pt", real_zip[: len(real_zip) // 2], "truncated or corrupt zip archive", "torch_zip")
    add("truncated_legacy_pickle.pt", real_legacy[:100], "is truncated or corrupt", "torch_legacy")
    add("truncated_legacy_data.pt", real_legacy[:-10], "(truncated)", "torch_legacy")
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "not a model")
        z.writestr("weights.csv", "1,2,3")
    add("not_torch.zip", other.getvalue(), "a zip archive that is not a torch file", "unknown")
    add("missing_data_pkl.pt", _rezip(real_zip, "/data.pkl"), "has no", "torch_zip")
    add("missing_storage.pt", _rezip(real_zip, "/data/0"), "the archive is missing a record", "torch_zip")

    marker = directory / "payload_zip.ran"
    add("payload_zip.pt", crafted_zip({"w": _Payload(marker)}, {}), "pickle_runs_code", "torch_zip", marker)
    marker = directory / "payload_legacy.ran"
    add("payload_legacy.pt", legacy_stream({"w": _Payload(marker)}, []), "pickle_runs_code", "torch_legacy", marker)
    marker = directory / "payload_protocol4.ran"
    add("payload_protocol4.pt", crafted_zip(_Payload(marker), {}, protocol=4), "pickle_protocol_unsupported", "torch_zip", marker)
    marker = directory / "payload_plain.ran"
    add("payload_plain.pkl", pickle.dumps(_Payload(marker), protocol=2), "unknown format: a plain pickle", "unknown", marker)

    huge = _Storage("0", TERABYTES)
    add("absurd_zip.pt", crafted_zip({"w": _Tensor(huge, (TERABYTES,))}, {"0": b"\0" * 16}),
        f"declares {TERABYTES} x FloatStorage", "torch_zip")
    add("absurd_legacy.pt", legacy_stream({"w": _Tensor(huge, (TERABYTES,))}, [huge], data=TERABYTES.to_bytes(8, "little") + b"\0" * 16),
        f"needs {4 * TERABYTES} bytes", "torch_legacy")
    small = _Storage("0", 4)
    add("tensor_past_storage.pt", crafted_zip({"w": _Tensor(small, (1000,))}, {"0": b"\0" * 16}),
        "reaches 4000 bytes into storage '0', which holds 16", "torch_zip")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as fh:
            block = b"\0" * (1 << 20)
            for _ in range(300):
                fh.write(block)
        z.writestr("archive/version", b"3\n")
    add("zip_bomb.pt", bomb.getvalue(), "more than check scans", "torch_zip")
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w", zipfile.ZIP_STORED) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        z.writestr("archive/data.pkl", _pickle({"w": _Tensor(_Storage("0", 4), (4,))}))
        z.writestr("archive/data/0", b"\0" * 16)
        z.writestr("archive/data/0", b"\0" * 4 * 1000)
    add("duplicate_records.pt", dup.getvalue(), "several records of the same name", "torch_zip")
    add("tar_polyglot.pt", tar_polyglot(), "also a tar archive", "torch_legacy")
    return corpus


def hang_and_crash(directory: Path) -> dict:
    """Files whose full unpickle hangs or kills the process: name -> path (for --trust tests)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, obj in (("hang.pt", _Sleep()), ("crash.pt", _Abort())):
        paths[name] = directory / name
        paths[name].write_bytes(crafted_zip({"w": obj}, {}))
    return paths


# -- damaged copies of real files (the fuzz tests' mutations) -----------------


def apply_edits(data: bytes, changes: list) -> bytes:
    buf = bytearray(data)
    for kind, where, arg in changes:
        i = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if kind == "flip" and buf:
            buf[i] ^= 1 << arg
        elif kind == "cut":
            del buf[int(where * len(buf)):]
        elif kind == "insert":
            buf[i:i] = arg
        elif kind == "overwrite":
            buf[i:i + len(arg)] = arg
        elif kind == "delete":
            del buf[i:i + arg]
    return bytes(buf)


def mutate_inner_pickle(data: bytes, changes: list, fields: bool = False, suffix: str = "data.pkl") -> bytes:
    """Re-zip an archive with only its records named ``*suffix`` damaged, CRCs made right again.

    Byte damage inside a zip mostly stops at the CRC check; this reaches the
    parsers behind it. `fields`: rewrite pickle operands, keeping it well formed.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                body = zin.read(info)
                if info.filename.endswith(suffix):
                    body = rewrite_fields(body, changes) if fields else apply_edits(body, changes)
                zout.writestr(info.filename, body)
    return out.getvalue()


#: Values the fuzzer writes into a pickle's integer, string and global operands.
BOUNDARY_INTS = [0, 1, 2, 3, 7, 255, 256, 65535, 2**31 - 1, -1, -(2**31), 2**40, 2**63 - 1]
FIELD_STRINGS = ["", "0", "1", "99", "cpu", "cuda:0", "cuda:7", "meta", "mps", "xla:0", "../../x", "storage", "data.pkl", "weight", "é" * 3]
FIELD_GLOBALS = [
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"), ("torch._utils", "_rebuild_wrapper_subclass"),
    ("torch", "HalfStorage"), ("torch", "LongStorage"), ("torch", "BoolStorage"), ("torch", "QInt8Storage"),
    ("torch.storage", "UntypedStorage"), ("torch", "bfloat16"), ("torch", "Size"), ("collections", "OrderedDict"),
    ("builtins", "set"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
]


def _encode_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + value.to_bytes(2, "little")
    if -(2**31) <= value < 2**31:
        return b"J" + value.to_bytes(4, "little", signed=True)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def rewrite_fields(data: bytes, changes: list) -> bytes:
    """`data` (a protocol-2 pickle) with integer, string or global operands replaced; still well formed."""
    ops = [(op.name, pos, arg) for op, arg, pos in pickletools.genops(data)]
    ends = [pos for _, pos, _ in ops[1:]] + [len(data)]
    spans = {"int": [], "string": [], "global": []}
    for (name, pos, _), end in zip(ops, ends):
        if name in ("BININT1", "BININT2", "BININT", "LONG1"):
            spans["int"].append((pos, end))
        elif name in ("BINUNICODE", "SHORT_BINUNICODE"):
            spans["string"].append((pos, end))
        elif name == "GLOBAL":
            spans["global"].append((pos, end))
    edits = {}
    for kind, where, value in changes:
        if not spans[kind]:
            continue
        pos, end = spans[kind][min(int(where * len(spans[kind])), len(spans[kind]) - 1)]
        if kind == "int":
            edits[pos] = (end, _encode_int(value))
        elif kind == "string":
            raw = value.encode()
            edits[pos] = (end, b"X" + len(raw).to_bytes(4, "little") + raw)
        else:
            edits[pos] = (end, b"c" + f"{value[0]}\n{value[1]}\n".encode())
    out, at = bytearray(), 0
    for pos in sorted(edits):
        end, new = edits[pos]
        out += data[at:pos] + new
        at = end
    return bytes(out + data[at:])


def rewrite_legacy_object(data: bytes, changes: list) -> bytes:
    """A legacy stream with the fields of its object pickle (the fourth) rewritten."""
    f = io.BytesIO(data)
    for _ in range(3):
        pickle.load(f)
    start = f.tell()
    end = start + next(pos for op, _, pos in pickletools.genops(data[start:]) if op.name == "STOP") + 1
    return data[:start] + rewrite_fields(data[start:end], changes) + data[end:]


def run_check(*args: str, cwd: Optional[Path] = None, timeout: float = 600, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """``torch-roundtrip check ARGS`` in a subprocess; the result also carries its `pid`."""
    full_env = dict(os.environ)
    full_env.pop("TORCH_ROUNDTRIP_DEBUG", None)
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "check", *args], cwd=cwd, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    done.pid = proc.pid  # type: ignore[attr-defined]
    return done
