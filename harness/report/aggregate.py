"""Counting cells: categories, the env matrix, the format view, the release grid, the baseline diff.

Every cell falls in one *category*, the word the report uses for it:

============  ===============================================================
pass          loaded and exactly equal
skip          not applicable here (the reason is in the detail)
expected      error, timeout or crash that an expectation documents
regression    error, timeout or crash that no expectation explains
mismatch      loaded but different: always fails the run, expected or not
============  ===============================================================

A run fails when it has a regression or a mismatch. The page computes the
same counts in JavaScript (for its filters); the browser test checks that
both agree.

The *release grid* folds envs by torch release: every Python, every device
and the golden corpus sources of one release count as one release, so a
matrix of many releases reads as a release x release map per format.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.runtime.env import parse_label
from harness.runtime.errors import InputError
from harness.runtime.results import CellResult, Outcome
from harness.runtime.versions import release

__all__ = [
    "COLOUR_RANK",
    "MIN_RELEASES",
    "VERDICT_SYMBOL",
    "BaselineDiff",
    "Category",
    "Counts",
    "Verdict",
    "category",
    "diff_baseline",
    "env_grid",
    "env_release",
    "format_view",
    "release_axes",
    "release_grid",
    "release_order",
    "release_sort_key",
    "shows_release_map",
    "top_failures",
    "totals",
    "verdict",
]


class Category(str, enum.Enum):
    """What a cell means for the run, from fine to worst."""

    PASS = "pass"
    SKIP = "skip"
    EXPECTED = "expected"
    REGRESSION = "regression"
    MISMATCH = "mismatch"

    @property
    def fails(self) -> bool:
        return self in (Category.REGRESSION, Category.MISMATCH)


def category(r: CellResult) -> Category:
    """The category of one cell."""
    # Identity tests, not Outcome properties: this runs for every cell, several times.
    o = r.outcome
    if o is Outcome.PASS:
        return Category.PASS
    if o is Outcome.SKIP:
        return Category.SKIP
    if o is Outcome.MISMATCH:
        return Category.MISMATCH  # silent corruption fails the run even when documented
    return Category.EXPECTED if r.expected else Category.REGRESSION


_VALUE = {c: c.value for c in Category}
# The colour of a group of cells: its worst unexpected outcome, where a skip
# ranks below a pass (a group that passes with a few not-applicable cells is
# green, not grey; grey means nothing there applied).
COLOUR_RANK = {Outcome.SKIP: 0, Outcome.PASS: 1, Outcome.ERROR: 2, Outcome.TIMEOUT: 3, Outcome.CRASH: 4, Outcome.MISMATCH: 5}
_SEVERITY = COLOUR_RANK


@dataclass
class Counts:
    """How many cells of each category, and the worst outcome no expectation explains."""

    counts: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in Category})
    worst: Optional[Outcome] = None

    def add(self, r: CellResult) -> None:
        cat = category(r)
        self.counts[_VALUE[cat]] += 1
        if cat is not Category.EXPECTED and (self.worst is None or _SEVERITY[r.outcome] > _SEVERITY[self.worst]):
            self.worst = r.outcome

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failing(self) -> int:
        return self.counts["regression"] + self.counts["mismatch"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.counts, "total": self.total, "worst": self.worst.value if self.worst else None}


def totals(cells: list[CellResult]) -> Counts:
    """Counts over all `cells`."""
    out = Counts()
    for r in cells:
        out.add(r)
    return out


def env_grid(cells: list[CellResult]) -> dict[tuple[str, str], Counts]:
    """(source, target) -> Counts."""
    out: dict[tuple[str, str], Counts] = {}
    for r in cells:
        key = (r.source, r.target)
        if key not in out:
            out[key] = Counts()
        out[key].add(r)
    return out


class Verdict(str, enum.Enum):
    """Whether a format survives one source -> target transition."""

    SAFE = "safe"  # every cell that applies passes
    KNOWN_ISSUES = "known issues"  # passes, except where an expectation documents a failure
    KNOWN_INCOMPATIBLE = "known incompatible"  # nothing passes; every failure is documented
    REGRESSION = "regression"  # an undocumented failure
    CORRUPTS = "corrupts"  # a mismatch: it loads, but different
    NOT_APPLICABLE = "n/a"  # all skipped


def verdict(c: Counts) -> Verdict:
    """The verdict of one format view cell."""
    if c["mismatch"]:
        return Verdict.CORRUPTS
    if c["regression"]:
        return Verdict.REGRESSION
    if c["pass"]:
        return Verdict.KNOWN_ISSUES if c["expected"] else Verdict.SAFE
    if c["expected"]:
        return Verdict.KNOWN_INCOMPATIBLE
    return Verdict.NOT_APPLICABLE


def format_view(cells: list[CellResult]) -> dict[tuple[str, str, str], Counts]:
    """(format, source, target) -> Counts: which transitions each format survives."""
    out: dict[tuple[str, str, str], Counts] = {}
    for r in cells:
        key = (r.format, r.source, r.target)
        if key not in out:
            out[key] = Counts()
        out[key].add(r)
    return out


#: One character per verdict, for the release map (summary.md, the page's release grids).
VERDICT_SYMBOL = {
    Verdict.SAFE: "✓",
    Verdict.KNOWN_ISSUES: "~",
    Verdict.KNOWN_INCOMPATIBLE: "✗",
    Verdict.REGRESSION: "!",
    Verdict.CORRUPTS: "≠",
    Verdict.NOT_APPLICABLE: "·",
}

#: Releases a run must span before the report maps release x release: with
#: two, the env matrix and the format view already read as one.
MIN_RELEASES = 3


def env_release(label: str) -> str:
    """The torch release of an env label: ``golden-torch-1.4.0-py3.8-cpu`` -> ``1.4.0``.

    A label that is not an env label is its own release, so odd envs stay
    visible (last) instead of vanishing from the grid.
    """
    try:
        return parse_label(label)["torch"]
    except InputError:
        return label


def release_sort_key(name: str) -> tuple[int, tuple[int, ...], str]:
    """Order releases by number (1.8.1 before 1.13.1); names that are not releases last, by name."""
    try:
        return (0, release(name), name)
    except ValueError:
        return (1, (), name)


def release_order(labels: Iterable[str]) -> list[str]:
    """The distinct torch releases of env `labels`, oldest first."""
    return sorted({env_release(label) for label in set(labels)}, key=release_sort_key)


def release_axes(cells: list[CellResult]) -> tuple[list[str], list[str]]:
    """(saving releases, loading releases) of `cells`: the rows and columns of a release grid."""
    return release_order({r.source for r in cells}), release_order({r.target for r in cells})


def shows_release_map(cells: list[CellResult]) -> bool:
    """Whether `cells` span at least `MIN_RELEASES` torch releases (saving or loading)."""
    saving, loading = release_axes(cells)
    return len(set(saving) | set(loading)) >= MIN_RELEASES


def release_grid(cells: list[CellResult]) -> dict[tuple[str, str, str], Counts]:
    """(format, source release, target release) -> Counts: which release loads what which release wrote.

    Python versions, devices and golden vs live sources of one release fold
    into one cell; take its `verdict` for the map. Keys are unordered: lay
    them out with `release_axes`.
    """
    of: dict[str, str] = {}  # label -> release: parse each label once, not once per cell
    out: dict[tuple[str, str, str], Counts] = {}
    for r in cells:
        source = of.get(r.source)
        if source is None:
            source = of[r.source] = env_release(r.source)
        target = of.get(r.target)
        if target is None:
            target = of[r.target] = env_release(r.target)
        key = (r.format, source, target)
        if key not in out:
            out[key] = Counts()
        out[key].add(r)
    return out


_FAIL_ORDER = {Category.MISMATCH: 0, Category.REGRESSION: 1}


def top_failures(cells: list[CellResult], keys: list[str], n: int) -> list[tuple[str, CellResult]]:
    """Up to `n` (key, cell) that fail the run: mismatches first, then by outcome severity."""
    failing = [(k, r) for k, r in zip(keys, cells) if category(r).fails]
    failing.sort(key=lambda kr: (_FAIL_ORDER[category(kr[1])], -kr[1].outcome.severity, kr[1].target, kr[0]))
    return failing[:n]


@dataclass
class BaselineDiff:
    """How failing cells moved since the baseline report.

    Keys are ``(target, cell key)``. *new*: fails now, did not fail (or was
    not run) then; *fixed*: failed then, runs now and does not fail;
    *unchanged*: fails in both; *vanished*: failed then and is not run now.
    """

    new: list[tuple[str, str]] = field(default_factory=list)
    fixed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    vanished: list[tuple[str, str]] = field(default_factory=list)
    baseline_cells: int = 0

    def status_of(self) -> dict[tuple[str, str], str]:
        """(target, key) -> "new" | "fixed" | "unchanged"."""
        out = {}
        for name in ("new", "fixed", "unchanged"):
            for k in getattr(self, name):
                out[k] = name
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_cells": self.baseline_cells,
            **{name: [list(k) for k in getattr(self, name)] for name in ("new", "fixed", "unchanged", "vanished")},
        }


def diff_baseline(cells: list[CellResult], keys: list[str], base_cells: list[CellResult], base_keys: list[str]) -> BaselineDiff:
    """Compare this run's failing cells with the baseline's (both judged by the same expectations)."""
    now = {(r.target, k): category(r).fails for k, r in zip(keys, cells)}
    then = {(r.target, k): category(r).fails for k, r in zip(base_keys, base_cells)}
    diff = BaselineDiff(baseline_cells=len(then))
    for key, fails in now.items():
        before = then.get(key)
        if fails and before:
            diff.unchanged.append(key)
        elif fails:
            diff.new.append(key)
        elif before:
            diff.fixed.append(key)
    diff.vanished = sorted(k for k, fails in then.items() if fails and k not in now)
    for name in ("new", "fixed", "unchanged"):
        getattr(diff, name).sort()
    return diff
