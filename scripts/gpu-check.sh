#!/usr/bin/env bash
# One step on a machine with a CUDA GPU: real CUDA envs, saved on the GPU,
# loaded with every map_location on the CPU and on the GPU.
#
#   scripts/gpu-check.sh [OUT_DIR] [-- extra matrix options, e.g. --torch 2.8.0]
#
# Writes OUT_DIR (default reports/gpu) with the artifacts, results and the
# report; exits non-zero on any regression or mismatch.
#
# The curated case cuda_index1 is saved from the second GPU (device_index 1):
# on a one-GPU host its real CUDA save is a skip (no cuda:1) and its
# cuda-emulated file (tagged cuda:1) must fail without map_location, diagnosed
# cuda_index_out_of_range, and load exactly with {"cuda:1": "cuda:0"},
# "cuda:0" and torch.device("cuda", 0); with two GPUs or more it is saved on
# cuda:1 for real and loads there as it is. The step checks that after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-reports/gpu}"
shift || true
[[ "${1:-}" == "--" ]] && shift

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no CUDA GPU here (nvidia-smi finds none); run it on a GPU machine" >&2
  exit 2
fi
nvidia-smi -L
gpus="$(nvidia-smi -L | grep -c '^GPU ')"
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  visible="$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)" || visible=0
  (( visible < gpus )) && gpus="$visible"
fi
echo "gpu-check: $gpus GPU(s) visible; the cuda:1 case runs as on a $([[ $gpus -ge 2 ]] && echo multi || echo one)-GPU host"

python3 -m pip install -q "nox>=2024.4.15" uv
mkdir -p "$out"
status=0
TORCH_ROUNDTRIP_REPORTS="$(cd "$out" && pwd)" TORCH_ROUNDTRIP_PLAIN=1 \
  nox -s roundtrip -- --device cuda "$@" 2>&1 | tee "$out/gpu-check.log" || status=$?

# The cuda:1 cells, read from the result lines (standard library only).
python3 - "$out/results" "$gpus" <<'PY' || status=1
import json
import sys
from pathlib import Path

results, gpus = Path(sys.argv[1]), int(sys.argv[2])
rows = [json.loads(line) for p in sorted(results.glob("*.jsonl")) for line in p.read_text().splitlines() if line.strip()]
cells = [r for r in rows if r["case"] == "cuda_index1" and r["format"] == "state_dict" and r["target"].endswith("-cuda")
         and r["load"].get("apply") == "none" and "source" not in r["load"] and r["load"].get("weights_only") == "default"
         and not r["load"].get("mmap")]
problems = []


def check(source_device, map_location, want, code=None):
    found = [r for r in cells if r["source"].endswith("-" + source_device) and r["load"].get("map_location") == map_location]
    if not found:
        problems.append(f"no cuda_index1 cell from {source_device} with map_location={map_location}")
    for r in found:
        got = ((r.get("diagnosis") or {}).get("code") if r["outcome"] == "error" else None)
        if r["outcome"] != want or (code and got != code):
            problems.append(f"{r['source']} -> {r['target']} map_location={map_location}: {r['outcome']} {got or ''} {r['detail'][:160]}")


for fix in ("dict:cuda:1->cuda:0", "cuda:0", "device:cuda:0"):
    check("cuda-emulated", fix, "pass")
if gpus >= 2:
    check("cuda-emulated", "none", "pass")
    check("cuda", "none", "pass")
else:
    check("cuda-emulated", "none", "error", "cuda_index_out_of_range")
    # The real save had no cuda:1: one skip line for the artifact, with the reason.
    saved = [r for r in rows if r["case"] == "cuda_index1" and r["format"] == "state_dict" and r["source"].endswith("-cuda")]
    if not saved or any(r["outcome"] != "skip" or "device_count() is" not in r["detail"] for r in saved):
        problems.append("the real CUDA save of cuda_index1 is not a skip naming the GPU count: "
                        + "; ".join(f"{r['outcome']} {r['detail'][:120]}" for r in saved[:3]))
print("gpu-check: cuda:1 cells:", "ok" if not problems else "FAILED")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
echo "gpu-check: report in $out/index.html, summary in $out/summary.md"
exit "$status"
