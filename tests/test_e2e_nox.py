"""End to end: `nox -s roundtrip` on the default matrix, twice, as a user runs it.

It installs real torch releases (uv's cache makes the second time cheap) and
checks the product's promise: results from two torch versions in both
directions, the weights_only default change of torch 2.6 shown as an
expected error with its diagnosis, and a second run that reuses envs,
artifacts and cells.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, read_results

from harness.runtime.env import GOLDEN_PREFIX, parse_label

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def nox(*args, reports, timeout=2400):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOX_")}
    env.update(TORCH_ROUNDTRIP_REPORTS=str(reports), TORCH_ROUNDTRIP_PLAIN="1")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "nox", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reports = tmp_path_factory.mktemp("e2e") / "reports"
    first, first_s = nox("-s", "roundtrip", reports=reports)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    second, second_s = nox("-s", "roundtrip", reports=reports)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    print(f"\nnox -s roundtrip: first run {first_s:.0f}s, second run {second_s:.0f}s")
    return reports, first, second, (first_s, second_s)


def test_reports_are_written(runs):
    reports, *_ = runs
    for name in ("index.html", "results.json", "junit.xml", "summary.md"):
        assert (reports / name).stat().st_size > 0, name


def test_each_env_records_its_interpreter_for_shrink(runs):
    """`nox -s shrink` runs its workers in the envs the roundtrip made: each save and load env notes its python."""
    reports, *_ = runs
    rows = read_results(reports / "results")
    labels = {r["target"] for r in rows} | {r["source"] for r in rows if not r["source"].startswith(GOLDEN_PREFIX)}
    for label in labels:
        record = json.loads((reports / "envs" / f"{label}.json").read_text())
        assert record["label"] == label and Path(record["python"]).exists(), record


def test_two_torch_versions_in_both_directions(runs):
    reports, *_ = runs
    rows = read_results(reports / "results")
    torch_of = lambda label: parse_label(label)["torch"]  # noqa: E731
    live = [r for r in rows if not r["source"].startswith(GOLDEN_PREFIX)]
    pairs = {(torch_of(r["source"]), torch_of(r["target"])) for r in live}
    versions = {v for pair in pairs for v in pair}
    assert len(versions) >= 2
    for a in versions:
        for b in versions:
            assert (a, b) in pairs, (a, b)
    assert any(r["source"].endswith("-cuda-emulated") for r in rows)
    bad = [r for r in rows if r["outcome"] == "mismatch" or (r["outcome"] in ("error", "crash", "timeout") and not r["expected"])]
    assert not bad, json.dumps(bad[:3], indent=1)


def test_the_golden_corpus_brings_six_years_of_releases_into_the_default_run(runs):
    reports, *_ = runs
    rows = read_results(reports / "results")
    golden = [r for r in rows if r["source"].startswith(GOLDEN_PREFIX)]
    releases = {parse_label(r["source"])["torch"] for r in golden}
    assert {"1.4.0", "1.8.1", "1.13.1"} <= releases, releases
    assert any(r["outcome"] == "pass" and r["source"].startswith("golden-torch-1.4.0") for r in golden)
    # every target of the default matrix loaded them (the bad-cell check above covers their failures)
    assert {r["target"] for r in golden} == {r["target"] for r in rows}


def test_weights_only_flip_is_an_expected_error_with_its_diagnosis(runs):
    reports, *_ = runs
    rows = read_results(reports / "results")
    flip = [r for r in rows if r["format"] == "full_model" and r["load"].get("weights_only") == "default"
            and r["source"].startswith("torch-") and r["source"].endswith("-cpu") and r["load"].get("map_location") == "cpu"
            and not r["load"].get("rename_class")]  # a pickle_module given: torch defaults to weights_only=False
    newer = [r for r in flip if r["target"].startswith("torch-2.15")]
    older = [r for r in flip if r["target"].startswith("torch-2.4")]
    assert newer and older
    assert all(r["outcome"] == "error" and r["expected"] and r["diagnosis"]["code"] == "weights_only_refused" for r in newer)
    # parametrized cannot be pickled; a moved class cannot be imported (the refactor case's point)
    assert all(r["outcome"] == "pass" for r in older if r["case"] not in ("parametrized", "refactor_class_moved"))
    summary = json.loads((reports / "results.json").read_text())
    assert summary  # the merged file parses


def _phase_counts(output: str) -> tuple[dict, dict]:
    """What each env's save and load said it did: label -> (saved, reused), label -> (computed, recorded)."""
    saves = {m["label"]: (int(m["saved"]), int(m["reused"])) for m in re.finditer(
        r"^save (?P<label>\S+): (?P<saved>\d+) saved, (?P<reused>\d+) already saved", output, re.M)}
    loads = {m["label"]: (int(m["cells"]), int(m["recorded"])) for m in re.finditer(
        r"^load (?P<label>\S+): (?P<cells>\d+) cells \(.*?; (?P<recorded>\d+) already recorded$", output, re.M)}
    return saves, loads


