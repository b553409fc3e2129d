"""The command line: ``torch-roundtrip <command>`` or ``python -m harness <command>``.

Every command and every option is declared here, once; options that
several commands take (``--quiet``, ``--expectations``, ``--timeout``,
``--formats``, ``--expect-torch``) come from one helper each. A command
function only turns parsed arguments into a call of the package and the
call's result into an exit status; imports stay inside them, so ``--help``
and the light commands never pay for torch, Jinja or Hypothesis.

Exit status: 0 success; 1 the run found regressions or mismatches; 2 usage
or input error (one line on stderr, never a traceback); 3 internal error (a
bug in the harness: the message says how to get the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from harness import __version__
from harness.runtime.defaults import DEFAULT_TIMEOUT, PROG
from harness.runtime.env import DEVICES, LOAD_DEVICES
from harness.runtime.errors import HarnessError, InputError

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]  # typing.Callable: save and load run this on 3.8


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, with the way to more help, instead of usage + error.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- value types ---------------------------------------------------------------


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _path(text: Optional[str]) -> Optional[Path]:
    return Path(text) if text else None


# -- options shared by several commands ---------------------------------------


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _expectations(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expectations", metavar="FILE", help="expectations TOML to judge cells by (default: the shipped cases/expectations.toml)")


def _timeout(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS", help=f"{what} (default {DEFAULT_TIMEOUT:g})")


def _formats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--formats", metavar="A,B", help="comma-separated formats (default: all)")


def _refactors(p: argparse.ArgumentParser) -> None:
    """load's options for model code that changed between the save and the load (README: migrations)."""
    p.add_argument("--load-as", action="append", metavar="OLD_MOD:FN=NEW_MOD:FN",
                   help="build the load-side model of the user case saved from factory OLD with factory NEW "
                        "(the refactored code); cells say what no longer fits and propose a remap (repeatable)")
    p.add_argument("--migrate", action="append", metavar="OLD_MOD:FN=MIG_MOD:FN",
                   help="run migrate(obj) -> obj on what torch.load returned for user case OLD before loading it into "
                        "its --load-as model, and check every tensor bit for bit against the saved ones (repeatable; "
                        "needs the --load-as of the same OLD)")
    p.add_argument("--rename-class", action="append", metavar="old.mod.Cls=new.mod.Cls",
                   help="unpickle the class old.mod.Cls from new.mod.Cls (a moved or renamed class) in whole-model "
                        "pickles of user cases, and check the load exact (repeatable)")


def _env_phase(p: argparse.ArgumentParser) -> None:
    """Options of the phases that nox runs inside an env."""
    p.add_argument("--expect-torch", metavar="VERSION", help="refuse to run unless this env's torch is VERSION (nox sets it)")
    _quiet(p)


# -- commands ------------------------------------------------------------------


def cmd_cases(args: argparse.Namespace) -> int:
    from harness.corpus import write_corpus

    specs = write_corpus(Path(args.out), generated=args.generated, seed=args.seed)
    print(f"wrote {len(specs)} cases ({args.generated} generated, seed {args.seed}) to {args.out}", file=sys.stderr)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from harness.runtime.cases import load_corpus
    from harness.runtime.env import check_expected_torch
    from harness.runtime.formats import parse_formats
    from harness.runtime.runner import save_phase
    from harness.runtime.usercases import user_specs

    check_expected_torch(args.expect_torch)
    specs = load_corpus(_path(args.cases))
    specs += user_specs(args.user_case or [])
    summary = save_phase(Path(args.out), specs, args.device, parse_formats(args.formats), progress=not args.quiet)
    print(
        f"save {summary.label}: {summary.saved} saved, {summary.reused} already saved, "
        f"{len(summary.unsupported)} not supported here, {len(summary.failed)} could not be saved",
        file=sys.stderr,
    )
    for case, fmt, reason in summary.failed[:10]:
        print(f"  {summary.label} {case} {fmt}: {reason}", file=sys.stderr)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from harness.runtime.expect import Expectations
    from harness.runtime.refactor import UserRefactors
    from harness.runtime.runner.load import Filters, load_phase

    # Checked before anything loads: a typo is one line, not a run of errors.
    refactors = UserRefactors.parse(args.load_as or [], args.migrate or [], args.rename_class or [])
    filters = Filters(source=args.source, case=args.case, format=args.format, cell=args.cell)
    summary = load_phase(
        Path(args.artifacts), Path(args.results), device=args.device, timeout=args.timeout,
        expectations=Expectations.load(_path(args.expectations)), filters=filters,
        expect_torch=args.expect_torch, progress=not args.quiet, refactors=refactors,
    )
    for line in summary.lines():
        print(line, file=sys.stderr)
    return summary.exit_status


