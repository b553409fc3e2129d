"""Commands that reproduce one cell, as the report prints them.

Two forms, both run where the target env is: through nox (which builds the
env) and through the harness directly (inside an env you already have). The
page builds the same strings in JavaScript; the browser test checks that
they match these.
"""

from __future__ import annotations

from harness.runtime.env import parse_label
from harness.runtime.errors import InputError

__all__ = ["NOX_SESSION", "repro_commands", "shell_quote", "shrink_commands"]


def shell_quote(text: str) -> str:
    """POSIX single quotes, always (a cell key holds ``|`` and ``;``)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _label_part(target: str, part: str) -> str:
    try:
        return parse_label(target)[part]
    except InputError:
        return ""


def _device_flag(target: str) -> str:
    # `load` defaults to --device cpu; a cuda target label only comes from --device cuda.
    return " --device cuda" if _label_part(target, "device") == "cuda" else ""


def _numpy_flag(target: str) -> str:
    # A label that names its numpy exists only in a matrix with that numpy axis.
    numpy = _label_part(target, "numpy")
    return f" --numpy {numpy}" if numpy else ""


#: The noxfile names its load sessions by env label (``nox -l``: ``load(torch-2.4.1-py3.11-cpu)``).
NOX_SESSION = "load({target})"


def repro_commands(target: str, key: str) -> tuple[str, str]:
    """(nox command, python command) that re-run the cell `key` in env `target`."""
    cell = shell_quote(key)
    nox = f"nox -s \"{NOX_SESSION.format(target=target)}\" --{_numpy_flag(target)} --cell {cell}"
    python = f"python -m harness load --artifacts reports/artifacts --results /tmp/repro{_device_flag(target)} --cell {cell}"
    return nox, python


def shrink_commands(target: str, key: str) -> tuple[str, str]:
    """(nox command, python command) that shrink the failing cell `key` of env `target`.

    nox finds the source and target envs that ``nox -s roundtrip`` made; the
    python form runs where the harness is installed, given the interpreters
    of the two envs.
    """
    cell, env = shell_quote(key), shell_quote(target)
    nox = f"nox -s shrink -- {cell} --target {env}"
    python = (f"python -m harness shrink --results reports/results --target {env} --cell {cell} "
              "--source-python SOURCE_ENV/bin/python --target-python TARGET_ENV/bin/python")
    return nox, python
