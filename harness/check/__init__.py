"""``check``: diagnose model files someone else wrote, safely.

`sniff` tells a file's format from its bytes; `pickle_scan` reads its pickles
symbolically (nothing is executed); `loads` asks this env's torch what the
findings mean; `child` runs the loads that can run code in a child process
(``--trust`` only); `findings` holds the per-file record and its rendering;
`checker` ties them together; `across_envs` merges the records of several
envs (``nox -s check``). Check uses the runtime (load options, diagnoses,
formats); the runtime never imports check.
"""

from harness.check.checker import check_file, check_files
from harness.check.findings import FileReport

__all__ = ["FileReport", "check_file", "check_files"]
