"""``index.html``: one self-contained page (inline CSS and JS, no network).

The page must stay fast at 100,000 cells, so the cells travel as compact
columns, not as markup: every string goes once into a string table, each
column is a typed array (the narrowest of uint8/16/32 that fits) in base64,
and repeated structures (diagnoses, errors, notes, forward results,
differences) are deduplicated into tables that the columns point into. The
page's JavaScript decodes the columns, aggregates the matrix, the format
view and the release grids itself (so filters apply to them), and renders
the cell list a page at a time. Optional columns store index + 1, with 0
meaning "none". Shrink records (`harness.report.shrunk`) travel as their
rows of text, with a map from cell index to record; the page shows them in
their section and beside their cells.
"""

from __future__ import annotations

import array
import base64
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from harness import __version__
from harness.report.aggregate import (
    COLOUR_RANK,
    VERDICT_SYMBOL,
    BaselineDiff,
    Category,
    Verdict,
    category,
    env_release,
    release_order,
    shows_release_map,
    totals,
)
from harness.report.bench import Bench
from harness.report.model import ReportModel, env_sort_key
from harness.report.refactors import remap_summary
from harness.report.shrunk import CODE_ROWS, Shrunk
from harness.runtime.env import parse_label
from harness.runtime.errors import InputError
from harness.runtime.fileio import write_text
from harness.runtime.results import Outcome

__all__ = ["PAGE_SIZE", "pack", "render_html", "write_html"]

PAGE_SIZE = 100  # cell rows rendered at once
_MAX_NOTICES = 200  # conflicts/warnings listed on the page; results.json has all
_BASELINE_CODES: dict[Optional[str], int] = {"new": 1, "fixed": 2, "unchanged": 3}
_FINGERPRINT_FIELDS = ("torch", "torch_git", "cuda", "cuda_devices", "python", "numpy", "platform", "machine", "device", "harness")


