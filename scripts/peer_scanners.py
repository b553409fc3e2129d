#!/usr/bin/env python
"""Measure the peer pickle scanners (and our own ``check``) on the scanner corpus.

    python scripts/peer_scanners.py [--keep DIR] [--json OUT] [--venv DIR] [--no-own-check]

Run it with the project's Python (torch installed: the corpus generator,
`tests/scanner_corpus.py`, makes real torch files). It

1. writes the corpus into a temporary directory (``--keep DIR``: into DIR,
   which is kept), with the payloads' marker file outside the corpus;
2. makes a throwaway venv with ``uv venv`` and installs the peers into it
   with ``uv pip install modelscan fickling picklescan`` (plus
   typing_extensions, which fickling 0.1.12 imports without declaring it);
   ``--venv DIR`` reuses such a venv instead;
3. runs each peer on each file, one subprocess per file, and decides
   flagged / not flagged with the rules below (one function per tool);
4. runs our ``python -m harness check --json`` (never ``--trust``) on the
   files in batches and applies `check_flags_code`;
5. checks after every step that the marker never appeared (exit status 3
   if it did), prints per tool how many malicious and benign files it
   flagged, and with ``--json OUT`` writes every file's results.

Rules (a tool's error is reported, never counted as flagged):

* picklescan: ``picklescan -p FILE`` flags the file when its summary says
  ``Infected files: N`` with N > 0 (its exit status is then 1; 2 is a scan
  error). ``picklescan-strict`` is the same with ``--strict`` (suspicious
  globals count as dangerous).
* modelscan: ``modelscan -p FILE -r json -o REPORT`` flags the file when
  the report's ``summary.total_issues`` is > 0, any severity.
* fickling: fickling's own file dispatch (as its ``--huggingface`` scan
  does it): a zip goes to ``fickling.loader.scan_zip_archive`` (members
  named .pkl/.pickle/.bin), anything else to ``fickling.loader.scan_file``,
  both ``graceful=True``. The file is flagged when some pickle's
  ``check_safety`` severity is above LIKELY_SAFE -- the ``--check-safety``
  rule; a file fickling cannot parse at all is an error, as in its CLI.
  ``fickling-overt`` (same run) counts only LIKELY_OVERTLY_MALICIOUS and
  worse, since the strict rule also names plain torch state dicts.
* check (ours): `check_flags_code`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
PEER_PACKAGES = ["modelscan", "fickling", "picklescan", "typing_extensions"]
FILE_TIMEOUT = 180.0  # seconds one tool may spend on one file
CHECK_BATCH = 20  # files per `harness check` process

FICKLING_DRIVER = r'''
"""Run fickling's scan API on one file; print one JSON object (runs in the peers' venv)."""
import json, sys, zipfile
from fickling.analysis import Severity
from fickling.loader import scan_file, scan_zip_archive

path = sys.argv[1]
if zipfile.is_zipfile(path):
    results = scan_zip_archive(path, graceful=True)
else:
    results = {"<file>": scan_file(path, graceful=True)}
out = {"members": {}}
for name, result in results.items():
    analysed = [r.severity for r in result.results]
    out["members"][name] = {
        "severity": result.severity.name,
        "analysis_severity": max(analysed).name if analysed else None,
        "unsafe": any(s > Severity.LIKELY_SAFE for s in analysed),
        "overt": any(s >= Severity.LIKELY_OVERTLY_MALICIOUS for s in analysed),
        "errors": result.errors,
    }
print(json.dumps(out))
'''


@dataclass
class Verdict:
    """What one tool said about one file."""

    flagged: bool
    error: str = ""
    detail: str = ""


@dataclass
class FileResult:
    name: str
    malicious: bool
    container: str
    technique: str
    peers: list[str]
    verdicts: dict[str, Verdict] = field(default_factory=dict)


# -- the rules ---------------------------------------------------------------------


def picklescan_verdict(returncode: int, output: str) -> Verdict:
    """Flagged when picklescan's summary counts an infected file."""
    match = re.search(r"Infected files:\s*(\d+)", output)
    dangerous = [line.strip() for line in output.splitlines() if "dangerous" in line.lower() and "FOUND" in line]
    if match is None:
        return Verdict(False, error=f"no summary (exit {returncode}): {_tail(output)}")
    flagged = int(match.group(1)) > 0
    errors = [line.strip() for line in output.splitlines() if "ERROR" in line or "error" in line.lower()]
    error = _tail("; ".join(errors), 300) if errors or returncode == 2 else ""
    return Verdict(flagged, error=error, detail="; ".join(dangerous)[:300])


