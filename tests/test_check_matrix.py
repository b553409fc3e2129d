"""`nox -s check`'s summary: one row per env per file."""

from __future__ import annotations

import json

from harness.check.across_envs import summarize


def test_summary_rows(tmp_path):
    def doc(statuses, code=None):
        attempts = [{"status": s, "diagnosis": {"code": code} if s == "failed" else None} for s in statuses]
        return {"files": [{"path": "m.pt", "format": "torch_zip", "summary": "loads only some ways", "attempts": attempts}]}

    (tmp_path / "torch-2.4.1-py3.11-cpu.json").write_text(json.dumps(doc(["loaded", "failed", "not_tried"], "cuda_storage_on_cpu_host")))
    (tmp_path / "torch-2.15.0-py3.11-cpu.json").write_text(json.dumps(doc(["failed"], "weights_only_refused")))
    text = summarize(tmp_path)
    assert "| `torch-2.4.1-py3.11-cpu` | ✅ 1 load, 1 fail, 1 need --trust (cuda_storage_on_cpu_host) |" in text
    assert "| `torch-2.15.0-py3.11-cpu` | ❌ 0 load, 1 fail (weights_only_refused) |" in text
    assert summarize(tmp_path / "empty") == "No check results found.\n"
