"""``check``: diagnose model files someone else wrote, safely.

`sniff` tells a file's format from its bytes; `pickle_scan` reads its pickles
symbolically (nothing is executed); `loads` asks this env's torch what the
findings mean; `child` runs the loads that can run code in a child process
(``--trust`` only); `findings` holds the per-file record and its rendering;
`checker` ties them together. A fleet (``check DIR --out OUT``): `walk`
lists its files, `fleet` runs them on `worker` processes and writes one
`fleet_record` line per file, `fleet_report` renders the lines of one env
or many (``nox -s check``). Check uses the runtime (load options, diagnoses,
formats); the runtime never imports check. This file imports nothing: the
noxfile imports `fleet_record` and `fleet_report` in nox's own environment,
without torch or xxhash.
"""
