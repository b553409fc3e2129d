"""The save worker: a child process that saves spec after spec in one env, without restarting.

A shrink (`harness.shrink`) runs hundreds of candidate specs through the
save of the source env; starting a process per candidate would cost a
torch import each (seconds). This worker imports torch once and then saves
each requested spec with the save phase's own code (`save_case`), so a step
costs what the save costs.

Protocol (JSON lines, `harness.runtime.child`): the worker writes
``{"hello": fingerprint}``; the parent writes ``{"spec": {...}, "case_dir":
DIR, "formats": [NAME, ...]}``; the worker answers ``{"saved": [{"format",
"status", "reason"}, ...]}``, or ``{"error": "..."}`` for a spec it refuses
(invalid, or a factory it cannot import). The device (``cpu``, ``cuda``,
``cuda-emulated``) is its one argument, as for a save phase.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.runtime.child import forbid_core_files, protocol_stream, send, serve_device

__all__ = ["main", "save_request"]


def save_request(request: dict[str, Any], device: str) -> dict[str, Any]:
    """Save one requested spec in its formats; the answer message."""
    from harness.runtime.casemodel import forget_moved
    from harness.runtime.env import fingerprint
    from harness.runtime.errors import HarnessError
    from harness.runtime.formats import get
    from harness.runtime.runner.save import save_case
    from harness.runtime.spec import Spec

    try:
        spec = Spec.from_dict(request["spec"])
        formats = [get(name) for name in request["formats"]]
        manifests = save_case(spec, Path(request["case_dir"]), fingerprint(device), formats, device)
    except HarnessError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        # A class_path's synthetic module must not outlive its spec: the
        # next candidate may name the same module with another class.
        forget_moved()
    return {"saved": [{"format": m.format, "status": m.status, "reason": m.reason} for m in manifests]}


def _warm_up(device: str) -> None:
    """Save a one-layer spec once before saying hello: the first save pays for imports, not the first step."""
    import tempfile

    tiny = {"name": "warm_up", "model": {"kind": "sequential", "children": [{"kind": "linear", "in_features": 2, "out_features": 2}]}}
    with tempfile.TemporaryDirectory(prefix="roundtrip-warm-") as tmp:
        save_request({"spec": tiny, "case_dir": str(Path(tmp) / "warm_up"), "formats": ["state_dict"]}, device)


def serve(device: str) -> int:
    proto = protocol_stream()
    forbid_core_files()
    from harness.runtime.env import check_device, fingerprint

    check_device(device)
    _warm_up(device)
    send(proto, {"hello": fingerprint(device).to_dict()})
    for line in sys.stdin:
        if line.strip():
            send(proto, save_request(json.loads(line), device))
    return 0


def main() -> int:
    return serve_device(serve)


if __name__ == "__main__":
    sys.exit(main())
