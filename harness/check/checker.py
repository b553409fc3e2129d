"""``check FILE...``: diagnose model files that someone else wrote.

For each file: its format and contents from `harness.check.sniff` (no unpickling),
the globals its pickles would import and which of them ``weights_only``
refuses, the ``_orig_mod.`` / ``module.`` key prefixes, and then every load
this env can try, each with how it went and, for a failure, the diagnosis
and fix from `harness.runtime.diagnose`.

Safety (docs/ARCHITECTURE.md: untrusted bytes are never unpickled in the harness
process): in this process ``check`` only runs ``torch.load`` with
``weights_only=True`` forced and safetensors loads, and only on files whose
declared storage sizes `sniff` has verified. Without ``--trust`` every other
load is reported as "not tried: needs --trust"; with ``--trust`` they run in
a child process (`harness.check.child`) under a deadline.

Exit status: 0 when every file loads every way tried here; 1 when a file
has findings (it loads only some ways, none, or is inconsistent or of an
unknown format); 2 for bad input (a path that is missing, a directory, not
readable).

This module plans the loads, runs them and reaches the verdict; the records
and their text and JSON renderings are in `harness.check.findings`, and what
this torch does (its default weights_only, its allowlist, its zip reader)
is asked in `harness.check.loads`. Their public names are importable here.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

from harness.check.child import run_in_child, try_load
from harness.check.findings import (
    CHECK_SCHEMA,
    Attempt,
    FileReport,
    exit_status,
    printable,
    render_json,
    render_text,
)
from harness.check.global_kinds import CODE, GlobalKind, classify
from harness.check.loads import (
    default_weights_only,
    one_line,
    torch_view_problem,
    unsafe_globals,
    weights_only_allowlist,
)
from harness.check.pickle_scan import MODEL_KEYS
from harness.check.sniff import FILE_FORMATS, loader_for, sniff
from harness.check.sniffed import FoundGlobal, Sniffed
from harness.runtime.defaults import DEFAULT_TIMEOUT
from harness.runtime.diagnose import diagnose
from harness.runtime.errors import InputError
from harness.runtime.forkserver import ForkServer
from harness.runtime.formats.torchscript import TorchScript
from harness.runtime.load_options import LoadOptions, torch_load_sweep

__all__ = [
    "CHECK_SCHEMA",
    "Attempt",
    "FileReport",
    "check_file",
    "check_files",
    "check_paths",
    "default_weights_only",
    "exit_status",
    "render_json",
    "render_text",
    "weights_only_allowlist",
]


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
    "torch_tar": "needs --trust: torch.load extracts a tar checkpoint's members to disk and reads it only with weights_only=False",
}


# -- what the file's keys say ---------------------------------------------------


def _prefixes(sniffed: Sniffed) -> list[dict[str, Any]]:
    """The wrapper prefixes (`PREFIXES`) on the model's keys, each with how many keys carry it."""
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


def _plan(sniffed: Sniffed, trust: bool, cuda: bool) -> list[_Plan]:
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
    elif sniffed.format == "torch_tar":
        plans = [_Plan("torch.load", LoadOptions(weights_only="false"), child, _NEEDS_TRUST["torch_tar"])]
    elif sniffed.format == "safetensors":
        # safetensors validates the header against the file before it
        # allocates: its loader is the validator, so it runs here even when
        # the sniffer found problems, and its error is the finding.
        plans = [_Plan("safetensors.torch.load_file", LoadOptions(device=d), "harness") for d in ["cpu"] + (["cuda"] if cuda else [])]
    return plans


@functools.lru_cache(maxsize=None)  # functools.cache is 3.9+; the sweep's options recur for every file
def _spelled(options: LoadOptions) -> tuple[tuple[str, Any], ...]:
    """`options.to_dict()` as a tuple: a file's 30 attempts would otherwise spend as long on it as on two loads."""
    return tuple(options.to_dict().items())


