"""`python -m harness` is the same program as the `torch-roundtrip` script."""

from __future__ import annotations

import sys

from harness.cli import main

sys.exit(main())
