#!/usr/bin/env bash
# One step on a machine with a CUDA GPU: real CUDA envs, saved on the GPU,
# loaded with every map_location on the CPU and on the GPU.
#
#   scripts/gpu-check.sh [OUT_DIR] [-- extra matrix options, e.g. --torch 2.8.0]
#
# Writes OUT_DIR (default reports/gpu) with the artifacts, results and the
# report; exits non-zero on any regression or mismatch.
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

python3 -m pip install -q "nox>=2024.4.15" uv
mkdir -p "$out"
TORCH_ROUNDTRIP_REPORTS="$(cd "$out" && pwd)" TORCH_ROUNDTRIP_PLAIN=1 \
  nox -s roundtrip -- --device cuda "$@" 2>&1 | tee "$out/gpu-check.log"
echo "gpu-check: report in $out/index.html, summary in $out/summary.md"
