"""A fork server: child processes forked from a parent that has imported torch but run nothing.

Starting a Python child that imports torch costs seconds; a load worker
that a crashing file kills must be replaced many times in one phase. So a
`ForkServer` starts one helper process (``python -m harness.runtime.forkserver``)
that imports the modules it is told to preload (torch, and what a worker
imports) and nothing else: it runs no torch op and makes no tensor, so no
thread pool, allocator state or CUDA context exists yet, and forking it is
as safe as starting afresh. Each `spawn` then forks a child of the server
that runs ``python -m MODULE ARGS`` (through `runpy`) with the caller's
pipes as its stdin, stdout and stderr: a new worker in milliseconds.

The control channel is a Unix socket pair: the client sends one JSON line
per request, a spawn with the three file descriptors attached
(``SCM_RIGHTS``, through ``sendmsg``/``recvmsg``: ``socket.send_fds`` is
Python 3.9 and later); the server answers one JSON line per spawn and
reports each child's end (``{"exit": pid, "status": code}``, `code` as
`subprocess.Popen.returncode` gives it: negative for a signal), since the
children are the server's, not the client's. When the client goes away
(its end of the socket closes), the server kills every child it forked and
exits; when the server dies, the client's next call raises `ForkServerGone`.

Where the platform has no ``fork`` or no descriptor passing (Windows),
`fork_supported` says so and callers start children the ordinary way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Sequence

from harness.runtime.defaults import STARTUP_TIMEOUT
from harness.runtime.errors import InputError

__all__ = ["HUGE_HEAP_TUNABLE", "REPLY_TIMEOUT", "ForkServer", "ForkServerGone", "fork_supported", "forked_from", "huge_heap", "main"]

#: Seconds the server may take to answer a spawn (a fork takes milliseconds).
REPLY_TIMEOUT = 30.0
#: A spawn carries exactly these descriptors: the child's stdin, stdout and stderr.
_FDS = 3
_INT_SIZE = array("i").itemsize

# Set in a child forked by a server: what the server had preloaded (`forked_from`).
_FORKED: Optional[dict[str, Any]] = None
# The server's own standard streams, kept alive in a child: dropping the last
# reference would close fds 0-2, which by then are the child's pipes.
_KEPT_STREAMS: list[Any] = []


def fork_supported() -> bool:
    """Whether this platform can run a fork server: ``os.fork`` and Unix sockets that pass descriptors."""
    return (hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "SCM_RIGHTS")
            and hasattr(socket.socket, "sendmsg") and hasattr(socket.socket, "recvmsg")
            and hasattr(socket, "CMSG_SPACE"))


def forked_from() -> Optional[dict[str, Any]]:
    """In a child a fork server made: ``{"server": pid, "preloaded": [...], "at": time.monotonic() at the fork}``; else None."""
    return dict(_FORKED) if _FORKED is not None else None


class ForkServerGone(Exception):
    """The fork server died or its socket closed; `detail` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _package_root() -> str:
    """The folder that holds the `harness` package."""
    return str(Path(__file__).resolve().parent.parent.parent)