def cmd_replay(args: argparse.Namespace) -> int:
    from harness.runtime.expect import Expectations
    from harness.runtime.formats import parse_formats
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.runner.inprocess import roundtrip
    from harness.runtime.spec import load_specs

    expectations = Expectations.load()
    status = 0
    for spec in load_specs(Path(args.spec)):
        for r in roundtrip(spec, parse_formats(args.formats), expectations=expectations):
            flag = "" if not r.outcome.is_failure else (" (expected)" if r.expected else " REGRESSION")
            print(f"{spec.name} {r.format} [{LoadOptions.from_dict(r.load).id}]: {r.outcome.value}{flag} {r.detail[:300]}")
            if r.outcome.value == "mismatch" or r.regression:
                status = 1
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.build import build_report

    result = build_report(
        [Path(p) for p in args.results], Path(args.out),
        baseline=_path(args.baseline), expectations=_path(args.expectations), bench=_path(args.bench),
        shrunk=_path(args.shrunk), progress=not args.quiet,
        envs=[e for e in args.envs.split(",") if e] if args.envs else None,
    )
    for line in result.lines():
        print(line, file=sys.stderr)
    return result.exit_status


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.check.fleet_record import is_fleet_folder

    fleets = [is_fleet_folder(Path(p)) for p in args.results]
    if any(fleets):
        if not all(fleets):
            mixed = ", ".join(p for p, f in zip(args.results, fleets) if not f)
            msg = f"merge takes result folders or fleet check folders, not both: {mixed} holds no check.jsonl"
            raise InputError(msg)
        return _merge_fleets(args)
    from harness.report.merge import merge_dirs, require_lines, write_merged

    merged = merge_dirs([Path(p) for p in args.results])
    require_lines(merged)
    written = write_merged(merged, Path(args.out))
    print(
        f"merge: {merged.total} cells of {len(merged.lines)} target envs from {len(args.results)} folders into {args.out} "
        f"({len(written)} files; {merged.superseded} repeated lines, {len(merged.conflicts)} conflicts)",
        file=sys.stderr,
    )
    for c in merged.conflicts[:20]:
        print(f"  {c.line()}", file=sys.stderr)
    if len(merged.conflicts) > 20:
        print(f"  ... and {len(merged.conflicts) - 20} more conflicts", file=sys.stderr)
    for w in merged.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    return 0


def _merge_fleets(args: argparse.Namespace) -> int:
    from harness.check.fleet_record import FLEET_FILE, merge_folders
    from harness.check.fleet_report import write_fleet_report
    from harness.runtime.fileio import write_text

    lines, repeated = merge_folders([Path(p) for p in args.results])
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        msg = f"--out {out} is a file; merging fleet checks writes a folder"
        raise InputError(msg)
    write_text(out / FLEET_FILE, "".join(line.to_json() + "\n" for line in lines))
    write_fleet_report(out, lines)
    envs = sorted({line.env for line in lines})
    print(f"merge: {len(lines)} fleet lines ({len({line.file for line in lines})} files x {len(envs)} envs) from "
          f"{len(args.results)} folders into {out} ({repeated} repeated lines; the later folder's line kept); report: {out / 'index.html'}",
          file=sys.stderr)
    return 0


