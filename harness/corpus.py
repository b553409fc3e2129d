"""Writing a corpus: the curated cases plus Hypothesis-generated ones (host only).

A *corpus* (``cases.json``) is what the host hands to every env's save
phase, written canonically so the same inputs give the same bytes; envs
never run Hypothesis, they rebuild the same models from the specs
(`harness.runtime.cases.load_corpus` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from harness.runtime.cases import curated
from harness.runtime.errors import InputError
from harness.runtime.fileio import write_text
from harness.runtime.spec import CORPUS_SCHEMA

if TYPE_CHECKING:
    from harness.runtime.spec import Spec

__all__ = ["corpus_json", "write_corpus"]


def corpus_json(specs: list[Spec], *, generated: int = 0, seed: Optional[int] = None) -> str:
    """The canonical text of a corpus file."""
    data = {
        "schema": CORPUS_SCHEMA,
        "generated": {"count": generated, "seed": seed},
        "cases": [s.to_dict() for s in specs],
    }
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=True) + "\n"


def write_corpus(out: Path, *, generated: int = 0, seed: int = 0) -> list[Spec]:
    """Write curated + `generated` Hypothesis specs (drawn with `seed`) to `out`."""
    specs = curated()
    if generated:
        try:
            from harness.strategies import generate_specs
        except ImportError as e:
            msg = f"--generated needs Hypothesis on the host: pip install 'torch-roundtrip[hypothesis]' ({e})"
            raise InputError(msg) from None
        specs += generate_specs(generated, seed)
    write_text(Path(out), corpus_json(specs, generated=generated, seed=seed if generated else None))
    return specs