def test_second_run_reuses_envs_artifacts_and_cells(runs):
    _, first, second, _ = runs
    out = second.stdout + second.stderr
    assert "Re-using existing virtual environment" in out or "Reusing existing virtual environment" in out
    first_saves, first_loads = _phase_counts(first.stdout + first.stderr)
    saves, loads = _phase_counts(out)
    # The first run computed cells in every load env; the second computes
    # none and saves nothing, and says how many it reused.
    assert first_loads and all(computed > 0 for computed, _ in first_loads.values()), first_loads
    assert set(loads) == set(first_loads) and set(saves) == set(first_saves), (saves, loads)
    assert all(saved == 0 and reused > 0 for saved, reused in saves.values()), saves
    assert all(computed == 0 and recorded > 0 for computed, recorded in loads.values()), loads


def test_phase_counts_reads_what_the_phases_print():
    # The reuse check above must be able to fail: a load that recomputed cells is seen.
    out = "save torch-2.4.1-py3.11-cpu: 0 saved, 189 already saved, 0 not supported here, 0 could not be saved\n" \
          "load torch-2.4.1-py3.11-cpu: 12 cells (12 pass); 0 expected failures; 15180 already recorded\n"
    saves, loads = _phase_counts(out)
    assert saves == {"torch-2.4.1-py3.11-cpu": (0, 189)}
    assert loads == {"torch-2.4.1-py3.11-cpu": (12, 15180)}


def test_nox_check_runs_a_fleet_in_every_env_and_draws_one_grid(runs):
    """`nox -s check -- DIR`: every load env checks the fleet (here: the newest env's saved artifacts), one grid merges them."""
    reports, *_ = runs
    sources = sorted(p for p in (reports / "artifacts").iterdir() if p.name.startswith("torch-2.15") and p.name.endswith("-cpu"))
    assert sources
    done, _ = nox("-s", "check", "--", str(sources[0]), "--include", "*.pt", "--include", "*.safetensors", reports=reports, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    merged = [json.loads(x) for x in (reports / "check" / "check.jsonl").read_text().splitlines()]
    per_env = {p.name: [json.loads(x) for x in (p / "check.jsonl").read_text().splitlines()]
               for p in (reports / "check").iterdir() if p.is_dir()}
    assert len(per_env) >= 2, sorted(per_env)
    files = [{x["file"] for x in env_lines} for env_lines in per_env.values()]
    assert files[0] and all(f == files[0] for f in files)  # every env checked the same fleet
    assert all(x["env"] == env for env, env_lines in per_env.items() for x in env_lines)
    verdicts = {}
    for env, env_lines in per_env.items():
        for x in env_lines:
            verdicts.setdefault(x["file"], {})[env] = x["report"]["verdict"]
    # Files torch 2.15 writes that an older torch's weights_only cannot read (uint dtypes): some differ across envs.
    assert any(len(set(v.values())) > 1 for v in verdicts.values()), verdicts
    assert len(merged) == sum(map(len, per_env.values()))  # the grid's lines: every env's
    for name in ("index.html", "summary.md"):
        assert (reports / "check" / name).stat().st_size > 0
    assert all(env in (reports / "check" / "summary.md").read_text() for env in per_env)
