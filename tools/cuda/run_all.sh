#!/usr/bin/env bash
# tern's CUDA pipeline: build here -> carry -> test -> bench on the GPU machine, short table last.
#
#   bash tools/cuda/run_all.sh build     (here, no CUDA toolkit needed) builds into .dev/cuda/:
#       bin/tern_cuda_device   tern-cuda's kernel tests (vs tern's CPU kernels)   [tools/cuda/build.sh]
#       bin/cuda_bench         kernel micro-benchmarks                            [tools/cuda/build.sh]
#       bin/cuda_fixtures      tern-model's CUDA fixture tests (tests/cuda_fixtures.rs)
#       bin/cuda_model_bench   whole-model benchmark (examples/cuda_model_bench.rs)
#       kcache/*.cubin         kernels precompiled for sm_90 (with NVRTC_LIB, see build.sh)
#     and splits the SmolLM2 GGUF (98 MB; over the 64 MiB carry limit) into .dev/gguf{1,2,3}/.
#   bash tools/cuda/run_all.sh device    (on the GPU machine; carry [".dev/cuda"]): kernel tests,
#       fixture tests, the real-model check when .dev/gguf*/ are all there (concatenated to /tmp),
#       compute-sanitizer memcheck over the fixture tests, the model benchmark, the PyTorch /
#       transformers bf16 baseline (tools/cuda/torch_bitnet_bench.py); logs under $OUT.
#   bash tools/cuda/run_all.sh real      (GPU machine) only the real-model check + its memcheck.
#   bash tools/cuda/run_all.sh profile   (GPU machine) executor counters (TERN_CUDA_STATS=1) and an
#       ncu kernel-time profile of decode b1 / 64 sequences / pp512 (tools/cuda/ncu_summary.py).
#
# The GGUF travels in three calls made back to back (the machine keeps ignored paths carried by
# earlier calls while it stays warm, ~30 s): carry [".dev/cuda", ".dev/gguf1"] with `device`, then
# [".dev/gguf2"] with `true`, then [".dev/gguf3"] with `real`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mode=${1:-device}

exe_of() { # cargo JSON on stdin -> path of the artifact named $1 (test or example)
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])
' "$1"
}

