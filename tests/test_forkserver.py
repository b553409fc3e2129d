"""The fork server: children forked from a warm parent, as `Child` and the load worker use them.

Most tests share one server that preloads only the standard library (it
starts in a fraction of a second); the load worker's tests share one
`Worker`, whose server imports torch once for the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.runtime.child import Child, ChildDied, ChildTimeout
from harness.runtime.errors import InputError
from harness.runtime.forkserver import ForkServer, ForkServerGone, fork_supported

pytestmark = pytest.mark.skipif(not fork_supported(), reason="this platform cannot fork a server's children")

HELPER = '''
import json, os, subprocess, sys, time

mode = sys.argv[1]
if mode == "echo":
    for line in sys.stdin:
        sys.stdout.write(json.dumps({"echo": json.loads(line), "cwd": os.getcwd(), "mark": os.environ.get("FS_MARK"),
                                     "argv": sys.argv[1:], "name": __name__, "ppid": os.getppid(),
                                     "json_preloaded": "json" in sys.modules,
                                     "tunables": os.environ.get("GLIBC_TUNABLES")}) + "\\n")
        sys.stdout.flush()
elif mode == "abort":
    sys.stderr.write("about to abort: planted by the test\\n")
    os.abort()
elif mode == "fatal":  # as the load worker does: faulthandler announces a fatal signal on the protocol stream
    from harness.runtime.child import notice_fatal_signals, protocol_stream

    proto = protocol_stream()
    if sys.argv[2] != "unannounced":
        notice_fatal_signals(proto)
    sys.stderr.write("terminate called after throwing an instance of 'c10::Error'\\n  what():  planted by the test\\n")
    sys.stderr.writelines(f"frame #{i}: <unknown function>\\n" for i in range(5))
    sys.stderr.flush()
    if sys.argv[3] == "abort":
        os.abort()
    import ctypes

    ctypes.string_at(0)  # a real segmentation fault
elif mode == "says":  # a line on the protocol stream as a dying child's faulthandler writes it, then silence
    sys.stderr.write("last words\\n")  # before the notice, as a real fatal signal's last words are
    sys.stderr.flush()
    print(sys.argv[2], flush=True)
    if len(sys.argv) > 3:
        sys.exit(int(sys.argv[3]))
    time.sleep(1000)
elif mode == "exit":
    sys.exit(int(sys.argv[2]))
elif mode == "raise":
    raise ValueError("boom from the helper")
elif mode == "sleep":
    print(json.dumps({"hello": os.getpid()}), flush=True)
    time.sleep(1000)
elif mode == "grandchild":
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    print(json.dumps({"grandchild": sleeper.pid}), flush=True)
    time.sleep(1000)
'''


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fs-helpers")
    (folder / "fs_helper.py").write_text(textwrap.dedent(HELPER))
    return folder


def _env(helpers, **extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(helpers), os.environ.get("PYTHONPATH", "")) if p))
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def server(helpers):
    with ForkServer(("json", "fs_no_such_module"), env=_env(helpers)) as s:
        yield s


def _gone(pid: int) -> bool:
    """The process no longer runs (a zombie no one reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # not Linux: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pids, seconds: float = 20.0) -> list:
    """The pids still running after up to `seconds` (killing is asynchronous; nothing here is timed)."""
    deadline = time.monotonic() + seconds
    left = [p for p in pids if not _gone(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if not _gone(p)]
    return left


def test_a_forked_child_runs_the_module_with_its_own_env_cwd_and_pipes(server, helpers, tmp_path):
    assert server.preloaded == ["json"] and "fs_no_such_module" in server.missing  # a missing module is listed, not fatal
    child = Child("fs_helper", ["echo", "x y"], server=server, cwd=str(tmp_path), env={"FS_MARK": "m1", "PATH": os.environ["PATH"]})
    child.send({"n": 1})
    got = child.read(30)
    assert got["echo"] == {"n": 1} and got["argv"] == ["echo", "x y"] and got["name"] == "__main__"
    assert got["cwd"] == str(tmp_path) and got["mark"] == "m1"
    assert got["ppid"] == server.pid and got["json_preloaded"]
    child.send({"n": 2}, last=True)
    assert child.read(30)["echo"] == {"n": 2}
    with pytest.raises(ChildDied, match="exited with status 0"):
        child.read(30)


def test_a_child_that_aborts_is_child_died_with_its_signal_and_last_words(server):
    child = Child("fs_helper", ["abort"], server=server)
    with pytest.raises(ChildDied) as info:
        child.read(30)
    assert "killed by SIGABRT" in info.value.detail and "about to abort: planted by the test" in info.value.detail


@pytest.mark.parametrize(("how", "signame"), [("abort", "SIGABRT"), ("segv", "SIGSEGV")])
def test_a_fatal_signal_is_told_at_once_with_the_same_detail_as_the_exit(server, helpers, how, signame):
    # Without the notice the parent learns of the death when the pipe closes and asks the server how it ended.
    late = Child("fs_helper", ["fatal", "unannounced", how], server=server)
    with pytest.raises(ChildDied) as waited:
        late.read(30)
    assert late.proc.returncode == -getattr(signal, signame)
    assert waited.value.detail == (f"killed by {signame}; stderr: terminate called after throwing an instance of "
                                   "'c10::Error' |   what():  planted by the test")
    # With it, faulthandler's line is the death: the same detail, told before the end was reaped
    # (nothing waited for the child, so its return code was never asked for).
    early = Child("fs_helper", ["fatal", "announced", how], server=server)
    with pytest.raises(ChildDied) as told:
        early.read(30)
    assert told.value.detail == waited.value.detail
    assert early.proc.returncode is None and early.stop() == told.value.detail
    assert server.wait(early.proc.pid, 20) in (-getattr(signal, signame), -signal.SIGKILL)  # its server reaps it
    # A child of our own (no server), which only we can reap, is waited for: the same detail again.
    own = Child("fs_helper", ["fatal", "announced", how], env=_env(helpers))
    with pytest.raises(ChildDied) as popen:
        own.read(30)
    assert popen.value.detail == waited.value.detail and own.proc.returncode == -getattr(signal, signame)


def test_the_parent_acts_on_the_notice_line_alone(server):
    # A child that announces SIGABRT but lingers is taken for dead and killed: the notice does not wait for the end.
    lingering = Child("fs_helper", ["says", "Fatal Python error: Aborted"], server=server)
    with pytest.raises(ChildDied, match=r"^killed by SIGABRT; stderr: last words$"):
        lingering.read(30)
    assert server.wait(lingering.proc.pid, 20) == -signal.SIGKILL
    # A notice that names no known signal is not trusted: the parent waits for the real end.
    other = Child("fs_helper", ["says", "Fatal Python error: something else", "5"], server=server)
    with pytest.raises(ChildDied, match=r"^exited with status 5; stderr: last words$"):
        other.read(30)


def test_the_server_asks_for_a_huge_page_heap_and_its_children_do_not_see_it(server, helpers):
    from harness.runtime.forkserver import HUGE_HEAP_TUNABLE, huge_heap

    env = {}
    huge_heap(env)
    assert env == {"GLIBC_TUNABLES": HUGE_HEAP_TUNABLE}
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    huge_heap(env)
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE_HEAP_TUNABLE}"
    env = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}  # the caller's choice stands
    huge_heap(env)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    environ = Path(f"/proc/{server.pid}/environ")
    if environ.exists():
        assert f"GLIBC_TUNABLES={HUGE_HEAP_TUNABLE}".encode() in environ.read_bytes().split(b"\0")
    child = Child("fs_helper", ["echo"], server=server, env=_env(helpers))
    child.send({"n": 1}, last=True)
    assert child.read(30)["tunables"] is None  # each child's environment is the one its spawn gave
    child.stop()


