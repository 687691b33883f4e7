#!/usr/bin/env bash
# Per-position logit goldens from llama.cpp (built from the llama-cpp-python==0.3.36 sdist, GGML_NATIVE,
# as for ppl_goldens.sh) for crates/tern-cli/tests/llamacpp_logits.rs: compiles dump_logits.cpp against
# that build's libllama and writes crates/tern-cli/tests/data/llamacpp_logits_{smollm2,gemma3}.json for
# the prompts in tools/llamacpp/prompts.txt (top 20 ids + logits, row mean/std per position), then
# numpy_logits_{smollm2,gemma3}.json from tools/llamacpp/numpy_ref.py (pip install gguf==0.19.0 numpy).
#   LLAMA_BIN=/path/to/llama.cpp/build/bin tools/llamacpp/logits_goldens.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LLAMA_BIN:?set LLAMA_BIN to llama.cpp build/bin}
data=${TERN_TESTDATA:-$PWD/.cache/testdata}
src=${LLAMA_SRC:-$data/llama-cpp-python/vendor/llama.cpp}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
g++ -O2 -std=c++17 -I"$src/include" -I"$src/ggml/include" tools/llamacpp/dump_logits.cpp \
  -L"$bin" -lllama -lggml -lggml-base -Wl,-rpath,"$bin" -o "$tmp/dump_logits"
for pair in smollm2:smollm2/SmolLM2-135M-Instruct.Q4_1.gguf gemma3:gemma3/gemma-3-270m-Q4_K_M.gguf; do
  name=${pair%%:*}
  out=crates/tern-cli/tests/data/llamacpp_logits_$name.json
  "$tmp/dump_logits" "$data/${pair#*:}" tools/llamacpp/prompts.txt 20 > "$out"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[1], [len(p['ids']) for p in j['prompts']])" "$out"
done
# The exact-math reference for the same ids (gguf-py dequantization + float64 numpy forward).
python3 tools/llamacpp/numpy_ref.py
