"""One table from `check` run in every env of the matrix (``nox -s check -- FILE``).

Each env writes ``reports/check/<label>.json`` (``check --out``); this module
reads those documents and writes the Markdown a person reads: per file, per
env, does it load, how many ways, and the first diagnosis when it does not.
Only the standard library: it runs in nox's own environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from harness.check.findings import CHECK_SCHEMA
from harness.runtime.errors import InputError
from harness.runtime.fileio import read_json

__all__ = ["summarize"]


def _cell(report: dict[str, Any]) -> str:
    attempts = report.get("attempts", [])
    loaded = sum(1 for a in attempts if a.get("status") == "loaded")
    failed = [a for a in attempts if a.get("status") in ("failed", "crash", "timeout")]
    untried = sum(1 for a in attempts if a.get("status") == "not_tried")
    text = f"{'✅' if loaded else '❌'} {loaded} load, {len(failed)} fail"
    if untried:
        text += f", {untried} need --trust"
    if failed:
        d = failed[0].get("diagnosis") or {}
        text += f" ({d.get('code') or failed[0].get('etype', 'error')})"
    return text


def summarize(folder: Path) -> str:
    """Markdown for every ``<label>.json`` in `folder`."""
    path: Union[Path, str]  # a document's file, then a checked file's path
    docs = {}
    for path in sorted(Path(folder).glob("*.json")):
        doc = read_json(path)
        if not isinstance(doc, dict) or doc.get("schema") != CHECK_SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            msg = f"{path}: schema={found!r} but this harness reads check documents of schema {CHECK_SCHEMA}"
            raise InputError(msg)
        docs[path.stem] = doc
    if not docs:
        return "No check results found.\n"
    files: dict[str, dict[str, dict[str, Any]]] = {}
    for label, doc in docs.items():
        for report in doc.get("files", []):
            files.setdefault(report["path"], {})[label] = report
    labels = list(docs)
    lines = ["## torch-roundtrip check across the matrix", ""]
    for path, per_env in files.items():
        first = next(iter(per_env.values()))
        lines += [f"### `{path}`", "", f"{first.get('format', '?')}; {first.get('summary', '')}", ""]
        lines += ["| env | loads |", "|---|---|"]
        lines += [f"| `{label}` | {_cell(per_env[label]) if label in per_env else 'not checked'} |" for label in labels]
        lines.append("")
    return "\n".join(lines)