def _is_fleet(args: argparse.Namespace) -> bool:
    """A fleet run: a folder among the paths, an --out folder (not a .json file), or a shard."""
    folder_out = bool(args.out) and not str(args.out).endswith(".json")
    return folder_out or args.shard is not None or any(os.path.isdir(p) for p in args.files)


def _check_fleet(args: argparse.Namespace) -> int:
    from harness.check.fleet import FleetOptions, run_fleet
    from harness.check.walk import parse_shard

    if args.json:
        msg = "--json prints one document for a few files; a fleet writes OUT/check.jsonl (one JSON line per file)"
        raise InputError(msg)
    if not args.out:
        msg = "checking a folder writes a fleet report: give --out FOLDER (it holds check.jsonl, index.html, summary.md)"
        raise InputError(msg)
    if args.workers is not None and args.workers < 1:
        msg = f"--workers={args.workers} must be >= 1"
        raise InputError(msg)
    options = FleetOptions(
        paths=tuple(args.files), out=Path(args.out), include=tuple(args.include or ()), exclude=tuple(args.exclude or ()),
        workers=args.workers or 0, trust=args.trust, timeout=args.timeout,
        shard=parse_shard(args.shard) if args.shard is not None else (1, 1), label=args.label, progress=not args.quiet,
    )
    run = run_fleet(options)
    own = run.own
    with_findings = run.findings
    print(
        f"{PROG} check: {len(own)} files in {run.label}: {with_findings} with findings; checked {run.checked} "
        f"({run.workers} workers, {run.restarts} restarted), reused {run.reused} unchanged, dropped {run.dropped} gone; "
        f"{run.seconds:.1f}s; report: {Path(args.out) / 'index.html'}",
        file=sys.stderr,
    )
    if run.interrupted:
        print(f"{PROG} check: interrupted; {len(own)} files recorded: run the same command again to go on", file=sys.stderr)
        return 130
    return 1 if with_findings else 0


def cmd_check(args: argparse.Namespace) -> int:
    if _is_fleet(args):
        return _check_fleet(args)
    for name in ("include", "exclude"):
        if getattr(args, name):
            msg = f"--{name} applies to folders; give a folder to check"
            raise InputError(msg)
    from harness.check.checker import check_files
    from harness.check.findings import exit_status, printable, render_json, render_text

    reports = check_files(args.files, trust=args.trust, timeout=args.timeout)
    print(render_json(reports, args.trust) if args.json else render_text(reports, args.trust))
    if args.out:
        from harness.runtime.fileio import write_text

        write_text(Path(args.out), render_json(reports, args.trust) + "\n")
    for r in reports:
        if r.findings:
            print(f"{PROG} check: {printable(r.path)}: {printable(r.summary)}", file=sys.stderr)
    return exit_status(reports)


def cmd_shrink(args: argparse.Namespace) -> int:
    from harness.shrink import ShrinkRequest, shrink_cell

    if args.max_steps is not None and args.max_steps < 1:
        msg = f"--max-steps={args.max_steps} must be >= 1"
        raise InputError(msg)
    request = ShrinkRequest(
        results=Path(args.results), key=args.cell, target=args.target, source_python=args.source_python,
        target_python=args.target_python, envs=_path(args.envs), out=_path(args.out), max_seconds=args.max_seconds, max_steps=args.max_steps,
        seed=args.seed, timeout=args.timeout,
    )
    record = shrink_cell(request, progress=not args.quiet)
    from harness.shrink.record import record_dir

    folder = Path(args.out) if args.out else record_dir(Path(args.results).resolve().parent / "shrunk", record.target, record.key)
    for line in _shrink_lines(record, folder):
        print(line, file=sys.stderr)
    if record.status == "interrupted":
        return 130
    return 1 if record.status == "not_reproduced" else 0