def _attempt(plan: _Plan, raw: dict[str, Any], fmt: str, same_as: Optional[str] = None) -> Attempt:
    """The attempt of `plan` from a `try_load` result; `same_as`: the label of the plan whose load it was."""
    status = raw.get("status", "crash")
    options = dict(_spelled(plan.options))
    seconds = 0.0 if same_as else raw.get("seconds", 0.0)
    if status != "failed":
        return Attempt(plan.loader, options, status, plan.where, raw.get("detail", ""), seconds=seconds, same_as=same_as)
    etype, message = raw.get("error_type", "Exception"), raw.get("message", "")
    found = diagnose(etype, message, fmt, options, tuple(raw.get("warnings", ())))
    return Attempt(
        plan.loader, options, status, plan.where, one_line(etype, message),
        error={"type": etype, "message": message}, diagnosis=found.to_dict() if found else None,
        seconds=seconds, same_as=same_as,
    )


def _run(
    sniffed: Sniffed, plans: list[_Plan], timeout: float, kinds: dict[str, GlobalKind], share: bool = True,
    server: Optional[ForkServer] = None,
) -> list[Attempt]:
    """Run the plans' loads, one per group that `_shared_loads` says torch answers alike (each, unless `share`)."""
    fmt = sniffed.harness_format or ""
    lead = _shared_loads(sniffed, plans, kinds) if share else list(range(len(plans)))
    results: dict[int, dict[str, Any]] = {}
    for i, plan in enumerate(plans):
        if plan.where == "harness" and lead[i] == i:
            results[i] = try_load(sniffed.path, plan.loader, plan.options, weights_only=plan.force_weights_only)
    trusted = [i for i, plan in enumerate(plans) if plan.where == "child" and lead[i] == i]
    if trusted:
        raws = run_in_child(sniffed.path, [(plans[i].loader, plans[i].options) for i in trusted], timeout, server)
        results.update(zip(trusted, raws))
    attempts: list[Attempt] = []
    for i, plan in enumerate(plans):
        if plan.where is None:
            attempts.append(Attempt(plan.loader, dict(_spelled(plan.options)), "not_tried", None, plan.reason))
        elif lead[i] == i:
            attempts.append(_attempt(plan, results[i], fmt))
        else:  # the same result, diagnosed under this attempt's own options (a fix may name them)
            attempts.append(_attempt(plan, results[lead[i]], fmt, same_as=attempts[lead[i]].label))
    return attempts


# -- loads that torch answers alike ---------------------------------------------

#: The rebuilds that make a tensor over a storage torch.load has already
#: restored (or none, for meta tensors): the tensor lands where its storage
#: did. torch's other rebuilds (``_rebuild_device_tensor_from_numpy``,
#: ``_rebuild_wrapper_subclass``, ...) read torch.load's map_location
#: themselves, so a file that names one shares no load.
_STORAGE_REBUILDS = frozenset(f"torch._utils.{name}" for name in (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state",
    "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_sparse_csr_tensor", "_rebuild_nested_tensor",
    "_rebuild_meta_tensor_no_storage",
))


def _landing(map_location: Optional[str], tag: str) -> Optional[str]:
    """Where torch.load with map_location `map_location` restores a storage tagged `tag`; None: check cannot tell.

    torch.load deserializes every storage on the CPU and hands it, with its
    tag, to the map_location: none restores it to its tag; a device (a
    string or a ``torch.device``) to that device whatever the tag; a dict
    renames the tags it has; the sweep's callable (``lambda storage, loc:
    storage``) keeps the CPU storage it is given.
    """
    if map_location in (None, "none"):
        return tag
    if map_location in ("cpu", "device:cpu", "callable"):
        return "cpu"
    if map_location == "dict:cuda:0->cpu":
        return "cpu" if tag == "cuda:0" else tag
    if map_location == "cuda":
        return "cuda"
    return None


def _map_blind(name: str, kind: GlobalKind, harness: bool) -> Optional[bool]:
    """Whether what unpickling global `name` does cannot depend on map_location; None: it is weights_only's to refuse.

    Values, containers, dtypes, storages and torch's own module classes
    (`global_kinds`: safe or data) do nothing with it, nor do the storage
    rebuilds (`_STORAGE_REBUILDS`). In this process (`harness`: every load
    weights_only=True) a global weights_only refuses never runs: its refusal
    reads the same under every map_location.
    """
    if name.startswith("torch._utils._rebuild") and name not in _STORAGE_REBUILDS:
        return False
    if kind.kind != CODE:
        return True
    return None if harness else False


