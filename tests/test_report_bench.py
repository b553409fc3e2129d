"""Bench files: the shapes the report reads, targets met or missed, one-line errors."""

from __future__ import annotations

import json

import pytest

from harness.report.bench import read_bench
from harness.runtime.errors import InputError


def write(tmp_path, data) -> str:
    p = tmp_path / "bench.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_figures_with_targets(tmp_path):
    bench = read_bench(write(tmp_path, {
        "harness": "0.1.0",
        "figures": {
            "verify_overhead_ratio": {"value": 1.04, "target": "<= 1.10"},
            "digest_gib_per_s": {"value": 1.5, "min": 2, "unit": "GiB/s"},
            "cells_per_second": 812,
            "scaling_exponent": {"value": 1.02, "target": ">= 0.9, <= 1.1", "note": "cells vs envs"},
        },
        "targets": {"cells_per_second": ">= 500"},
    }))
    figs = {f.name: f for f in bench.figures}
    assert [f.name for f in bench.figures] == ["verify_overhead_ratio", "digest_gib_per_s", "cells_per_second", "scaling_exponent"]
    assert figs["verify_overhead_ratio"].met is True
    assert figs["digest_gib_per_s"].target == ">= 2" and figs["digest_gib_per_s"].met is False and figs["digest_gib_per_s"].unit == "GiB/s"
    assert figs["cells_per_second"].target == ">= 500" and figs["cells_per_second"].met is True
    assert figs["scaling_exponent"].met is True and figs["scaling_exponent"].note == "cells vs envs"
    assert bench.context == {"harness": "0.1.0"}


def test_what_harness_bench_writes(tmp_path):
    # The shape of harness.bench.run_bench's bench.json.
    bench = read_bench(write(tmp_path, {
        "schema": 1, "quick": True,
        "figures": {"verify_overhead_ratio": 1.31, "digest_gib_per_s": 7.2, "scaling_exponent": None,
                    "peak_rss_ratio": {"no_mmap": 2.1, "mmap": 0.2}, "env_ready_cached_s": 3.5},
        "targets": {"verify_overhead_ratio": "<= 1.25", "digest_gib_per_s": ">= 5", "scaling_exponent": "<= 1.15",
                    "peak_rss_ratio": "report", "env_ready_cached_s": "report"},
        "met": {"verify_overhead_ratio": False},
        "raw": {"digest_bytes": 8}, "machine": {"cpus": 16}, "when": "2024-01-01T00:00:00Z",
    }))
    got = [(f.name, f.value, f.target, f.met, f.note) for f in bench.figures]
    assert got == [
        ("verify_overhead_ratio", 1.31, "<= 1.25", False, ""),
        ("digest_gib_per_s", 7.2, ">= 5", True, ""),
        ("scaling_exponent", None, "<= 1.15", None, "not measured"),
        ("peak_rss_ratio.no_mmap", 2.1, None, None, ""),
        ("peak_rss_ratio.mmap", 0.2, None, None, ""),
        ("env_ready_cached_s", 3.5, None, None, ""),
    ]
    assert bench.context == {"schema": "1", "quick": "true", "raw": '{"digest_bytes": 8}', "machine": '{"cpus": 16}', "when": "2024-01-01T00:00:00Z"}


def test_flat_figures(tmp_path):
    bench = read_bench(write(tmp_path, {"peak_rss_ratio": 1.3, "env_ready_cached_s": {"value": 4.0, "max": 5}, "when": "today", "env": {"torch": "2.4.1"}}))
    assert [(f.name, f.value, f.target, f.met) for f in bench.figures] == [("peak_rss_ratio", 1.3, None, None), ("env_ready_cached_s", 4.0, "<= 5", True)]
    assert bench.context == {"when": "today", "env": '{"torch": "2.4.1"}'}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[1]", "a bench file is a JSON object of figures"),
        ("{", "not valid JSON"),
        ({"figures": {"x": {"value": "fast"}}}, "figure 'x': value='fast' is not a finite number"),
        ({"figures": {"x": {"value": 1, "target": "about 1"}}}, "figure 'x': target='about 1' is not like '<= 1.10'"),
        ({"figures": {"x": 1}, "targets": {"x": "<<1"}}, "figure 'x': target='<<1' is not like"),
        ({"figures": {"x": {"value": 1, "target": 1.1}}}, "figure 'x': target=1.1 must be a string"),
        ({"figures": {"x": "fast"}}, "figure 'x' is \"fast\", not a number, null, an object of numbers"),
        ({"figures": {"x": {"a": "b"}}}, "figure 'x' is {\"a\": \"b\"}, not a number"),
        ({"when": "today"}, "no figures found"),
    ],
)
def test_bad_bench_files(tmp_path, data, message):
    with pytest.raises(InputError) as e:
        read_bench(write(tmp_path, data))
    assert message in str(e.value)
    assert str(e.value).startswith(str(tmp_path / "bench.json"))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="--bench '.*nope.json' does not exist"):
        read_bench(tmp_path / "nope.json")
