"""Refactor groups: the cells that load a checkpoint into changed model code, per refactor.

A cell belongs to a refactor when its line says the load side built another
model than the saver (``load_as``), when it carries a proposed or confirmed
key remap (``remap``), or when its load options apply a fix for changed code
(``migrate``, ``rename_class``, ``load_as``). Such cells are grouped by
(case, load-side model): the line's ``load_as``, else the ``load_as`` load
option, else ``"variant"`` (a curated refactor case's load-side variant).

Each `RefactorGroup` holds what the report shows for one refactor:

- the remap the cells found (`RemapFinding`): one when every env pair agrees,
  else each distinct one with the env pairs that found it. Within one env
  pair a remap confirmed by digests (``found_by: "digests"``) is preferred to
  one proposed from names, shapes and dtypes, and the group says where it did
  that (`Superseded`);
- per env pair (`PairRow`): the plain loads (no migration, no class rename:
  how the refactor breaks a load) as counts by outcome with their diagnosis
  codes, each migration with its verdict (``pass`` is exact; a mismatch names
  its first differences) and each class-rename cell;
- the group's verdict (`GroupVerdict`): whether every migration (and class
  rename) that ran was exact in every env pair.

The HTML, Markdown and JSON outputs render these; nothing here writes a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.runtime.errors import InputError
from harness.runtime.refactor import Remap
from harness.runtime.results import CellResult, Outcome

__all__ = [
    "FIRST_DIFFERENCES",
    "GroupVerdict",
    "Migration",
    "PairRow",
    "RefactorGroup",
    "RemapFinding",
    "Superseded",
    "VARIANT",
    "is_refactor_cell",
    "load_side",
    "migration_name",
    "refactor_groups",
    "remap_summary",
]

#: The load-side model of a cell that names none: its case's load-side variant.
VARIANT = "variant"
#: How many differences of a mismatched migration the report lists.
FIRST_DIFFERENCES = 3
_FAILED = (Outcome.ERROR, Outcome.CRASH, Outcome.TIMEOUT)


def load_side(r: CellResult) -> str:
    """The model the load side of `r` built: the line's ``load_as``, else its ``load_as`` option, else `VARIANT`."""
    return r.load_as or r.load.get("load_as") or VARIANT


def is_refactor_cell(r: CellResult) -> bool:
    """Whether `r` loads into changed model code or applies a fix for it."""
    load = r.load
    return bool(r.load_as or r.remap or load.get("migrate") or load.get("rename_class") or load.get("load_as"))


def migration_name(migrate: str) -> str:
    """How the report names a migration: the harness's own remap, or the user's ``MODULE:FUNCTION``."""
    return "the proposed remap, applied" if migrate == "remap" else migrate


def remap_summary(remap: dict[str, Any]) -> str:
    """The remap's own one-line summary (`harness.runtime.refactor.Remap.summary`), or one counted alike from
    its entries (``1 renamed, 1 split, 3 kept``)."""
    summary = remap.get("summary")
    if isinstance(summary, str) and summary:
        return summary
    return Remap.from_dict(remap).summary()