#: The glibc tunable (2.35 and later) that has malloc ask for transparent huge pages for its heap.
HUGE_HEAP_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_heap(env: dict[str, str]) -> None:
    """Ask the server's malloc to back its heap with huge pages (`HUGE_HEAP_TUNABLE`), unless `env` already chose.

    Each fork copies the page table entries of the server's private memory
    and each child's end unmaps them: for a server that imported torch,
    ~100,000 entries, milliseconds both ways, on every worker a crash
    replaces. A heap in 2 MiB pages is a few hundred entries (measured: a
    fork 5 ms to 3 ms, a child's end 7 ms to 4 ms); its size (RSS) does not
    change, and a child's first write to a page still copies only that 4 KiB
    page. The setting is read once, by the server's C library at its start,
    and is what its children inherit; their environment (``os.environ``)
    is the one each spawn gives. A C library that does not know the tunable
    (musl, glibc before 2.35), or a system whose huge pages are off, ignores
    it.
    """
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" not in tunables:
        env["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_HEAP_TUNABLE}" if tunables else HUGE_HEAP_TUNABLE


def _returncode(status: int) -> int:
    """A wait status as `subprocess.Popen.returncode` gives it (``os.waitstatus_to_exitcode`` is 3.9+)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -1  # pragma: no cover - stopped children are not reported by waitpid without WUNTRACED


# -- the client ----------------------------------------------------------------


class ForkServer:
    """A running fork server and the client's end of its socket.

    `preload`: the modules the server imports before it says ready (import
    only; a module that fails to import is listed in `missing`, and the
    children then import it themselves, as a fresh process would); an
    entry ``MODULE:FUNCTION`` also calls that function, which must be as
    safe to fork after as an import (pure Python: no torch op, no thread).
    `python`: the interpreter it runs under (default: this one), which
    then imports this checkout's harness. `env` and `cwd`: the server's own
    environment and folder (what torch sees at import); each child gets its
    own in `spawn`. InputError (one line) if it is not ready within
    ``STARTUP_TIMEOUT``.
    """

    def __init__(self, preload: Sequence[str] = ("torch",), *, python: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None) -> None:
        if not fork_supported():
            msg = f"this platform ({sys.platform}) cannot fork a server's children: start them with subprocess"
            raise InputError(msg)
        self.python = python or sys.executable
        self.preload = tuple(preload)
        self._lock = threading.RLock()
        self._buffer = b""
        self._exits: dict[int, int] = {}
        self._live: dict[int, bool] = {}  # pid -> own_session, until its exit is reported
        self._replies: dict[int, dict[str, Any]] = {}  # ticket (0: the ready message) -> answer
        self._sessions: dict[int, bool] = {}  # ticket -> own_session, until its pid is known
        self._tickets = 0
        self._closed = False
        self._gone: Optional[str] = None
        #: children forked so far
        self.spawned = 0
        full_env = dict(os.environ if env is None else env)
        if cwd is not None or python is not None:
            full_env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), full_env.get("PYTHONPATH", "")) if p)
        huge_heap(full_env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = ours
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "harness.runtime.forkserver", str(theirs.fileno()), json.dumps(list(self.preload))],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                env=full_env, cwd=cwd,
            )
        except OSError as e:
            ours.close()
            self._stderr.close()
            msg = f"the fork server could not start with {self.python}: {e}"
            raise InputError(msg) from None
        finally:
            theirs.close()
        #: the server's process id: every child's parent
        self.pid = self.proc.pid
        try:
            ready = self._reply(STARTUP_TIMEOUT, 0)
        except ForkServerGone as e:
            self.close()
            msg = f"the fork server could not start with {self.python}: {e.detail}"
            raise InputError(msg) from None
        info = ready["ready"]
        #: the modules the server imported, and those it could not (name -> why)
        self.preloaded: list[str] = list(info.get("preloaded", []))
        self.missing: dict[str, str] = dict(info.get("missing", {}))
        #: seconds until the server was ready (its imports)
        self.startup_seconds = time.perf_counter() - started

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def spawn(self, module: str, args: Sequence[str], *, stdin: int, stdout: int, stderr: int,
              cwd: Optional[str] = None, env: Optional[Mapping[str, str]] = None, own_session: bool = False) -> int:
        """Fork a child that runs ``python -m MODULE ARGS`` with these descriptors as 0, 1 and 2; its pid.

        `env` replaces the child's environment (default: this process's);
        `cwd` is its folder; `own_session` makes it the leader of a new
        session and process group, so ``os.killpg(pid, ...)`` reaches what it
        starts. The caller keeps (and should close) its copies of the
        descriptors. ForkServerGone if the server is not there; InputError
        if it could not fork.
        """
        return self.pid_of(self.submit(module, args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                                       own_session=own_session))

    def submit(self, module: str, args: Sequence[str], *, stdin: int, stdout: int, stderr: int,
               cwd: Optional[str] = None, env: Optional[Mapping[str, str]] = None, own_session: bool = False) -> int:
        """`spawn` without waiting for the fork: a ticket for `pid_of`.

        The server forks while the caller goes on (a fork of a process that
        has torch imported takes milliseconds); the descriptors are the
        server's once this returns, so the caller may close its copies.
        """
        with self._lock:
            self._check_open()
            self._tickets += 1
            ticket = self._tickets
            request = {"spawn": {"module": module, "args": list(args), "cwd": cwd, "own_session": bool(own_session),
                                 "env": dict(os.environ if env is None else env)}, "id": ticket}
            data = (json.dumps(request) + "\n").encode()
            try:
                sent = self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", [stdin, stdout, stderr]))])
                if sent < len(data):
                    self._sock.sendall(data[sent:])
            except OSError as e:
                raise self._lost(f"its socket failed ({e})") from None
            self._sessions[ticket] = bool(own_session)
            return ticket

    def pid_of(self, ticket: int, timeout: float = REPLY_TIMEOUT) -> int:
        """The pid of the child `submit` asked for; ForkServerGone, or InputError if the server could not fork it."""
        with self._lock:
            reply = self._reply(timeout, ticket)
            own_session = self._sessions.pop(ticket, False)
            if "failed" in reply:
                msg = f"the fork server could not fork a child: {reply['failed']}"
                raise InputError(msg)
            pid = int(reply["spawned"])
            if pid not in self._exits:
                self._live[pid] = own_session
            self.spawned += 1
            return pid

    def returncode(self, pid: int) -> Optional[int]:
        """How child `pid` ended (as `subprocess.Popen.returncode`), or None while it runs."""
        with self._lock:
            if pid not in self._exits:
                self._pump(0.0)
            return self._exits.get(pid)

    def wait(self, pid: int, timeout: float) -> Optional[int]:
        """Wait up to `timeout` seconds for child `pid` to end; its return code, or None if it still runs."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._pump(left)
            return self._exits[pid]

    def kill(self, pid: int, *, group: bool = False) -> None:
        """SIGKILL child `pid` (its process group too with `group`), unless it has already ended.

        The server does the killing: it knows whether `pid` is still its
        unreaped child, so a pid the system has given to another process
        since is never hit.
        """
        with self._lock:
            if pid in self._exits or self._closed:
                return
            self._send({"kill": pid, "group": bool(group)})

    def alive(self) -> bool:
        """Whether the server still runs and answers (its socket open)."""
        with self._lock:
            if self._closed or self._gone is not None:
                return False
            with contextlib.suppress(ForkServerGone):
                self._pump(0.0)
                return self.proc.poll() is None
            return False

    def close(self) -> None:
        """Stop the server and every child it forked (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._sock.close()  # the server sees the end of its socket: it kills its children and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a server that does not answer its end
                self.proc.kill()
                self.proc.wait()
            if self.proc.returncode != 0:
                # A server that died before it could kill its children left
                # them to init: not ours to wait for, but they must not
                # outlive us. (A server that exited cleanly killed and reaped
                # them itself, and their pids may be another's by now.)
                for pid, group in self._live.items():
                    _kill(pid, group)
            self._stderr.close()

    def stderr_tail(self, lines: int = 5) -> list[str]:
        """The last non-blank lines the server itself wrote (an import that failed, say)."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.flush()
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - 8000))
            text = self._stderr.read().decode("utf-8", "replace")
            return [line for line in text.splitlines() if line.strip()][-lines:]
        return []

    # -- plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise ForkServerGone("it was closed")
        if self._gone is not None:
            raise ForkServerGone(self._gone)

    def _lost(self, how: str) -> ForkServerGone:
        """The server is gone: remember how (with its exit and last words) and say so."""
        if self._gone is None:
            code = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout=2)
            tail = self.stderr_tail()
            # Imported here: child.py imports this module for `Child(server=...)`.
            from harness.runtime.child import describe_exit

            self._gone = f"the fork server (pid {self.pid}) {describe_exit(code)}; {how}" + (
                f"; stderr: {' | '.join(tail)}"[:600] if tail else "")
        return ForkServerGone(self._gone)

    def _send(self, message: dict[str, Any]) -> None:
        self._check_open()
        try:
            self._sock.sendall((json.dumps(message) + "\n").encode())
        except OSError as e:
            raise self._lost(f"its socket failed ({e})") from None

    def _pump(self, timeout: float) -> None:
        """Read what the server has sent within `timeout` seconds (0: only what is there) and file it.

        A server that died may still have answers in the socket (a fork it
        reported just before): they are read before its end is.
        """
        if self._closed:
            raise ForkServerGone("it was closed")
        ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = self._sock.recv(1 << 16)
        except OSError as e:
            raise self._lost(f"its socket failed ({e})") from None
        if not chunk:
            raise self._lost("its socket closed")
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            message = json.loads(line)
            if "exit" in message:
                pid = int(message["exit"])
                self._exits[pid] = int(message["status"])
                self._live.pop(pid, None)
            else:
                self._replies[int(message.get("id", 0))] = message

    def _reply(self, timeout: float, ticket: int) -> dict[str, Any]:
        """The answer to `ticket` (0: the ready message), within `timeout` seconds; ForkServerGone otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if ticket in self._replies:
                return self._replies.pop(ticket)
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._lost(f"it did not answer within {timeout:g}s")
            if self.proc.poll() is not None and not select.select([self._sock], [], [], 0)[0]:
                raise self._lost("it exited")
            self._pump(min(left, 0.5))


# -- the server ----------------------------------------------------------------

# The handlers a fresh interpreter has, restored in each child (the server changes SIGINT and SIGCHLD).
_FRESH_HANDLERS: dict[int, Any] = {}


def _preload(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Import each module of `names` (``MODULE:FUNCTION``: and call it); those done, and those that failed with why."""
    import gc
    import importlib

    done: list[str] = []
    missing: dict[str, str] = {}
    for name in names:
        module, _, function = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
        except Exception as e:  # an env without the module (torch._dynamo before 2.0): its children import what they can
            missing[name] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        else:
            done.append(name)
    # What the imports made is never collected in a child: a collection there
    # would write to every object's header and copy the server's pages.
    if hasattr(gc, "freeze"):
        gc.freeze()
    return done, missing