@pytest.mark.parametrize(("args", "said"), [(["exit", "3"], "exited with status 3"),
                                            (["raise"], "exited with status 1; stderr: .*ValueError: boom from the helper")])
def test_a_childs_exit_status_and_traceback_reach_the_parent(server, args, said):
    child = Child("fs_helper", args, server=server)
    with pytest.raises(ChildDied, match=said):
        child.read(30)


def test_a_silent_child_times_out_and_stop_kills_it(server):
    child = Child("fs_helper", ["sleep"], server=server)
    pid = child.read(30)["hello"]
    with pytest.raises(ChildTimeout):
        child.read(0.2)
    assert child.stop() == "was stopped"
    assert server.wait(pid, 20) == -signal.SIGKILL
    assert _gone(pid)


def test_a_forked_child_has_a_fresh_interpreters_signal_handlers(server):
    # The server ignores Ctrl-C (its client decides when it stops); its children must not.
    child = Child("fs_helper", ["sleep"], server=server)
    pid = child.read(30)["hello"]
    os.kill(pid, signal.SIGINT)
    with pytest.raises(ChildDied, match="killed by SIGINT; stderr: .*KeyboardInterrupt"):
        child.read(30)


def test_a_spawn_without_its_three_descriptors_is_refused(server):
    server._send({"spawn": {"module": "fs_helper", "args": ["echo"], "env": {}}, "id": 10**6})
    with pytest.raises(InputError, match="0 descriptors came with the request, not 3"):
        server.pid_of(10**6)


