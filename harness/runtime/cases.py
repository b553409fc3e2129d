"""Cases: the curated ones shipped in ``cases/``, and reading a corpus of specs.

The curated specs and the expectations file live at the top of the
repository (``cases/``); wheels carry a copy inside the package. A *corpus*
(``cases.json``, written on the host by `harness.corpus`) is what every
env's save phase reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.runtime.errors import InputError
from harness.runtime.spec import Spec, load_specs

__all__ = ["curated", "data_dir", "load_corpus"]


def data_dir() -> Path:
    """``cases/`` of a source checkout, else the copy inside the installed package."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "cases", package / "_cases"):
        if (candidate / "curated").is_dir():
            return candidate
    msg = f"no curated cases found next to {package} (expected cases/curated/ in the checkout or harness/_cases/ in the wheel)"
    raise InputError(msg)


def curated() -> list[Spec]:
    """The curated specs, sorted by name."""
    specs = []
    for path in sorted((data_dir() / "curated").glob("*.json")):
        specs.extend(load_specs(path))
    return sorted(specs, key=lambda s: s.name)


def load_corpus(path: Optional[Path]) -> list[Spec]:
    """Specs from ``--cases FILE``, or the curated cases when no file is given."""
    return curated() if path is None else load_specs(Path(path))

