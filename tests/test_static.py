"""The code passes its own static checks: ruff, and mypy over the package.

`nox -s lint` runs them too (with actionlint); here they run in the test
env so that CI, which runs the test suite, refuses a change they reject.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def _tool(module: str) -> None:
    if shutil.which(module) is None and subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True).returncode != 0:
        pytest.skip(f"{module} is not installed in this env (pip install 'torch-roundtrip[test]')")


def test_mypy_is_clean():
    _tool("mypy")
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), str(REPO / "harness")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_is_clean():
    _tool("ruff")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "harness", "tests", "noxfile.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
