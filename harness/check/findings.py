"""The records ``check`` produces, and their text and JSON renderings.

`Attempt` is one load and how it went; `FileReport` is everything found
about one file. Both cross the process boundary (``check --out`` documents,
and fleet lines, `harness.check.fleet_record`), so each has ``to_dict``/``from_dict``.
`render_text` is for a person and escapes whatever came from the file;
`render_json` is one document of schema `CHECK_SCHEMA`. Rendering reads only
these records (and the env it runs in), never the loads themselves.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from harness.check.loads import default_weights_only
from harness.check.sniff import FILE_FORMATS

__all__ = [
    "CHECK_SCHEMA",
    "Attempt",
    "FileReport",
    "exit_status",
    "printable",
    "render_json",
    "render_text",
]

CHECK_SCHEMA = 1
#: Tensors listed in the text output (--json lists all).
TEXT_TENSORS = 40
#: Code globals and TorchScript escapes listed in the text output.
TEXT_CODE = 10
#: The order load options are named in, in labels and in the text output.
_OPTION_ORDER = ("map_location", "weights_only", "mmap", "device")


# -- records -------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One way of loading a file in this env, and how it went.

    `status`: ``loaded``, ``failed``, ``crash``, ``timeout``, ``skip`` (this
    torch lacks the option) or ``not_tried`` (with the reason in `detail`).
    `where`: ``harness`` (this process, weights_only forced), ``child`` (a
    child process, --trust) or None when not run. `same_as`: the `label` of
    the attempt whose load stands for this one (check runs one load per
    group of options that torch answers alike, `harness.check.checker`),
    None for an attempt that ran its own load; such an attempt has
    `seconds` 0 and the status, detail and error of the load that ran.
    """

    loader: str
    options: dict[str, Any]
    status: str
    where: Optional[str] = None
    detail: str = ""
    error: Optional[dict[str, Any]] = None
    diagnosis: Optional[dict[str, Any]] = None
    seconds: float = 0.0
    same_as: Optional[str] = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "crash", "timeout")

    @property
    def label(self) -> str:
        opts = self.options
        text = " ".join(f"{k}={int(opts[k]) if isinstance(opts[k], bool) else opts[k]}" for k in _OPTION_ORDER if k in opts)
        return f"{self.loader} {text}".strip()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class FileReport:
    """Everything ``check`` found about one file; `verdict` and `summary` say it in brief."""

    path: str
    size: int
    format: str
    why: str
    content: str
    harness_format: Optional[str]
    tensors: list[dict[str, Any]]
    listing: str
    device_tags: dict[str, int]
    prefixes: list[dict[str, Any]]
    globals: list[str]
    unsafe_globals: list[str]
    code_globals: list[str]
    globals_source: str
    problems: list[str]
    notes: list[str]
    attempts: list[Attempt]
    verdict: str  # loads | loads_some_ways | does_not_load | not_checked | crashed (a fleet: the check process died or hung on it)
    summary: str
    # Each code global where it is first named: global, where, offset, call, kind (known gadget | unknown code).
    code: list[dict[str, Any]] = field(default_factory=list)
    # TorchScript calls that leave the sandbox: where (record:line), call, why.
    script_escapes: list[dict[str, str]] = field(default_factory=list)
    global_kinds: dict[str, str] = field(default_factory=dict)  # global -> safe | data | code
    # What the bytes alone say is wrong with the whole file (a Git LFS pointer, a web
    # page, an empty or truncated file): code, summary and fix, the runtime's codes.
    diagnosis: Optional[dict[str, str]] = None
    # The call that reads this kind of file, and the loader not to use for it.
    loader: str = ""
    # The torch releases that write a file like this one, told from its records
    # (`harness.check.writers`): releases, evidence, first, last; None where the bytes cannot tell.
    writer: Optional[dict[str, Any]] = None

    @property
    def runs_code(self) -> bool:
        """Whether loading the file can run code from it (a code global, or TorchScript that escapes)."""
        return bool(self.code_globals or self.script_escapes)

    @property
    def findings(self) -> bool:
        return self.verdict != "loads" or bool(self.problems) or self.runs_code

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attempts"] = [a.to_dict() for a in self.attempts]
        d["findings"] = self.findings
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileReport:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["attempts"] = [Attempt.from_dict(a) for a in d.get("attempts", [])]
        return cls(**kw)