def _checked_remap(remap: Any, where: str) -> dict[str, Any]:
    """`remap` if it has the result-line shape (entries with a kind and old/new name lists); InputError naming the cell."""
    entries = remap.get("entries") if isinstance(remap, dict) else None
    if not isinstance(entries, list):
        msg = f"{where}: remap has no list of entries (a result line's remap is harness.runtime.refactor.Remap.to_dict)"
        raise InputError(msg)
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("kind"), str):
            msg = f"{where}: remap entries[{i}]={e!r} is not an object with a kind"
            raise InputError(msg)
        for side in ("old", "new"):
            names = e.get(side, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                msg = f"{where}: remap entries[{i}].{side}={names!r} is not a list of tensor names"
                raise InputError(msg)
    return remap


def _content_key(remap: dict[str, Any]) -> str:
    # Two env pairs agree when they map the same names the same way; how each
    # found it (found_by) is shown beside the env pairs, not a disagreement.
    return json.dumps({"entries": remap.get("entries"), "same": remap.get("same")}, sort_keys=True)


Pair = tuple[str, str]


def _pairs_text(pairs: Sequence[Pair]) -> str:
    return ", ".join(f"{s} → {t}" for s, t in pairs)


@dataclass
class RemapFinding:
    """One distinct remap and the env pairs (source, target) that found it, with how each found it."""

    remap: dict[str, Any]
    found_by: dict[Pair, str] = field(default_factory=dict)

    @property
    def pairs(self) -> list[Pair]:
        return list(self.found_by)

    @property
    def summary(self) -> str:
        return remap_summary(self.remap)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self.remap.get("entries") or [])

    @property
    def same(self) -> Optional[int]:
        same = self.remap.get("same")
        return same if isinstance(same, int) else None

    def how(self, of_pairs: int = 0) -> str:
        """``found by digests in A → B, B → A; by names in A → A``; ``found by digests in every env pair (2)``
        when one way found it in all `of_pairs` env pairs of its group."""
        by: dict[str, list[Pair]] = {}
        for pair, how in self.found_by.items():
            by.setdefault(how, []).append(pair)
        if len(by) == 1 and len(self.found_by) == of_pairs:
            return f"found by {next(iter(by))} in every env pair ({of_pairs})"
        return "found " + "; ".join(f"by {how} in " + _pairs_text(pairs) for how, pairs in by.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "remap": self.remap, "summary": self.summary,
            "pairs": [{"source": s, "target": t, "found_by": how} for (s, t), how in self.found_by.items()],
        }


@dataclass
class Superseded:
    """In one env pair, a remap proposed from names set aside for one confirmed by digests."""

    source: str
    target: str
    names_summary: str
    differed: bool  # the names proposal mapped other keys than the digests did

    def line(self) -> str:
        how = "which differed from it" if self.differed else "which agreed with it"
        return (
            f"{self.source} → {self.target}: the remap confirmed by digests was preferred to the one proposed from names "
            f"({self.names_summary}), {how}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "names_summary": self.names_summary, "differed": self.differed}


@dataclass
class Migration:
    """One fix cell of a refactor: a migration (``migrate``) or a class rename (``rename_class``)."""

    index: int  # the cell's position in the report's cells (the page's cell number)
    key: str
    cell: CellResult
    name: str  # what ran: migration_name(migrate), or the rename_class mapping

    @property
    def verdict(self) -> str:
        """``exact`` for a pass, else the outcome."""
        return "exact" if self.cell.outcome is Outcome.PASS else self.cell.outcome.value

    @property
    def options(self) -> str:
        return self.key.rsplit("|", 1)[1]

    def differences(self) -> list[dict[str, str]]:
        """The first `FIRST_DIFFERENCES` differences: tensor, aspect, expected, actual, index (as text)."""
        out = []
        for d in self.cell.differences[:FIRST_DIFFERENCES]:
            row = d if isinstance(d, dict) else {"aspect": str(d)}
            out.append({k: _text(row.get(k, "")) for k in ("tensor", "aspect", "expected", "actual", "index")})
        return out

    def explanation(self) -> str:
        """What the verdict rests on: nothing for exact, the first difference for a mismatch, else the detail."""
        r = self.cell
        if r.outcome is Outcome.PASS:
            return ""
        if r.outcome is Outcome.MISMATCH and r.differences:
            first = self.differences()[0]
            index = first["index"]
            where = index if index.startswith("[") else f"[{index}]" if index else ""
            more = f" (and {len(r.differences) - 1} more)" if len(r.differences) > 1 else ""
            return f"{first['tensor']}{where} {first['aspect']}: {first['expected']} -> {first['actual']}{more}"
        code = (r.diagnosis or {}).get("code")
        return f"{code}: {r.detail}" if code else r.detail

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "format": self.cell.format, "options": self.options, "cell": self.key,
            "outcome": self.cell.outcome.value, "verdict": self.verdict, "explanation": self.explanation(),
            "differences": self.differences(), "differences_total": len(self.cell.differences),
        }


