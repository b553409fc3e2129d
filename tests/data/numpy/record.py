"""Record what torch.load really does with numpy objects across numpy 1 and 2.

Not a test: run it by hand to refresh ``messages.json`` and the numpy-1
files beside it. ``save`` runs in an env of numpy 1 (torch 2.4.1 with numpy
1.24.4) and writes a checkpoint of `build_extras`' numpy objects with
pickle protocol 2 (torch.save's default) and 5. ``load FILE...`` runs in
any env and prints, per file, what ``torch.load(weights_only=False)``
raised or warned, as the JSON entries of ``messages.json``:

    python record.py save DIR                 # under numpy 1
    python record.py save DIR                 # under numpy 2 (other names)
    python record.py load DIR/*.pt            # under each numpy of interest
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

SEED = 3
KINDS = ["numpy_scalar", "numpy_array"]


def save(out: Path) -> None:
    import numpy
    import torch

    from harness.runtime.checkpoint_extras import build_extras

    major = numpy.__version__.split(".")[0]
    for protocol in (2, 5):
        obj = {"model": {"w": torch.arange(4.0)}, **build_extras(KINDS, SEED)}
        torch.save(obj, out / f"numpy{major}-protocol{protocol}.pt", pickle_protocol=protocol)


def load(paths: list[str]) -> None:
    import numpy
    import torch

    for path in paths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                torch.load(path, weights_only=False)
                etype, message = None, None
            except Exception as e:  # the finding
                etype, message = type(e).__name__, str(e)
        print(json.dumps({
            "file": Path(path).name, "torch": torch.__version__.split("+")[0], "numpy": numpy.__version__,
            "etype": etype, "message": message,
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught if "numpy" in str(w.message)}),
        }))


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(Path(sys.argv[2]))
    else:
        load(sys.argv[2:])
