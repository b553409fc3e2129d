"""The load worker's side: a child process that runs cells and reports each result.

The runner (the parent) keeps one worker alive and feeds it one artifact's
cells at a time; the worker answers one JSON line per cell, in order. If a
load kills the process (segfault, abort, out of memory) or never returns,
the parent records that cell as ``crash`` or ``timeout``, starts a new worker
and goes on with the next cell: one cell's failure is one cell, and a
process per cell (far too slow) is never needed.

Protocol (JSON lines): the worker first writes ``{"hello": fingerprint,
"cuda": bool, "started": {...}}`` (`started`: its pid and parent, and
whether a fork server forked it with torch imported already);
the parent writes ``{"artifact": dir, "cells": [...]}``; the worker writes
``{"result": {...}}`` per cell, then ``{"done": true}``. Anything else that
the process prints goes to stderr, which the parent keeps for crash reports.
The parent's side is `harness.runtime.runner.isolation`; the protocol's
plumbing, shared with ``check``'s child, is `harness.runtime.child`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from harness.runtime.child import (
    forbid_core_files,
    notice_fatal_signals,
    protocol_stream,
    send,
    serve_device,
)

if TYPE_CHECKING:
    from harness.runtime.manifest import Manifest
    from harness.runtime.runner.cell import CaseContext

__all__ = ["PRELOAD", "before_fork", "main"]

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


#: What a load worker imports, for a fork server to import before it forks
#: one (`harness.runtime.forkserver`): torch, the optimizer and torch.export
#: pieces `_warm_up` and the first cells pull in, safetensors, and the
#: harness modules the worker runs. Import only: a module this env's torch
#: lacks is skipped by the server and costs nothing but speed.
PRELOAD = (
    "torch", "torch.optim", "torch._dynamo", "torch.export", "torch._export.serde.serialize",
    "torch.export._unlift", "torch.export.pt2_archive", "torch._export.non_strict_utils",
    "torch.fx.experimental.validator", "torch.utils.serialization", "safetensors.torch",
    "harness.runtime.runner.cell", "harness.runtime.builder", "harness.runtime.forward",
    "harness.runtime.formats", "harness.runtime.env", "harness.runtime.runner.worker:before_fork",
)


def before_fork() -> None:
    """What a fork server does once for all its workers: pure Python, nothing of torch's.

    ``platform.platform()`` (in the fingerprint) runs ``uname -p`` in a
    subprocess the first time; asked once in the server, its answer is
    every worker's. The build id (a digest of the runtime's files, in every
    hello and result) is computed once too: the code a worker runs is the
    code the server imported. And what each worker imports first
    (`forbid_core_files`, `notice_fatal_signals`) is imported here.
    """
    import faulthandler  # noqa: F401
    import platform

    from harness import build_id

    with contextlib.suppress(ImportError):
        import resource  # noqa: F401

    platform.platform()
    build_id()


def _warm_up() -> None:
    """Pay one-time costs before saying hello, not inside the first cells.

    Creating an optimizer imports torch._dynamo (seconds, once per process),
    and torch.export's loader imports its serializer on first use; a cell's
    time should measure its load, not whichever cell happened to come first.
    A worker forked from a fork server finds those modules imported already
    (`PRELOAD`): what is left is the optimizer's first use, an op the server
    must not run (it would start torch's thread pools before the fork).
    """
    import contextlib

    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with contextlib.suppress(Exception):
        import torch.export  # noqa: F401
        from torch._export import serde  # noqa: F401


def _how_started(torch_imported: bool) -> dict[str, Any]:
    """For the hello: this process's pid and parent, whether it was forked with torch imported, and since when."""
    from harness.runtime.forkserver import forked_from

    forked = forked_from()
    return {"pid": os.getpid(), "parent": os.getppid(), "forked": forked is not None,
            "server": forked["server"] if forked else None, "torch_imported": torch_imported,
            "seconds": time.monotonic() - forked["at"] if forked else None}


def serve(device: str) -> int:
    torch_imported = "torch" in sys.modules  # before this process did anything: preloaded by a fork server
    proto = protocol_stream()
    # A load that aborts or segfaults says so at once; the parent need not wait for the teardown.
    notice_fatal_signals(proto)
    forbid_core_files()
    _warm_up()

    from harness.runtime.env import fingerprint
    from harness.runtime.formats import get
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.results import CellResult
    from harness.runtime.runner.cell import run_cell

    fp = fingerprint(device)
    from harness.runtime.env import cuda_available

    send(proto, {"hello": fp.to_dict(), "cuda": cuda_available(), "started": _how_started(torch_imported)})
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
