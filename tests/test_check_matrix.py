"""`nox -s check`'s summary: one row per env per file."""

from __future__ import annotations

import json

import pytest

from harness.check.across_envs import summarize
from harness.check.findings import CHECK_SCHEMA
from harness.runtime.errors import InputError


def test_summary_rows(tmp_path):
    def doc(statuses, code=None):
        attempts = [{"status": s, "diagnosis": {"code": code} if s == "failed" else None} for s in statuses]
        return {"schema": CHECK_SCHEMA, "files": [{"path": "m.pt", "format": "torch_zip", "summary": "loads only some ways", "attempts": attempts}]}

    (tmp_path / "torch-2.4.1-py3.11-cpu.json").write_text(json.dumps(doc(["loaded", "failed", "not_tried"], "cuda_storage_on_cpu_host")))
    (tmp_path / "torch-2.15.0-py3.11-cpu.json").write_text(json.dumps(doc(["failed"], "weights_only_refused")))
    text = summarize(tmp_path)
    assert "| `torch-2.4.1-py3.11-cpu` | ✅ 1 load, 1 fail, 1 need --trust (cuda_storage_on_cpu_host) |" in text
    assert "| `torch-2.15.0-py3.11-cpu` | ❌ 0 load, 1 fail (weights_only_refused) |" in text
    assert summarize(tmp_path / "empty") == "No check results found.\n"


def test_a_document_of_another_schema_is_refused(tmp_path):
    (tmp_path / "torch-2.4.1-py3.11-cpu.json").write_text(json.dumps({"schema": CHECK_SCHEMA + 1, "files": []}))
    with pytest.raises(InputError, match="check documents of schema"):
        summarize(tmp_path)
