"""What `sniff` learns about a file, and how each scanned pickle is taken into it.

Every reader of a file format (`zip_archives`, `legacy_files`,
`other_files`) fills one `Sniffed`: the pickles it scanned (their globals,
where each is first named and the call it would make), the tensors the
file declares and whether each fits the storage it views.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from harness.check.pickle_scan import PickleFacts, PickleScanError, TensorRef, scan_all
from harness.check.torchscript_code import Escape
from harness.runtime.diagnose import Diagnosis

__all__ = ["FoundGlobal", "MAX_PICKLE_BYTES", "Sniffed", "TensorInfo", "check_tensors", "clip", "count_tags", "missing_bytes", "numel", "scan_stream", "tensor_infos"]


#: Pickles larger than this are not scanned (a deflated record can expand
#: without bound); real data.pkl records are kilobytes to a few megabytes.
MAX_PICKLE_BYTES = 256 << 20


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file declares it."""

    name: str
    dtype: Optional[str]
    shape: Optional[list[Any]]  # sizes; as the file wrote them
    device: Optional[str]  # the storage's device tag; None where the format has none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FoundGlobal:
    """A global one of the file's pickles names: where, at which byte, and the call it makes, if read."""

    module: str
    name: str
    where: str  # the pickle: a record name, "the object pickle", "pickle 2 of the stream", ...
    offset: int  # byte offset of the naming opcode within that pickle's record or stream
    call: Optional[str] = None  # e.g. "posix.system('touch /tmp/x')"

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Sniffed:
    """Everything `sniff` learnt about one file."""

    path: str
    size: int
    format: str = "unknown"
    why: str = ""  # how the format was recognised, or why none was
    content: str = ""  # what it holds: state_dict, checkpoint, module <class>, ...
    harness_format: Optional[str] = None  # the harness format name it matches, if one does
    tensors: list[TensorInfo] = field(default_factory=list)
    device_tags: dict[str, int] = field(default_factory=dict)  # tag -> number of storages
    globals: list[str] = field(default_factory=list)
    computed_globals: int = 0
    problems: list[str] = field(default_factory=list)  # inconsistencies: torch must not read it here
    notes: list[str] = field(default_factory=list)
    listing: str = ""  # where the tensor list comes from
    truncated: bool = False
    found: list[FoundGlobal] = field(default_factory=list)  # each global of `globals`, where it is first named
    escapes: list[Escape] = field(default_factory=list)  # TorchScript calls that leave its sandbox
    pickles: int = 0  # pickles scanned
    records_scanned: set[str] = field(default_factory=set)  # zip records already scanned
    #: what the bytes alone say is wrong with the file as a whole (a Git LFS
    #: pointer, a web page, an empty or truncated file), with the fix; the
    #: codes are the runtime's, which says the same from torch's messages
    diagnosis: Optional[Diagnosis] = None
    #: the torch releases that write a file like this one, from its records
    #: (`harness.check.writers`): {"releases", "evidence", "first", "last"};
    #: None where the bytes cannot tell
    writer: Optional[dict[str, Any]] = None

    def add_pickle(self, facts: PickleFacts, where: str) -> None:
        """Take in the globals, problems and counts of one scanned pickle, found at `where`."""
        self.pickles += 1
        for use in facts.uses:
            if use.full not in self.globals:
                self.globals.append(use.full)
                call = next((c.text for c in facts.calls if c.root == use.full), None)
                self.found.append(FoundGlobal(use.module, use.name, where, use.offset, call))
        self.computed_globals += facts.computed_globals
        if facts.computed_globals:
            self.problems.append(f"{where} computes the names of {facts.computed_globals} globals at load time (STACK_GLOBAL on values that are not constants)")
        if facts.extension_codes:
            self.problems.append(f"{where} uses pickle extension codes {facts.extension_codes[:5]}, resolved from copyreg's registry at load time")
        self.problems.extend(f"{where}: {p}" for p in facts.problems)
        self.truncated = self.truncated or facts.truncated

    def add_scan_error(self, error: PickleScanError, where: str, problem: Optional[str] = None) -> None:
        """A malformed pickle: a problem, and whatever it named before the error (an unpickler runs that much)."""
        self.problems.append(problem or f"{where} is not a valid pickle: {error}")
        if error.partial is not None:
            self.add_pickle(error.partial, f"{where} (before the error)")