def _text(value: Any) -> str:
    # As the cell list words them (html.py): an index [1, 2] stays [1, 2].
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class PairRow:
    """What one env pair (source → target) found for one refactor."""

    source: str
    target: str
    plain: dict[str, int] = field(default_factory=dict)  # outcome -> cells, loads without a fix
    diagnoses: dict[str, int] = field(default_factory=dict)  # diagnosis code -> cells, among the plain loads
    plain_cells: list[int] = field(default_factory=list)  # their positions in the report's cells
    migrations: list[Migration] = field(default_factory=list)
    renames: list[Migration] = field(default_factory=list)

    def plain_text(self) -> str:
        """``2 error, 1 pass`` (outcomes, worst first)."""
        order = sorted(self.plain, key=lambda o: -Outcome(o).severity)
        return ", ".join(f"{self.plain[o]} {o}" for o in order)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "target": self.target,
            "plain": {"outcomes": dict(self.plain), "diagnoses": dict(self.diagnoses)},
            "migrations": [m.to_dict() for m in self.migrations],
            "rename_class": [m.to_dict() for m in self.renames],
        }


@dataclass
class GroupVerdict:
    """A refactor's verdict: ``exact``, ``mismatch``, ``failed`` or ``none`` (no fix ran), and its words."""

    kind: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


def _fix_verdict(what: str, fixes: list[tuple[Pair, Migration]]) -> Optional[GroupVerdict]:
    """The verdict of one kind of fix (`what`: "migration", "class rename") over the env pairs it ran in."""
    ran = [(pair, m) for pair, m in fixes if m.cell.outcome is not Outcome.SKIP]
    if not ran:
        return None
    pairs = {pair for pair, _ in ran}
    mismatched = {pair for pair, m in ran if m.cell.outcome is Outcome.MISMATCH}
    failed = {pair for pair, m in ran if m.cell.outcome in _FAILED} - mismatched
    n = len(pairs)
    if mismatched:
        text = f"{what} mismatched in {len(mismatched)} of {n} env pairs"
        if failed:
            text += f", failed in {len(failed)}"
        return GroupVerdict("mismatch", text)
    if failed:
        return GroupVerdict("failed", f"{what} failed in {len(failed)} of {n} env pairs")
    return GroupVerdict("exact", f"{what} exact in every env pair ({n})")


_VERDICT_RANK = {"none": 0, "exact": 1, "failed": 2, "mismatch": 3}


@dataclass
class RefactorGroup:
    """One refactor: a case loaded into one load-side model, across every env pair."""

    case: str
    load_as: str
    remaps: list[RemapFinding] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)
    pairs: list[PairRow] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return sum(sum(p.plain.values()) + len(p.migrations) + len(p.renames) for p in self.pairs)

    def superseded_lines(self) -> list[str]:
        """Where digests were preferred to names: one line per env pair whose names proposal differed, one for those that agreed."""
        out = [s.line() for s in self.superseded if s.differed]
        agreed = [s for s in self.superseded if not s.differed]
        if agreed:
            where = f"every env pair ({len(agreed)})" if len(agreed) == len(self.pairs) else _pairs_text([(a.source, a.target) for a in agreed])
            out.append(f"the remap confirmed by digests was preferred to the one proposed from names, which agreed with it, in {where}")
        return out

    @property
    def remaps_agree(self) -> bool:
        return len(self.remaps) <= 1

    def verdict(self) -> GroupVerdict:
        """Whether the fixes that ran (migrations, class renames) restored every tensor exactly, in every env pair."""
        parts = [
            v for v in (
                _fix_verdict("migration", [((p.source, p.target), m) for p in self.pairs for m in p.migrations]),
                _fix_verdict("class rename", [((p.source, p.target), m) for p in self.pairs for m in p.renames]),
            ) if v is not None
        ]
        if not parts:
            skipped = sum(1 for p in self.pairs for m in p.migrations + p.renames)  # every fix cell here is a skip
            return GroupVerdict("none", f"no migration ran ({skipped} skipped)" if skipped else "no migration ran")
        worst = max(parts, key=lambda v: _VERDICT_RANK[v.kind]).kind
        return GroupVerdict(worst, "; ".join(v.text for v in parts))

    def remap_line(self) -> str:
        """The remap in one line: its summary, or each distinct one with its env pairs when they disagree."""
        if not self.remaps:
            return "no remap recorded"
        if self.remaps_agree:
            return self.remaps[0].summary
        return "env pairs disagree: " + "; ".join(f"{f.summary} ({_pairs_text(f.pairs)})" for f in self.remaps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case, "load_as": self.load_as, "cells": self.cells, "verdict": self.verdict().to_dict(),
            "remaps": [f.to_dict() for f in self.remaps], "superseded": [s.to_dict() for s in self.superseded],
            "pairs": [p.to_dict() for p in self.pairs],
        }