def _tags_complete(sniffed: Sniffed) -> bool:
    """Whether the sniffer read every storage's tag from a torch.save file that torch.load reads as one."""
    # torch.load hands a path ending in .safetensors to safetensors, which
    # reads map_location itself (and refuses a dict or a callable).
    return (sniffed.format in ("torch_zip", "torch_legacy") and not sniffed.problems and not sniffed.truncated
            and not sniffed.path.endswith(".safetensors"))


def _shared_loads(sniffed: Sniffed, plans: list[_Plan], kinds: dict[str, GlobalKind]) -> list[int]:
    """For each plan, the index of the plan whose load stands for it (its own when it runs); `kinds`: the file's globals'.

    A ``torch.load`` result is decided by the weights_only it runs under,
    where it runs (this process or the child), the other options (mmap),
    and the device each storage lands on (`_landing` of each tag the file
    declares). Plans alike in all of these run one load: on a file whose
    every tag is ``cpu``, map_location none, cpu, device:cpu,
    ``{"cuda:0": "cpu"}`` and the callable all restore to the CPU; on a
    ``cuda:0`` file, none (and cuda) differ from the rest. weights_only
    ``default`` is ``true`` where `default_weights_only` says so (and in this
    process, where every load is forced to weights_only=True).

    Nothing else is shared where that reasoning may not hold: a file whose
    tags the sniffer may not have listed completely (problems, a walk cut
    short, not a torch.save file), or that names a global that may read
    map_location on its own (`_map_blind`), or a map_location whose landing
    check cannot tell. There, only the very same call shares a load: in
    this process weights_only ``default`` and ``true`` both run as
    weights_only=True. ``tests/test_check_shared.py`` runs every option
    separately on files of every tag pattern and holds the shared plan to
    the same results.
    """
    lead = list(range(len(plans)))
    in_harness = in_child = _tags_complete(sniffed)
    if in_harness:
        blind = {name: _map_blind(name, kind, harness=True) for name, kind in kinds.items()}
        refused = [name for name, verdict in blind.items() if verdict is None]
        in_harness = all(verdict is not False for verdict in blind.values())
        if in_harness and refused:
            # weights_only refuses what its allowlist lacks; where torch cannot list it, nothing is known refused
            allowed = weights_only_allowlist()
            in_harness = allowed is not None and not any(name in allowed for name in refused)
        in_child = all(_map_blind(name, kind, harness=False) for name, kind in kinds.items())
    default = default_weights_only()
    tags = sorted(sniffed.device_tags)
    first: dict[tuple[Any, ...], int] = {}
    for i, plan in enumerate(plans):
        if plan.loader != "torch.load" or plan.where is None:
            continue
        opt = plan.options
        lands: Optional[tuple[Any, ...]] = None
        if in_harness if plan.where == "harness" else in_child:
            lands = tuple(_landing(opt.map_location, tag) for tag in tags)
            if None in lands:
                lands = None
        if lands is None:
            if not plan.force_weights_only:
                continue
            lands = ("the same call", opt.map_location)
        alike = plan.force_weights_only or opt.weights_only == "true" or (opt.weights_only == "default" and default is True)
        rest = tuple(kv for kv in _spelled(opt) if kv[0] not in ("map_location", "weights_only"))
        key = (plan.where, "true" if alike else opt.weights_only, rest, lands)
        lead[i] = first.setdefault(key, i)
    return lead


class _Refused(Exception):
    """A failed load of check's, raised so that the allowlist loop reads its message."""


