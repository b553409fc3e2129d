"""``check``: diagnose model files someone else wrote, safely.

`sniff` tells a file's format from its bytes; `pickle_scan` reads its pickles
symbolically (nothing is executed); `loads` asks this env's torch what the
findings mean; `child` runs the loads that can run code in a child process
(``--trust`` only); `findings` holds the per-file record and its rendering;
`checker` ties them together; `across_envs` merges the records of several
envs (``nox -s check``). Check uses the runtime (load options, diagnoses,
formats); the runtime never imports check. This file imports nothing: the
noxfile imports `across_envs` in nox's own environment, without torch or
xxhash.
"""