def _group_remaps(group: RefactorGroup, found: dict[Pair, list[dict[str, Any]]]) -> None:
    """Fill the group's remap findings from each env pair's remaps, digests preferred to names."""
    by_content: dict[str, RemapFinding] = {}
    for pair, remaps in found.items():
        digests = [m for m in remaps if m.get("found_by") == "digests"]
        chosen = digests or remaps
        if digests:
            chosen_keys = {_content_key(m) for m in digests}
            names_seen: set[str] = set()
            for m in remaps:
                k = _content_key(m)
                if m.get("found_by") != "digests" and k not in names_seen:
                    names_seen.add(k)
                    group.superseded.append(Superseded(pair[0], pair[1], remap_summary(m), k not in chosen_keys))
        for m in chosen:
            k = _content_key(m)
            finding = by_content.get(k)
            if finding is None:
                finding = by_content[k] = RemapFinding(m)
            # Digests over names within a pair, even when a names proposal came first.
            if finding.found_by.get(pair) != "digests":
                finding.found_by[pair] = str(m.get("found_by") or "unknown")
    # The remap most env pairs found first; then by summary, for a stable order.
    group.remaps = sorted(by_content.values(), key=lambda f: (-len(f.found_by), f.summary))


def refactor_groups(cells: Sequence[CellResult], keys: Sequence[str], *, pair_key: Any = None) -> list[RefactorGroup]:
    """The refactor groups among `cells` (with their cell `keys`), by case then load-side model.

    Env pairs within a group follow `pair_key` (a sort key of an env label;
    default: by name).
    """
    sort_env = pair_key or (lambda label: label)
    groups: dict[tuple[str, str], RefactorGroup] = {}
    rows: dict[tuple[str, str], dict[Pair, PairRow]] = {}
    found: dict[tuple[str, str], dict[Pair, list[dict[str, Any]]]] = {}
    for i, (key, r) in enumerate(zip(keys, cells)):
        if not is_refactor_cell(r):
            continue
        gk = (r.case, load_side(r))
        if gk not in groups:
            groups[gk] = RefactorGroup(r.case, gk[1])
            rows[gk], found[gk] = {}, {}
        pair = (r.source, r.target)
        row = rows[gk].get(pair)
        if row is None:
            row = rows[gk][pair] = PairRow(r.source, r.target)
        if r.remap is not None:
            found[gk].setdefault(pair, []).append(_checked_remap(r.remap, f"{r.target}: {key}"))
        migrate, rename = r.load.get("migrate"), r.load.get("rename_class")
        if migrate:
            row.migrations.append(Migration(i, key, r, migration_name(str(migrate))))
        elif rename:
            row.renames.append(Migration(i, key, r, str(rename).replace("->", " → ")))
        else:
            row.plain[r.outcome.value] = row.plain.get(r.outcome.value, 0) + 1
            row.plain_cells.append(i)
            code = (r.diagnosis or {}).get("code")
            if code:
                row.diagnoses[str(code)] = row.diagnoses.get(str(code), 0) + 1
    out = []
    for gk in sorted(groups):
        group = groups[gk]
        group.pairs = [rows[gk][p] for p in sorted(rows[gk], key=lambda p: (sort_env(p[0]), sort_env(p[1])))]
        _group_remaps(group, found[gk])
        out.append(group)
    return out
