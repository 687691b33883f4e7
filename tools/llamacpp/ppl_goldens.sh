#!/usr/bin/env bash
# Perplexity goldens from llama.cpp (built from the llama-cpp-python==0.3.36 sdist, GGML_NATIVE) for
# crates/tern-cli/tests/data/llamacpp_ppl.json. The text is crates/tern-cli/tests/data/english.txt.
#   LLAMA_BIN=/path/to/llama.cpp/build/bin tools/llamacpp/ppl_goldens.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LLAMA_BIN:?set LLAMA_BIN to llama.cpp build/bin}
data=${TERN_TESTDATA:-$PWD/.cache/testdata}
txt=crates/tern-cli/tests/data/english.txt
out=crates/tern-cli/tests/data/llamacpp_ppl.json
echo "{" > $out
first=1
for m in smollm2/SmolLM2-135M-Instruct.Q4_1.gguf gemma3/gemma-3-270m-Q4_K_M.gguf; do
  ppl=$("$bin/llama-perplexity" -m "$data/$m" -f $txt -c 128 -b 128 -t 2 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  [ $first = 1 ] || echo "," >> $out
  first=0
  printf '  "%s": {"ctx": 128, "ppl": %s}' "$m" "$ppl" >> $out
done
printf '\n}\n' >> $out
cat $out
