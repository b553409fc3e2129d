"""Model code that changed between the save and the load: the remap, migrations, and the check through them.

A refactor keeps the numbers and moves them: a submodule renamed, a
projection split in three or three fused in one, legacy weight_norm's
``weight_g``/``weight_v`` turned into ``parametrizations.weight.original0``/
``original1``, a buffer no longer saved, a parameter added. `propose` finds
that map (a `Remap`) from what the checkpoint holds (names, shapes, dtypes
and roles, from the manifest) and what the load-side model wants;
`apply_remap` is the generic migration that follows it; and
`expected_view` turns the manifest's view into what the load-side model
must hold afterwards, tensor by tensor (a slice of a saved tensor, saved
tensors joined), so `compare` checks a migrated load bit for bit.

The remap is a proposal from names and shapes until a load confirms it:
when every tensor of the migrated model has the bytes the remap says,
digest for digest, it is reported as found by digests.
"""

from __future__ import annotations

import difflib
import importlib
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from harness.runtime.errors import InputError
from harness.runtime.manifest import Reference, Snapshot, TensorRecord, View

if TYPE_CHECKING:
    import torch

__all__ = [
    "KINDS",
    "ExpectedBytes",
    "Remap",
    "RemapEntry",
    "Slot",
    "UserRefactors",
    "apply_remap",
    "bytes_elsewhere",
    "call_migration",
    "digest_confirmed",
    "expected_view",
    "import_ref",
    "module_slots",
    "parse_renames",
    "propose",
    "refactor_notes",
    "renaming_pickle",
    "resolve_by_digests",
    "view_slots",
]

#: What a remap entry says about a group of tensors.
KINDS = {
    "rename": "the same bytes under another name",
    "split": "one saved tensor cut into several along a dimension",
    "fuse": "several saved tensors joined into one along a dimension",
    "parametrization": "legacy weight_norm's weight_g/weight_v, now parametrizations.<name>.original0/original1",
    "dropped": "a saved key the load-side model does not take",
    "added": "a key of the load-side model that the checkpoint lacks",
    "changed": "the same name with another shape or dtype",
}
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_CLASS = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$")


@dataclass(frozen=True)
class Slot:
    """What a name holds, without its values: dtype, shape and role (parameter, buffer, buffer_np)."""

    dtype: str
    shape: tuple[int, ...]
    role: str

    @property
    def persistent(self) -> bool:
        return self.role != "buffer_np"

    def describe(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class RemapEntry:
    """One move: `old` names of the checkpoint to `new` names of the load-side model."""

    kind: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    dim: Optional[int] = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "old": list(self.old), "new": list(self.new), "detail": self.detail}
        if self.dim is not None:
            d["dim"] = self.dim
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RemapEntry:
        return cls(d["kind"], tuple(d.get("old", ())), tuple(d.get("new", ())), d.get("dim"), d.get("detail", ""))

    def describe(self) -> str:
        old, new = ", ".join(self.old), ", ".join(self.new)
        if self.kind == "dropped":
            return f"drop {old}" + (" (now a non-persistent buffer)" if "non-persistent" in self.detail else "")
        if self.kind == "added":
            return f"add {new} (as the new code initialises it)"
        if self.kind == "changed":
            return f"{old}: {self.detail}"
        along = f" along dim {self.dim}" if self.dim is not None else ""
        return f"{old} -> {new}{along}"


