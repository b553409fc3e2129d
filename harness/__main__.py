"""`python -m harness` is the same program as the `torch-roundtrip` script."""

import sys

from harness.cli import main

sys.exit(main())