if [ "$mode" = build ]; then
  set -e
  bash tools/cuda/build.sh
  out=.dev/cuda/bin
  # The kernel micro-benchmark is not part of this run: keep it out of the carried folder (the
  # carry limit is tight with a GGUF part alongside).
  mkdir -p .dev/cuda-extra && mv -f $out/cuda_bench .dev/cuda-extra/ 2>/dev/null || true
  fx=$(cargo test -p tern-model --features cuda --release --test cuda_fixtures --no-run --message-format=json 2>/dev/null | exe_of cuda_fixtures)
  [ -n "$fx" ] || { echo "run_all.sh: no cuda_fixtures executable" >&2; exit 1; }
  cp "$fx" $out/cuda_fixtures
  mb=$(cargo build -p tern-model --features cuda --release --example cuda_model_bench --message-format=json 2>/dev/null | exe_of cuda_model_bench)
  [ -n "$mb" ] || { echo "run_all.sh: no cuda_model_bench executable" >&2; exit 1; }
  cp "$mb" $out/cuda_model_bench
  strip $out/* 2>/dev/null || true
  gguf=${TERN_TESTDATA:-$PWD/.cache/testdata}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ -f "$gguf" ]; then
    rm -rf .dev/gguf1 .dev/gguf2 .dev/gguf3 && mkdir -p .dev/gguf1 .dev/gguf2 .dev/gguf3
    split -n 3 -d -a 1 "$gguf" .dev/smollm2.part
    for i in 0 1 2; do mv .dev/smollm2.part$i .dev/gguf$((i + 1))/; done
    sha256sum "$gguf" | cut -d' ' -f1 >.dev/gguf3/sha256
  else
    echo "run_all.sh: $gguf missing (tools/testdata/fetch.sh smollm2); real-model check skipped"
  fi
  du -sh .dev/cuda/bin/* .dev/cuda/kcache .dev/gguf* 2>/dev/null
  exit 0
fi

# ---- on the GPU machine ------------------------------------------------------------------------
bin=.dev/cuda/bin
out=${OUT:-/tmp/tern-cuda-out}
mkdir -p "$out"
[ -x "$bin/cuda_fixtures" ] || { echo "run tools/cuda/run_all.sh build first and carry .dev/cuda" >&2; exit 2; }
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "GPU: $gpu"
export PATH="/usr/local/cuda/bin:$PATH"
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib /usr/local/lib/python3*/dist-packages/nvidia/*/lib 2>/dev/null); do
  [ -d "$d" ] && libdirs="$libdirs:$d"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}${libdirs}"
export TERN_CUDA_CACHE=/tmp/tern-kcache
mkdir -p "$TERN_CUDA_CACHE" && cp .dev/cuda/kcache/*.cubin "$TERN_CUDA_CACHE"/ 2>/dev/null
declare -a table
step() { # name, seconds, exit, result
  table+=("| $1 | $3 | $2 | $4 |")
}

real_model() {
  if [ -f .dev/gguf1/smollm2.part0 ] && [ -f .dev/gguf2/smollm2.part1 ] && [ -f .dev/gguf3/smollm2.part2 ]; then
    cat .dev/gguf1/smollm2.part0 .dev/gguf2/smollm2.part1 .dev/gguf3/smollm2.part2 >/tmp/smollm2.gguf
    local sum; sum=$(sha256sum /tmp/smollm2.gguf | cut -d' ' -f1)
    [ "$sum" = "$(cat .dev/gguf3/sha256)" ] || echo "GGUF checksum mismatch"
    local t0=$(date +%s)
    TERN_CUDA_REF=crates/tern-cli/tests/data/llamacpp_logits_smollm2.json TERN_CUDA_MODEL=/tmp/smollm2.gguf \
      "$bin/cuda_fixtures" real_model_cpu_vs_cuda --nocapture >"$out/real.log" 2>&1
    local rc=$?
    step "real model SmolLM2 Q4_1 CPU vs CUDA" $(($(date +%s) - t0)) $rc "$(grep -E 'real model:|test result' "$out/real.log" | tr '\n' ' ')"
    t0=$(date +%s)
    TERN_CUDA_MODEL=/tmp/smollm2.gguf timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
      "$bin/cuda_fixtures" real_model_cpu_vs_cuda >"$out/real_memcheck.log" 2>&1
    rc=$?
    step "memcheck real model" $(($(date +%s) - t0)) $rc "$(grep -E 'ERROR SUMMARY' "$out/real_memcheck.log" | tail -1)"
  else
    step "real model" 0 - "GGUF parts not all present (carry .dev/gguf1..3 in back-to-back calls)"
  fi
}

if [ "$mode" = real ]; then
  real_model
elif [ "$mode" = profile ]; then
  # Diagnostics: executor counters and host/device split per call, then ncu kernel times per step.
  t0=$(date +%s)
  TERN_CUDA_STATS=1 timeout 120 "$bin/cuda_model_bench" --only decode --heads q4 >"$out/stats.log" 2>&1
  rc=$?
  step "decode with stats (bf16, q4 heads)" $(($(date +%s) - t0)) $rc "$(grep -E '^decode b1|stats' "$out/stats.log" | tr '\n' ' ')"
  t0=$(date +%s)
  TERN_CUDA_STATS=1 TERN_CUDA_GRAPHS=0 timeout 60 "$bin/cuda_model_bench" --only decode --heads keep >"$out/stats_nog.log" 2>&1
  rc=$?
  step "decode with stats, no graphs" $(($(date +%s) - t0)) $rc "$(grep -E '^decode b1|stats' "$out/stats_nog.log" | tr '\n' ' ')"
  t0=$(date +%s)
  timeout 240 ncu --csv --log-file "$out/ncu.csv" --metrics gpu__time_duration.sum --clock-control none \
    "$bin/cuda_model_bench" --profile >"$out/ncu_run.log" 2>&1
  rc=$?
  step "ncu profile" $(($(date +%s) - t0)) $rc "$(tail -1 "$out/ncu_run.log")"
  python3 tools/cuda/ncu_summary.py "$out/ncu.csv" >"$out/ncu_summary.md" 2>&1
  cat "$out/ncu_summary.md"
else
  t0=$(date +%s)
  TERN_CUDA_QUICK=1 "$bin/tern_cuda_device" --test-threads=4 >"$out/kernels.log" 2>&1
  rc=$?
  step "tern-cuda kernel tests" $(($(date +%s) - t0)) $rc "$(grep -E '^test result' "$out/kernels.log" | tail -1)"
  grep -E "panicked|FAILED" "$out/kernels.log" | head -10

  t0=$(date +%s)
  "$bin/cuda_fixtures" --test-threads=1 --nocapture >"$out/fixtures.log" 2>&1
  rc=$?
  step "model fixtures on CUDA" $(($(date +%s) - t0)) $rc "$(grep -E '^test result' "$out/fixtures.log" | tail -1); worst $(grep -oE 'worst rel L2 [0-9.e+-]+' "$out/fixtures.log" | sort -k4 -g | tail -1)"
  grep -E "cuda fixture|panicked" "$out/fixtures.log" | head -20

  real_model

  t0=$(date +%s)
  timeout 240 "$bin/cuda_model_bench" ${TERN_BENCH_ARGS:-} >"$out/bench.log" 2>&1
  rc=$?
  step "tern model bench" $(($(date +%s) - t0)) $rc "see table"
  grep -vE "^\|" "$out/bench.log" | tail -4

  t0=$(date +%s)
  TERN_CUDA_GRAPHS=0 timeout 60 "$bin/cuda_model_bench" --only decode --heads keep >"$out/bench_nographs.log" 2>&1
  rc=$?
  step "tern decode without graphs" $(($(date +%s) - t0)) $rc "$(grep -E '^decode b1' "$out/bench_nographs.log" | head -1)"

  if [ -z "${TERN_SKIP_TORCH:-}" ]; then
    t0=$(date +%s)
    PYTHONUNBUFFERED=1 timeout 240 python3 tools/cuda/torch_bitnet_bench.py ${TORCH_BENCH_ARGS:-} >"$out/torch.log" 2>&1
    rc=$?
    step "transformers bf16 bench" $(($(date +%s) - t0)) $rc "see table"
    grep -vE "^\|" "$out/torch.log" | tail -3
  fi

  t0=$(date +%s)
  timeout ${TERN_MEMCHECK_TIMEOUT:-150} compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$bin/cuda_fixtures" every_fixture_on_cuda --test-threads=1 >"$out/memcheck.log" 2>&1
  rc=$?
  step "memcheck fixtures" $(($(date +%s) - t0)) $rc "$(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
  tail -3 "$out/memcheck.log"

fi

echo
echo "== tern CUDA on $gpu"
echo "| step | exit | seconds | result |"
echo "|---|---|---|---|"
printf '%s\n' "${table[@]}"
echo
[ -f "$out/bench.log" ] && grep -E "^\|" "$out/bench.log"
echo
[ -f "$out/torch.log" ] && grep -E "^\|" "$out/torch.log"
exit 0