def test_stopping_an_own_session_child_reaches_what_it_started(server):
    child = Child("fs_helper", ["grandchild"], server=server, own_session=True)
    grandchild = child.read(30)["grandchild"]
    assert os.getpgid(grandchild) == child.proc.pid != os.getpgid(0)
    child.stop()
    assert _wait_gone([grandchild]) == []


def test_closing_the_client_kills_the_server_and_its_children(helpers):
    s = ForkServer(("json",), env=_env(helpers))
    children = [Child("fs_helper", ["sleep"], server=s) for _ in range(2)]
    pids = [c.read(30)["hello"] for c in children]
    s.close()
    s.close()  # idempotent
    assert _wait_gone([s.pid, *pids]) == []
    with pytest.raises(ForkServerGone):
        s.spawn("fs_helper", ["sleep"], stdin=0, stdout=1, stderr=2)


def test_a_client_killed_outright_leaves_no_orphans(helpers, tmp_path):
    # The client dies without a word (SIGKILL): the server sees its socket close and ends its children.
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys, time
        from harness.runtime.child import Child
        from harness.runtime.forkserver import ForkServer
        s = ForkServer(("json",))
        c = Child("fs_helper", ["sleep"], server=s)
        print(json.dumps({"server": s.pid, "child": c.read(30)["hello"]}), flush=True)
        time.sleep(1000)
    """))
    client = subprocess.Popen([sys.executable, str(script)], env=_env(helpers), stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(client.stdout.readline())
    finally:
        client.kill()
        client.wait()
        client.stdout.close()
    assert _wait_gone([pids["server"], pids["child"]]) == []


def test_a_dead_server_is_fork_server_gone_and_its_running_children_still_talk(helpers):
    s = ForkServer(("json",), env=_env(helpers))
    try:
        child = Child("fs_helper", ["echo"], server=s)
        child.send({"n": 1})
        assert child.read(30)["echo"] == {"n": 1}
        os.kill(s.pid, signal.SIGKILL)
        s.proc.wait()
        with pytest.raises(ForkServerGone, match="killed by SIGKILL"):
            Child("fs_helper", ["echo"], server=s).proc.pid  # noqa: B018
        assert not s.alive()
        child.send({"n": 2})  # an orphan now, but its pipes are ours
        assert child.read(30)["echo"] == {"n": 2}
        assert child.stop().startswith("was stopped")
    finally:
        s.close()


def test_a_server_that_cannot_start_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match="the fork server could not start"):
        ForkServer((), python=str(tmp_path / "no-such-python"))
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'this interpreter is broken' >&2\nexit 7\n")
    broken.chmod(0o755)
    with pytest.raises(InputError, match="exited with status 7.*this interpreter is broken"):
        ForkServer((), python=str(broken))


# -- the load worker, forked from a server that imported torch ------------------


OPTS = "apply=none;map_location=cpu;mmap=0;weights_only=true"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, curated_specs):
    pytest.importorskip("torch")
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner import save_phase

    root = tmp_path_factory.mktemp("fs-artifacts")
    save_phase(root, [curated_specs["simple_net"]], "cpu", [FORMATS["state_dict"]], progress=False)
    return next(root.glob("*/simple_net/state_dict"))


def _cells(directory: Path):
    from harness import build_id
    from harness.runtime.formats import FORMATS
    from harness.runtime.results import CellResult, Outcome

    manifest = json.loads((directory / "manifest.json").read_text())
    base = CellResult(source=manifest["source"]["label"], target="t", case="simple_net", format="state_dict", load={},
                      outcome=Outcome.SKIP, harness=build_id())
    return [base.with_(load=o.to_dict()) for o in FORMATS["state_dict"].variants(False)]


@pytest.mark.slow
def test_a_crashed_worker_is_forked_again_from_the_same_server_with_torch_imported(artifact, monkeypatch):
    from harness.runtime.runner.isolation import Worker
    from harness.runtime.runner.load import run_cells

    announced = []  # the worker announces its fatal signal: its death is told before its teardown
    fatal = Child._fatal
    monkeypatch.setattr(Child, "_fatal", lambda self, name: announced.append(name) or fatal(self, name))

    worker = Worker("cpu", env=dict(os.environ, TORCH_ROUNDTRIP_FAULT=f"crash@simple_net/state_dict/{OPTS}"))
    try:
        first = worker.start()["started"]
        if sys.platform.startswith("linux"):
            assert worker.forks  # on Linux the worker is forked: never a silent fallback to a new interpreter
        assert first["forked"] and first["torch_imported"] and first["parent"] == first["server"] == worker.server.pid
        if Path("/proc/self/task").exists():
            # Import only: the server started no thread that a bare `import torch` does not (no intra-op
            # pool to fork). Fewer is fine: OpenBLAS stops its idle threads at each fork.
            bare = subprocess.run([sys.executable, "-c", "import os, torch; print(len(os.listdir('/proc/self/task')))"],
                                  capture_output=True, text=True, check=True)
            assert len(os.listdir(f"/proc/{worker.server.pid}/task")) <= int(bare.stdout)
        cells = _cells(artifact)
        recorded = []
        run_cells(worker, artifact, cells, recorded.append, 60)
        assert [r.key for r in recorded] == [c.key for c in cells]  # every cell, once, in order
        crashes = [r for r in recorded if r.outcome.value == "crash"]
        assert len(crashes) == 1 and "killed by SIGABRT" in crashes[0].detail
        assert announced == ["Aborted"] and "what():  injected fault" in crashes[0].detail
        again = worker.hello["started"]
        # The successor came from the same server, torch already imported: no second import of torch.
        assert again["pid"] != first["pid"] and again["parent"] == worker.server.pid and again["torch_imported"]
        assert len(worker.restarts) == 1 and worker.spare is not None  # a spare is kept once a worker has died

        # The server dies (killed, out of memory): the next restart starts a new one.
        old_server = worker.server.pid
        os.kill(old_server, signal.SIGKILL)
        worker.server.proc.wait()
        hello = worker.restart()["started"]
        assert hello["forked"] and hello["server"] == worker.server.pid != old_server
        recorded.clear()
        run_cells(worker, artifact, cells[:3], recorded.append, 60)
        assert [r.outcome.value for r in recorded] == ["pass"] * 3
    finally:
        pids = [p for p in (worker.server.pid if worker.server else None,) if p]
        worker.stop()
    assert worker.server is None and worker.spare is None and worker.child is None
    assert _wait_gone(pids) == []


@pytest.mark.slow
def test_ctrl_c_stops_a_load_phase_with_nothing_left_behind(artifact, tmp_path):
    # A hang keeps the phase busy; Ctrl-C reaches the whole process group, as a terminal sends it.
    env = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1", TORCH_ROUNDTRIP_FAULT="hang@simple_net/state_dict/")
    phase = subprocess.Popen([sys.executable, "-m", "harness", "load", "--artifacts", str(artifact.parent.parent.parent),
                              "--results", str(tmp_path / "R")], env=env, cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(_group(phase.pid)) < 3:  # the phase, its fork server, its worker
            assert phase.poll() is None, phase.stderr.read()
            time.sleep(0.05)
        members = _group(phase.pid)
        assert len(members) >= 3
        os.killpg(phase.pid, signal.SIGINT)
        phase.wait(timeout=120)
    finally:
        if phase.poll() is None:
            os.killpg(phase.pid, signal.SIGKILL)
            phase.wait()
        phase.stderr.close()
    assert _wait_gone(members) == []
    assert _group(phase.pid) == []


def _group(pgid: int) -> list:
    """Live processes in process group `pgid` (Linux: read from /proc)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc to list a process group")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("lines", "crashes", "error"), [
    ((10, 10), 2, None),
    ((10, 9), 2, "recorded 9 cells .* of 10: cells were lost"),
    ((10, 10), 0, "the planted abort never fired"),
])
def test_the_crash_bench_is_a_figure_only_when_every_planned_cell_was_recorded(monkeypatch, tmp_path, lines, crashes, error):
    from collections import Counter

    import harness.runtime.runner as runner
    from harness.bench import bench_restarts
    from harness.runtime.runner.load import LoadSummary

    calls = []

    def fake_load_phase(artifacts, results, *, progress, worker_env):
        crash_run = worker_env.get("TORCH_ROUNDTRIP_PLANT") == "abort:5"
        n = lines[len(calls) % 2]
        calls.append(n)
        results.mkdir(parents=True)
        (results / "t.jsonl").write_text("{}\n" * n)
        return LoadSummary("t", counts=Counter(crash=crashes if crash_run else 0), total=n, seconds=1.0 if crash_run else 0.5,
                           restarts=[0.001] * (crashes if crash_run else 0))

    monkeypatch.setattr(runner, "save_phase", lambda *a, **k: None)
    monkeypatch.setattr(runner, "load_phase", fake_load_phase)
    if error:
        with pytest.raises(RuntimeError, match=error):
            bench_restarts(tmp_path, 1, ("simple_net",))
    else:
        got = bench_restarts(tmp_path, 2, ("simple_net",))
        assert got["crash_cell_rate_ratio"] == 0.5 and got["worker_restart_s"] == 0.001