def _shrink_lines(record: Any, folder: Path) -> list[str]:
    """What a shrink found, in a few lines: how it ended, the sizes, the files."""
    lines = [f"{PROG} shrink: {record.status}: {record.case} {record.format} ({record.source} -> {record.target}), "
             f"{record.signature.get('text', '')}; {record.steps} steps in {record.seconds:.1f}s "
             f"({record.steps_per_second:.1f} steps/s), {record.accepted} accepted"]
    if record.status == "not_reproduced":
        lines.append(f"  the cell did not fail the same way again: {record.observed}")
        return lines
    if record.opaque:
        lines.append(f"  not shrunk: {record.opaque}")
    if record.final:
        before, after = record.initial, record.final
        lines.append("  " + ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in ("modules", "tensors", "elements", "extras", "load")))
    files = ", ".join(str(v) for k, v in record.repro.items() if k != "problem")
    lines.append(f"  wrote {files}, shrink.json into {folder}")
    if "problem" in record.repro:
        lines.append(f"  no plain-torch reproduction: {record.repro['problem']}")
    return lines


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import run_bench

    if not args.gib > 0:
        msg = f"--gib={args.gib!r} must be > 0"
        raise InputError(msg)
    record = run_bench(Path(args.out), gib=args.gib, quick=args.quick, workdir=_path(args.work))
    for line in record.lines():
        print(line)
    return 0


# -- the parser ----------------------------------------------------------------