def modelscan_verdict(returncode: int, report: Optional[dict], output: str) -> Verdict:
    """Flagged when modelscan's JSON report counts any issue."""
    if report is None:
        return Verdict(False, error=f"no JSON report (exit {returncode}): {_tail(output)}")
    summary = report.get("summary", {})
    issues = report.get("issues", [])
    errors = report.get("errors", [])
    skipped = summary.get("skipped", {}).get("skipped_files", [])
    detail = "; ".join(f"{i.get('severity')} {i.get('module')}.{i.get('operator')}" for i in issues)
    if not issues and skipped and not summary.get("scanned", {}).get("scanned_files"):
        detail = "skipped: " + "; ".join(str(s.get("description", s)) for s in skipped)
    error = "; ".join(str(e.get("description", e)) if isinstance(e, dict) else str(e) for e in errors)
    return Verdict(int(summary.get("total_issues", 0)) > 0, error=error[:300], detail=detail[:300])


def fickling_verdict(returncode: int, output: str, overt: bool = False) -> Verdict:
    """Flagged when some pickle's check_safety severity is above LIKELY_SAFE (errors reported apart).

    `overt` (the ``fickling-overt`` column): only LIKELY_OVERTLY_MALICIOUS or
    worse counts, a looser reading than ``--check-safety``'s.
    """
    try:
        report = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Verdict(False, error=f"driver failed (exit {returncode}): {_tail(output)}")
    members = report.get("members", {})
    flagged = any(m["overt" if overt else "unsafe"] for m in members.values())
    errors = [e for m in members.values() for e in m["errors"]]
    detail = "; ".join(f"{name}: {m['analysis_severity'] or m['severity']}" for name, m in members.items()) or "no pickle scanned"
    return Verdict(flagged, error="; ".join(errors)[:300] if errors and not flagged else "", detail=detail[:300])


def check_flags_code(report: dict) -> bool:
    """Our ``check`` names the file as one that runs code.

    The same rule as ``FileReport.runs_code``: the JSON report lists a code
    global (allowlist first: anything not known safe or data) or a
    TorchScript call that leaves its sandbox.
    """
    return bool(report.get("code_globals") or report.get("script_escapes"))


# -- running the tools -------------------------------------------------------------


