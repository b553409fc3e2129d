"""``check FILE...``: diagnose model files that someone else wrote.

For each file: its format and contents from `harness.sniff` (no unpickling),
the globals its pickles would import and which of them ``weights_only``
refuses, the ``_orig_mod.`` / ``module.`` key prefixes, and then every load
this env can try, each with how it went and, for a failure, the diagnosis
and fix from `harness.diagnose`.

Safety (DESIGN.md: untrusted bytes are never unpickled in the harness
process): in this process ``check`` only runs ``torch.load`` with
``weights_only=True`` forced and safetensors loads, and only on files whose
declared storage sizes `sniff` has verified. Without ``--trust`` every other
load is reported as "not tried: needs --trust"; with ``--trust`` they run in
a child process (`harness.check_child`) under a deadline.

Exit status: 0 when every file loads every way tried here; 1 when a file
has findings (it loads only some ways, none, or is inconsistent or of an
unknown format); 2 for bad input (a path that is missing, a directory, not
readable).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import stat
import sys
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from harness.check_child import run_in_child, try_load
from harness.diagnose import diagnose
from harness.errors import InputError
from harness.formats.torchscript import TorchScript
from harness.options import LoadOptions, torch_load_sweep
from harness.pickle_scan import MODEL_KEYS, runs_code
from harness.sniff import FORMATS, Sniffed, sniff

__all__ = [
    "CHECK_SCHEMA",
    "Attempt",
    "FileReport",
    "check_file",
    "check_files",
    "check_paths",
    "cmd_check",
    "default_weights_only",
    "exit_status",
    "register",
    "render_json",
    "render_text",
    "weights_only_allowlist",
]

CHECK_SCHEMA = 1
PROG = "torch-roundtrip"
DEFAULT_TIMEOUT = 120.0
#: Tensors listed in the text output (--json lists all).
TEXT_TENSORS = 40

#: Key prefixes that wrappers add, what each means and the fix.
PREFIXES = {
    "_orig_mod.": (
        "saved from a torch.compile'd model (the OptimizedModule wrapper)",
        'save model._orig_mod.state_dict(), or strip it: '
        'torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, "_orig_mod.")',
    ),
    "module.": (
        "saved from a DataParallel / DistributedDataParallel wrapper",
        'save model.module.state_dict(), or strip it: '
        'torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, "module.")',
    ),
}

_NEEDS_TRUST = {
    "unpickle": "needs --trust: weights_only=False unpickles the file, which can run code from it",
    "default": "needs --trust: torch.load's default in this torch is weights_only=False, a full unpickle",
    "torchscript": "needs --trust: torch.jit.load compiles the archive's TorchScript code and runs its __setstate__ methods",
    "exported": "needs --trust: torch.export.load can unpickle parts of the archive with weights_only=False",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Attempt:
    """One way of loading a file in this env, and how it went.

    `status`: ``loaded``, ``failed``, ``crash``, ``timeout``, ``skip`` (this
    torch lacks the option) or ``not_tried`` (with the reason in `detail`).
    `where`: ``harness`` (this process, weights_only forced), ``child`` (a
    child process, --trust) or None when not run.
    """

    loader: str
    options: dict
    status: str
    where: Optional[str] = None
    detail: str = ""
    error: Optional[dict] = None
    diagnosis: Optional[dict] = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "crash", "timeout")

    @property
    def label(self) -> str:
        opts = self.options
        text = " ".join(f"{k}={int(opts[k]) if isinstance(opts[k], bool) else opts[k]}" for k in _OPTION_ORDER if k in opts)
        return f"{self.loader} {text}".strip()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Attempt:
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
    tensors: list
    listing: str
    device_tags: dict
    prefixes: list
    globals: list
    unsafe_globals: list
    code_globals: list
    globals_source: str
    problems: list
    notes: list
    attempts: list
    verdict: str  # loads | loads_some_ways | does_not_load | not_checked
    summary: str

    @property
    def findings(self) -> bool:
        return self.verdict != "loads" or bool(self.problems)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attempts"] = [a.to_dict() for a in self.attempts]
        d["findings"] = self.findings
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FileReport:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["attempts"] = [Attempt.from_dict(a) for a in d.get("attempts", [])]
        return cls(**kw)


# -- what this torch does ----------------------------------------------------


class _Probe:
    """A class no torch allowlists: unpickling it tells a full unpickle from weights_only."""

    def __reduce__(self) -> tuple:
        return (_Probe, ())


def default_weights_only() -> Optional[bool]:
    """What ``torch.load`` does when weights_only is not passed, here; None if it cannot tell.

    Asked of torch rather than read from its version: the harness saves a
    `_Probe` (its own bytes, not a file under check) and loads it without
    weights_only. torch refuses it where the default is weights_only=True
    (torch >= 2.6), and returns it where the default is a full unpickle;
    ``TORCH_FORCE_(NO_)WEIGHTS_ONLY_LOAD`` are honoured because torch reads them.
    """
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    return _probe_default(tuple(os.environ.get(k) for k in keys))


@functools.cache
def _probe_default(environment: tuple) -> Optional[bool]:
    import pickle

    import torch

    buffer = io.BytesIO()
    torch.save(_Probe(), buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.4's FutureWarning about the default
        try:
            loaded = torch.load(buffer)
        except pickle.UnpicklingError:
            return True
        except Exception:  # neither answer: say so rather than guess
            return None
    return False if isinstance(loaded, _Probe) else None


def weights_only_allowlist() -> Optional[set]:
    """The globals weights_only=True accepts here, or None where torch cannot list them."""
    try:
        import torch._weights_only_unpickler as wo
    except ImportError:
        return None
    get = getattr(wo, "_get_allowed_globals", None)
    if get is None:
        return None
    allowed = set(get())
    user = getattr(wo, "_get_user_allowed_globals", None)
    if user is not None:
        allowed |= set(user())
    return allowed


def _unsafe_globals(sniffed: Sniffed) -> tuple:
    """(unsafe globals, where the list comes from, notes)."""
    import torch

    notes: list = []
    names = [g for g in sniffed.globals if not (sniffed.format == "torchscript" and g.startswith("__torch__."))]
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if sniffed.format == "torch_zip" and not sniffed.problems and finder is not None and not sniffed.computed_globals:
        try:
            return sorted(finder(sniffed.path)), "torch.serialization.get_unsafe_globals_in_checkpoint", notes
        except Exception as e:  # e.g. "Unsupported operand 149" for pickle protocol 4+
            notes.append(f"torch.serialization.get_unsafe_globals_in_checkpoint failed ({_one_line(type(e).__name__, str(e))}); the harness's own scan is shown")
    allowed = weights_only_allowlist()
    if allowed is None:
        return sorted(names), "the harness's pickle scan (this torch cannot list weights_only's allowlist, so every global is shown)", notes
    return sorted(n for n in names if n not in allowed), "the harness's pickle scan against weights_only's allowlist", notes


def _torch_view_problem(sniffed: Sniffed) -> Optional[str]:
    """Why torch's own zip reader may not see the archive that the sniffer read, or None.

    torch.load sends an archive with a constants.pkl record to torch.jit.load,
    and before torch 2.6 it does so even with weights_only=True
    (CVE-2025-32434). The sniffer found no such record with Python's
    zipfile; a crafted archive could show torch's reader (miniz) other
    records, so torch's own reader must agree before torch.load runs here.
    """
    import torch

    reader_type = getattr(torch._C, "PyTorchFileReader", None)
    if reader_type is None:
        return "this torch has no PyTorchFileReader to confirm what torch.load would read"
    try:
        records = set(reader_type(sniffed.path).get_all_records())
        with zipfile.ZipFile(sniffed.path) as zf:
            names = zf.namelist()
    except Exception as e:  # torch's reader refuses the archive: so would torch.load
        return f"torch's zip reader cannot open it ({_one_line(type(e).__name__, str(e), 160)})"
    prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    if "constants.pkl" in records:
        return "torch's zip reader sees a TorchScript archive (constants.pkl) that Python's zipfile does not: a crafted archive"
    if records != {n[len(prefix):] for n in names if n.startswith(prefix)}:
        return "torch's zip reader and Python's zipfile see different records: a crafted archive"
    return None


def _prefixes(sniffed: Sniffed) -> list:
    names = [t.name for t in sniffed.tensors]
    if sniffed.content == "checkpoint":
        names = [n.split(".", 1)[1] for n in names if "." in n and n.split(".", 1)[0] in MODEL_KEYS]
    found = []
    for prefix, (meaning, fix) in PREFIXES.items():
        count = sum(1 for n in names if n.startswith(prefix))
        if count:
            found.append({"prefix": prefix, "count": count, "total": len(names), "meaning": meaning, "fix": fix})
    return found


# -- which loads, where ------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    loader: str
    options: LoadOptions
    where: Optional[str]  # harness | child | None (not tried: `reason`)
    reason: str = ""
    force_weights_only: bool = False


def _plan(sniffed: Sniffed, trust: bool, cuda: bool) -> list:
    child = "child" if trust else None
    inconsistent = (
        f"not tried in the harness process: the file is inconsistent ({sniffed.problems[0]})"
        + ("" if trust else "; --trust tries it in a child process")
    ) if sniffed.problems else ""
    plans = []
    if sniffed.format in ("torch_zip", "torch_legacy"):
        default = default_weights_only()
        for opt in torch_load_sweep(cuda):
            safe = opt.weights_only == "true" or (opt.weights_only == "default" and default is True)
            if safe and not inconsistent:
                plans.append(_Plan("torch.load", opt, "harness", force_weights_only=True))
            elif safe or trust:
                plans.append(_Plan("torch.load", opt, child, inconsistent))
            else:
                why = _NEEDS_TRUST["unpickle" if opt.weights_only == "false" else "default"]
                if opt.weights_only == "default" and default is None:
                    why = "needs --trust: check could not tell what torch.load's default weights_only is in this torch"
                plans.append(_Plan("torch.load", opt, None, why))
    elif sniffed.format == "torchscript":
        plans = [_Plan("torch.jit.load", opt, child, _NEEDS_TRUST["torchscript"]) for opt in TorchScript().variants(cuda)]
    elif sniffed.format == "exported":
        plans = [_Plan("torch.export.load", LoadOptions(), child, _NEEDS_TRUST["exported"])]
    elif sniffed.format == "safetensors":
        # safetensors validates the header against the file before it
        # allocates: its loader is the validator, so it runs here even when
        # the sniffer found problems, and its error is the finding.
        plans = [_Plan("safetensors.torch.load_file", LoadOptions(device=d), "harness") for d in ["cpu"] + (["cuda"] if cuda else [])]
    return plans


def _attempt(plan: _Plan, raw: dict, fmt: str) -> Attempt:
    status = raw.get("status", "crash")
    options = plan.options.to_dict()
    if status != "failed":
        return Attempt(plan.loader, options, status, plan.where, raw.get("detail", ""), seconds=raw.get("seconds", 0.0))
    etype, message = raw.get("error_type", "Exception"), raw.get("message", "")
    found = diagnose(etype, message, fmt, options, tuple(raw.get("warnings", ())))
    return Attempt(
        plan.loader, options, status, plan.where, _one_line(etype, message),
        error={"type": etype, "message": message}, diagnosis=found.to_dict() if found else None,
        seconds=raw.get("seconds", 0.0),
    )


def _one_line(etype: str, message: str, limit: int = 300) -> str:
    """torch's multi-line errors as one line, keeping the sentence that says what went wrong.

    A weights_only failure opens with general advice; its cause comes after
    "WeightsUnpickler error:" or in a later paragraph ("... is blocked").
    """
    text = _ANSI.sub("", message)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if m and m.group(1).strip():
        text = m.group(1)
    elif paragraphs and paragraphs[0].startswith("Weights only load failed"):
        text = next((p for p in paragraphs[1:] if not p.startswith("Check the documentation")), paragraphs[0])
    else:
        text = next((line for line in text.splitlines() if line.strip()), "")
    return f"{etype}: {' '.join(text.split())}"[:limit]


def _run(sniffed: Sniffed, plans: list, timeout: float) -> list:
    fmt = sniffed.harness_format or ""
    results: dict = {}
    for i, plan in enumerate(plans):
        if plan.where == "harness":
            results[i] = try_load(sniffed.path, plan.loader, plan.options, weights_only=plan.force_weights_only)
    trusted = [i for i, plan in enumerate(plans) if plan.where == "child"]
    if trusted:
        raws = run_in_child(sniffed.path, [(plans[i].loader, plans[i].options) for i in trusted], timeout)
        results.update(zip(trusted, raws))
    attempts = []
    for i, plan in enumerate(plans):
        if plan.where is None:
            attempts.append(Attempt(plan.loader, plan.options.to_dict(), "not_tried", None, plan.reason))
        else:
            attempts.append(_attempt(plan, results[i], fmt))
    return attempts


# -- verdict -----------------------------------------------------------------


def _reason(a: Attempt) -> str:
    if a.diagnosis:
        return f"{a.diagnosis['code']}: {a.diagnosis['summary']}"
    return a.detail


def _codes(failed: list) -> str:
    """The distinct reasons of failed loads, by diagnosis code where there is one."""
    codes: list = []
    for a in failed:
        code = a.diagnosis["code"] if a.diagnosis else (a.error or {}).get("type", a.status)
        if code not in codes:
            codes.append(code)
    return ", ".join(codes)


def _verdict(sniffed: Sniffed, attempts: list) -> tuple:
    loaded = [a for a in attempts if a.status == "loaded"]
    failed = [a for a in attempts if a.failed]
    waiting = [a for a in attempts if a.status == "not_tried"]
    if sniffed.format == "unknown":
        problem = f" ({sniffed.problems[0]})" if sniffed.problems else ""
        return "not_checked", f"unknown format: {sniffed.why}{problem}"
    if loaded and not failed:
        need_trust = all(a.detail.startswith("needs --trust") for a in waiting)
        more = (f"; {len(waiting)} more need --trust" if need_trust else f"; {len(waiting)} not tried") if waiting else ""
        summary = f"loads every way tried here ({len(loaded)} load{'s' if len(loaded) != 1 else ''}{more})"
        if sniffed.problems:
            summary += f", but the file is inconsistent: {sniffed.problems[0]}"
        return "loads", summary
    if loaded:
        return "loads_some_ways", f"loads only some ways: {len(failed)} of {len(loaded) + len(failed)} loads tried here failed ({_codes(failed)})"
    if failed:
        problem = f"; the file is inconsistent: {sniffed.problems[0]}" if sniffed.problems else ""
        return "does_not_load", f"does not load any way tried here: {_reason(failed[0])}{problem}"
    if sniffed.problems:
        return "not_checked", f"inconsistent file, no load tried in the harness process: {sniffed.problems[0]}"
    if waiting:
        return "not_checked", f"no load tried: every load of a {FORMATS[sniffed.format]} here {waiting[0].detail}"
    return "not_checked", "no load applies to this file in this env"


# -- entry points --------------------------------------------------------------


def check_file(path: Path, *, trust: bool = False, timeout: float = DEFAULT_TIMEOUT, cuda: Optional[bool] = None) -> FileReport:
    """Check one file; never unpickles it in this process, never raises for its contents."""
    from harness.env import cuda_available

    if cuda is None:
        cuda = cuda_available()
    try:
        sniffed = sniff(Path(path))
    except OSError as e:  # vanished or became unreadable after the path was checked
        sniffed = Sniffed(path=str(path), size=0, why=f"it cannot be read ({e.strerror or e})")
    if sniffed.format == "torch_zip" and not sniffed.problems:
        problem = _torch_view_problem(sniffed)
        if problem:
            sniffed.problems.append(problem)
    unsafe, source, scan_notes = _unsafe_globals(sniffed) if sniffed.globals else ([], "", [])
    attempts = _run(sniffed, _plan(sniffed, trust, cuda), timeout)
    notes = list(sniffed.notes) + scan_notes
    if sniffed.truncated:
        notes.append("the tensor listing was cut short: the pickle describes more than check walks")
    verdict, summary = _verdict(sniffed, attempts)
    code = [g for g in sniffed.globals if runs_code(g)]
    if code and "pickle_runs_code" not in summary:
        summary = f"its pickle runs code when fully unpickled ({', '.join(code[:3])}); {summary}"
    return FileReport(
        path=sniffed.path, size=sniffed.size, format=sniffed.format, why=sniffed.why, content=sniffed.content,
        harness_format=sniffed.harness_format, tensors=[t.to_dict() for t in sniffed.tensors], listing=sniffed.listing,
        device_tags=dict(sniffed.device_tags), prefixes=_prefixes(sniffed), globals=list(sniffed.globals),
        unsafe_globals=unsafe, code_globals=code, globals_source=source,
        problems=list(sniffed.problems), notes=notes, attempts=attempts, verdict=verdict, summary=summary,
    )


def check_paths(paths: list) -> list:
    """The paths as `Path`s; InputError (one line, every bad path) unless each is a readable regular file."""
    bad, good = [], []
    for text in paths:
        path = Path(text)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            bad.append(f"{text}: no such file")
            continue
        except OSError as e:
            bad.append(f"{text}: cannot read it ({e.strerror})")
            continue
        if stat.S_ISDIR(mode):
            bad.append(f"{text} is a directory (check takes model files, e.g. {os.path.join(text, '*.pt')})")
        elif not stat.S_ISREG(mode):
            bad.append(f"{text} is not a regular file (a pipe or device would never end)")
        elif not os.access(path, os.R_OK):
            bad.append(f"{text}: cannot read it (permission denied)")
        else:
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as e:
                bad.append(f"{text}: cannot read it ({e.strerror})")
                continue
            good.append(path)
    if bad:
        raise InputError("; ".join(_printable(b) for b in bad))
    return good


def check_files(paths: list, *, trust: bool = False, timeout: float = DEFAULT_TIMEOUT) -> list:
    """Reports for every path, after checking that each is a readable file."""
    from harness.env import cuda_available

    cuda = cuda_available()
    return [check_file(p, trust=trust, timeout=timeout, cuda=cuda) for p in check_paths(paths)]


def exit_status(reports: list) -> int:
    return 1 if any(r.findings for r in reports) else 0


def _printable(text: str) -> str:
    # Paths are user data: a newline in one must not split the one-line message.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- output --------------------------------------------------------------------


def _env_line(trust: bool) -> str:
    import torch

    from harness.env import cuda_available

    default = default_weights_only()
    wo = {True: "True", False: "False", None: "unknown"}[default]
    device = "with CUDA" if cuda_available() else "CPU only"
    trusted = "; --trust: full loads run in a child process" if trust else "; without --trust: only loads that cannot run code from the file"
    return f"torch {torch.__version__}, Python {sys.version.split()[0]}, {device}; torch.load's default weights_only={wo}{trusted}"


def render_json(reports: list, trust: bool) -> str:
    """One JSON document: the env, every file's report, the exit status."""
    import torch

    from harness import __version__
    from harness.env import cuda_available

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


