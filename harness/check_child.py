"""Trying one load of a file, and the child process that tries the trusted ones.

`try_load` opens a file one way (a loader plus `LoadOptions`) and says how
it went, as plain data; it never raises for what the file does. ``check``
calls it in its own process only for loads that cannot run code from the
file (``torch.load(weights_only=True)``, safetensors). Every other load, a
full unpickle, TorchScript, ``torch.export.load``, runs through
`run_in_child`: a fresh ``python -m harness.check_child`` in its own
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

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any, Optional

from harness.errors import Unsupported
from harness.options import LoadOptions, map_location_value, torch_load_kwargs

__all__ = ["LOADERS", "describe_loaded", "main", "run_in_child", "try_load"]

#: The loaders ``check`` knows, by the name reports use.
LOADERS = ("torch.load", "torch.jit.load", "torch.export.load", "safetensors.torch.load_file")
#: Seconds a child may take to import torch and say hello.
STARTUP_TIMEOUT = 300.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Logs(logging.Handler):
    """torch's logged warnings: torch.export.load logs the cause and raises a generic error."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"log {record.name}: {record.getMessage()}"[:600])


@contextlib.contextmanager
def _captured() -> Iterator[tuple]:
    """Warnings and torch log records raised inside the block, kept rather than printed."""
    handler = _Logs()
    loggers = [logging.getLogger("torch")] + [
        logger for name, logger in list(logging.root.manager.loggerDict.items())
        if name.startswith("torch.") and isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught, handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _warning_texts(caught: list, logs: _Logs) -> list:
    texts: list = []
    for w in caught:
        text = _ANSI.sub("", f"{w.category.__name__}: {str(w.message).strip()}")[:600]
        if text not in texts:
            texts.append(text)
    return texts + logs.texts


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


def _weights_only_kwargs(options: LoadOptions) -> dict:
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


def try_load(path: str, loader: str, options: LoadOptions, *, weights_only: bool = False) -> dict:
    """Open `path` one way; ``{"status": loaded|failed|skip, ...}``, never raising for the file.

    `weights_only` forces ``torch.load(weights_only=True)`` whatever
    `options` says: ``check`` sets it for every torch.load in its own process.
    """
    start = time.perf_counter()
    texts: list = []
    try:
        with _captured() as (caught, logs):
            try:
                obj = _open(path, loader, options, weights_only)
                detail = describe_loaded(obj)
                del obj
            finally:
                texts = _warning_texts(caught, logs)
        return {"status": "loaded", "detail": detail, "warnings": texts, "seconds": time.perf_counter() - start}
    except Unsupported as e:
        return {"status": "skip", "detail": str(e), "warnings": texts, "seconds": time.perf_counter() - start}
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # the load raised (SystemExit too, from a payload): that is the result
        return {
            "status": "failed", "error_type": type(e).__name__, "message": _ANSI.sub("", str(e))[:4000],
            "warnings": texts, "seconds": time.perf_counter() - start,
        }


# -- the child ---------------------------------------------------------------


def _protocol_stream() -> Any:
    # The protocol keeps the real stdout; fd 1 goes to stderr so that what
    # the loaded code or torch's C++ prints cannot corrupt a result line.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")


def main() -> int:
    """``python -m harness.check_child``: answer one request, then exit."""
    out = _protocol_stream()
    try:
        import resource

        # A load that aborts must not leave a core file behind.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # no resource module (Windows) or a hard limit: keep going
        pass
    import torch  # noqa: F401  (imported before hello, so the deadline covers loads only)

    out.write(json.dumps({"hello": os.getpid()}) + "\n")
    request = json.loads(sys.stdin.readline())
    for loader, options in request["attempts"]:
        result = try_load(request["path"], loader, LoadOptions.from_dict(options))
        out.write(json.dumps({"result": result}) + "\n")
    return 0


# -- the parent side ---------------------------------------------------------


def _ended(code: Optional[int]) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Child:
    """One running check_child, in its own process group and scratch directory."""

    def __init__(self, scratch: str) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [_package_root(), env.get("PYTHONPATH", "")] if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.check_child"], cwd=scratch, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            start_new_session=True,  # so a kill reaches whatever the loaded code spawned
        )
        self.buffer = b""
        self.ended: Optional[str] = None  # how it ended, once stopped
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def read(self, deadline: float) -> Optional[dict]:
        """The next message; None if the child ended or the deadline passed first."""
        assert self.proc.stdout is not None
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            return {"garbled": line[:200].decode("utf-8", "replace")}
        return message if isinstance(message, dict) else {"garbled": repr(message)[:200]}

    def send(self, request: dict) -> bool:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.close()
            return True
        except OSError:
            return False

    def stop(self, ended: bool = False) -> str:
        """Kill the child and its process group; how it ended, with its last stderr lines.

        `ended`: its output stream closed, so it is dying on its own; give it
        a moment to be reaped so the report names its signal or status.
        """
        if self.ended is not None:
            return self.ended
        if ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        alive = self.proc.poll() is None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            code = None
        self.sel.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream:
                    stream.close()
        self.stderr.seek(0)
        tail = [line for line in self.stderr.read()[-4000:].decode("utf-8", "replace").splitlines() if line.strip()][-3:]
        self.stderr.close()
        how = "was stopped" if alive else _ended(code)
        self.ended = how + (f"; its stderr ended with: {' | '.join(tail)}"[:600] if tail else "")
        return self.ended


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: After this many trusted loads of one file in a row crash or hang, the
#: rest are not tried: each costs a new child, and the file has made its point.
MAX_CHILD_FAILURES = 3


