"""Shared fixtures for the harness's own tests.

Tests that need torch import it through the `torch` fixture so that the
suite reports a clear skip (not an import error) in an env without torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def curated_specs():
    from harness.runtime.cases import curated

    specs = curated()
    assert len(specs) >= 14, "the curated corpus lost cases"
    return {s.name: s for s in specs}


@pytest.fixture(scope="session")
def golden_unpacked(tmp_path_factory) -> Path:
    """The golden corpus, verified and unpacked once per session (read it; copy what a test changes)."""
    from harness.golden import unpack

    into = tmp_path_factory.mktemp("golden-unpacked")
    assert unpack(REPO / "golden", into), "the golden corpus is empty"
    return into


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m harness ARGS`` in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env["TORCH_ROUNDTRIP_PLAIN"] = "1"
    full_env.pop("TORCH_ROUNDTRIP_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``harness.cli.main(ARGS)`` in this process, as `run_cli` would in a new one.

    Returns a CompletedProcess (returncode, stdout, stderr). Usage errors,
    which argparse reports by raising SystemExit, give their exit status
    too. Far faster than a process per call; tests of what only a real
    process shows (a crash, the interpreter's own output) use `run_cli`.
    """
    import harness.cli

    monkeypatch.setenv("TORCH_ROUNDTRIP_PLAIN", "1")
    monkeypatch.delenv("TORCH_ROUNDTRIP_DEBUG", raising=False)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = harness.cli.main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["harness", *args], code, out, err)

    return run


def read_results(results_dir: Path) -> list:
    rows = []
    for path in sorted(Path(results_dir).glob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


class Damaging:
    """A format whose loads come back damaged by `damage(loaded)`."""

    def __init__(self, fmt, damage):
        self.fmt, self.damage = fmt, damage
        self.name = fmt.name

    def unavailable(self):
        return self.fmt.unavailable()

    def load(self, directory, options, ctx):
        return self.damage(self.fmt.load(directory, options, ctx))

    def recover(self, loaded, expected):
        return self.fmt.recover(loaded, expected)

    def torch_load_path(self, directory):
        return self.fmt.torch_load_path(directory)


def uv_command() -> list:
    """How to run uv here (its executable, or ``python -m uv``); skips, with the reason, without it."""
    import shutil

    exe = shutil.which("uv")
    if exe:
        return [exe]
    pytest.importorskip("uv", reason="uv is not installed (pip install uv)")
    return [sys.executable, "-m", "uv"]


def torch_venv(tmp_path_factory, name: str, python_version: str, torch_version: str) -> str:
    """The Python of a fresh venv holding `torch_version` (and what its runtime needs) and this checkout.

    Skips, with the reason, where this machine has no such Python or no uv.
    """
    from harness.matrix import find_python, requirements

    base = find_python(python_version)
    if base is None:
        pytest.skip(f"no Python {python_version} on this machine (pyenv install {python_version})")
    uv = uv_command()
    venv = tmp_path_factory.mktemp(name) / "venv"
    subprocess.run([*uv, "venv", "-q", "-p", base, str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    done = subprocess.run([*uv, "pip", "install", "-q", "-p", python, *requirements(torch_version), str(REPO)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


@pytest.fixture(scope="session")
def plain_torch_python(tmp_path_factory) -> str:
    """The Python of a fresh venv with torch, numpy, xxhash and safetensors but NOT the harness.

    Shows that a script runs where the harness is not installed (the
    plain-torch reproductions of `shrink`); the harness's workers still run
    in it with ``PYTHONPATH`` at this checkout (xxhash is all the runtime
    adds to torch). Run its scripts from a folder outside the checkout:
    ``python -c`` and ``python -m`` put the working directory on the path.
    torch is ``TORCH_ROUNDTRIP_TEST_TORCH`` (default 2.15.0); with uv's
    cache warm the venv takes seconds. Skips, with the reason, without uv.
    """
    uv = uv_command()
    torch_version = os.environ.get("TORCH_ROUNDTRIP_TEST_TORCH", "2.15.0")
    venv = tmp_path_factory.mktemp("plain-torch") / "venv"
    subprocess.run([*uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    done = subprocess.run([*uv, "pip", "install", "-q", "-p", python, f"torch=={torch_version}", "numpy", "xxhash", "safetensors"],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return python