@dataclass
class Remap:
    """How the checkpoint's tensors map onto the load-side model (tensors kept under their name are counted, not listed)."""

    entries: list[RemapEntry] = field(default_factory=list)
    same: int = 0
    found_by: str = "names"  # names | digests

    @property
    def moves(self) -> bool:
        """Whether anything is not where the checkpoint has it."""
        return bool(self.entries)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        words = {"rename": "renamed", "split": "split", "fuse": "fused", "parametrization": "weight_norm mapped",
                 "dropped": "dropped", "added": "added", "changed": "changed shape or dtype"}
        parts = [f"{n} {words.get(k, k)}" for k, n in counts.items()]
        kept = [f"{self.same} kept"] if self.same else []
        return ", ".join(parts + kept) if parts else f"nothing moved ({self.same} kept)"

    def to_dict(self) -> dict[str, Any]:
        return {"found_by": self.found_by, "same": self.same, "summary": self.summary(),
                "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Remap:
        return cls([RemapEntry.from_dict(e) for e in d.get("entries", [])], int(d.get("same", 0)), d.get("found_by", "names"))

    def describe(self, limit: int = 6) -> str:
        """The moves in one line, for a diagnosis."""
        shown = "; ".join(e.describe() for e in self.entries[:limit])
        more = len(self.entries) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


def module_slots(model: torch.nn.Module) -> dict[str, Slot]:
    """The slots of a model: its state-dict keys and its non-persistent buffers."""
    from harness.runtime.dtypes import dtype_name
    from harness.runtime.manifest import module_snapshot

    snap = module_snapshot(model)
    return {n: Slot(dtype_name(t.dtype), tuple(t.shape), role) for n, (t, role) in snap.tensors.items()}


def view_slots(view: View, prefix: str = "") -> dict[str, Slot]:
    """The slots of a recorded view (names under `prefix`, with it stripped)."""
    return {
        n[len(prefix):]: Slot(r.dtype, tuple(r.shape), r.role)
        for n, r in view.tensors.items() if n.startswith(prefix)
    }


# -- the proposal ------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str]:
    """(module path with a trailing dot, or "", tensor name)."""
    mod, _, leaf = name.rpartition(".")
    return (mod + "." if mod else ""), leaf


def _parent(name: str) -> str:
    """The module path above the tensor's own module: "attn." for "attn.qkv.weight"."""
    mod, _ = _split_name(name)
    return _split_name(mod.rstrip("."))[0] if mod else ""


def _module_leaf(name: str) -> str:
    """The tensor's own module name: "qkv" for "attn.qkv.weight"."""
    mod, _ = _split_name(name)
    return _split_name(mod.rstrip("."))[1] if mod else ""


def _same_but(a: tuple[int, ...], b: tuple[int, ...], dim: int) -> bool:
    return len(a) == len(b) and all(x == y for i, (x, y) in enumerate(zip(a, b)) if i != dim)


def _parametrizations(old: dict[str, Slot], new: dict[str, Slot], out: list[RemapEntry]) -> None:
    """legacy weight_norm (``P.w_g``, ``P.w_v``) to ``P.parametrizations.w.original0/1``, either way."""
    pattern = re.compile(r"^(?P<mod>(?:.*\.)?)(?P<param>\w+)_g$")
    for src, dst, legacy_first in ((old, new, True), (new, old, False)):
        for name in list(src):
            m = pattern.match(name)
            if not m:
                continue
            mod, param = m.group("mod"), m.group("param")
            g, v = f"{mod}{param}_g", f"{mod}{param}_v"
            o0, o1 = f"{mod}parametrizations.{param}.original0", f"{mod}parametrizations.{param}.original1"
            if v not in src or o0 not in dst or o1 not in dst:
                continue
            for a, b in ((g, o0), (v, o1)):
                if src[a].dtype == dst[b].dtype and src[a].shape == dst[b].shape:
                    frm, to = (a, b) if legacy_first else (b, a)
                    what = "magnitude" if frm.endswith(("_g", "original0")) else "direction"
                    out.append(RemapEntry("parametrization", (frm,), (to,), detail=f"weight_norm {what}"))
                    old.pop(frm)
                    new.pop(to)


def _belongs(piece: str, whole: str) -> bool:
    """Whether a piece's module is named after the whole's: q, k, v of qkv; qkv_q of qkv; qkv.0 of qkv."""
    p, w = _module_leaf(piece), _module_leaf(whole)
    if _parent(piece) == _split_name(whole)[0]:
        return True  # under the whole's own module
    return bool(p and w) and (p in w or p.startswith(w) or p.endswith(w))


def _pieces(one: str, slot: Slot, many: dict[str, Slot], named_only: bool) -> Optional[tuple[int, list[str]]]:
    """(dim, names) of tensors in `many` that, in order, join into `one` along a dimension.

    Pieces sit beside the whole (``attn.q`` for ``attn.qkv``) or under it
    (``qkv.0`` for ``qkv``), and carry its tensor name and dtype. Where sizes
    alone leave several runs of pieces, the one whose modules are named
    after the whole's is taken, or none.
    """
    leaf = _split_name(one)[1]
    own = _split_name(one)[0]
    candidates = [n for n in many if (_parent(n) == _parent(one) or (own and _parent(n) == own))
                  and _split_name(n)[1] == leaf and many[n].dtype == slot.dtype and n != one]
    for dim in range(len(slot.shape)):
        fits = [n for n in candidates if _same_but(many[n].shape, slot.shape, dim)]
        windows = []
        for i in range(len(fits)):
            total = 0
            for j in range(i, len(fits)):
                total += many[fits[j]].shape[dim]
                if total == slot.shape[dim] and j > i:
                    windows.append(fits[i:j + 1])
                if total >= slot.shape[dim]:
                    break
        named = [w for w in windows if all(_belongs(n, one) for n in w)]
        if named_only or len(windows) > 1:
            windows = named
        if len(windows) == 1:
            return dim, windows[0]
    return None


def _splits(old: dict[str, Slot], new: dict[str, Slot], out: list[RemapEntry]) -> None:
    """Splits and fusions: first those whose pieces are named after the whole, then any one sizes alone decide."""
    for named_only in (True, False):
        for name in list(old):
            found = _pieces(name, old[name], new, named_only) if name in old else None
            if found:
                dim, names = found
                out.append(RemapEntry("split", (name,), tuple(names), dim, "in the load-side model's order"))
                old.pop(name)
                for n in names:
                    new.pop(n)
        for name in list(new):
            found = _pieces(name, new[name], old, named_only) if name in new else None
            if found:
                dim, names = found
                out.append(RemapEntry("fuse", tuple(names), (name,), dim, "in the checkpoint's order"))
                new.pop(name)
                for n in names:
                    old.pop(n)


def _substitution(a: str, b: str) -> tuple[str, str, int]:
    """(a's differing head, b's differing head, common tail length) of two dotted names."""
    pa, pb = a.split("."), b.split(".")
    tail = 0
    while tail < min(len(pa), len(pb)) and pa[-1 - tail] == pb[-1 - tail]:
        tail += 1
    return ".".join(pa[:len(pa) - tail]), ".".join(pb[:len(pb) - tail]), tail


def _renames(old: dict[str, Slot], new: dict[str, Slot], out: list[RemapEntry]) -> None:
    """Pair what is left by dtype and shape; a module renamed moves all its tensors, so agreeing pairs win."""
    # A rename keeps the tensor's own name (a module renamed) or its module (a
    # tensor renamed in place, gamma -> weight); tensors that share neither are
    # a removed layer and an added one, however alike their shapes.
    pairs = [(a, b) for a in old for b in new if old[a].dtype == new[b].dtype and old[a].shape == new[b].shape
             and old[a].persistent == new[b].persistent
             and (_split_name(a)[1] == _split_name(b)[1] or _split_name(a)[0] == _split_name(b)[0])]
    subs: dict[tuple[str, str], int] = {}
    for a, b in pairs:
        ha, hb, _ = _substitution(a, b)
        subs[(ha, hb)] = subs.get((ha, hb), 0) + 1

    def score(pair: tuple[str, str]) -> tuple[int, int, float]:
        ha, hb, tail = _substitution(*pair)
        return subs[(ha, hb)], tail, difflib.SequenceMatcher(None, pair[0], pair[1]).ratio()

    scored = sorted(((score(p), p) for p in pairs), reverse=True)
    by_old: dict[str, list[tuple[tuple[int, int, float], str]]] = {}
    by_new: dict[str, list[tuple[tuple[int, int, float], str]]] = {}
    for sc, (a, b) in scored:
        by_old.setdefault(a, []).append((sc, b))
        by_new.setdefault(b, []).append((sc, a))
    tied: set[str] = set()  # names of a tie already broken: pairing their rivals was by elimination
    for sc, (a, b) in scored:
        if a not in old or b not in new:
            continue
        rivals = [(a, y) for s2, y in by_old[a] if y != b and y in new and s2 == sc]
        rivals += [(x, b) for s2, x in by_new[b] if x != a and x in old and s2 == sc]
        if rivals:
            tied.update(n for pair in rivals for n in pair)
            shown = ", ".join(f"{x} -> {y}" for x, y in rivals[:3]) + (" ..." if len(rivals) > 3 else "")
            detail = f"ambiguous: {shown} fit as well"
        elif a in tied or b in tied:
            detail = "ambiguous: paired by elimination after an ambiguous rename"
        else:
            detail = ""
        out.append(RemapEntry("rename", (a,), (b,), detail=detail))
        old.pop(a)
        new.pop(b)


def propose(saved: Mapping[str, Slot], wanted: Mapping[str, Slot]) -> Remap:
    """The remap from a checkpoint's slots (`saved`) to a load-side model's (`wanted`), from names, shapes and dtypes.

    Order matters: same name first, then buffers the new model no longer
    saves, weight_norm's known mapping, splits and fusions (pieces that
    share the whole's parent module and tensor name, and whose sizes add
    up along one dimension, in the model's order), then renames (equal
    dtype and shape; a renamed module moves all its tensors, so pairs that
    agree on the renamed part win, and a tie is called ambiguous). What is
    left is dropped or added.
    """
    remap = Remap()
    old = {n: s for n, s in saved.items() if s.persistent}
    new = {n: s for n, s in wanted.items() if s.persistent}
    now_unsaved = {n for n, s in wanted.items() if not s.persistent}
    # Non-persistent buffers are in no state dict, but the new code must compute
    # what the old one held: they are paired too (renamed with their module).
    old_np = {n: s for n, s in saved.items() if not s.persistent and n not in wanted}
    new_np = {n: s for n, s in wanted.items() if not s.persistent and n not in saved}
    for name in list(old):
        if name in new:
            if old[name].dtype == new[name].dtype and old[name].shape == new[name].shape:
                remap.same += 1
            else:
                remap.entries.append(RemapEntry("changed", (name,), (name,), detail=f"{old[name].describe()} -> {new[name].describe()}"))
            old.pop(name)
            new.pop(name)
        elif name in now_unsaved:
            remap.entries.append(RemapEntry(
                "dropped", (name,), (), detail="now a non-persistent buffer of the load-side model (not in its state dict): "
                "drop the key; the value the new code computes must equal the saved one"))
            old.pop(name)
    _parametrizations(old, new, remap.entries)
    _splits(old, new, remap.entries)
    _renames(old, new, remap.entries)
    unsaved: list[RemapEntry] = []
    _renames(old_np, new_np, unsaved)
    remap.entries += [replace(e, detail=e.detail or "a non-persistent buffer: in no state dict; the new code must compute the saved value")
                      for e in unsaved]
    for name in new_np:
        remap.entries.append(RemapEntry("added", (), (name,), detail=f"{new_np[name].describe()}: a new non-persistent buffer (not checked)"))
    for name in old:
        remap.entries.append(RemapEntry("dropped", (name,), (), detail=f"{old[name].describe()}: nothing in the load-side model takes it"))
    for name in new:
        remap.entries.append(RemapEntry("added", (), (name,), detail=f"{new[name].describe()}: not in the checkpoint; the new code initialises it (not checked)"))
    order = {n: i for i, n in enumerate(saved)}
    remap.entries.sort(key=lambda e: order.get(e.old[0], len(order)) if e.old else len(order))
    return remap


# -- the generic migration ----------------------------------------------------


def apply_remap(state: Mapping[str, Any], remap: Remap, initial: Mapping[str, Any]) -> dict[str, Any]:
    """The migration the remap describes: what ``load_state_dict`` of the load-side model takes.

    Keys the remap does not name keep their place. `initial` is the
    load-side model's state as its code initialises it: an added key takes
    its value from there (what ``load_state_dict(strict=False)`` into a
    freshly built model would leave).
    """
    import torch

    out: dict[str, Any] = OrderedDict(state)
    meta = getattr(state, "_metadata", None)
    for e in remap.entries:
        if e.old and e.old[0] not in out:
            continue  # a non-persistent buffer: the state never held it
        if e.kind in ("rename", "parametrization"):
            out[e.new[0]] = out.pop(e.old[0])
        elif e.kind == "split":
            assert e.dim is not None  # a split always says where it cuts
            whole = out.pop(e.old[0])
            start = 0
            for name in e.new:
                size = initial[name].shape[e.dim]
                out[name] = whole.narrow(e.dim, start, size).clone()
                start += size
        elif e.kind == "fuse":
            out[e.new[0]] = torch.cat([out.pop(n) for n in e.old], e.dim)
        elif e.kind == "dropped":
            out.pop(e.old[0], None)
        elif e.kind == "added" and e.new[0] in initial:  # a non-persistent one is no state-dict key
            out[e.new[0]] = initial[e.new[0]].detach().clone()
    if meta is not None:  # the per-module version numbers load_state_dict hooks read
        out = OrderedDict(out)
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def import_ref(ref: str, what: str) -> Callable[..., Any]:
    """The function a ``MODULE:FUNCTION`` names, or InputError saying why it is not here."""
    if not _REF.match(ref):
        msg = f"{what} {ref!r} is not MODULE:FUNCTION, e.g. mypkg.migrations:v1_to_v2"
        raise InputError(msg)
    module_name, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        msg = f"{what} {ref}: cannot import it in this env ({type(e).__name__}: {e})"
        raise InputError(msg) from None
    if not callable(fn):
        raise InputError(f"{what} {ref} is not callable")
    return fn


def call_migration(ref: str, obj: Any) -> Any:
    """Run the user's ``migrate(obj) -> obj`` on what the loader returned; its failure is the cell's error."""
    fn = import_ref(ref, "migration")
    migrated = fn(obj)
    if migrated is None:
        msg = f"migration {ref} returned None: a migration returns the migrated object (migrate(obj) -> obj)"
        raise TypeError(msg)
    return migrated


# -- the check through a remap -------------------------------------------------


class ExpectedBytes:
    """The bytes `compare` reads for an expected view: the case's reference file, then derived tensors.

    A derived tensor (a piece of a split, a fused whole) gets a reference
    past the end of the file; its bytes live here, in memory.
    """

    def __init__(self, reference: Path) -> None:
        self.reference = reference
        self.size = reference.stat().st_size if reference.exists() else 0
        self.derived: list[bytes] = []

    def add(self, data: bytes) -> list[int]:
        self.derived.append(data)
        return [self.size + len(self.derived) - 1, len(data)]

    def read_ref(self, ref: list[int]) -> bytes:
        if ref[0] >= self.size:
            return self.derived[ref[0] - self.size]
        return Reference.read(self.reference, ref)


def _saved_tensor(rec: TensorRecord, source: ExpectedBytes) -> torch.Tensor:
    from harness.runtime.dtypes import to_dtype
    from harness.runtime.storage import tensor_from_bytes

    if rec.ref is None:
        msg = f"{rec.name}: the manifest kept no bytes for it, so a remapped copy cannot be checked"
        raise LookupError(msg)
    return tensor_from_bytes(source.read_ref(rec.ref), to_dtype(rec.dtype), rec.shape)


def _derived(name: str, t: torch.Tensor, like: TensorRecord, role: str, source: ExpectedBytes) -> TensorRecord:
    from harness.runtime.digest import contiguous_cpu, raw_bytes
    from harness.runtime.manifest import tensor_record

    c = contiguous_cpu(t)
    rec = tensor_record(name, c, role, None)
    return replace(rec, requires_grad=like.requires_grad, device=like.device, ref=source.add(bytes(raw_bytes(c))))


def expected_view(
    view: View, remap: Remap, wanted: Mapping[str, Slot], reference: Path, prefix: str = "",
) -> tuple[View, ExpectedBytes, list[str]]:
    """What the load-side model must hold after a load through `remap`: (view, its bytes, names not to check).

    Names of `view` under `prefix` (a checkpoint's ``model.``) are the
    model's; the rest stay as they are. A renamed tensor keeps its record;
    a piece of a split is that slice of the saved tensor, a fused one the
    saved tensors joined; a buffer the new code no longer saves must still
    hold the saved value. Added tensors come from the new code: they are
    not checked, and are returned to be ignored.
    """
    import torch

    source = ExpectedBytes(reference)
    records = dict(view.tensors)
    renamed: dict[str, str] = {}
    ignore: list[str] = []

    def take(old: str) -> TensorRecord:
        return records.pop(prefix + old)

    def put(new: str, rec: TensorRecord) -> None:
        role = wanted[new].role if new in wanted else rec.role
        records[prefix + new] = replace(rec, name=prefix + new, role=role)

    for e in remap.entries:
        if e.kind in ("rename", "parametrization"):
            rec = take(e.old[0])
            renamed[rec.name] = prefix + e.new[0]
            put(e.new[0], rec)
        elif e.kind == "split":
            assert e.dim is not None  # a split always says where it cuts
            rec = take(e.old[0])
            whole, start = _saved_tensor(rec, source), 0
            for name in e.new:
                size = wanted[name].shape[e.dim]
                piece = whole.narrow(e.dim, start, size)
                start += size
                records[prefix + name] = _derived(prefix + name, piece, rec, wanted[name].role, source)
        elif e.kind == "fuse":
            recs = [take(n) for n in e.old]
            joined = torch.cat([_saved_tensor(r, source) for r in recs], e.dim)
            records[prefix + e.new[0]] = _derived(prefix + e.new[0], joined, recs[0], wanted[e.new[0]].role, source)
        elif e.kind == "dropped":
            name = prefix + e.old[0]
            if e.old[0] in wanted:  # now a non-persistent buffer: its value must still be the saved one
                put(e.old[0], records.pop(name))
            else:
                records.pop(name, None)
        elif e.kind == "added":
            ignore.append(prefix + e.new[0])
    for name in list(records):  # non-persistent buffers of the old code that the new code does not have
        rec = records[name]
        if name.startswith(prefix) and rec.role == "buffer_np" and name[len(prefix):] not in wanted:
            records.pop(name)
    ties = [[renamed.get(n, n) for n in group] for group in view.ties]
    ties = [g for g in ties if all(n in records for n in g)]
    return View(records, dict(view.values), ties), source, ignore


def _loaded_digests(snapshot: Snapshot, names: Sequence[str]) -> dict[str, str]:
    from harness.runtime.digest import digest_tensor

    out = {}
    for name in names:
        held = snapshot.tensors.get(name)
        if held is not None and held[0].device.type != "meta" and not held[0].is_sparse:
            out[name] = digest_tensor(held[0])
    return out


def resolve_by_digests(remap: Remap, view: View, snapshot: Snapshot, prefix: str = "") -> Remap:
    """Settle the renames the names left ambiguous by the bytes the load put in each tensor.

    Two tensors of one shape renamed at once (``a``, ``b`` to ``x``, ``y``)
    may pair either way by name; a tensor whose bytes reappear under
    another name was renamed to it, so a migrated load decides. Pairs
    whose bytes match none of the candidates stay as proposed.
    """
    ambiguous = [e for e in remap.entries if e.kind == "rename" and e.detail.startswith("ambiguous")]
    if not ambiguous:
        return remap
    saved = {e.old[0]: view.tensors[prefix + e.old[0]].digest for e in ambiguous if prefix + e.old[0] in view.tensors}
    loaded = _loaded_digests(snapshot, [prefix + e.new[0] for e in ambiguous])
    by_bytes: dict[str, list[str]] = {}
    for old, digest in saved.items():
        if digest is not None:
            by_bytes.setdefault(digest, []).append(old)
    free = set(saved)
    settled = {}
    for e in ambiguous:
        olds = [o for o in by_bytes.get(loaded.get(prefix + e.new[0], ""), []) if o in free]
        if len(olds) == 1:
            free.discard(olds[0])
            settled[e.new[0]] = RemapEntry("rename", (olds[0],), e.new, detail="paired by the bytes the load put there (the names were ambiguous)")
    if not settled:
        return remap
    entries = [settled.get(e.new[0], e) if e in ambiguous else e for e in remap.entries]
    if len({e.old for e in entries if e.kind == "rename"}) != sum(1 for e in entries if e.kind == "rename"):
        return remap  # the bytes paired two names with one saved tensor: keep the proposal, the comparison says what differs
    return Remap(entries, remap.same, remap.found_by)


def bytes_elsewhere(view: View, snapshot: Snapshot, names: Sequence[str]) -> list[str]:
    """Notes for tensors whose loaded bytes belong in another tensor of `view` (a migration that mixed two up)."""
    by_digest = {r.digest: n for n, r in view.tensors.items() if r.digest}
    notes = []
    for name, digest in _loaded_digests(snapshot, names).items():
        other = by_digest.get(digest)
        if other is not None and other != name:
            notes.append(f"{name} holds the bytes that belong in {other}")
    return notes


def refactor_notes(remap: Remap, migrate: Optional[str]) -> list[str]:
    """What a load through `remap` leaves unchecked, said on the cell: saved tensors dropped, new ones added."""
    dropped = [n for e in remap.entries if e.kind == "dropped" and "non-persistent" not in e.detail for n in e.old]
    added = [n for e in remap.entries if e.kind == "added" for n in e.new]
    notes = []
    if dropped:
        notes.append(f"{len(dropped)} saved tensor(s) have no place in the load-side model and are lost: {', '.join(dropped[:8])}")
    if added:
        notes.append(f"{len(added)} tensor(s) are new in the load-side model, initialised by its code, not the checkpoint (not checked): "
                     f"{', '.join(added[:8])}")
    if migrate == "remap":
        notes.append("migrate=remap applies the remap proposed from names and shapes: the load shows it fits the model "
                     "and keeps every saved bit; that it is the right map, only the names (or your own migration) say")
    return notes


def digest_confirmed(remap: Remap) -> Remap:
    """The same remap, confirmed: a load through it gave every tensor the bytes it names."""
    return Remap(list(remap.entries), remap.same, "digests")


# -- whole-model pickles of a moved class ---------------------------------------


def renaming_pickle(mapping: Mapping[str, str], resolve: Optional[Callable[[str, str], Any]] = None) -> Any:
    """A ``pickle_module`` for ``torch.load`` whose unpickler imports each old class path from its new one.

    `mapping` is ``{"old.module.Class": "new.module.Class"}``. `resolve`
    finds a class by (module, name) where plain importing cannot (the
    harness's synthetic modules); by default it imports.
    """
    import types

    targets = {}
    for old, new in mapping.items():
        targets[tuple(old.rsplit(".", 1))] = tuple(new.rsplit(".", 1))

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            to = targets.get((module, name))
            if to is None:
                return super().find_class(module, name)
            if resolve is not None:
                return resolve(*to)
            return getattr(importlib.import_module(to[0]), to[1])

    mod = types.ModuleType("torch_roundtrip_renaming_pickle")
    mod.Unpickler = Unpickler  # type: ignore[attr-defined]
    mod.load = pickle.load  # type: ignore[attr-defined]  # torch reads the legacy format's header with it
    mod.loads = pickle.loads  # type: ignore[attr-defined]
    mod.__dict__.update({k: getattr(pickle, k) for k in ("HIGHEST_PROTOCOL", "DEFAULT_PROTOCOL", "UnpicklingError", "Pickler", "dump", "dumps")})
    return mod


def parse_renames(text: str) -> dict[str, str]:
    """``old.mod.A->new.mod.A,old.B->new.B`` as a dict."""
    out = {}
    for part in text.split(","):
        old, sep, new = part.partition("->")
        if not sep or not _CLASS.match(old) or not _CLASS.match(new):
            msg = f"rename_class={text!r}: expected old.module.Class->new.module.Class"
            raise InputError(msg)
        out[old] = new
    return out


# -- what a user asks for on the command line ------------------------------------


def _pairs(items: Sequence[str], flag: str, check: Callable[[str], bool], example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not check(old) or not check(new):
            msg = f"{flag} {item!r}: expected {example}"
            raise InputError(msg)
        if old in out and out[old] != new:
            raise InputError(f"{flag} names {old} twice ({out[old]} and {new})")
        out[old] = new
    return out


@dataclass(frozen=True)
class UserRefactors:
    """``load --load-as OLD=NEW``, ``--migrate OLD=MIG`` and ``--rename-class OLD=NEW``, checked."""

    load_as: Mapping[str, str] = field(default_factory=dict)  # old factory -> new factory
    migrate: Mapping[str, str] = field(default_factory=dict)  # old factory -> migration
    rename_class: Mapping[str, str] = field(default_factory=dict)  # old class path -> new class path

    @classmethod
    def parse(cls, load_as: Sequence[str] = (), migrate: Sequence[str] = (), rename_class: Sequence[str] = ()) -> UserRefactors:
        """Parse the flags' values; InputError (one line) on bad syntax or a migration without its --load-as."""
        ref = _REF.match
        made = cls(
            _pairs(load_as, "--load-as", lambda s: bool(ref(s)), "OLD_MODULE:FACTORY=NEW_MODULE:FACTORY"),
            _pairs(migrate, "--migrate", lambda s: bool(ref(s)), "OLD_MODULE:FACTORY=MIGRATION_MODULE:FUNCTION"),
            _pairs(rename_class, "--rename-class", lambda s: bool(_CLASS.match(s)), "old.module.Class=new.module.Class"),
        )
        orphans = sorted(set(made.migrate) - set(made.load_as))
        if orphans:
            msg = (f"--migrate {orphans[0]}=...: a migration loads into the new model, so it needs "
                   f"--load-as {orphans[0]}=NEW_MODULE:FACTORY too")
            raise InputError(msg)
        return made

    def __bool__(self) -> bool:
        return bool(self.load_as or self.migrate or self.rename_class)

    def names(self, spec: Mapping[str, Any]) -> bool:
        """Whether these flags load the case of `spec` into changed code (a refactor of it)."""
        factory = spec.get("factory")
        return bool(factory and (factory in self.load_as or (spec.get("origin") == "user" and self.rename_class)))

    def rename_option(self) -> Optional[str]:
        """The ``rename_class`` load-option spelling of the --rename-class pairs, or None."""
        if not self.rename_class:
            return None
        return ",".join(f"{o}->{n}" for o, n in sorted(self.rename_class.items()))
