"""torch-roundtrip: save a model here, load it there, compare it bit for bit.

The package has three parts, and the tree shows which is which (see
docs/ARCHITECTURE.md):

- `harness.runtime`: everything that runs inside every env of the matrix and
  decides what a save or a load records. `build_id` is a digest of exactly
  this package, so editing it invalidates saved artifacts and recorded cells,
  and editing anything else does not.
- `harness.check`: diagnosing files someone else wrote (``check``).
- host code: `harness.strategies`, `harness.matrix`, `harness.report`,
  `harness.bench`, `harness.corpus` and the command line, `harness.cli`.

Nothing imported by ``harness`` itself is heavy: the noxfile imports the
matrix code in nox's own environment, where neither torch nor xxhash is.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"

__all__ = ["__version__", "build_id"]


@functools.lru_cache(maxsize=None)  # functools.cache is 3.9+; the runtime runs on 3.8
def build_id() -> str:
    """The version plus a digest of `harness.runtime`, the code that saves and loads.

    Manifests and result lines carry it: a re-run reuses artifacts and cells
    recorded by the same build, and recomputes after any change to that code,
    even without a version bump. The runtime imports nothing from outside its
    package (a test checks it), so this digest covers all of that code.
    """
    runtime = Path(__file__).resolve().parent / "runtime"
    h = hashlib.sha256()
    for path in sorted(runtime.rglob("*.py")):
        h.update(path.relative_to(runtime).as_posix().encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"