def _complete_allowlist(sniffed: Sniffed, attempts: list[Attempt]) -> list[Attempt]:
    """Give weights_only refusals one fix naming every global the file needs, proven here.

    torch names one global per refusal, so its own advice meets the next
    refusal once per global. check loads again (weights_only=True, in this
    process, as its other loads) under a growing allowlist, admitting only
    globals known to build plain data (`global_kinds`): what makes the file
    load is the fix. Where a global is not admitted, or no allowlist works
    in this torch, the summary says why and the fix stays as it was.
    """
    refused = [a for a in attempts if a.where == "harness" and a.diagnosis and a.diagnosis.get("code") == "weights_only_refused"]
    if not refused:
        return attempts
    from harness.runtime.allowlist import AllowlistRefused, fix_text, load_allowing

    def attempt() -> dict[str, Any]:
        raw = try_load(sniffed.path, "torch.load", LoadOptions(map_location="cpu", weights_only="true"), weights_only=True)
        if raw["status"] != "loaded":
            raise _Refused(raw.get("message", raw.get("detail", "")))
        return raw

    def admit(name: str) -> bool:
        module, _, attr = name.rpartition(".")
        return classify(module, attr).kind != CODE

    try:
        _, needed = load_allowing(attempt, admit)
    except (AllowlistRefused, ImportError, AttributeError, _Refused) as e:
        why = f"no allowlist of data globals makes it load here: {one_line(type(e).__name__, str(e))}"
        update = {"summary": f"{refused[0].diagnosis['summary']}; {why}"}  # type: ignore[index]
    except Exception as e:  # this torch has no allowlist, or the file fails another way
        update = {"summary": f"{refused[0].diagnosis['summary']}; {one_line(type(e).__name__, str(e))}"}  # type: ignore[index]
    else:
        update = {
            "summary": f"weights_only=True refuses {len(needed)} globals; with all of them allowlisted it loads here: {', '.join(needed)}",
            "fix": f"if you trust the file, allowlist all {len(needed)} globals it needs: {fix_text(needed)}; "
            "or torch.load(f, weights_only=False)",
        }
    return [replace(a, diagnosis=dict(a.diagnosis, **update)) if a in refused else a for a in attempts]  # type: ignore[arg-type]


# -- verdict -----------------------------------------------------------------


def _reason(a: Attempt) -> str:
    if a.diagnosis:
        return f"{a.diagnosis['code']}: {a.diagnosis['summary']}"
    return a.detail


def _codes(failed: list[Attempt]) -> str:
    """The distinct reasons of failed loads, by diagnosis code where there is one."""
    codes: list[str] = []
    for a in failed:
        code = a.diagnosis["code"] if a.diagnosis else (a.error or {}).get("type", a.status)
        if code not in codes:
            codes.append(code)
    return ", ".join(codes)


def _verdict(sniffed: Sniffed, attempts: list[Attempt]) -> tuple[str, str]:
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
        return "not_checked", f"no load tried: every load of a {FILE_FORMATS[sniffed.format]} here {waiting[0].detail}"
    return "not_checked", "no load applies to this file in this env"


# -- entry points --------------------------------------------------------------