def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    """Bytes from the client and the descriptors that came with them."""
    fds = array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(_FDS * 4 * _INT_SIZE))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT_SIZE
            fds.frombytes(payload[:usable])
    return data, list(fds)


def _stream(fd: int, mode: str, *, line_buffering: bool = False) -> Any:
    """A text stream on `fd` for the child's sys.stdin/stdout/stderr, as a fresh interpreter makes them."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    errors = "backslashreplace" if fd == 2 else (getattr(sys.__stdout__, "errors", None) or "strict")
    raw = open(fd, mode + "b", closefd=False)  # noqa: SIM115  (the child's own fd; it lives as long as the child)
    return io.TextIOWrapper(raw, encoding=encoding, errors=errors, line_buffering=line_buffering,
                            write_through=fd == 2)


def _run_child(request: dict[str, Any], fds: list[int], others: list[int], sock: socket.socket,
               wakeup: tuple[int, int], preloaded: list[str]) -> None:
    """In the forked child: become ``python -m MODULE ARGS`` with `fds` as 0, 1 and 2; never returns.

    `others`: descriptors that came for later requests; a child holding
    another's pipe ends would keep that one's end of file from its parent.
    """
    global _FORKED
    forked_at = time.monotonic()
    code = 1
    try:
        sock.close()
        signal.set_wakeup_fd(-1)
        for fd in [*wakeup, *others]:
            os.close(fd)
        for signum, handler in _FRESH_HANDLERS.items():
            signal.signal(signum, handler)
        if request.get("own_session"):
            os.setsid()
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request.get("env") or {})
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        _KEPT_STREAMS.extend([sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__])
        # The __std*__ originals too, as in a fresh interpreter (code that restores them must get these).
        for name, stream in (("stdin", _stream(0, "r")), ("stdout", _stream(1, "w")),
                             ("stderr", _stream(2, "w", line_buffering=True))):
            setattr(sys, name, stream)
            setattr(sys, f"__{name}__", stream)
        _FORKED = {"server": os.getppid(), "preloaded": list(preloaded), "at": forked_at}
        module = request["module"]
        sys.argv = [module, *request.get("args", [])]
        # runpy runs the module's code afresh as __main__ in any case; a copy
        # preloaded under its own name would only make it warn (as
        # ``python -m`` does for a module imported before it runs).
        sys.modules.pop(module, None)
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:  # sys.exit("message"): printed, status 1, as the interpreter does
            with contextlib.suppress(Exception):
                print(e.code, file=sys.stderr)
            code = 1
    except BaseException as e:  # noqa: BLE001  (the child's main failed: its traceback, as the interpreter does)
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
        code = 1
        if isinstance(e, KeyboardInterrupt):  # the interpreter ends by SIGINT then, so its parent sees the signal
            with contextlib.suppress(Exception):
                sys.stderr.flush()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        # Never back into the server's loop: this process is the child.
        os._exit(code & 0xFF)


def _kill(pid: int, group: bool) -> None:
    with contextlib.suppress(OSError):
        if group:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def _serve(fd: int, preload: Sequence[str]) -> int:
    """The server's loop: preload, say ready, fork children on request, report their ends; exit when the client goes."""
    started = time.perf_counter()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
    for signum in (signal.SIGINT, signal.SIGCHLD):
        _FRESH_HANDLERS[signum] = signal.getsignal(signum)
    # Ctrl-C reaches the whole process group: the client decides what stops,
    # and it stops the server by closing its socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A child's end wakes the loop at once (a byte on the wakeup pipe), so its
    # status reaches the client without polling.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    preloaded, missing = _preload(preload)
    children: dict[int, bool] = {}  # pid -> own_session

    def send(message: dict[str, Any]) -> None:
        sock.sendall((json.dumps(message) + "\n").encode())

    def reap() -> None:
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                done, status = pid, 0
            if done:
                del children[pid]
                send({"exit": pid, "status": _returncode(status)})

    buffer = b""
    fds: list[int] = []
    try:
        send({"ready": {"pid": os.getpid(), "preloaded": preloaded, "missing": missing,
                        "seconds": time.perf_counter() - started}})
        while True:
            readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            reap()
            if sock.fileno() not in readable:
                continue
            data, got = _recv(sock)
            fds.extend(got)
            if not data:
                return 0  # the client went away
            buffer += data
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                request = json.loads(line)
                if "kill" in request:
                    if int(request["kill"]) in children:  # not yet reaped: the pid is still this child's
                        _kill(int(request["kill"]), bool(request.get("group")))
                    continue
                spawn, ticket = request["spawn"], request.get("id", 0)
                mine, fds = fds[:_FDS], fds[_FDS:]
                if len(mine) != _FDS:
                    for held in mine:
                        os.close(held)
                    send({"failed": f"{len(mine)} descriptors came with the request, not {_FDS}", "id": ticket})
                    continue
                try:
                    pid = os.fork()
                except OSError as e:
                    send({"failed": f"fork failed: {e}", "id": ticket})
                    pid = -1
                if pid == 0:
                    _run_child(spawn, mine, fds, sock, (wake_r, wake_w), preloaded)
                for held in mine:
                    os.close(held)
                if pid > 0:
                    children[pid] = bool(spawn.get("own_session"))
                    send({"spawned": pid, "id": ticket})
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the client went away mid-answer
    finally:
        for pid, group in children.items():
            _kill(pid, group)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m harness.runtime.forkserver FD PRELOAD_JSON``: serve the client on socket FD."""
    args = list(sys.argv[1:] if argv is None else argv)
    return _serve(int(args[0]), json.loads(args[1]) if len(args) > 1 else [])


if __name__ == "__main__":
    # Run through the module's own name, not as __main__: the state its
    # children read (`forked_from`) then lives where they import it from.
    from harness.runtime.forkserver import main as _main

    sys.exit(_main())
