"""torch-roundtrip: save a model here, load it there, compare it bit for bit.

The package runs inside every env of a compatibility matrix, from torch 2.0
to the newest release, so it imports nothing heavy at module level and
detects features instead of reading version strings.
"""

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"

__all__ = ["__version__", "build_id"]

# Host-only code (reports, strategies) does not change what a save or a load
# records, so editing it must not invalidate saved artifacts and results.
_HOST_ONLY = (
    "report", "strategies", "matrix.py", "bench.py", "check.py", "check_child.py", "check_report.py",
    "check_torch.py", "check_matrix.py", "sniff.py",
    "cli_extras.py", "progress.py",
)


@functools.cache
def build_id() -> str:
    """The version plus a digest of the code that saves and loads.

    Manifests and result lines carry it: a re-run reuses artifacts and cells
    recorded by the same build, and recomputes after any change to that code,
    even without a version bump.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in _HOST_ONLY:
            continue
        h.update(rel.encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"
