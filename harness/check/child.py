"""Trying one load of a file, and the child process that tries the trusted ones.

`try_load` opens a file one way (a loader plus `LoadOptions`) and says how
it went, as plain data; it never raises for what the file does. ``check``
calls it in its own process only for loads that cannot run code from the
file (``torch.load(weights_only=True)``, safetensors). Every other load, a
full unpickle, TorchScript, ``torch.export.load``, runs through
`run_in_child`: a fresh ``python -m harness.check.child`` in its own
process group and a scratch working directory, under a deadline, so that
whatever the file does happens there. If the child dies or hangs, the load
in flight is a ``crash`` or ``timeout``, a new child takes the rest, and
the checker goes on.

Protocol (JSON lines): the child writes ``{"hello": pid}``; the parent
writes one request ``{"path": ..., "attempts": [[loader, options], ...]}``;
the child writes ``{"result": {...}}`` per attempt, in order. Results are
JSON, never pickles: nothing the child sends can run code in the parent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Optional

from harness.runtime.child import (
    Child,
    ChildDied,
    ChildGarbled,
    ChildTimeout,
    forbid_core_files,
    protocol_stream,
    send,
)
from harness.runtime.defaults import STARTUP_TIMEOUT
from harness.runtime.errors import Unsupported
from harness.runtime.forkserver import ForkServer
from harness.runtime.load_options import LoadOptions, map_location_value, torch_load_kwargs
from harness.runtime.messages import captured, clean

__all__ = ["LOADERS", "TRUSTED_PRELOAD", "describe_loaded", "main", "run_in_child", "try_load"]

#: What a fork server of trusted-load children imports, so that each fork starts warm.
TRUSTED_PRELOAD = ("torch", "harness.check.child")

#: The loaders ``check`` knows, by the name reports use.
LOADERS = ("torch.load", "torch.jit.load", "torch.export.load", "safetensors.torch.load_file")

def _count_tensors(obj: Any, depth: int = 0) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return 1
    if depth >= 3:
        return 0
    if isinstance(obj, dict):
        return sum(_count_tensors(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v, depth + 1) for v in obj)
    return 0


def describe_loaded(obj: Any) -> str:
    """What a load returned, in a few words; reads shapes, never tensor values."""
    import torch

    if isinstance(obj, torch.nn.Module):
        n = sum(1 for _ in obj.state_dict().values())
        return f"{type(obj).__name__} (nn.Module) with {n} state tensors"
    if hasattr(obj, "state_dict") and hasattr(obj, "graph_signature"):  # an ExportedProgram
        return f"{type(obj).__name__} with {len(obj.state_dict)} state tensors"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {list(obj.shape)}"
    if isinstance(obj, (dict, list, tuple)):
        n, t = len(obj), _count_tensors(obj)
        return f"{type(obj).__name__} of {n} entr{'y' if n == 1 else 'ies'}, {t} tensor{'' if t == 1 else 's'}"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}, not tensors or a module"


def _weights_only_kwargs(options: LoadOptions) -> dict[str, Any]:
    return torch_load_kwargs(LoadOptions(options.map_location, "true", options.mmap, options.apply, options.device))


def _open(path: str, loader: str, options: LoadOptions, weights_only: bool) -> Any:
    import torch

    if loader == "torch.load":
        kwargs = _weights_only_kwargs(options) if weights_only else torch_load_kwargs(options)
        return torch.load(path, **kwargs)
    if loader == "torch.jit.load":
        kw = {}
        if options.map_location not in (None, "none"):
            kw["map_location"] = map_location_value(options.map_location)
        return torch.jit.load(path, **kw)
    if loader == "torch.export.load":
        if not hasattr(getattr(torch, "export", None), "load"):
            raise Unsupported("torch.export.load does not exist in this torch (it appeared in torch 2.1)")
        return torch.export.load(path)
    if loader == "safetensors.torch.load_file":
        try:
            import safetensors.torch
        except ImportError as e:
            raise Unsupported(f"safetensors is not installed in this env ({e})") from None
        return safetensors.torch.load_file(path, device=options.device or "cpu")
    msg = f"loader={loader!r} is not one of {', '.join(LOADERS)}"
    raise ValueError(msg)


def try_load(path: str, loader: str, options: LoadOptions, *, weights_only: bool = False) -> dict[str, Any]:
    """Open `path` one way; ``{"status": loaded|failed|skip, ...}``, never raising for the file.

    `weights_only` forces ``torch.load(weights_only=True)`` whatever
    `options` says: ``check`` sets it for every torch.load in its own process.
    """
    start = time.perf_counter()
    texts: list[str] = []
    try:
        with captured() as seen:
            try:
                obj = _open(path, loader, options, weights_only)
                detail = describe_loaded(obj)
                del obj
            finally:
                texts = seen.texts()
        return {"status": "loaded", "detail": detail, "warnings": texts, "seconds": time.perf_counter() - start}
    except Unsupported as e:
        return {"status": "skip", "detail": str(e), "warnings": texts, "seconds": time.perf_counter() - start}
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # the load raised (SystemExit too, from a payload): that is the result
        return {
            "status": "failed", "error_type": type(e).__name__, "message": clean(str(e), 4000),
            "warnings": texts, "seconds": time.perf_counter() - start,
        }


# -- the child ---------------------------------------------------------------


def main() -> int:
    """``python -m harness.check.child``: answer one request, then exit."""
    out = protocol_stream()
    forbid_core_files()
    import torch  # noqa: F401  (imported before hello, so the deadline covers loads only)

    send(out, {"hello": os.getpid()})
    request = json.loads(sys.stdin.readline())
    for loader, options in request["attempts"]:
        result = try_load(request["path"], loader, LoadOptions.from_dict(options))
        send(out, {"result": result})
    return 0


# -- the parent side ---------------------------------------------------------


#: After this many trusted loads of one file in a row crash or hang, the
#: rest are not tried: each costs a new child, and the file has made its point.
MAX_CHILD_FAILURES = 3


def run_in_child(
    path: str, attempts: list[tuple[str, LoadOptions]], timeout: float, server: Optional[ForkServer] = None,
) -> list[dict[str, Any]]:
    """Each ``(loader, LoadOptions)`` of `attempts`, tried in a child process, as `try_load` results.

    `timeout` is the seconds the loads of this file may take together
    (starting a child does not count); when it runs out, the load in flight
    is a ``timeout`` and the rest are not tried. A child that dies makes its
    load in flight a ``crash`` and a new child goes on with the rest, until
    `MAX_CHILD_FAILURES` loads in a row have crashed or hung. `server`: a
    fork server (preloading `TRUSTED_PRELOAD`) to fork each child from, in
    milliseconds, instead of starting a fresh interpreter (a fleet's workers).
    """
    path = os.path.abspath(path)
    results: list[dict[str, Any]] = []
    scratch = tempfile.mkdtemp(prefix="torch-roundtrip-check-")
    spent, failures, stopped = 0.0, 0, ""
    child: Optional[Child] = None
    try:
        while len(results) < len(attempts) and not stopped:
            child = Child("harness.check.child", cwd=scratch, own_session=True, server=server)
            try:
                hello = child.read(STARTUP_TIMEOUT)
            except (ChildDied, ChildTimeout, ChildGarbled):
                hello = {}
            if "hello" not in hello:
                stopped = f"the child process could not start: {child.stop()}"
                break
            pending = attempts[len(results):]
            child.send({"path": path, "attempts": [[loader, opt.to_dict()] for loader, opt in pending]}, last=True)
            for _ in pending:
                started = time.monotonic()
                outcome: Optional[dict[str, Any]] = None
                try:
                    message = child.read(max(timeout - spent, 0.0))
                    if isinstance(message.get("result"), dict):
                        outcome = message["result"]
                    else:
                        detail = f"the child process sent an answer out of turn ({str(message)[:200]!r}) and {child.stop()}"
                except ChildGarbled as e:  # the loaded code wrote to the protocol stream
                    detail = f"the child process sent a garbled answer ({e.text!r}) and {child.stop()}"
                except ChildDied as e:
                    detail = f"the child process died: {e.detail}"
                except ChildTimeout:
                    detail = ""
                seconds = time.monotonic() - started
                spent += seconds
                if outcome is not None:
                    results.append(outcome)
                    failures = 0
                    continue
                failures += 1
                if not detail:
                    child.stop()
                    results.append({"status": "timeout", "detail": f"no answer within --timeout {timeout:g}s (the child process was killed)", "seconds": seconds})
                    stopped = f"--timeout {timeout:g}s for this file's trusted loads ran out"
                else:
                    results.append({"status": "crash", "detail": detail, "seconds": seconds})
                if failures >= MAX_CHILD_FAILURES and not stopped:
                    stopped = f"the {MAX_CHILD_FAILURES} trusted loads before it crashed or hung"
                break
            else:
                child.stop()
        results.extend(
            {"status": "not_tried", "detail": f"not tried: {stopped}", "seconds": 0.0}
            for _ in attempts[len(results):]
        )
        return results
    finally:
        if child is not None:  # also on Ctrl-C: the child is in its own session and would live on
            child.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
