"""The runtime: the code that runs inside every env of the matrix.

Specs become models (`spec`, `layers`, `builder`, `casemodel`), models become
artifacts and manifests (`formats`, `manifest`, `runner.save`), artifacts are
loaded and compared (`load_options`, `compare`, `forward`, `runner.cell`), and
outcomes become result lines (`results`, `diagnose`, `expect`, `store`).

Rules that keep artifact reuse honest (docs/ARCHITECTURE.md):

- Modules here import only from `harness.runtime` and the root `harness`
  package (for `__version__` and `build_id`); `build_id` is a digest of this
  package alone. ``tests/test_architecture.py`` checks the rule.
- Nothing heavy at import time: torch, numpy and xxhash are imported inside
  the functions that need them, and features are detected, never inferred
  from version strings.
"""
