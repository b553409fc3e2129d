"""The load worker's side: a child process that runs cells and reports each result.

The runner (the parent) keeps one worker alive and feeds it one artifact's
cells at a time; the worker answers one JSON line per cell, in order. If a
load kills the process (segfault, abort, out of memory) or never returns,
the parent records that cell as ``crash`` or ``timeout``, starts a new worker
and goes on with the next cell: one cell's failure is one cell, and a
process per cell (far too slow) is never needed.

Protocol (JSON lines): the worker first writes ``{"hello": fingerprint}``;
the parent writes ``{"artifact": dir, "cells": [...]}``; the worker writes
``{"result": {...}}`` per cell, then ``{"done": true}``. Anything else that
the process prints goes to stderr, which the parent keeps for crash reports.
The parent's side is `harness.runtime.runner.isolation`; the protocol's
plumbing, shared with ``check``'s child, is `harness.runtime.child`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from harness.runtime.child import forbid_core_files, protocol_stream, send, serve_device

if TYPE_CHECKING:
    from harness.runtime.manifest import Manifest
    from harness.runtime.runner.cell import CaseContext

__all__ = ["main"]

FAULT_ENV = "TORCH_ROUNDTRIP_FAULT"

_K = TypeVar("_K")
_V = TypeVar("_V")


def _inject_fault(case: str, fmt: str, options_id: str) -> None:
    """Test hook: ``TORCH_ROUNDTRIP_FAULT=crash@CASE/FORMAT[/OPTIONS]`` (or ``hang@``, ``exit@``).

    Lets the test suite prove crash and hang isolation without relying on a
    real torch bug. Several faults are separated by spaces. Unset in normal runs.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for item in spec.split():
        kind, _, where = item.partition("@")
        want_case, want_fmt, want_opts = (where.split("/", 2) + ["", ""])[:3]
        if want_case == case and want_fmt in (fmt, "*") and want_opts in (options_id, ""):
            if kind == "crash":
                # As a C++ exception aborts torch: the reason, then stack frames.
                sys.stderr.write("terminate called after throwing an instance of 'c10::Error'\n"
                                 "  what():  injected fault: isTuple() INTERNAL ASSERT FAILED\n")
                sys.stderr.writelines(f"frame #{i}: <unknown function> + 0x{i:x}\n" for i in range(40))
                sys.stderr.flush()
                os.abort()
            elif kind == "hang":
                time.sleep(10**6)
            elif kind == "exit":
                os._exit(3)


class _Cache:
    """Manifests and case contexts, kept across requests for the same artifacts."""

    def __init__(self, device: str, size: int = 16) -> None:
        self.device = device
        self.size = size
        self.manifests: OrderedDict[str, Manifest] = OrderedDict()
        self.contexts: OrderedDict[tuple[str, str, str], CaseContext] = OrderedDict()

    def _lru(self, table: OrderedDict[_K, _V], key: _K, make: Callable[[], _V]) -> _V:
        if key in table:
            table.move_to_end(key)
            return table[key]
        value = table[key] = make()
        if len(table) > self.size:
            table.popitem(last=False)
        return value

    def manifest(self, path: Path) -> Manifest:
        from harness.runtime.fileio import read_json
        from harness.runtime.manifest import Manifest

        return self._lru(self.manifests, str(path), lambda: Manifest.from_dict(read_json(path)))

    def context(self, source: str, manifest: Manifest) -> CaseContext:
        from harness.runtime.runner.cell import CaseContext

        # Keyed by the spec too: a shrink sends spec after spec under one case name.
        key = (source, manifest.case, manifest.spec_digest)
        return self._lru(self.contexts, key, lambda: CaseContext(manifest.spec, self.device))


def _warm_up() -> None:
    """Pay one-time import costs before saying hello, not inside the first cells.

    Creating an optimizer imports torch._dynamo (seconds, once per process),
    and torch.export's loader imports its serializer on first use; a cell's
    time should measure its load, not whichever cell happened to come first.
    """
    import contextlib

    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with contextlib.suppress(Exception):
        import torch.export  # noqa: F401
        from torch._export import serde  # noqa: F401


def serve(device: str) -> int:
    proto = protocol_stream()
    forbid_core_files()
    _warm_up()

    from harness.runtime.env import fingerprint
    from harness.runtime.formats import get
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.results import CellResult
    from harness.runtime.runner.cell import run_cell

    fp = fingerprint(device)
    from harness.runtime.env import cuda_available

    send(proto, {"hello": fp.to_dict(), "cuda": cuda_available()})
    cache = _Cache(device)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        directory = Path(request["artifact"])
        manifest = cache.manifest(directory / "manifest.json")
        fmt = get(manifest.format)
        ctx = cache.context(request["source"], manifest)
        reference = directory.parent / "reference.bin"
        for cell in request["cells"]:
            base = CellResult.from_dict(cell)
            options = LoadOptions.from_dict(base.load)
            _inject_fault(base.case, base.format, options.id)
            result = run_cell(base, manifest, fmt, options, directory, reference, ctx, fp.compute_key)
            send(proto, {"result": result.to_dict()})
        send(proto, {"done": True})
    return 0


def main() -> int:
    return serve_device(serve)


if __name__ == "__main__":
    sys.exit(main())
