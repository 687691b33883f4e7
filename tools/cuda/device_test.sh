#!/usr/bin/env bash
# The one command run on the GPU machine (after tools/cuda/build.sh here; carry [".dev/cuda"]):
#   1. tern-cuda's device tests (every kernel against tern's CPU kernels),
#   2. the same tests under compute-sanitizer memcheck (TERN_CUDA_QUICK=1: largest shapes skipped),
#   3. the micro-benchmark (ternary GEMV GB/s on 2560x6912 and 128256x2560 vs a device copy
#      measured in the same run, IMMA prefill, other formats, attention),
# then prints a short summary table last. Logs go to $OUT (or /tmp/tern-cuda-out).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=.dev/cuda/bin
out=${OUT:-/tmp/tern-cuda-out}
mkdir -p "$out"
[ -x "$bin/tern_cuda_device" ] || { echo "run tools/cuda/build.sh first and carry .dev/cuda" >&2; exit 2; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
export PATH="/usr/local/cuda/bin:$PATH"
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && libdirs="$libdirs:$d"; done
# pip-installed NVIDIA wheels (PyTorch's) as a fallback for NVRTC / cuBLAS.
py_nv=$(python3 -c 'import nvidia, os; r = os.path.dirname(nvidia.__path__[0]) + "/nvidia"; print(":".join(os.path.join(r, d, "lib") for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, "lib"))))' 2>/dev/null || true)
for d in $(ls -d /usr/local/lib/python3*/dist-packages/nvidia/*/lib /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null); do libdirs="$libdirs:$d"; done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}${libdirs}${py_nv:+:$py_nv}"
(command -v nvcc >/dev/null && nvcc --version | tail -2) || true
ldconfig -p 2>/dev/null | grep -E "libnvrtc.so|libcublas.so|libcuda.so" | head -5

export TERN_CUDA_CACHE=/tmp/tern-kcache
mkdir -p "$TERN_CUDA_CACHE" && cp .dev/cuda/kcache/*.cubin "$TERN_CUDA_CACHE"/ 2>/dev/null
echo "precompiled kernels: $(ls "$TERN_CUDA_CACHE" | wc -l)"

t0=$(date +%s)
"$bin/tern_cuda_device" --test-threads=4 >"$out/tests.log" 2>&1
rc_tests=$?
t1=$(date +%s)
grep -E "^test |panicked|worst|rel L2" "$out/tests.log" | head -80

if command -v compute-sanitizer >/dev/null; then
  TERN_CUDA_QUICK=1 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$bin/tern_cuda_device" --test-threads=1 >"$out/memcheck.log" 2>&1
  rc_mem=$?
  tail -4 "$out/memcheck.log"
else
  rc_mem=127
  echo "compute-sanitizer not found" >"$out/memcheck.log"
fi
t2=$(date +%s)

timeout 150 "$bin/cuda_bench" >"$out/bench.log" 2>&1
rc_bench=$?
t3=$(date +%s)
grep -vE "^\|" "$out/bench.log" | tail -5

echo
echo "== tern-cuda on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
echo "| step | exit | seconds | result |"
echo "|---|---|---|---|"
echo "| device tests | $rc_tests | $((t1 - t0)) | $(grep -E '^test result' "$out/tests.log" | tail -1) |"
echo "| memcheck | $rc_mem | $((t2 - t1)) | $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) $(grep -E '^test result' "$out/memcheck.log" | tail -1) |"
echo "| bench | $rc_bench | $((t3 - t2)) | see table |"
echo
grep -E "^\|" "$out/bench.log"