def run_in_child(path: str, attempts: list, timeout: float) -> list:
    """Each ``(loader, LoadOptions)`` of `attempts`, tried in a child process, as `try_load` results.

    `timeout` is the seconds the loads of this file may take together
    (starting a child does not count); when it runs out, the load in flight
    is a ``timeout`` and the rest are not tried. A child that dies makes its
    load in flight a ``crash`` and a new child goes on with the rest, until
    `MAX_CHILD_FAILURES` loads in a row have crashed or hung.
    """
    path = os.path.abspath(path)
    results: list = []
    scratch = tempfile.mkdtemp(prefix="torch-roundtrip-check-")
    spent, failures, stopped = 0.0, 0, ""
    child: Optional[_Child] = None
    try:
        while len(results) < len(attempts) and not stopped:
            child = _Child(scratch)
            hello = child.read(time.monotonic() + STARTUP_TIMEOUT)
            if not hello or "hello" not in hello:
                stopped = f"the child process could not start: it {child.stop(ended=hello is None)}"
                break
            pending = attempts[len(results):]
            child.send({"path": path, "attempts": [[loader, opt.to_dict()] for loader, opt in pending]})
            for _ in pending:
                started = time.monotonic()
                message = child.read(started + max(timeout - spent, 0.0))
                seconds = time.monotonic() - started
                spent += seconds
                if message is not None and isinstance(message.get("result"), dict):
                    results.append(message["result"])
                    failures = 0
                    continue
                failures += 1
                if message is not None:  # the loaded code wrote to the protocol stream
                    why = child.stop()
                    results.append({"status": "crash", "detail": f"the child process sent a garbled answer ({message.get('garbled', '')!r}) and {why}", "seconds": seconds})
                elif spent >= timeout:
                    child.stop()
                    results.append({"status": "timeout", "detail": f"no answer within --timeout {timeout:g}s (the child process was killed)", "seconds": seconds})
                    stopped = f"--timeout {timeout:g}s for this file's trusted loads ran out"
                else:
                    results.append({"status": "crash", "detail": f"the child process {child.stop(ended=True)}", "seconds": seconds})
                if failures >= MAX_CHILD_FAILURES:
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