def _itemsize(dtype: str) -> Optional[int]:
    """Bytes per element of the torch dtype called `dtype`, as this torch knows it."""
    import torch

    dt = vars(torch).get(dtype)
    if not isinstance(dt, torch.dtype):
        return None
    size = getattr(dt, "itemsize", None)
    if size is None:
        try:
            size = torch.empty((), dtype=dt).element_size()
        except Exception:  # a dtype this torch cannot allocate: size unknown
            return None
    return int(size)


def numel(shape: tuple[int, ...]) -> int:
    """Elements of a tensor of `shape`."""
    n = 1
    for s in shape:
        n *= s
    return n


def _extent_bytes(t: TensorRef, itemsize: int) -> int:
    """Bytes of its storage that a strided tensor reaches, from its storage offset."""
    if any(s == 0 for s in t.shape or ()):
        return 0
    last = t.offset + sum((s - 1) * st for s, st in zip(t.shape or (), t.stride or ()))
    return (last + 1) * itemsize


def check_tensors(sniffed: Sniffed, facts: PickleFacts, where: str) -> None:
    """Every tensor must fit in the storage it views."""
    for t in facts.tensors:
        ref = facts.storages.get(t.storage) if t.storage is not None else None
        if ref is None or t.shape is None or t.stride is None or ref.nbytes is None:
            continue
        if len(t.shape) != len(t.stride) or any(s < 0 for s in t.shape) or any(st < 0 for st in t.stride) or t.offset < 0:
            sniffed.problems.append(f"{where}: tensor {t.name!r} has a negative or mismatched size/stride/offset")
            continue
        if t.rebuild == "_rebuild_tensor_v3" and t.dtype:
            itemsize = _itemsize(t.dtype)
            if itemsize is None:
                sniffed.notes.append(f"tensor {t.name!r} has dtype {t.dtype}, unknown to this torch: its extent was not checked")
                continue
        else:
            itemsize = ref.nbytes // ref.numel if ref.numel else 1
        need = _extent_bytes(t, itemsize)
        if need > ref.nbytes:
            sniffed.problems.append(
                f"{where}: tensor {t.name!r} (shape {list(t.shape)}) reaches {need} bytes into storage {t.storage!r}, which holds {ref.nbytes}"
            )


def tensor_infos(facts: PickleFacts, prefix: str = "") -> list[TensorInfo]:
    """The tensors a scanned pickle declares, their names under `prefix`."""
    return [TensorInfo(prefix + t.name, t.dtype, list(t.shape) if t.shape is not None else None, t.location) for t in facts.tensors]


def count_tags(sniffed: Sniffed, facts: PickleFacts) -> None:
    """Count the storages of a scanned pickle per device tag."""
    for ref in facts.storages.values():
        sniffed.device_tags[ref.location] = sniffed.device_tags.get(ref.location, 0) + 1


def scan_stream(data: bytes, where: str, sniffed: Sniffed, *, guessed: bool = False) -> Optional[PickleFacts]:
    """Scan every pickle in `data`; the first one's facts (what torch reads), None if it is malformed.

    `guessed`: the bytes only start like a pickle (a record not named as
    one), so bytes that are no pickle at all are a note, not a problem.
    """
    found, error = scan_all(io.BytesIO(data))
    if guessed and not found and error is not None and error.partial is None:
        sniffed.notes.append(f"{where} starts like a pickle but is none ({error})")
        return None
    for i, facts in enumerate(found):
        sniffed.add_pickle(facts, where if i == 0 else f"{where}, pickle {i + 1} (at byte {facts.start})")
    if len(found) > 1:
        sniffed.problems.append(f"{where} holds {len(found)} pickles one after another; torch reads only the first")
    if error is not None:
        sniffed.add_scan_error(error, where if not found else f"{where}, after pickle {len(found)}")
    return found[0] if found else None


def missing_bytes(n: int) -> str:
    """``"1 byte is missing"``, ``"30 bytes are missing"``."""
    return f"{n} byte is missing" if n == 1 else f"{n} bytes are missing"


def clip(text: str, limit: int = 200) -> str:
    """`text` on one line and at most `limit` characters (it may come from the file)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
