#!/usr/bin/env bash
# Reproduces the tables of BENCHMARKS.md: tern vs llama.cpp on the same GGUF files, same machine, same
# run, 2 threads (issue 5). Writes raw JSON under $OUT (default .cache/bench/results) and prints the
# markdown tables (tools/bench/table.py).
#
#   tools/bench/run.sh                 # everything (≈ 15 min on a quiet 2-core machine)
#   QUICK=1 tools/bench/run.sh         # -r 2, tg32: a smoke run
#
# Environment:
#   LLAMA_BIN   llama.cpp build/bin with llama-bench (default /work/llamacpp/build/bin; built from the
#               llama-cpp-python==0.3.36 sdist under $TERN_TESTDATA/llama-cpp-python if missing)
#   THREADS     threads for both engines (default 2)
#   REPS        repetitions (default 5)
#   TERN_TESTDATA  test assets root (default <repo>/.cache/testdata), for the head-quality models
#   TERN        a tern binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
THREADS=${THREADS:-2}
REPS=${REPS:-5}
NP=${NP:-128}
NG=${NG:-128}
if [ -n "${QUICK:-}" ]; then REPS=2; NG=32; fi
DATA=${TERN_TESTDATA:-$ROOT/.cache/testdata}
MODELS=${MODELS:-$ROOT/.cache/bench}
OUT=${OUT:-$MODELS/results}
mkdir -p "$MODELS" "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if [ -z "${TERN:-}" ]; then
  echo "== building tern (release)" >&2
  cargo build --release -p tern-cli >&2
  TERN=$CARGO_TARGET_DIR/release/tern
fi

LLAMA_BIN=${LLAMA_BIN:-/work/llamacpp/build/bin}
if [ ! -x "$LLAMA_BIN/llama-bench" ]; then
  SRC=$DATA/llama-cpp-python/vendor/llama.cpp
  if [ ! -d "$SRC" ]; then
    echo "llama.cpp source not found: run tools/testdata/fetch.sh llamacpp (llama-cpp-python 0.3.36 sdist)" >&2
    exit 1
  fi
  echo "== building llama.cpp from $SRC (GGML_NATIVE)" >&2
  cmake -S "$SRC" -B "$MODELS/llamacpp-build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$MODELS/llamacpp-build" --target llama-bench -j 2 >&2
  LLAMA_BIN=$MODELS/llamacpp-build/bin
fi
export LD_LIBRARY_PATH=$LLAMA_BIN:${LD_LIBRARY_PATH:-}

# The same random BitNet-2B4T-shape model (seed 0) as TQ2_0 and TQ1_0 GGUF files (token_embd Q4_K,
# as llama-quantize picks for TQ types).
for ty in TQ2_0 TQ1_0; do
  f=$MODELS/bitnet-2b4t-synth-$ty.gguf
  if [ ! -f "$f" ]; then
    echo "== writing $f" >&2
    "$TERN" convert "synthetic:bitnet-2b4t" "$f" --type "${ty,,}" >&2 || \
      "$TERN" bench --synthetic bitnet-2b4t --write-gguf "$f" --type "${ty,,}" >&2
  fi
done

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "{\"cpu\": \"$cpu\", \"threads\": $THREADS, \"reps\": $REPS, \"n_prompt\": $NP, \"n_gen\": $NG, \"date\": \"$(date -u +%FT%TZ)\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" > "$OUT/meta.json"

echo "== memory bandwidth ceiling" >&2
"$TERN" bench --bandwidth -t "$THREADS" -r "$REPS" --json > "$OUT/bandwidth.json"

run_llama() { # file tag
  "$LLAMA_BIN/llama-bench" -m "$1" -p "$NP" -n "$NG" -t "$THREADS" -r "$REPS" -o json > "$OUT/llama-$2.json"
}
run_tern() { # file tag args...
  local f=$1 tag=$2; shift 2
  "$TERN" bench -m "$f" -p "$NP" -n "$NG" -t "$THREADS" -r "$REPS" --json "$@" > "$OUT/tern-$tag.json"
}

for ty in TQ2_0 TQ1_0; do
  f=$MODELS/bitnet-2b4t-synth-$ty.gguf
  echo "== $ty: llama.cpp, then tern (file as loaded), alternating" >&2
  run_llama "$f" "$ty"
  run_tern "$f" "$ty"
done

f=$MODELS/bitnet-2b4t-synth-TQ2_0.gguf
for lay in tq2 t2 t1; do
  for head in keep i8 q8; do
    echo "== tern on TQ2_0 file, layers $lay, head $head" >&2
    run_tern "$f" "TQ2_0-$lay-$head" --layout "$lay" --head-quant "$head"
  done
done
# llama.cpp once more at the end, to see drift over the run.
run_llama "$f" "TQ2_0-again"

echo "== head quality (KLD / top-1 vs the f32 head)" >&2
txt=crates/tern-cli/tests/data/english.txt
for m in smollm2/SmolLM2-135M-Instruct.Q4_1.gguf gemma3/gemma-3-270m-Q4_K_M.gguf; do
  if [ -f "$DATA/$m" ]; then
    "$TERN" bench -m "$DATA/$m" --head-eval "$txt" --ctx 128 --chunks 4 -t "$THREADS" --json > "$OUT/head-$(basename "$m" .gguf).json"
  else
    echo "missing $DATA/$m: run tools/testdata/fetch.sh smollm2 gemma3" >&2
  fi
done
"$TERN" bench --synthetic bitnet-2b4t --head-eval random --ctx 64 --chunks 2 -t "$THREADS" --json > "$OUT/head-synthetic-bitnet-2b4t.json"

python3 tools/bench/table.py "$OUT"