def exit_status(reports: list[FileReport]) -> int:
    """``check``'s exit status for these reports: 1 when any file has findings, else 0."""
    return 1 if any(r.findings for r in reports) else 0


def printable(text: str) -> str:
    """`text` with every unprintable character escaped, so it stays on one line."""
    # Paths are user data: a newline in one must not split the one-line message.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- output --------------------------------------------------------------------


def _env_line(trust: bool) -> str:
    import torch

    from harness.runtime.env import cuda_available

    default = default_weights_only()
    wo = {True: "True", False: "False", None: "unknown"}[default]
    device = "with CUDA" if cuda_available() else "CPU only"
    trusted = "; --trust: full loads run in a child process" if trust else "; without --trust: only loads that cannot run code from the file"
    return f"torch {torch.__version__}, Python {sys.version.split()[0]}, {device}; torch.load's default weights_only={wo}{trusted}"


def render_json(reports: list[FileReport], trust: bool) -> str:
    """One JSON document: the env, every file's report, the exit status."""
    import torch

    from harness import __version__
    from harness.runtime.env import cuda_available

    doc = {
        "schema": CHECK_SCHEMA,
        "env": {
            "torch": torch.__version__, "python": sys.version.split()[0], "cuda": cuda_available(),
            "default_weights_only": default_weights_only(), "harness": __version__,
        },
        "trust": trust,
        "files": [r.to_dict() for r in reports],
        "exit_status": exit_status(reports),
    }
    return json.dumps(doc, indent=1, sort_keys=True)


def _groups(attempts: list[Attempt]) -> list[tuple[str, Optional[str], str, list[Attempt]]]:
    """Attempts that ended the same way, in first-seen order: (status, where, detail, [attempts])."""
    groups: dict[tuple[str, Optional[str], str], list[Attempt]] = {}
    for a in attempts:
        groups.setdefault((a.status, a.where, a.detail), []).append(a)
    return [(*key, group) for key, group in groups.items()]


