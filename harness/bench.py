"""`python -m harness bench`: what the harness costs, as ratios taken in one run.

Absolute times on shared machines are noise; ratios of two things measured
side by side, alternating, are not. Every figure below is computed here and
written to bench.json with its target, the raw timings and the machine.

=========================  ============================================================  ========
key                        what it compares                                              target
=========================  ============================================================  ========
verify_overhead_ratio      a harness cell on a >= 1 GiB state_dict (load + full exact    <= 1.25
                           verification) / bare torch.load + load_state_dict
digest_gib_per_s           digest throughput on in-memory tensor bytes                   >= 5
cells_per_second           load-phase cells per second, small curated + generated cases  >= 400
process_per_cell_ratio     one process pair (save script, load script) per cell /        >= 100
                           the harness's save + load phases, per cell
scaling_exponent           slope of log(time) over log(cells), three corpus sizes        <= 1.15
env_ready_cached_s         seconds until a cached torch env is ready (uv, warm cache)    report
peak_rss_ratio             peak RSS of verifying the big file / its size, without and    report
                           with mmap
generate_500_specs_s       seconds to draw 500 specs with Hypothesis                     report
scan_seconds_1gib          seconds for check's static scan (every pickle, every storage  <= 1
                           record) of the >= 1 GiB state_dict: it reads pickles, not
                           tensor bytes
check_overhead_ratio       check of the >= 1 GiB state_dict (in process, no --trust:     <= 3
                           the scan and every load option, one load per group torch
                           answers alike) / one bare torch.load of it
shrink_steps_per_second    shrink steps (a candidate saved by a persistent worker in     >= 20
                           the source env, loaded by one in the target env) per second,
                           shrinking a planted failure (`harness.shrink.plant`) of a
                           small spec
shrink_steps               steps that shrink took to reach its smallest spec             report
worker_restart_s           median seconds from a load worker's death to its successor's  <= 0.5
                           hello, in the crash run of crash_cell_rate_ratio (workers
                           forked from a fork server, a spare kept warm)
crash_cell_rate_ratio      load-phase cells per second when torch aborts every fifth     >= 0.5
                           load (`harness.shrink.plant`, ``abort:5``) / the same cells
                           crash-free, alternating, three small curated cases; every
                           planned cell recorded
fleet_files_per_second     small checkpoint files (state dicts, training checkpoints,    >= 100
                           safetensors) a fleet check (`check DIR --out OUT`, one
                           worker per CPU) checks per second, 1000 files (100 with
                           --quick), its fork server's and workers' start included
=========================  ============================================================  ========
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from harness.runtime.spec import Spec

__all__ = ["BENCH_SCHEMA", "TARGETS", "BenchRecord", "PlantedFailure", "bench_restarts", "planted_failure", "run_bench", "shrink_bench_spec"]

#: Version of bench.json's layout (`BenchRecord`).
BENCH_SCHEMA = 1

TARGETS = {
    "verify_overhead_ratio": ("<=", 1.25),
    "digest_gib_per_s": (">=", 5.0),
    "cells_per_second": (">=", 400.0),
    "process_per_cell_ratio": (">=", 100.0),
    "scaling_exponent": ("<=", 1.15),
    "env_ready_cached_s": ("report", None),
    "peak_rss_ratio": ("report", None),
    "generate_500_specs_s": ("report", None),
    "scan_seconds_1gib": ("<=", 1.0),
    "check_overhead_ratio": ("<=", 3.0),
    "shrink_steps_per_second": (">=", 20.0),
    "shrink_steps": ("report", None),
    "worker_restart_s": ("<=", 0.5),
    "crash_cell_rate_ratio": (">=", 0.5),
    "fleet_files_per_second": (">=", 100.0),
}
LAYER = 4096  # a 4096 x 4096 float32 Linear weight is 64 MiB


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_digest(gib: float, repeat: int) -> dict[str, Any]:
    import torch

    from harness.runtime.digest import digest_tensor

    n = int(gib * 2**30) // 8
    t = torch.arange(n, dtype=torch.int64)  # touched memory, not zero pages
    seconds = _median_time(lambda: digest_tensor(t), repeat)
    return {"digest_gib_per_s": (n * 8 / 2**30) / seconds, "raw": {"digest_bytes": n * 8, "digest_seconds": seconds}}


def _big_spec(gib: float) -> Spec:
    from harness.runtime.spec import Spec

    layers = max(1, math.ceil(gib * 2**30 / (LAYER * LAYER * 4)))
    children = [{"kind": "linear", "in_features": LAYER, "out_features": LAYER, "name": f"fc{i}"} for i in range(layers)]
    return Spec.from_dict({"name": "bench_big", "seed": 0, "model": {"kind": "sequential", "children": children}})


def bench_verify(work: Path, gib: float, repeat: int) -> dict[str, Any]:
    """One harness cell against the bare load it wraps, alternating to share the noise."""
    import torch

    from harness import build_id
    from harness.runtime.builder import build
    from harness.runtime.env import fingerprint
    from harness.runtime.formats import FORMATS
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.manifest import Manifest
    from harness.runtime.results import CellResult, Outcome
    from harness.runtime.runner.cell import CaseContext, run_cell
    from harness.runtime.runner.save import save_case

    spec = _big_spec(gib)
    fp = fingerprint("cpu")
    case_dir = work / "big" / spec.name
    _log(f"saving a {gib:g} GiB state_dict")
    (m,) = save_case(spec, case_dir, fp, [FORMATS["state_dict"]], "cpu")
    manifest = Manifest.from_dict(m.to_dict())
    path = case_dir / "state_dict" / "model.pt"
    size = path.stat().st_size
    options = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict")
    base = CellResult(source=fp.label, target=fp.label, case=spec.name, format="state_dict", load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=build_id())
    ctx = CaseContext(spec.to_dict(), "cpu")
    bare_model = build(spec, "empty").model

    def bare() -> None:
        state = torch.load(str(path), map_location="cpu")
        bare_model.load_state_dict(state)

    def harness_cell() -> None:
        r = run_cell(base, manifest, FORMATS["state_dict"], options, case_dir / "state_dict", case_dir / "reference.bin", ctx, fp.compute_key)
        if r.outcome != Outcome.PASS:
            raise RuntimeError(f"bench cell did not pass: {r.outcome.value} {r.detail}")

    bare()
    harness_cell()  # builds the template once, as a worker does for a case
    bare_times: list[float] = []
    cell_times: list[float] = []
    for _ in range(repeat):
        for fn, times in ((bare, bare_times), (harness_cell, cell_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    ratio = statistics.median(cell_times) / statistics.median(bare_times)
    return {
        "verify_overhead_ratio": ratio,
        "raw": {"big_file_bytes": size, "bare_load_seconds": bare_times, "harness_cell_seconds": cell_times},
        "artifact": str(case_dir / "state_dict"),
    }


def bench_scan(path: Path, repeat: int) -> dict[str, Any]:
    """check's static scan of the big file (bench_verify's raw figures hold a bare load of it to set beside)."""
    from harness.check.sniff import sniff

    scan_times = []
    for _ in range(repeat):
        start = time.perf_counter()
        found = sniff(path)
        scan_times.append(time.perf_counter() - start)
    if found.problems or not found.tensors:
        raise RuntimeError(f"bench scan did not read the file cleanly: {found.problems[:1] or 'no tensors'}")
    return {
        "scan_seconds_1gib": statistics.median(scan_times),
        "raw": {"scan_seconds": scan_times, "scan_file_bytes": path.stat().st_size, "scan_pickles": found.pickles},
    }


def bench_check(path: Path, repeat: int) -> dict[str, Any]:
    """``check`` of the big file (in process, no --trust) against one bare ``torch.load`` of it, alternating.

    check scans the file and tries every load option this env has; it runs
    one load per group of options torch answers alike, so its cost is a few
    loads (an mmap one is lazy), not one per option.
    """
    import torch

    from harness.check.checker import check_file

    def bare() -> None:
        torch.load(str(path))

    loads: list[int] = []

    def check() -> None:
        report = check_file(path)
        if report.verdict != "loads":
            raise RuntimeError(f"bench check did not find the file loading: {report.summary}")
        loads[:] = [sum(1 for a in report.attempts if a.where and a.same_as is None), len(report.attempts)]

    bare()
    check()  # page cache, imports and check's questions to torch, as a long-running worker has them
    bare_times: list[float] = []
    check_times: list[float] = []
    for _ in range(repeat):
        for fn, times in ((bare, bare_times), (check, check_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {
        "check_overhead_ratio": statistics.median(check_times) / statistics.median(bare_times),
        "raw": {"check_seconds": check_times, "check_bare_load_seconds": bare_times, "check_loads_run": loads[0], "check_attempts": loads[1]},
    }


def _rss_child(artifact: str, mmap: bool) -> None:
    """In a fresh process: one raw verification cell; print peak RSS growth in bytes."""
    from harness import build_id
    from harness.runtime.env import fingerprint
    from harness.runtime.fileio import read_json
    from harness.runtime.formats import FORMATS
    from harness.runtime.load_options import LoadOptions
    from harness.runtime.manifest import Manifest
    from harness.runtime.results import CellResult, Outcome
    from harness.runtime.runner.cell import CaseContext, run_cell

    directory = Path(artifact)
    manifest = Manifest.from_dict(read_json(directory / "manifest.json"))
    fp = fingerprint("cpu")
    options = LoadOptions(map_location="cpu", weights_only="default", mmap=mmap, apply="none")
    base = CellResult(source=fp.label, target=fp.label, case=manifest.case, format="state_dict", load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=build_id())
    before = _rss_reset()
    r = run_cell(base, manifest, FORMATS["state_dict"], options, directory, directory.parent / "reference.bin",
                 CaseContext(manifest.spec, "cpu"), fp.compute_key)
    print(json.dumps({"outcome": r.outcome.value, "rss_growth": _rss_peak() - before}))


def _status_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss_reset() -> int:
    """Current RSS, after resetting the peak to it (Linux: /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        current = _status_kib("VmRSS")
        if current is not None:
            return current
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_peak() -> int:
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_rss(artifact: str) -> dict[str, Any]:
    size = (Path(artifact) / "model.pt").stat().st_size
    out = {}
    for mmap in (False, True):
        done = subprocess.run([sys.executable, "-m", "harness.bench", "--rss-child", artifact] + (["--mmap"] if mmap else []),
                              capture_output=True, text=True, check=True)
        data = json.loads(done.stdout.strip().splitlines()[-1])
        out["mmap" if mmap else "no_mmap"] = data["rss_growth"] / size
    return {"peak_rss_ratio": out}


def _save_and_load(specs: list[Spec], work: Path) -> dict[str, float]:
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner import load_phase, save_phase

    start = time.perf_counter()
    save_phase(work / "A", specs, "cpu", list(FORMATS.values()), progress=False)
    save_seconds = time.perf_counter() - start
    summary = load_phase(work / "A", work / "R", progress=False)
    return {"cells": summary.total, "save_seconds": save_seconds, "load_seconds": summary.seconds,
            "startup_seconds": summary.startup_seconds}


def _generated(n: int, seed: int) -> list[Spec]:
    from harness.strategies import generate_specs

    return generate_specs(n, seed)


def bench_cells(work: Path, generated: int) -> dict[str, Any]:
    from harness.runtime.cases import curated

    specs = curated() + (_generated(generated, 1) if generated else [])
    _log(f"load phase over {len(specs)} cases")
    run = _save_and_load(specs, work / "cells")
    return {"cells_per_second": run["cells"] / run["load_seconds"], "raw": {"cells_run": run}}


def bench_process_per_cell(work: Path, run: dict[str, float], samples: int) -> dict[str, Any]:
    """The naive way: a save script and a load script, one process each, per cell."""
    save_script = work / "naive_save.py"
    load_script = work / "naive_load.py"
    save_script.write_text(
        "import sys, json, torch\n"
        "from harness.runtime.spec import Spec\nfrom harness.runtime.builder import build\n"
        "spec = Spec.from_dict(json.load(open(sys.argv[1])))\n"
        "torch.save(build(spec).model.state_dict(), sys.argv[2])\n"
    )
    load_script.write_text(
        "import sys, json, torch\n"
        "from harness.runtime.spec import Spec\nfrom harness.runtime.builder import build\n"
        "spec = Spec.from_dict(json.load(open(sys.argv[1])))\n"
        "model = build(spec, 'empty').model\n"
        "model.load_state_dict(torch.load(sys.argv[2], map_location='cpu'))\n"
        "expected = build(spec).model.state_dict()\n"
        "assert all(torch.equal(model.state_dict()[k].view(torch.uint8) if v.dtype.is_floating_point else model.state_dict()[k], "
        "v.view(torch.uint8) if v.dtype.is_floating_point else v) for k, v in expected.items() if v.is_contiguous() and v.layout == torch.strided)\n"
    )
    from harness.runtime.cases import curated

    spec = next(s for s in curated() if s.name == "simple_net")
    spec_file = work / "spec.json"
    spec_file.write_text(spec.to_json())
    times = []
    for i in range(samples):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(save_script), str(spec_file), str(work / f"n{i}.pt")], check=True, capture_output=True)
        subprocess.run([sys.executable, str(load_script), str(spec_file), str(work / f"n{i}.pt")], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    naive = statistics.median(times)
    harness_per_cell = (run["save_seconds"] + run["startup_seconds"] + run["load_seconds"]) / run["cells"]
    return {"process_per_cell_ratio": naive / harness_per_cell,
            "raw": {"naive_cell_seconds": times, "harness_cell_seconds_all_in": harness_per_cell}}


def bench_scaling(work: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    points = []
    for n in sizes:
        _log(f"scaling: {n} generated cases")
        run = _save_and_load(_generated(n, 100 + n), work / f"scale{n}")
        points.append((run["cells"], run["load_seconds"]))
    xs = [math.log(c) for c, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"scaling_exponent": slope, "raw": {"scaling_points": points}}


def bench_env_ready(work: Path) -> dict[str, Any]:
    """A venv with this torch from uv's warm cache, until `import torch` works."""
    import torch

    uv = shutil.which("uv")
    if uv is None:
        return {"env_ready_cached_s": None, "raw": {"env_ready_note": "uv is not on PATH"}}
    from harness.matrix import requirements

    venv = work / "venv"
    version = torch.__version__.split("+")[0]
    start = time.perf_counter()
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([uv, "pip", "install", "-q", "--python", python, *requirements(version), "xxhash"], check=True)
    subprocess.run([python, "-c", "import torch"], check=True)
    return {"env_ready_cached_s": time.perf_counter() - start}


def bench_generate(n: int) -> dict[str, Any]:
    start = time.perf_counter()
    _generated(n, 0)
    return {"generate_500_specs_s": (time.perf_counter() - start) * 500 / n, "raw": {"generated_specs": n}}


def shrink_bench_spec() -> dict[str, Any]:
    """The case the shrink bench breaks: what the planted bug needs, beside things that do not matter.

    The bug (`harness.shrink.plant`) needs a float16 tensor of at least four
    elements and an int64 tensor: ``fp16.weight`` (8 float16 elements) and
    the ``steps`` buffer. A tie, a channels_last layout, float64, bfloat16
    and bool tensors and three other layers are there for a shrink to drop.
    """
    return {
        "name": "bench_shrink",
        "seed": 3,
        "description": "A planted failure (float16 weight + int64 buffer) among layers that do not matter, for the shrink bench.",
        "model": {"kind": "module_dict", "children": [
            {"name": "emb", "kind": "embedding", "num_embeddings": 6, "embedding_dim": 3},
            {"name": "head", "kind": "linear", "in_features": 3, "out_features": 6, "bias": False},
            {"name": "fp16", "kind": "linear", "in_features": 4, "out_features": 2, "dtype": "float16"},
            {"name": "conv", "kind": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 3},
            {"name": "wide", "kind": "linear", "in_features": 2, "out_features": 2, "dtype": "float64"},
        ]},
        "tensors": [
            {"name": "steps", "shape": [3], "dtype": "int64"},
            {"name": "mask", "shape": [5], "dtype": "bool"},
            {"name": "scale", "shape": [2, 2], "dtype": "bfloat16", "at": "wide"},
        ],
        "ties": [{"from": "emb.weight", "to": "head.weight"}],
        "layout": [{"at": "conv.weight", "kind": "channels_last"}],
    }


@dataclass(frozen=True)
class PlantedFailure:
    """A results folder holding a cell that the planted torch bug made fail, and how to run it again."""

    results: Path  #: the folder `load --results` wrote
    key: str  #: the failing cell: SOURCE|CASE|FORMAT|OPTIONS
    line: dict[str, Any]  #: its result line
    source_python: str  #: the interpreter that saved (this one)
    target_python: str  #: the planted wrapper that loaded (`harness.shrink.plant.planted_python`)


def planted_failure(work: Path, spec: Optional[dict[str, Any]] = None) -> PlantedFailure:
    """Save `spec` (default `shrink_bench_spec`) as state_dict with this Python, load it through the planted wrapper.

    Both phases run as ``python -m harness`` subprocesses, as a user runs
    them; the cell returned is a mismatch, preferring one loaded into a
    model (``apply=strict``, no mmap), then the first by key. RuntimeError
    when no cell failed: the plant did not fire.
    """
    from harness.runtime.results import line_key
    from harness.runtime.spec import Spec
    from harness.runtime.store import read_results
    from harness.shrink.plant import planted_python

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / "shrink_spec.json"
    spec_file.write_text(Spec.from_dict(spec or shrink_bench_spec()).to_json(), encoding="utf-8")
    artifacts, results = work / "shrink_artifacts", work / "shrink_results"
    wrapper = planted_python(sys.executable, work / "planted")
    env = dict(os.environ, TORCH_ROUNDTRIP_PLAIN="1")
    env.pop("TORCH_ROUNDTRIP_PLANT", None)  # the save side is a plain torch
    saved = subprocess.run([sys.executable, "-m", "harness", "save", "--cases", str(spec_file), "--out", str(artifacts),
                            "--formats", "state_dict", "--quiet"], capture_output=True, text=True, env=env)
    if saved.returncode != 0:
        msg = f"the shrink bench's save failed (exit {saved.returncode}): {saved.stderr[-500:]}"
        raise RuntimeError(msg)
    # Exit 1 is the point: the load finds the planted mismatches.
    done = subprocess.run([wrapper, "-m", "harness", "load", "--artifacts", str(artifacts), "--results", str(results),
                           "--format", "state_dict", "--quiet"], capture_output=True, text=True, env=env)
    lines = [line for path in sorted(results.glob("*.jsonl")) for line in read_results(path)]
    failed = sorted((line for line in lines if line.get("outcome") == "mismatch"), key=line_key)
    if not failed:
        msg = f"the planted bug made no cell fail (load exit {done.returncode}, {len(lines)} cells): {done.stderr[-500:]}"
        raise RuntimeError(msg)
    line = next((x for x in failed if x["load"].get("apply") == "strict" and not x["load"].get("mmap")), failed[0])
    return PlantedFailure(results, line_key(line), line, sys.executable, wrapper)


def bench_shrink(work: Path) -> dict[str, Any]:
    """Shrink a planted failure between a plain save env and a planted load env: steps per second, and steps."""
    from harness.shrink import ShrinkRequest, shrink_cell

    failure = planted_failure(work / "shrink")
    _log(f"shrinking {failure.key}")
    request = ShrinkRequest(results=failure.results, key=failure.key, source_python=failure.source_python,
                            target_python=failure.target_python, out=work / "shrink" / "shrunk", max_seconds=120.0)
    start = time.perf_counter()
    record = shrink_cell(request, progress=False)
    seconds = time.perf_counter() - start
    if record.status not in ("done", "time_limit", "step_limit"):
        msg = f"the shrink bench's shrink ended {record.status!r}, so its steps measure nothing: {record.observed}"
        raise RuntimeError(msg)
    return {
        "shrink_steps_per_second": record.steps_per_second,
        "shrink_steps": record.steps,
        "raw": {"shrink_seconds": seconds, "shrink_search_seconds": record.seconds, "shrink_startup_seconds": record.startup_seconds,
                "shrink_status": record.status,
                "shrink_accepted": record.accepted, "shrink_cell": failure.key,
                "shrink_initial": record.initial, "shrink_final": record.final},
    }


def _small_fleet(folder: Path, count: int) -> None:
    """`count` small checkpoint files in nested folders: state dicts, training checkpoints and safetensors, a few tensors each."""
    import torch

    try:
        from safetensors.torch import save_file
    except ImportError:  # an env without safetensors: its share are state dicts
        save_file = None
    torch.manual_seed(0)
    for i in range(count):
        path = folder / f"run-{i // 50:02d}" / f"step-{i:04d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"fc.weight": torch.randn(8, 8), "fc.bias": torch.randn(8), "step": torch.tensor(i)}
        kind = i % 3
        if kind == 2 and save_file is not None:
            save_file(state, str(path.with_suffix(".safetensors")))
        elif kind == 1:
            moments = {0: {"step": torch.tensor(float(i)), "exp_avg": torch.zeros(8, 8), "exp_avg_sq": torch.zeros(8, 8)}}
            optimizer = {"state": moments, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}
            torch.save({"model": state, "optimizer": optimizer, "epoch": i}, path.with_suffix(".ckpt"))
        else:
            torch.save(state, path.with_suffix(".pt"))


def bench_fleet(work: Path, count: int) -> dict[str, Any]:
    """A fleet check (`harness.check.fleet.run_fleet`, one worker per CPU) of `count` small files: files per second.

    The wall time of the whole run, its fork server and workers' start
    included, as a user's ``check DIR --out OUT`` takes it; the start is in
    the raw figures too, with the rate without it.
    """
    import torch

    from harness.check.fleet import FleetOptions, run_fleet
    from harness.runtime.env import cuda_available, label_for

    folder, out = work / "fleet", work / "fleet-out"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    _small_fleet(folder, count)
    workers = os.cpu_count() or 1
    # The env's label given, as a user may: the run then times its workers' start (startup_seconds).
    label = label_for(torch.__version__, f"{sys.version_info[0]}.{sys.version_info[1]}", "cuda" if cuda_available() else "cpu")
    start = time.perf_counter()
    run = run_fleet(FleetOptions(paths=(str(folder),), out=out, workers=workers, label=label, progress=False))
    seconds = time.perf_counter() - start
    if run.checked != count or len(run.own) != count:
        msg = f"the fleet bench checked {run.checked} of its {count} files ({len(run.own)} lines), so its rate measures nothing"
        raise RuntimeError(msg)
    broken = [line.file for line in run.own if line.verdict not in ("loads", "loads_some_ways")]
    if broken:
        msg = f"the fleet bench's files should all load, but {len(broken)} do not (first: {broken[0]})"
        raise RuntimeError(msg)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "fleet_files_per_second": count / seconds,
        "raw": {"fleet_files": count, "fleet_seconds": seconds, "fleet_workers": run.workers, "fleet_startup_seconds": run.startup_seconds,
                "fleet_files_per_second_after_start": count / max(seconds - run.startup_seconds, 1e-9),
                "fleet_restarts": run.restarts},
    }


#: The cases of the crash bench: a few hundred cells of small curated cases, of a plain, a tied and a conv model.
CRASH_BENCH_CASES = ("simple_net", "tied_lm", "cnn_batchnorm")


def bench_restarts(work: Path, rounds: int, cases: tuple[str, ...] = CRASH_BENCH_CASES) -> dict[str, Any]:
    """Load phases of the same cells, crash-free and with torch aborting every fifth load, alternating.

    The crash runs load through the planted abort (`harness.shrink.plant`,
    ``abort:5``, counted per worker process); every crash costs that cell
    and a new worker. RuntimeError when a run did not record every planned
    cell, or the plant never fired: then the rates measure nothing.
    """
    from harness.runtime.cases import curated
    from harness.runtime.formats import FORMATS
    from harness.runtime.runner import load_phase, save_phase
    from harness.shrink.plant import ENV_VAR, planted_python

    root = work / "restarts"
    shutil.rmtree(root, ignore_errors=True)
    save_phase(root / "A", [s for s in curated() if s.name in cases], "cpu", list(FORMATS.values()), progress=False)
    plant = root / "plant"
    planted_python(sys.executable, plant, mode="abort:5")  # its folder (roundtrip_plant.py, sitecustomize.py) is what counts here
    free_env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    # What the wrapper planted_python writes would set, given to the load worker (and its fork server) directly.
    crash_env = dict(free_env, **{ENV_VAR: "abort:5", "PYTHONPATH": os.pathsep.join(
        p for p in (str(plant), free_env.get("PYTHONPATH", "")) if p)})
    rates: dict[str, list[float]] = {"free": [], "crash": []}
    planned = 0
    crashes: list[int] = []
    restarts: list[float] = []
    startups: list[float] = []
    for i in range(rounds):
        for kind, env in (("free", free_env), ("crash", crash_env)):
            results = root / f"R-{kind}-{i}"
            summary = load_phase(root / "A", results, progress=False, worker_env=env)
            recorded = sum(1 for path in results.glob("*.jsonl") for line in path.read_text().splitlines() if line.strip())
            planned = planned or summary.total
            if summary.total != planned or recorded != planned:
                msg = f"the crash bench's {kind} run recorded {summary.total} cells ({recorded} lines) of {planned}: cells were lost"
                raise RuntimeError(msg)
            rates[kind].append(summary.total / summary.seconds)
            if kind == "crash":
                if not summary.counts["crash"]:
                    msg = "the planted abort never fired: the crash bench's crash run had no crash"
                    raise RuntimeError(msg)
                crashes.append(summary.counts["crash"])
                restarts.extend(summary.restarts)
                startups.extend(summary.startups)
    ratios = [c / f for f, c in zip(rates["free"], rates["crash"])]
    shutil.rmtree(root, ignore_errors=True)
    return {
        "worker_restart_s": statistics.median(restarts),
        "crash_cell_rate_ratio": statistics.median(ratios),
        "raw": {"crash_bench_cells": planned, "crash_bench_crashes": crashes, "crash_bench_cells_per_second": rates,
                "crash_bench_ratios": ratios, "worker_restarts": len(restarts),
                "worker_restart_max_s": max(restarts),
                # what a new worker costs, a spare's paid while its predecessor runs: fork to hello
                "worker_fork_to_hello_s": statistics.median(startups) if startups else None},
    }


def _met(key: str, value: Any) -> Optional[bool]:
    op, target = TARGETS[key]
    if op == "report" or value is None:
        return None
    return value <= target if op == "<=" else value >= target


@dataclass(frozen=True)
class BenchRecord:
    """bench.json: the figures of one bench run, with the targets they are held to.

    `targets` and `met` are derived from `TARGETS` and written for readers
    that do not know them; `raw` keeps every timing a figure came from.
    """

    figures: dict[str, Any]
    quick: bool = False
    raw: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    when: str = ""

    @property
    def targets(self) -> dict[str, str]:
        return {k: (f"{op} {t:g}" if t is not None else "report") for k, (op, t) in TARGETS.items()}

    @property
    def met(self) -> dict[str, Optional[bool]]:
        return {k: _met(k, self.figures.get(k) if not isinstance(self.figures.get(k), dict) else None) for k in TARGETS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": BENCH_SCHEMA, "quick": self.quick, "figures": self.figures, "targets": self.targets,
            "met": self.met, "raw": self.raw, "machine": self.machine, "when": self.when,
        }

    @classmethod
    def from_dict(cls, data: Any) -> BenchRecord:
        """The record in `data`; ValueError (one line) when it is not bench.json of this schema."""
        if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
            msg = "bench.json is a JSON object with an object of figures"
            raise ValueError(msg)
        if data.get("schema") != BENCH_SCHEMA:
            msg = f"schema={data.get('schema')!r} but this harness reads bench schema {BENCH_SCHEMA}"
            raise ValueError(msg)
        return cls(data["figures"], bool(data.get("quick")), data.get("raw", {}), data.get("machine", {}), str(data.get("when", "")))

    def lines(self) -> list[str]:
        """One line per figure: name, value, target and whether it is met."""
        out = []
        met = self.met
        for key, target in self.targets.items():
            value = self.figures.get(key)
            shown = json.dumps(value) if not isinstance(value, float) else f"{value:.3g}"
            flag = "" if met[key] is None else (" ok" if met[key] else " MISSED")
            out.append(f"{key:24} {shown:>28}  target {target}{flag}")
        return out


def run_bench(out: Path, *, gib: float = 1.0, quick: bool = False, workdir: Optional[Path] = None) -> BenchRecord:
    """Measure everything and write `out` (bench.json)."""
    import torch

    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="bench-")) if own else Path(workdir)  # type: ignore[arg-type]  # workdir is set when not own
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    raw: dict[str, Any] = {}

    def take(part: dict[str, Any]) -> None:
        raw.update(part.pop("raw", {}))
        part.pop("artifact", None)
        figures.update(part)

    try:
        have_hypothesis = True
        try:
            import harness.strategies  # noqa: F401
        except ImportError:
            have_hypothesis = False
        take(bench_digest(min(gib, 1.0), 3 if quick else 5))
        verify = bench_verify(work, gib, 2 if quick else 5)
        artifact = verify["artifact"]
        take(verify)
        take(bench_rss(artifact))
        take(bench_scan(Path(artifact) / "model.pt", 3 if quick else 5))
        take(bench_check(Path(artifact) / "model.pt", 2 if quick else 5))
        shutil.rmtree(work / "big", ignore_errors=True)
        cells = bench_cells(work, (4 if quick else 20) if have_hypothesis else 0)
        run = cells["raw"]["cells_run"]
        take(cells)
        take(bench_process_per_cell(work, run, 2 if quick else 5))
        if have_hypothesis:
            take(bench_scaling(work, (2, 4, 8) if quick else (10, 20, 40)))
            take(bench_generate(20 if quick else 500))
        else:
            figures["scaling_exponent"] = figures["generate_500_specs_s"] = None
            raw["hypothesis_note"] = "Hypothesis is not installed: scaling and generation were not measured"
        take(bench_env_ready(work))
        take(bench_shrink(work))  # cheap (small spec, bounded time): also with --quick
        take(bench_fleet(work, 100 if quick else 1000))
        take(bench_restarts(work, 1 if quick else 3, CRASH_BENCH_CASES[:1] if quick else CRASH_BENCH_CASES))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    record = BenchRecord(
        figures, quick=quick, raw=raw,
        machine={
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        },
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    from harness.runtime.fileio import write_json

    write_json(out, record.to_dict())
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rss-child", required=True)
    parser.add_argument("--mmap", action="store_true")
    ns = parser.parse_args()
    _rss_child(ns.rss_child, ns.mmap)
