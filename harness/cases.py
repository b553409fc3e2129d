"""Cases: the curated ones shipped in ``cases/``, and corpora of specs.

The curated specs and the expectations file live at the top of the
repository (``cases/``); wheels carry a copy inside the package. A *corpus*
(``cases.json``) is what the host hands to every env's save phase: curated
cases plus, optionally, Hypothesis-generated ones, written canonically so
the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from harness.errors import InputError
from harness.spec import load_specs

__all__ = ["corpus_json", "curated", "data_dir", "load_corpus", "write_corpus"]

CORPUS_SCHEMA = 1


def data_dir() -> Path:
    """``cases/`` of a source checkout, else the copy inside the installed package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "cases", here / "_cases"):
        if (candidate / "curated").is_dir():
            return candidate
    msg = f"no curated cases found next to {here} (expected cases/curated/ in the checkout or harness/_cases/ in the wheel)"
    raise InputError(msg)


def curated() -> list:
    """The curated specs, sorted by name."""
    specs = []
    for path in sorted((data_dir() / "curated").glob("*.json")):
        specs.extend(load_specs(path))
    return sorted(specs, key=lambda s: s.name)


def corpus_json(specs: list, *, generated: int = 0, seed: Optional[int] = None) -> str:
    """The canonical text of a corpus file."""
    data = {
        "schema": CORPUS_SCHEMA,
        "generated": {"count": generated, "seed": seed},
        "cases": [s.to_dict() for s in specs],
    }
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=True) + "\n"


def write_corpus(out: Path, *, generated: int = 0, seed: int = 0) -> list:
    """Write curated + `generated` Hypothesis specs (drawn with `seed`) to `out`."""
    specs = curated()
    if generated:
        try:
            from harness.strategies import generate_specs
        except ImportError as e:
            msg = f"--generated needs Hypothesis on the host: pip install 'torch-roundtrip[hypothesis]' ({e})"
            raise InputError(msg) from None
        specs += generate_specs(generated, seed)
    from harness.store import write_text

    write_text(Path(out), corpus_json(specs, generated=generated, seed=seed if generated else None))
    return specs


def load_corpus(path: Optional[Path]) -> list:
    """Specs from ``--cases FILE``, or the curated cases when no file is given."""
    return curated() if path is None else load_specs(Path(path))