class _Table:
    """Deduplicating table: value -> index; keys are the value's JSON (or the string)."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.items: list[Any] = []

    def add(self, value: Any, key: Any = None) -> int:
        key = value if key is None else key
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.items)
            self.items.append(value)
        return i


def _column(values: Sequence[float], kind: Optional[str] = None) -> dict[str, str]:
    """A typed-array column in base64, little-endian as every browser's typed arrays are."""
    if kind is None:
        top = max(values, default=0)
        kind = "u8" if top < 1 << 8 else "u16" if top < 1 << 16 else "u32"
    code = {"u8": "B", "u16": "H", "u32": "I", "f32": "f"}[kind]
    arr = array.array(code, values)
    if code == "I" and arr.itemsize != 4:  # pragma: no cover - platforms with 8-byte unsigned int
        arr = array.array("L", values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return {"t": kind, "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _env_info(label: str) -> dict[str, str]:
    try:
        return parse_label(label)
    except InputError:
        return {"torch": label, "python": "", "device": ""}


#: The CSS class of a refactor's verdict (`harness.report.refactors.GroupVerdict.kind`): the format view's colours.
_REFACTOR_CLASS = {
    "exact": "v-safe", "mismatch": "v-corrupts", "failed": "v-regression", "none": "v-na",
}


def _verdict_class(v: Verdict) -> str:
    """The CSS class of a verdict (``v-known-issues``); the page's JavaScript spells it the same way."""
    return "v-na" if v is Verdict.NOT_APPLICABLE else "v-" + v.value.replace(" ", "-")


def _releases(envs: list[str], model: ReportModel) -> dict[str, Any]:
    """What the release grids need: release names, each env's release, the saving and loading releases.

    Envs travel as indices into ``releases``, so the page folds a cell's
    source and target into releases with two array reads.
    """
    names = release_order(envs)
    index = {name: i for i, name in enumerate(names)}
    return {
        "releases": names,
        "envRelease": [index[env_release(e)] for e in envs],
        "sourceReleases": [index[r] for r in release_order(model.sources)],
        "targetReleases": [index[r] for r in release_order(model.targets)],
        "verdictSymbols": {v.value: VERDICT_SYMBOL[v] for v in Verdict},
    }


def pack(model: ReportModel, baseline: Optional[BaselineDiff] = None, shrunk: Optional[Shrunk] = None) -> dict[str, Any]:
    """The page's data: string table, typed columns and the deduplicated tables."""
    strings = _Table()
    s = strings.add
    envs = sorted({c.source for c in model.cells} | {c.target for c in model.cells} | set(model.envs), key=env_sort_key)
    env_index = {label: i for i, label in enumerate(envs)}
    formats = model.formats
    fmt_index = {f: i for i, f in enumerate(formats)}
    outcomes = [o.value for o in Outcome]
    out_index = {o: i for i, o in enumerate(Outcome)}
    cats = [c.value for c in Category]
    cat_index = {c: i for i, c in enumerate(Category)}
    diags, errors, notes, forwards, diffs, tags, refactors = _Table(), _Table(), _Table(), _Table(), _Table(), _Table(), _Table()
    status = baseline.status_of() if baseline is not None else {}
    cols: dict[str, list[float]] = {k: [] for k in ("src", "tgt", "case", "fmt", "opt", "out", "cat", "exp", "det", "diag", "err", "notes", "fwd", "diff", "sec", "org", "art", "tags", "base", "rf")}
    failing_generated = set()
    row: Union[list[int], list[list[int]]]  # one table row: strings' indices (a difference row: one list per difference)
    for key, r in zip(model.keys, model.cells):
        cat = category(r)
        cols["src"].append(env_index[r.source])
        cols["tgt"].append(env_index[r.target])
        cols["case"].append(s(r.case))
        cols["fmt"].append(fmt_index[r.format])
        cols["opt"].append(s(key.rsplit("|", 1)[1]))
        cols["out"].append(out_index[r.outcome])
        cols["cat"].append(cat_index[cat])
        cols["exp"].append(s(r.expectation) + 1 if r.expectation else 0)
        cols["det"].append(s(r.detail))
        if r.diagnosis:
            d = r.diagnosis
            row = [s(_text(d.get("code", ""))), s(_text(d.get("summary", ""))), s(_text(d.get("fix", "")))]
            cols["diag"].append(diags.add(row, tuple(row)) + 1)
        else:
            cols["diag"].append(0)
        if r.error:
            e = r.error
            row = [s(_text(e.get("type", ""))), s(_text(e.get("module", ""))), s(_text(e.get("message", "")))]
            cols["err"].append(errors.add(row, tuple(row)) + 1)
        else:
            cols["err"].append(0)
        if r.notes:
            row = [s(_text(n)) for n in r.notes]
            cols["notes"].append(notes.add(row, tuple(row)) + 1)
        else:
            cols["notes"].append(0)
        cols["fwd"].append(forwards.add(r.forward, _text(r.forward)) + 1 if r.forward else 0)
        if r.differences:
            row = [[s(_text(d.get(k, ""))) if isinstance(d, dict) else s(_text(d)) for k in ("tensor", "aspect", "expected", "actual", "index")] for d in r.differences]
            cols["diff"].append(diffs.add(row, _text(row)) + 1)
        else:
            cols["diff"].append(0)
        cols["sec"].append(float(r.seconds))
        cols["org"].append(s(r.origin))
        cols["art"].append(s(r.artifact))
        if r.tags:
            row = [s(_text(t)) for t in r.tags]
            cols["tags"].append(tags.add(row, tuple(row)) + 1)
        else:
            cols["tags"].append(0)
        cols["base"].append(_BASELINE_CODES.get(status.get((r.target, key)), 0))
        if r.load_as is not None or r.remap is not None:
            # A refactor cell: the model its load side built, and the remap it found, in words.
            remap = r.remap or {}
            row = [s(r.load_as or ""), s(remap_summary(remap) if r.remap is not None else ""), s(_text(remap.get("found_by", "")))]
            cols["rf"].append(refactors.add(row, tuple(row)) + 1)
        else:
            cols["rf"].append(0)
        if r.origin == "generated" and r.outcome.is_failure:
            failing_generated.add(r.case)
    encoded = {k: _column(v, "f32" if k == "sec" else None) for k, v in cols.items()}
    return {
        "v": 1,
        "n": len(model.cells),
        "pageSize": PAGE_SIZE,
        "strings": strings.items,
        "envs": envs,
        "envInfo": [_env_info(e) for e in envs],
        "sources": [env_index[e] for e in model.sources],
        "targets": [env_index[e] for e in model.targets],
        "formats": formats,
        "outcomes": outcomes,
        "severity": [COLOUR_RANK[o] for o in Outcome],
        "cats": cats,
        "cols": encoded,
        "diags": diags.items,
        "errors": errors.items,
        "notes": notes.items,
        "forwards": forwards.items,
        "diffs": diffs.items,
        "tags": tags.items,
        "refactors": refactors.items,
        "expectations": model.expectations,
        "specs": {name: model.cases[name] for name in sorted(failing_generated) if name in model.cases},
        "baseline": baseline is not None,
        # Sparse: few cells are shrunk, and a column would cost every cell a byte.
        "shrunk": [e.page() for e in shrunk.entries] if shrunk is not None else [],
        "shrunkCells": {str(i): js for i, js in shrunk.by_cell().items()} if shrunk is not None else {},
        "shrunkCode": list(CODE_ROWS),
        **_releases(envs, model),
    }


def _fingerprint_rows(model: ReportModel) -> list[dict[str, Any]]:
    sources, targets = set(model.sources), set(model.targets)
    rows = []
    for label in sorted(set(model.envs) | sources | targets, key=env_sort_key):
        fp = model.envs.get(label)
        role = " + ".join(r for r, s in (("source", sources), ("target", targets)) if label in s) or "listed only"
        values = []
        if fp is not None:
            for f in _FINGERPRINT_FIELDS:
                v = fp.get(f)
                if f == "torch_git" and v:
                    v = str(v)[:12]
                if isinstance(v, list):
                    v = ", ".join(map(str, v)) or "none"
                values.append("" if v is None else str(v))
        rows.append({"label": label, "role": role, "known": fp is not None, "fields": values})
    return rows


def _json_for_script(data: dict[str, Any]) -> str:
    # Inside <script>, "</" would end the element early; \u003c keeps the JSON the same.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def render_html(
    model: ReportModel, *, generated: str, exit_status: int,
    baseline: Optional[BaselineDiff] = None, bench: Optional[Bench] = None, shrunk: Optional[Shrunk] = None,
) -> str:
    """The whole page as a string."""
    try:
        import jinja2
    except ImportError:
        msg = "the HTML report needs Jinja2: pip install 'torch-roundtrip[report]'"
        raise InputError(msg) from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    t = totals(model.cells)
    return env.get_template("report.html.j2").render(
        model=model,
        totals=t,
        exit_status=exit_status,
        generated=generated,
        harness_version=__version__,
        result_harness=sorted({c.harness for c in model.cells if c.harness}),
        fingerprint_fields=_FINGERPRINT_FIELDS,
        fingerprints=_fingerprint_rows(model),
        conflicts=[c.line() for c in model.conflicts[:_MAX_NOTICES]],
        more_conflicts=max(0, len(model.conflicts) - _MAX_NOTICES),
        warnings=model.warnings[:_MAX_NOTICES],
        more_warnings=max(0, len(model.warnings) - _MAX_NOTICES),
        baseline=baseline,
        bench=bench,
        shrunk=shrunk,
        shrunk_code=CODE_ROWS,
        show_releases=shows_release_map(model.cells),
        verdict_legend=[(_verdict_class(v), VERDICT_SYMBOL[v], v.value) for v in Verdict],
        refactors=model.refactors,
        refactor_class=_REFACTOR_CLASS,
        data_json=_json_for_script(pack(model, baseline, shrunk)),
    )


def write_html(path: Path, model: ReportModel, **kwargs: Any) -> None:
    """Write index.html atomically."""
    write_text(Path(path), render_html(model, **kwargs))