_OPTION_ORDER = ("map_location", "weights_only", "mmap", "device")


def _groups(attempts: list) -> list:
    """Attempts that ended the same way, in first-seen order: (status, where, detail, [attempts])."""
    groups: dict = {}
    for a in attempts:
        groups.setdefault((a.status, a.where, a.detail), []).append(a)
    return [(*key, group) for key, group in groups.items()]


def _values(attempts: list) -> dict:
    seen: dict = {}
    for a in attempts:
        for k in _OPTION_ORDER:
            if k in a.options:
                v = a.options[k]
                v = str(int(v)) if isinstance(v, bool) else str(v)
                seen.setdefault(k, [])
                if v not in seen[k]:
                    seen[k].append(v)
    return seen


def _describe_group(group: list, every: list) -> str:
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


def _render_file(r: FileReport) -> list:
    out = [f"== {_printable(r.path)} ({r.size} bytes)"]
    fmt = FORMATS.get(r.format, r.format)
    if r.format == "unknown":
        out.append(f"format:  unknown: {r.why}")
    else:
        harness = f" [harness format {r.harness_format}]" if r.harness_format else ""
        out.append(f"format:  {fmt}{': ' + r.content if r.content else ''}{harness}")
    if r.tensors or r.listing:
        out.append(f"tensors: {len(r.tensors)}" + (f" (from {r.listing})" if r.listing else ""))
        width = max((len(t["name"]) for t in r.tensors[:TEXT_TENSORS]), default=0)
        for t in r.tensors[:TEXT_TENSORS]:
            shape = "?" if t["shape"] is None else str(t["shape"])
            out.append(f"  {_printable(t['name']).ljust(width)}  {t['dtype'] or '?':<10} {shape:<16} {t['device'] or ''}".rstrip())
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
        out.append(f"globals: {len(r.globals)}: {', '.join(_printable(g) for g in r.globals[:12])}{' ...' if len(r.globals) > 12 else ''}")
        if r.format == "torchscript":
            out.append("  __torch__.* are TorchScript classes: torch.jit.load compiles them from the archive's code")
        if r.unsafe_globals:
            out.append(f"  refused by weights_only (importing them can run code): {', '.join(_printable(g) for g in r.unsafe_globals)}")
        else:
            out.append("  all allowed by weights_only" + (" (apart from the TorchScript classes)" if r.format == "torchscript" else ""))
        if r.code_globals:
            out.append(f"  RUN CODE OR COMMANDS when unpickled: {', '.join(_printable(g) for g in r.code_globals)}")
        out.append(f"  (from {r.globals_source})")
    for p in r.problems:
        out.append(f"problem: {_printable(p)}")
    for n in r.notes:
        out.append(f"note: {_printable(n)}")
    if r.attempts:
        out.append(f"loads ({len(r.attempts)} way{'s' if len(r.attempts) != 1 else ''}):")
        footnotes: list = []
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
            out.append(f"  [{i}] {_printable(key)}")
            a = next(x for x in r.attempts if x.detail == key)
            if a.diagnosis:
                out.append(f"      diagnosis {a.diagnosis['code']}: {a.diagnosis['summary']}")
                out.append(f"      fix: {a.diagnosis['fix']}")
    out.append(f"verdict: {_printable(r.summary)}")
    return out


