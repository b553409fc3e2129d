"""The commands that reproduce a cell: quoting, the device flag, and the noxfile's session names."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.repro import repro_commands, shell_quote

REPO = Path(__file__).resolve().parent.parent
KEY = "torch-2.4.1-py3.11-cpu|it's|state_dict|apply=none;map_location=dict:cuda:0->cpu;mmap=0;weights_only=default"


@pytest.mark.parametrize("text", [KEY, "", "'", "a'b'c", "$(rm -rf /) `x` \"y\" \\z"])
def test_shell_quote_round_trips(text):
    assert shlex.split(shell_quote(text)) == [text]


def test_commands():
    nox, python = repro_commands("torch-2.4.1-py3.11-cpu", KEY)
    assert shlex.split(nox) == ["nox", "-s", "load(torch-2.4.1-py3.11-cpu)", "--", "--cell", KEY]
    assert shlex.split(python) == ["python", "-m", "harness", "load", "--artifacts", "reports/artifacts", "--results", "/tmp/repro", "--cell", KEY]


def test_a_cuda_target_loads_on_cuda():
    _, python = repro_commands("torch-2.4.1-py3.11-cuda", KEY)
    assert "--device cuda --cell" in python


def test_the_nox_session_exists():
    pytest.importorskip("nox", reason="checking the noxfile's session names needs nox (in the test extra)")
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sessions = json.loads(done.stdout)
    loads = [s for s in sessions if s["name"] == "load"]
    assert loads, "the noxfile has no load sessions"
    names = {s["session"] for s in sessions}
    for s in loads:
        nox, _ = repro_commands(s["call_spec"]["env"], KEY)
        assert shlex.split(nox)[2] in names
