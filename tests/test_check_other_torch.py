"""``check`` under another torch: the hostile corpus and the globals fallback, run by that env's Python.

Set ``TORCH_ROUNDTRIP_CHECK_PYTHON`` to the interpreter of a venv with an
older torch and the harness installed (e.g. torch 2.4.1, which lacks
``torch.serialization.get_unsafe_globals_in_checkpoint``, defaults to
``weights_only=False`` and trusts declared storage sizes). That env needs
no pytest: the script below runs there and reports JSON lines.

    TORCH_ROUNDTRIP_CHECK_PYTHON=/tmp/tv/t24/bin/python pytest tests/test_check_other_torch.py -m slow
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("TORCH_ROUNDTRIP_CHECK_PYTHON")

_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch
from tests.hostile_files import write_corpus
from harness.check.checker import check_file, default_weights_only
out = {"torch": torch.__version__, "default": default_weights_only(),
       "finder": hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"), "files": {}}
for name, h in write_corpus(os.path.join(sys.argv[2], "corpus")).items():
    r = check_file(h.path, cuda=False)
    out["files"][name] = {
        "format": r.format, "summary": r.summary, "message": h.message, "findings": r.findings,
        "ran": bool(h.marker and h.marker.exists()),
        "unsafe_here": [a.label for a in r.attempts if a.where == "harness" and a.options.get("weights_only") == "false"],
    }
model = torch.nn.Sequential(torch.nn.Linear(2, 2))
path = os.path.join(sys.argv[2], "full.pt")
torch.save(model, path)
r = check_file(path, cuda=False)
out["full"] = {"unsafe": r.unsafe_globals, "source": r.globals_source,
               "defaults": sorted({a.status for a in r.attempts if a.options.get("weights_only") == "default"})}
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not PYTHON, reason="set TORCH_ROUNDTRIP_CHECK_PYTHON to another env's python")
def test_corpus_under_other_torch(tmp_path):
    done = subprocess.run([PYTHON, "-c", _SCRIPT, str(REPO), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["files"], "the corpus is empty"
    for name, f in out["files"].items():
        assert f["findings"], name
        assert f["message"] in f["summary"], (name, f["summary"])
        assert not f["ran"], f"{name}: the payload ran under torch {out['torch']}"
        assert f["unsafe_here"] == [], name
    assert "torch.nn.modules.linear.Linear" in out["full"]["unsafe"]
    if not out["finder"]:
        assert out["full"]["source"].startswith("the harness's pickle scan")
    if out["default"] is False:  # a full unpickle by default: check must not run it itself
        assert out["full"]["defaults"] == ["not_tried"]