def _values(attempts: list[Attempt]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for a in attempts:
        for k in _OPTION_ORDER:
            if k in a.options:
                v = a.options[k]
                v = str(int(v)) if isinstance(v, bool) else str(v)
                seen.setdefault(k, [])
                if v not in seen[k]:
                    seen[k].append(v)
    return seen


def _describe_group(group: list[Attempt], every: list[Attempt]) -> str:
    """The loads of a group as ``loader map_location=cpu|callable mmap=0|1``, when they are a grid.

    An option whose every value is in the group is left out (any value);
    a group that is not a full grid of its values is listed load by load.
    """
    loaders = {a.loader for a in group}
    values, everywhere = _values(group), _values(every)
    size = 1
    for v in values.values():
        size *= len(v)
    if len(loaders) != 1 or size != len(group):
        # Not a grid: name what the loads share, and how many there are (--json lists them).
        shared = [f"{k}={v[0]}" for k, v in values.items() if len(v) == 1 and len(everywhere.get(k, [])) > 1]
        return " ".join(sorted(loaders) + shared + [f"({len(group)} loads)"])
    parts = [f"{k}={'|'.join(v)}" for k, v in values.items() if sorted(v) != sorted(everywhere.get(k, []))]
    return " ".join([group[0].loader] + (parts or ["(every option)" if len(group) > 1 else ""])).strip()


def _render_file(r: FileReport) -> list[str]:
    p: Union[dict[str, Any], str]  # a key prefix record, then a problem
    out = [f"== {printable(r.path)} ({r.size} bytes)"]
    fmt = FILE_FORMATS.get(r.format, r.format)
    if r.format == "unknown":
        out.append(f"format:  unknown: {r.why}")
    else:
        harness = f" [harness format {r.harness_format}]" if r.harness_format else ""
        out.append(f"format:  {fmt}{': ' + r.content if r.content else ''}{harness}")
    if r.writer:
        out.append(f"written by: {r.writer['releases']} ({'; '.join(r.writer.get('evidence', [])[:3])})")
    if r.loader:
        out.append(f"load with: {r.loader}")
    if r.diagnosis:
        out.append(f"diagnosis {r.diagnosis['code']}: {r.diagnosis['summary']}")
        out.append(f"fix: {r.diagnosis['fix']}")
    if r.tensors or r.listing:
        out.append(f"tensors: {len(r.tensors)}" + (f" (from {r.listing})" if r.listing else ""))
        width = max((len(t["name"]) for t in r.tensors[:TEXT_TENSORS]), default=0)
        for t in r.tensors[:TEXT_TENSORS]:
            shape = "?" if t["shape"] is None else str(t["shape"])
            out.append(f"  {printable(t['name']).ljust(width)}  {t['dtype'] or '?':<10} {shape:<16} {t['device'] or ''}".rstrip())
        if len(r.tensors) > TEXT_TENSORS:
            out.append(f"  ... and {len(r.tensors) - TEXT_TENSORS} more (--json lists all)")
    if r.format != "unknown":
        tags = ", ".join(f"{tag} ({n} storage{'s' if n != 1 else ''})" for tag, n in sorted(r.device_tags.items()))
        out.append(f"device tags: {tags or 'none'}")
        if r.prefixes:
            for p in r.prefixes:
                out.append(f"key prefix {p['prefix']!r} on {p['count']} of {p['total']} keys: {p['meaning']}; fix: {p['fix']}")
        else:
            out.append("key prefixes: none (no _orig_mod. or module.)")
    if r.globals:
        out.append(f"globals: {len(r.globals)}: {', '.join(printable(g) for g in r.globals[:12])}{' ...' if len(r.globals) > 12 else ''}")
        if r.format == "torchscript":
            out.append("  __torch__.* are TorchScript classes: torch.jit.load compiles them from the archive's code")
        if r.unsafe_globals:
            out.append(f"  refused by weights_only (importing them can run code): {', '.join(printable(g) for g in r.unsafe_globals)}")
        else:
            out.append("  all allowed by weights_only" + (" (apart from the TorchScript classes)" if r.format == "torchscript" else ""))
        for c in r.code[:TEXT_CODE]:
            call = f", calls {c['call']}" if c.get("call") else ""
            out.append(printable(f"  RUNS CODE ({c['kind']}): {c['global']} in {c['where']} at byte {c['offset']}{call}"))
    for e in r.script_escapes[:TEXT_CODE]:
        out.append(printable(f"  RUNS CODE (TorchScript): {e['call']} at {e['where']}: {e['why']}"))
    hidden = max(0, len(r.code) - TEXT_CODE) + max(0, len(r.script_escapes) - TEXT_CODE)
    if hidden:
        out.append(f"  ... and {hidden} more (--json lists all)")
        out.append(f"  (from {r.globals_source})")
    for p in r.problems:
        out.append(f"problem: {printable(p)}")
    for n in r.notes:
        out.append(f"note: {printable(n)}")
    if r.attempts:
        ran = sum(1 for a in r.attempts if a.where and a.same_as is None)
        shared = f"; {ran} load{'s' if ran != 1 else ''} ran, the others share their results" if any(a.same_as for a in r.attempts) else ""
        out.append(f"loads ({len(r.attempts)} way{'s' if len(r.attempts) != 1 else ''}{shared}):")
        footnotes: list[str] = []
        for status, where, detail, group in _groups(r.attempts):
            mark = ""
            if status != "loaded":
                if detail not in footnotes:
                    footnotes.append(detail)
                mark = f"[{footnotes.index(detail) + 1}]"
            shown = {"not_tried": "not tried"}.get(status, status)
            place = " in a child process" if where == "child" else ""
            result = f" -> {detail}" if status == "loaded" and detail else ""
            out.append(f"  {shown:<9} {mark:<4} {_describe_group(group, r.attempts)}{place}{result}")
        for i, key in enumerate(footnotes, 1):
            out.append(f"  [{i}] {printable(key)}")
            a = next(x for x in r.attempts if x.detail == key)
            if a.diagnosis:
                out.append(f"      diagnosis {a.diagnosis['code']}: {a.diagnosis['summary']}")
                out.append(f"      fix: {a.diagnosis['fix']}")
    out.append(f"verdict: {printable(r.summary)}")
    return out


def render_text(reports: list[FileReport], trust: bool) -> str:
    """The reports for a person to read; whatever came from the file is escaped to printable text."""
    lines = [_env_line(trust)]
    for r in reports:
        lines.append("")
        lines.extend(_render_file(r))
    return "\n".join(printable(line) for line in lines)
