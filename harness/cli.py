"""The command line: ``torch-roundtrip <command>`` or ``python -m harness <command>``.

Exit status: 0 success; 1 the run found regressions or mismatches; 2 usage
or input error (one line on stderr, never a traceback); 3 internal error (a
bug in the harness: the message says how to get the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from harness import __version__
from harness.errors import HarnessError

__all__ = ["main"]

PROG = "torch-roundtrip"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, with the way to more help, instead of usage + error.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
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
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def cmd_cases(args: argparse.Namespace) -> int:
    from harness.cases import write_corpus

    specs = write_corpus(Path(args.out), generated=args.generated, seed=args.seed)
    print(f"wrote {len(specs)} cases ({args.generated} generated, seed {args.seed}) to {args.out}", file=sys.stderr)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from harness.cases import load_corpus
    from harness.env import check_expected_torch
    from harness.formats import parse_formats
    from harness.runner import save_phase
    from harness.usercases import user_specs

    check_expected_torch(args.expect_torch)
    specs = load_corpus(Path(args.cases) if args.cases else None)
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
    from harness.expect import Expectations
    from harness.runner.load import Filters, load_phase

    expectations = Expectations.load(Path(args.expectations) if args.expectations else None)
    filters = Filters(source=args.source, case=args.case, format=args.format, cell=args.cell)
    summary = load_phase(
        Path(args.artifacts), Path(args.results), device=args.device, timeout=args.timeout,
        expectations=expectations, filters=filters, expect_torch=args.expect_torch, progress=not args.quiet,
    )
    for line in summary.lines():
        print(line, file=sys.stderr)
    return summary.exit_status


def cmd_replay(args: argparse.Namespace) -> int:
    from harness.expect import Expectations
    from harness.formats import parse_formats
    from harness.inprocess import roundtrip
    from harness.options import LoadOptions
    from harness.spec import load_specs

    specs = load_specs(Path(args.spec))
    expectations = Expectations.load()
    status = 0
    for spec in specs:
        for r in roundtrip(spec, parse_formats(args.formats), expectations=expectations):
            flag = "" if not r.outcome.is_failure else (" (expected)" if r.expected else " REGRESSION")
            print(f"{spec.name} {r.format} [{LoadOptions.from_dict(r.load).id}]: {r.outcome.value}{flag} {r.detail[:300]}")
            if r.outcome.value == "mismatch" or r.regression:
                status = 1
    return status


def _add_common_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expect-torch", metavar="VERSION", help="refuse to run unless this env's torch is VERSION (nox sets it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser(extras: tuple = ()) -> argparse.ArgumentParser:
    """The parser of every command; `extras` register commands that live elsewhere."""
    parser = _Parser(prog=PROG, description="Save models here, load them there, compare bit for bit.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("cases", help="write a corpus: curated cases plus N generated ones")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--generated", type=_positive_int, default=0, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.set_defaults(func=cmd_cases)

    p = sub.add_parser("save", help="save every case in every format in this env")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--cases", metavar="FILE", help="corpus from `cases` (default: the curated cases)")
    p.add_argument("--user-case", action="append", metavar="MODULE:FUNCTION", help="add your own model factory (repeatable)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "cuda-emulated"))
    p.add_argument("--formats", metavar="A,B", help="comma-separated formats (default: all)")
    _add_common_env(p)
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("load", help="load every artifact under every load option in this env")
    p.add_argument("--artifacts", required=True, metavar="DIR")
    p.add_argument("--results", required=True, metavar="DIR")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--timeout", type=_seconds, default=120.0, metavar="SECONDS", help="per cell (default 120)")
    p.add_argument("--expectations", metavar="FILE", help="expectations TOML (default: the shipped cases/expectations.toml)")
    p.add_argument("--source", metavar="LABEL[,LABEL]", help="only artifacts saved in these envs")
    p.add_argument("--case", metavar="NAME", help="only this case")
    p.add_argument("--format", metavar="NAME", help="only this format")
    p.add_argument("--cell", metavar="KEY", help="only this cell: SOURCE|CASE|FORMAT|OPTIONS, as the report prints it")
    _add_common_env(p)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("replay", help="round-trip the spec(s) in a JSON file in this env, in-process")
    p.add_argument("spec", metavar="SPEC.json")
    p.add_argument("--formats", metavar="A,B")
    p.set_defaults(func=cmd_replay)

    for extra in extras:
        extra(sub)
    return parser


def main(argv: Optional[list] = None) -> int:
    from harness import cli_extras

    parser = build_parser(cli_extras.COMMANDS)
    args = parser.parse_args(argv)
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