def check_file(
    path: Path, *, trust: bool = False, timeout: float = DEFAULT_TIMEOUT, cuda: Optional[bool] = None, share: bool = True,
    server: Optional[ForkServer] = None,
) -> FileReport:
    """Check one file; never unpickles it in this process, never raises for its contents.

    `share`: run one load per group of load options that torch answers
    alike (`_shared_loads`); False runs every option's own load (the
    tests hold the two to the same statuses). `server`: a fork server for
    the trusted loads' children (`harness.check.child.run_in_child`).
    """
    from harness.runtime.env import cuda_available

    if cuda is None:
        cuda = cuda_available()
    try:
        sniffed = sniff(Path(path))
    except OSError as e:  # vanished or became unreadable after the path was checked
        sniffed = Sniffed(path=str(path), size=0, why=f"it cannot be read ({e.strerror or e})")
    if sniffed.format == "torch_zip" and not sniffed.problems:
        problem = torch_view_problem(sniffed)
        if problem:
            sniffed.problems.append(problem)
    unsafe, source, scan_notes = unsafe_globals(sniffed) if sniffed.globals else ([], "", [])
    kinds = {f.full: classify(f.module, f.name) for f in sniffed.found}
    attempts = _complete_allowlist(sniffed, _run(sniffed, _plan(sniffed, trust, cuda), timeout, kinds, share, server))
    notes = list(sniffed.notes) + scan_notes
    if sniffed.truncated:
        notes.append("the tensor listing was cut short: the pickle describes more than check walks")
    verdict, summary = _verdict(sniffed, attempts)
    if sniffed.diagnosis:  # what the file is (an LFS pointer, a page, cut short) comes first, with its fix
        d = sniffed.diagnosis
        summary = f"{summary}; fix: {d.fix}" if sniffed.format == "unknown" else f"{d.summary}; fix: {d.fix}; {summary}"
    code = [f for f in sniffed.found if kinds[f.full].kind == CODE and not _script_class(sniffed, f)]
    warning = _runs_code(code, sniffed)
    if warning:
        summary = f"{warning}; {summary}"
    return FileReport(
        path=sniffed.path, size=sniffed.size, format=sniffed.format, why=sniffed.why, content=sniffed.content,
        harness_format=sniffed.harness_format, tensors=[t.to_dict() for t in sniffed.tensors], listing=sniffed.listing,
        device_tags=dict(sniffed.device_tags), prefixes=_prefixes(sniffed), globals=list(sniffed.globals),
        unsafe_globals=unsafe, code_globals=[f.full for f in code], globals_source=source,
        problems=list(sniffed.problems), notes=notes, attempts=attempts, verdict=verdict, summary=summary,
        code=[_code_entry(f, kinds[f.full].known_gadget) for f in code],
        script_escapes=[e.to_dict() for e in sniffed.escapes],
        global_kinds={name: kind.kind for name, kind in kinds.items()},
        diagnosis=sniffed.diagnosis.to_dict() if sniffed.diagnosis else None, loader=loader_for(sniffed),
        writer=sniffed.writer,
    )


# -- code the file can run -----------------------------------------------------

#: The verdict on any file that can run code, before what loads showed.
UNTRUSTED = "do not load this file unless you trust it"


def _script_class(sniffed: Sniffed, found: FoundGlobal) -> bool:
    # TorchScript archives name their own classes as __torch__.*: torch.jit.load
    # resolves them in the archive's code (examined apart), never by import.
    return sniffed.format == "torchscript" and found.module.split(".")[0] == "__torch__"


def _code_entry(found: FoundGlobal, known: bool) -> dict[str, Any]:
    return {
        "global": found.full, "where": found.where, "offset": found.offset, "call": found.call,
        "kind": "known gadget" if known else "unknown code",
    }


def _runs_code(code: list[FoundGlobal], sniffed: Sniffed) -> str:
    """The "do not load" clause for a file whose pickles name code globals or whose TorchScript escapes; "" if none."""
    if not code and not sniffed.escapes:
        return ""
    if code:
        first = code[0]
        call = f", calling {first.call}" if first.call else ""
        what = f"{first.where} imports {first.full} at byte {first.offset}{call}"
        more = len(code) - 1
        if more:
            what += f" (and {more} more code global{'s' if more != 1 else ''}: {', '.join(f.full for f in code[1:4])}{', ...' if more > 3 else ''})"
    else:
        escape = sniffed.escapes[0]
        what = f"its TorchScript code calls {escape.call} ({escape.where}): {escape.why}"
        if len(sniffed.escapes) > 1:
            what += f" (and {len(sniffed.escapes) - 1} more such calls)"
    return f"{UNTRUSTED}: {printable(what)}"


def check_paths(paths: Sequence[Union[str, Path]]) -> list[Path]:
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
        raise InputError("; ".join(printable(b) for b in bad))
    return good


def check_files(paths: Sequence[Union[str, Path]], *, trust: bool = False, timeout: float = DEFAULT_TIMEOUT) -> list[FileReport]:
    """Reports for every path, after checking that each is a readable file."""
    from harness.runtime.env import cuda_available

    cuda = cuda_available()
    return [check_file(p, trust=trust, timeout=timeout, cuda=cuda) for p in check_paths(paths)]