def render_text(reports: list, trust: bool) -> str:
    """The reports for a person to read; whatever came from the file is escaped to printable text."""
    lines = [_env_line(trust)]
    for r in reports:
        lines.append("")
        lines.extend(_render_file(r))
    return "\n".join(_printable(line) for line in lines)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def cmd_check(args: argparse.Namespace) -> int:
    reports = check_files(args.files, trust=args.trust, timeout=args.timeout)
    print(render_json(reports, args.trust) if args.json else render_text(reports, args.trust))
    if args.out:
        from harness.store import write_text

        write_text(Path(args.out), render_json(reports, args.trust) + "\n")
    for r in reports:
        if r.findings:
            print(f"{PROG} check: {_printable(r.path)}: {_printable(r.summary)}", file=sys.stderr)
    return exit_status(reports)


def register(subparsers: Any) -> None:
    """Add the ``check`` command to the CLI's subparsers."""
    p = subparsers.add_parser("check", help="diagnose model files someone else wrote: format, tensors, globals, which loads work here")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--trust", action="store_true",
                   help="also try loads that can run code from the file (weights_only=False, TorchScript, torch.export), in a child process")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--out", metavar="FILE", help="also write the JSON document to FILE (nox -s check collects them)")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds the trusted loads of one file may take together (default {DEFAULT_TIMEOUT:g})")
    p.set_defaults(func=cmd_check)