def _tail(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text[-n:]


def _run(cmd: list[str], cwd: Path, timeout: float = FILE_TIMEOUT, env: Optional[dict] = None) -> tuple[int, str]:
    try:
        done = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env, errors="replace")
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def make_venv(where: Path) -> Path:
    """A fresh venv at `where` with the peers installed; its python."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    subprocess.run([uv, "venv", "--quiet", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), *PEER_PACKAGES], check=True)
    return python


def peer_versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            f"print(json.dumps({{p: m.version(p) for p in {['modelscan', 'fickling', 'picklescan']!r}}}))")
    rc, out = _run([str(python), "-c", code], cwd=python.parent)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def tools(python: Path, work: Path) -> dict[str, Callable[[Path], Verdict]]:
    """Each peer as a function of one file."""
    bindir = python.parent
    driver = work / "fickling_driver.py"
    driver.write_text(FICKLING_DRIVER)
    reports = work / "modelscan_reports"
    reports.mkdir(exist_ok=True)

    def picklescan(path: Path, strict: bool = False) -> Verdict:
        rc, out = _run([str(bindir / "picklescan"), "-p", str(path), *(["--strict"] if strict else [])], cwd=work)
        return picklescan_verdict(rc, out)

    def modelscan(path: Path) -> Verdict:
        report_path = reports / (path.name + ".json")
        report_path.unlink(missing_ok=True)
        rc, out = _run([str(bindir / "modelscan"), "-p", str(path), "-r", "json", "-o", str(report_path)], cwd=work)
        report = None
        if report_path.exists():
            try:
                report = json.loads(report_path.read_text())
            except ValueError:
                report = None
        return modelscan_verdict(rc, report, out)

    fickling_runs: dict[Path, tuple[int, str]] = {}

    def fickling_run(path: Path) -> tuple[int, str]:
        if path not in fickling_runs:  # one driver run serves both fickling columns
            fickling_runs[path] = _run([str(python), str(driver), str(path)], cwd=work)
        return fickling_runs[path]

    return {
        "picklescan": picklescan,
        "picklescan-strict": lambda path: picklescan(path, strict=True),
        "modelscan": modelscan,
        "fickling": lambda path: fickling_verdict(*fickling_run(path)),
        "fickling-overt": lambda path: fickling_verdict(*fickling_run(path), overt=True),
    }


def run_own_check(paths: list[Path], work: Path) -> dict[str, Verdict]:
    """``python -m harness check --json`` (this Python, no --trust) on `paths`, in batches; name -> verdict."""
    env = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1")
    env.pop("TORCH_ROUNDTRIP_DEBUG", None)
    verdicts: dict[str, Verdict] = {}

    def run(batch: list[Path]) -> Optional[dict[str, dict]]:
        cmd = [sys.executable, "-m", "harness", "check", "--json", *map(str, batch)]
        try:
            done = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=FILE_TIMEOUT * len(batch), env=env, errors="replace")
        except subprocess.TimeoutExpired:
            return None
        try:
            document = json.loads(done.stdout)
        except ValueError:
            return None
        return {Path(r["path"]).name: r for r in document.get("files", [])}

    for start in range(0, len(paths), CHECK_BATCH):
        batch = paths[start:start + CHECK_BATCH]
        reports = run(batch)
        if reports is None or len(reports) != len(batch):  # one file broke the batch: one process each
            reports = {}
            for path in batch:
                one = run([path])
                if one:
                    reports.update(one)
        for path in batch:
            report = reports.get(path.name)
            if report is None:
                verdicts[path.name] = Verdict(False, error="check gave no JSON report")
            else:
                detail = f"{report.get('verdict')}: {report.get('summary', '')}"
                verdicts[path.name] = Verdict(check_flags_code(report), detail=_tail(detail, 300))
    return verdicts


# -- the report --------------------------------------------------------------------


def summarize(results: list[FileResult], tool_names: list[str]) -> str:
    malicious = [r for r in results if r.malicious]
    benign = [r for r in results if not r.malicious]
    width = max(len(t) for t in tool_names) + 2
    lines = [f"{'tool':<{width}}{'malicious flagged':>20}{'benign flagged':>17}{'errors':>9}"]
    for tool in tool_names:
        hit = sum(r.verdicts[tool].flagged for r in malicious if tool in r.verdicts)
        false = sum(r.verdicts[tool].flagged for r in benign if tool in r.verdicts)
        errors = sum(bool(r.verdicts[tool].error) for r in results if tool in r.verdicts)
        lines.append(f"{tool:<{width}}{f'{hit}/{len(malicious)}':>20}{f'{false}/{len(benign)}':>17}{errors:>9}")
    containers = sorted({r.container for r in malicious})
    lines += ["", "malicious flagged by container:", f"{'container':<14}" + "".join(f"{t:>{max(len(t), 6) + 2}}" for t in tool_names)]
    for container in containers:
        group = [r for r in malicious if r.container == container]
        cells = "".join(f"{f'{sum(r.verdicts[t].flagged for r in group)}/{len(group)}':>{max(len(t), 6) + 2}}" for t in tool_names)
        lines.append(f"{container:<14}{cells}")
    peers = [t for t in tool_names if t != "check"]
    missed = [r.name for r in malicious if not any(r.verdicts[t].flagged for t in peers if t in r.verdicts)]
    lines += ["", f"malicious files no peer flags ({len(missed)}): " + (", ".join(missed) or "none")]
    for tool in tool_names:
        flagged_benign = [r.name for r in benign if tool in r.verdicts and r.verdicts[tool].flagged]
        if flagged_benign:
            lines.append(f"benign files {tool} flags: " + ", ".join(flagged_benign))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="write the corpus, venv and reports into DIR and keep them")
    parser.add_argument("--json", type=Path, dest="json_out", help="write every file's results to OUT")
    parser.add_argument("--venv", type=Path, help="use this venv (peers already installed) instead of making one")
    parser.add_argument("--no-own-check", action="store_true", help="do not run our `harness check`")
    parser.add_argument("--tools", nargs="*",
                        help="only these peers (picklescan, picklescan-strict, modelscan, fickling, fickling-overt)")
    parser.add_argument("--jobs", type=int, default=2, help="files scanned at once (default 2)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from tests.scanner_corpus import write_scanner_corpus

    temp = None
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        temp = tempfile.TemporaryDirectory(prefix="peer_scanners_")
        work = Path(temp.name)
    try:
        marker = work / "marker" / "payload_ran"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        corpus_dir = work / "corpus"
        if corpus_dir.exists():
            shutil.rmtree(corpus_dir)
        started = time.monotonic()
        files = write_scanner_corpus(corpus_dir, marker)
        print(f"corpus: {len(files)} files ({sum(f.malicious for f in files)} malicious) in {corpus_dir} "
              f"[{time.monotonic() - started:.0f} s]", flush=True)

        def marker_check(step: str) -> None:
            if marker.exists():
                print(f"\nDANGER: the payload marker {marker} appeared after {step}: something ran a payload", file=sys.stderr)
                raise SystemExit(3)

        marker_check("writing the corpus")
        if args.venv:
            python = args.venv.resolve() / "bin" / "python"
        else:
            started = time.monotonic()
            python = make_venv(work / "peers-venv")
            print(f"peers installed [{time.monotonic() - started:.0f} s]", flush=True)
        versions = peer_versions(python)
        print("peer versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

        results = [FileResult(f.name, f.malicious, f.container, f.technique, list(f.peers)) for f in files]
        by_name = {r.name: r for r in results}
        runners = tools(python, work)
        chosen = [t for t in runners if not args.tools or t in args.tools]
        for tool in chosen:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                verdicts = dict(zip((f.name for f in files), pool.map(runners[tool], (f.path for f in files))))
            for name, verdict in verdicts.items():
                by_name[name].verdicts[tool] = verdict
            marker_check(tool)
            print(f"{tool}: done [{time.monotonic() - started:.0f} s]", flush=True)
        if not args.no_own_check:
            started = time.monotonic()
            for name, verdict in run_own_check([f.path for f in files], work).items():
                by_name[name].verdicts["check"] = verdict
            marker_check("check")
            chosen.append("check")
            print(f"check: done [{time.monotonic() - started:.0f} s]", flush=True)
        marker_check("all scans")
        print()
        print(summarize(results, chosen))
        print(f"\nthe marker {marker} never appeared.")
        if args.json_out:
            document = {
                "peer_versions": versions,
                "rules": {"picklescan": picklescan_verdict.__doc__, "modelscan": modelscan_verdict.__doc__,
                          "fickling": fickling_verdict.__doc__, "fickling-overt": fickling_verdict.__doc__, "check": (check_flags_code.__doc__ or "").split("\n")[0]},
                "files": [{**asdict(r), "verdicts": {t: asdict(v) for t, v in r.verdicts.items()}} for r in results],
            }
            args.json_out.write_text(json.dumps(document, indent=1) + "\n")
            print(f"per-file results: {args.json_out}")
        return 0
    finally:
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
