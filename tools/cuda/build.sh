#!/usr/bin/env bash
# Builds what tools/cuda/device_test.sh runs on the GPU machine, here (no CUDA toolkit needed):
#   .dev/cuda/bin/tern_cuda_device   the tern-cuda device test binary (cargo test --no-run, path
#                                    taken from cargo's JSON output)
#   .dev/cuda/bin/cuda_bench         the micro-benchmark (examples/cuda_bench.rs)
#   .dev/cuda/kcache/*.cubin         the kernels precompiled for sm_90 when an NVRTC library is
#                                    available here (NVRTC_LIB, e.g. from the PyPI wheel
#                                    nvidia-cuda-nvrtc==13.0.*), so the device spends no time
#                                    compiling; without it the device compiles on first use.
# .dev/ is git-ignored: pass carry [".dev/cuda"] to the device call.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=.dev/cuda
rm -rf "$out/bin" && mkdir -p "$out/bin" "$out/kcache"

test_exe=$(cargo test -p tern-cuda --release --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "device" and m["profile"]["test"]:
        print(m["executable"])
')
[ -n "$test_exe" ] || { echo "build.sh: no tern-cuda device test executable in cargo output" >&2; exit 1; }
cp "$test_exe" "$out/bin/tern_cuda_device"

bench_exe=$(cargo build -p tern-cuda --release --example cuda_bench --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_bench":
        print(m["executable"])
')
[ -n "$bench_exe" ] || { echo "build.sh: no cuda_bench executable in cargo output" >&2; exit 1; }
cp "$bench_exe" "$out/bin/cuda_bench"

NVRTC_LIB=${NVRTC_LIB:-/tmp/nvrtc/nvidia/cu13/lib}
if [ -e "$NVRTC_LIB/libnvrtc.so.13" ] || [ -e "$NVRTC_LIB/libnvrtc.so" ]; then
  LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" TERN_CUDA_CACHE="$PWD/$out/kcache" \
    "$out/bin/cuda_bench" precompile 9 0 | tee "$out/precompile.txt"
  # Drop cache files of older kernel sources (keys are content hashes).
  for f in "$out"/kcache/*.cubin; do grep -qF "$(basename "$f")" "$out/precompile.txt" || rm -f "$f"; done
else
  echo "build.sh: no NVRTC in $NVRTC_LIB; kernels will be compiled on the device"
fi
du -sh "$out"/bin/* "$out/kcache"
