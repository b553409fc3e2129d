"""The fleet's check worker: a child process that checks file after file with `check_file`.

`harness.check.fleet` keeps a few of these busy, each forked from a fork
server that has imported torch (`harness.runtime.forkserver`), so a worker
that a file kills is replaced in milliseconds. A worker reads untrusted
files only as ``check`` does in its own process (the sniffer, then
``torch.load(weights_only=True)`` and safetensors); loads that can run code
go, with ``--trust`` only, to ``check``'s own child (`harness.check.child`).

Protocol (JSON lines, `harness.runtime.child`): the worker writes
``{"hello": {"pid": ..., "label": ...}}`` (`label`: this env's label, which
the fleet's lines carry); the parent writes ``{"path": ..., "trust": bool,
"timeout": seconds}``; the worker answers ``{"report": FileReport dict}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from harness.check.child import TRUSTED_PRELOAD
from harness.runtime.child import forbid_core_files, protocol_stream, send
from harness.runtime.forkserver import ForkServer, fork_supported

__all__ = ["FAULT_ENV", "PRELOAD", "main"]

#: Test hook, as the load worker's: ``crash@NAME`` (or ``hang@NAME``) makes
#: the worker abort (or hang) when asked to check a file named NAME.
FAULT_ENV = "TORCH_ROUNDTRIP_CHECK_FAULT"

#: What a fork server imports for these workers, so that each fork starts warm.
PRELOAD = ("torch", "harness.check.checker", "harness.check.child")


def _inject_fault(name: str) -> None:
    for item in os.environ.get(FAULT_ENV, "").split():
        kind, _, target = item.partition("@")
        if target == name and kind == "crash":
            sys.stderr.write("Fatal Python error: Segmentation fault (injected by the fleet's fault hook)\n")
            sys.stderr.flush()
            os.abort()
        if target == name and kind == "hang":
            time.sleep(10**6)


def main() -> int:
    """``python -m harness.check.worker``: check each requested file until stdin closes."""
    out = protocol_stream()
    forbid_core_files()
    import torch

    from harness.check.checker import check_file
    from harness.runtime.env import cuda_available, label_for

    cuda = cuda_available()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    label = label_for(torch.__version__, python, "cuda" if cuda else "cpu")
    send(out, {"hello": {"pid": os.getpid(), "label": label}})
    trusted: Optional[ForkServer] = None
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            _inject_fault(os.path.basename(request["path"]))
            trust = bool(request.get("trust"))
            if trust and trusted is None and fork_supported():
                # This worker has run torch ops, so it must not fork itself:
                # its trusted loads' children come from a server of its own.
                trusted = ForkServer(TRUSTED_PRELOAD)
            report = check_file(Path(request["path"]), trust=trust, timeout=float(request["timeout"]), cuda=cuda, server=trusted)
            send(out, {"report": report.to_dict()})
    finally:
        if trusted is not None:
            trusted.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the fleet went away
        sys.exit(0)
