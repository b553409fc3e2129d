"""torch-roundtrip: save a model here, load it there, compare it bit for bit.

The package runs inside every env of a compatibility matrix, from torch 2.0
to the newest release, so it imports nothing heavy at module level and
detects features instead of reading version strings.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