def _add(sub: argparse._SubParsersAction[_Parser], name: str, func: Command, help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = _Parser(prog=PROG, description="Save models here, load them there, compare bit for bit.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = _add(sub, "cases", cmd_cases, "write a corpus: curated cases plus N generated ones")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--generated", type=_count, default=0, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")

    p = _add(sub, "save", cmd_save, "save every case in every format in this env")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--cases", metavar="FILE", help="corpus from `cases` (default: the curated cases)")
    p.add_argument("--user-case", action="append", metavar="MODULE:FUNCTION", help="add your own model factory (repeatable)")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    _formats(p)
    _env_phase(p)

    p = _add(sub, "load", cmd_load, "load every artifact under every load option in this env")
    p.add_argument("--artifacts", required=True, metavar="DIR")
    p.add_argument("--results", required=True, metavar="DIR")
    p.add_argument("--device", default="cpu", choices=LOAD_DEVICES)
    _timeout(p, "seconds one cell's load may take")
    _expectations(p)
    p.add_argument("--source", metavar="LABEL[,LABEL]", help="only artifacts saved in these envs")
    p.add_argument("--case", metavar="NAME", help="only this case")
    p.add_argument("--format", metavar="NAME", help="only this format")
    p.add_argument("--cell", metavar="KEY", help="only this cell: SOURCE|CASE|FORMAT|OPTIONS, as the report prints it")
    _refactors(p)
    _env_phase(p)

    p = _add(sub, "replay", cmd_replay, "round-trip the spec(s) in a JSON file in this env, in-process")
    p.add_argument("spec", metavar="SPEC.json")
    _formats(p)

    p = _add(sub, "report", cmd_report, "write the compatibility report (HTML, JSON, JUnit, Markdown) from result folders")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="result folders written by `load --results` (later ones win per cell)")
    p.add_argument("--out", required=True, metavar="DIR", help="where index.html, results.json, junit.xml and summary.md go")
    p.add_argument("--baseline", metavar="FILE", help="results.json of an earlier report: list new, fixed and unchanged failures")
    _expectations(p)
    p.add_argument("--bench", metavar="FILE", help="bench figures to show (default: DIR/bench.json when it exists)")
    p.add_argument("--shrunk", metavar="DIR", help="shrink records to show beside their cells, DIR/*/shrink.json (default: the --out folder's shrunk/ when it exists)")
    p.add_argument("--envs", metavar="A,B", help="only cells between these env labels (a folder may hold older runs' results)")
    _quiet(p)

    p = _add(sub, "merge", cmd_merge, "combine result folders (or fleet check folders: shards, envs) from several machines into one")
    p.add_argument("results", nargs="+", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged folder (empty, or one of the inputs); fleet folders also get index.html and summary.md")

    p = _add(sub, "check", cmd_check, "diagnose model files someone else wrote: format, tensors, globals, which loads work here; "
             "a folder: a fleet, checked in parallel and resumably, into a fleet report")
    p.add_argument("files", nargs="+", metavar="PATH", help="model files, or folders to walk (a fleet: needs --out FOLDER)")
    p.add_argument("--trust", action="store_true",
                   help="also try loads that can run code from the file (weights_only=False, TorchScript, torch.export), in a child process")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text (files only)")
    p.add_argument("--out", metavar="OUT",
                   help="FILE.json: also write the JSON document there; a FOLDER (any other name): a fleet run writing "
                        "FOLDER/check.jsonl (one line per file, as it goes; run again to resume), index.html and summary.md")
    p.add_argument("--include", action="append", metavar="GLOB",
                   help="fleet: only files whose path below the folder matches (repeatable; '*.pt' matches at any depth, '**' spans folders)")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="fleet: skip matching files and folders (repeatable; .git, .hg, .svn and __pycache__ are always skipped)")
    p.add_argument("--workers", type=int, metavar="N", help="fleet: check workers in parallel (default: one per CPU)")
    p.add_argument("--shard", metavar="I/N", help="fleet: check only shard I of N (stable across machines; join them with merge)")
    p.add_argument("--label", metavar="LABEL", help="fleet: the env label its lines carry (default: this env's, e.g. torch-2.6.0-py3.11-cpu)")
    _timeout(p, "seconds the trusted loads of one file may take together (a fleet gives a file's whole check twice that, plus 5)")
    _quiet(p)

    p = _add(sub, "shrink", cmd_shrink, "shrink a failing cell to its smallest case across its two envs; write a plain-torch repro")
    p.add_argument("--cell", required=True, metavar="KEY", help="the failing cell: SOURCE|CASE|FORMAT|OPTIONS, as the report prints it")
    p.add_argument("--results", default="reports/results", metavar="DIR", help="the result folder that holds the cell (default reports/results)")
    p.add_argument("--target", metavar="LABEL", help="the env that loaded the cell (needed when several did)")
    p.add_argument("--source-python", metavar="PY", help="interpreter of the env that saved it (default: the env nox made, see --envs, "
                   "else this one; checked against the cell's env)")
    p.add_argument("--target-python", metavar="PY", help="interpreter of the env that loaded it (default: as --source-python)")
    p.add_argument("--envs", metavar="DIR", help="nox's env records, LABEL.json naming each env's python (default: RESULTS/../envs)")
    p.add_argument("--out", metavar="DIR", help="where spec.json, save.py, load.py, README.md and shrink.json go (default: RESULTS/../shrunk/<cell>)")
    p.add_argument("--max-seconds", type=_seconds, default=300.0, metavar="S", help="stop with the best case found after S seconds (default 300)")
    p.add_argument("--max-steps", type=_count, metavar="N", help="stop with the best case found after N steps")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="orders the candidates (0: coarse to fine as written); same cell and seed, same shrink")
    _timeout(p, "seconds one step's save or load may take")
    _quiet(p)

    p = _add(sub, "bench", cmd_bench, "measure the harness's cost as ratios (writes bench.json)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--gib", type=float, default=1.0, help="size of the big state_dict (default 1)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats: checks that it runs")
    p.add_argument("--work", metavar="DIR", help="scratch directory (default: a temporary one)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; its exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug in the harness: one line, traceback on request
        if os.environ.get("TORCH_ROUNDTRIP_DEBUG"):
            raise
        print(f"{PROG} {args.command}: internal error: {type(e).__name__}: {e} (set TORCH_ROUNDTRIP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3
