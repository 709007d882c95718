#!/usr/bin/env bash
# The GPU check, in one command, for a machine with an NVIDIA GPU, the CUDA toolkit, CMake and Python (no Node and
# no network needed): builds the CUDA engine and the native programs from this tree, runs the native op table
# (every CUDA kernel against its CPU twin, on real prompts when ../shared/data is beside the tree), runs it again
# under compute-sanitizer where that is installed, and measures CPU against CUDA throughput for embed, assign,
# score and the fused route at 1k, 64k and 1M prompts. Prints everything; exits non-zero when a check fails.
#   scripts/gpu-check.sh [max-batch]        (default 1000000; about 3 minutes on an H100-class machine)
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
max_batch="${1:-1000000}"
out=build-gpu
mkdir -p "$out"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
command -v nvcc >/dev/null && nvcc --version | tail -1 || echo "nvcc: not on PATH (CMake also looks in /usr/local/cuda)"
cmake --version | head -1
echo "cores: $(nproc)"

echo "== build: the CUDA engine, the native tests and the GPU bench"
if ! { cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Release -DUNIROUTE_CUDA=ON >"$out/build.log" 2>&1 &&
       cmake --build "$out" -j"$(nproc)" --target uniroute_native_test uniroute_gpu_bench >>"$out/build.log" 2>&1; }; then
  tail -60 "$out/build.log"
  echo "gpu-check: the build failed"
  exit 1
fi
grep -E "uniroute: CUDA backend" "$out/build.log" || true

prompts=""
for f in ../shared/data/zeroeval/prompts.jsonl ../shared/data/routerbench/prompts.jsonl shared/data/zeroeval/prompts.jsonl; do
  if [ -f "$f" ]; then prompts="$f"; break; fi
done
if [ -n "$prompts" ]; then
  python3 -c 'import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        print(json.loads(line)["text"].replace("\n", " ").replace("\r", " "))' "$prompts" >"$out/prompts.txt"
  export UNIROUTE_TEST_PROMPTS="$PWD/$out/prompts.txt"
  echo "real prompts: $(wc -l <"$out/prompts.txt") from $prompts"
else
  echo "real prompts: none beside the tree; synthetic ones"
fi

echo "== the op table: CUDA against CPU (native tests)"
timeout 300 "./$out/uniroute_native_test"
rc_tests=$?

rc_san=0
if command -v compute-sanitizer >/dev/null; then
  echo "== the native tests under compute-sanitizer (memcheck)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "./$out/uniroute_native_test" >"$out/sanitizer.log" 2>&1
  rc_san=$?
  grep -E "ERROR SUMMARY|passed, " "$out/sanitizer.log" | tail -3
  [ $rc_san -eq 124 ] && { echo "compute-sanitizer: timed out (not a failure)"; rc_san=0; }
else
  echo "== compute-sanitizer: not installed; skipped"
fi

echo "== throughput: CPU against CUDA"
timeout 240 "./$out/uniroute_gpu_bench" "$max_batch"
rc_bench=$?

echo "gpu-check: native tests exit $rc_tests, compute-sanitizer exit $rc_san, bench exit $rc_bench, $(( $(date +%s) - t0 )) s"
[ $rc_tests -eq 0 ] && [ $rc_san -eq 0 ] && [ $rc_bench -eq 0 ]
